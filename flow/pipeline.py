"""``qsilicon flow CONFIG.yaml``: data -> model -> search -> quantize the pick -> Verilog and build
files -> cocotb on Verilator -> Markdown report.

The whole config is checked before any work starts; a bad key or value is one line naming the
key and what is expected.  Without a config the embedded default (``flow/default_flow.yaml``)
runs: that is ``make demo``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .common import CliError, get_board, progress

__all__ = ["DEFAULT_FLOW", "FlowConfig", "load_flow_config", "run_flow"]

DEFAULT_FLOW = Path(__file__).resolve().parent / "default_flow.yaml"
ROOT = Path(__file__).resolve().parents[1]

#: key -> (type, description of the expected value, check)
_SCHEMA = {
    "board": (str, "a Zynq UltraScale+ board name (zcu102, zcu104, ultra96-v2, kv260)", None),
    "output": (str, "a non-empty output directory path", lambda v: v.strip() != ""),
    "data.dataset": (str, "'fashion-mnist'", lambda v: v == "fashion-mnist"),
    "model.supernet": (str, "a supernet checkpoint path (trained by 'qsilicon supernet train' if missing)", None),
    "model.train_epochs": (int, "a positive number of epochs for training a missing supernet", lambda v: 0 < v <= 100),
    "search.space": (str, "'default' or a joint search-space YAML file", None),
    "search.trials": (int, "a positive number of trials", lambda v: v > 0),
    "search.storage": ((str, type(None)), "null (SQLite in the output directory) or an Optuna storage URL",
                       lambda v: v is None or v.startswith(("sqlite://", "postgresql://", "postgresql+"))),
    "search.seed": (int, "an integer seed", None),
    "search.images": (int, "a number of search-split test images in [1, 2000]", lambda v: 0 < v <= 2000),
    "search.pick": ((str, int), "'knee' or a trial number of the Pareto front", lambda v: v == "knee" or
                    (isinstance(v, int) and v >= 0)),
    "quantize.calib_images": (int, "a number of calibration images in [1, 60000]", lambda v: 0 < v <= 60000),
    "quantize.test_images": (int, "a number of held-out test images in [1, 8000]", lambda v: 0 < v <= 8000),
    "verify.sim": (str, "'verilator'", lambda v: v == "verilator"),
    "verify.block": (int, "an encoder block index >= 0", lambda v: v >= 0),
    "verify.image": (int, "a test image index in [0, 9999]", lambda v: 0 <= v < 10000),
}


@dataclass(frozen=True)
class FlowConfig:
    values: dict
    source: str

    def __getitem__(self, key: str):
        return self.values[key]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_flow_config(path=None) -> FlowConfig:
    """Parse and check a flow config (``None``: the embedded default); raise :class:`CliError`."""
    import yaml

    src = DEFAULT_FLOW if path in (None, "default") else Path(path)
    if not src.exists():
        raise CliError(f"flow config {src} not found")
    try:
        raw = yaml.safe_load(src.read_text())
    except yaml.YAMLError as e:
        raise CliError(f"{src}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise CliError(f"{src}: expected a mapping of sections (board, data, model, search, quantize, verify)")
    defaults = _flatten(yaml.safe_load(DEFAULT_FLOW.read_text()))
    for section in sorted({k.split(".")[0] for k in _SCHEMA if "." in k}):
        if section in raw and not isinstance(raw[section], dict):
            raise CliError(f"{src}: {section}: expected a mapping, not {raw[section]!r}")
    given = _flatten(raw)
    for key in given:
        if key not in _SCHEMA:
            near = sorted(k for k in _SCHEMA if k.split(".")[0] == key.split(".")[0])
            sections = ", ".join(sorted({k.split(".")[0] for k in _SCHEMA}))
            hint = f" (expected one of {', '.join(near)})" if near else f" (sections: {sections})"
            raise CliError(f"{src}: unknown key {key}{hint}")
    values = {**defaults, **given}
    for key, (typ, what, check) in _SCHEMA.items():
        v = values[key]
        if isinstance(v, bool) or not isinstance(v, typ) or (check is not None and not check(v)):
            raise CliError(f"{src}: {key} = {v!r}: expected {what}")
    # consistency: the board, the search space and the supernet must exist and agree
    from qsilicon.search.joint import SpaceError, check_board, load_space

    board = get_board(values["board"])
    try:
        check_board(board)
        space = load_space(values["search.space"] if values["search.space"] == "default"
                           else (src.parent / values["search.space"]))
    except SpaceError as e:
        raise CliError(f"{src}: search.space: {e}") from None
    sn = Path(values["model.supernet"])
    if not sn.is_absolute() and not sn.exists() and (ROOT / sn).exists():
        sn = ROOT / sn  # relative to the working directory, else to the repository
    values["model.supernet"] = str(sn)
    if sn.exists() and not sn.is_file():
        raise CliError(f"{src}: model.supernet = {sn}: expected a checkpoint file, not a directory")
    if sn.exists():
        from qsilicon.quant.supernet import load_supernet

        sv, _ = load_supernet(sn)
        if sv.space != space.model:
            raise CliError(f"{src}: search.space: its model space differs from the supernet's ({sn}); use the "
                           "space the supernet was trained on")
    if values["verify.block"] >= min(space.model.depths):
        raise CliError(f"{src}: verify.block = {values['verify.block']}: expected a block every subnet of the space "
                       f"has (0..{min(space.model.depths) - 1}; the shallowest has {min(space.model.depths)})")
    from qsilicon.sim.runner import SimulatorMissingError, check_simulator

    try:
        check_simulator("verilator")
    except SimulatorMissingError as e:
        raise CliError(f"{src}: verify.sim: {e}") from None
    values["_space"] = space
    values["_board"] = board
    return FlowConfig(values, str(src))


# --------------------------------------------------------------------------- steps


def _step(n: int, total: int, what: str) -> float:
    print(f"\n== {n}/{total} {what}", flush=True)
    return time.time()


def _verify_block(iv, hw, block: int, image: int, log_file: Path | None = None) -> list[dict]:
    """The chosen design's GEMM engine ``hw`` on Verilator: every linear layer of encoder ``block``
    of the chosen subnet's integer model ``iv`` (mixed rows) on the activations of one test image;
    outputs compared with ``torch.equal`` and cycles with the latency model.  (``block`` exists in
    every subnet of the space: the config check saw to it.)"""
    import torch

    from qsilicon.quant.datasets import fashion_mnist
    from qsilicon.search.latency import gemm_cycles
    from qsilicon.sim.gemm import GemmMismatchError, rtl_gemm

    xt, _ = fashion_mnist("test")
    trace: dict = {}
    iv.logits(xt[image : image + 1], trace)
    rows = []
    for layer in ("qkv", "proj", "fc1", "fc2"):
        name = f"b{block}.{layer}"
        case = iv.gemm_case(name, trace[f"{name}.in"])
        m, k, n = case.shape
        expect = trace[f"{name}.out"].reshape(m, n)
        n8 = int((case.row_bits == 8).sum())
        progress(f"{name} ({m}x{k}x{n}, {n8} int8 rows) on {hw.gemm.tag} (Verilator)")
        try:
            res = rtl_gemm(case, hw.gemm, sim="verilator", log_file=log_file)
            mism = int((res.out.to(torch.int64) != expect).sum())
        except GemmMismatchError as e:
            res, mism = e.result, e.result.mismatches
        pred = gemm_cycles(hw.gemm, m, k, n, n8)
        rows.append({"layer": name, "shape": f"{m}x{k}x{n}", "int8_rows": n8, "bit_exact": mism == 0,
                     "mismatches": mism, "rtl_cycles": res.cycles, "predicted_cycles": pred,
                     "cycle_error": abs(pred - res.cycles) / res.cycles})
    return rows


def _breakdown_plot(pred: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds: dict[str, int] = {}
    for o in pred["per_op"]:
        kinds[o["kind"]] = kinds.get(o["kind"], 0) + o["cycles"]
    fig, ax = plt.subplots(figsize=(6, 2.8), dpi=120)
    ax.barh(list(kinds), list(kinds.values()), color="#4c72b0")
    ax.set_xlabel("predicted cycles per image")
    ax.set_title("where the chosen design spends its cycles", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_flow(path=None, output: str | None = None) -> int:
    cfg = load_flow_config(path)  # everything checked before any work
    out = Path(output or cfg["output"])
    board, space = cfg["_board"], cfg["_space"]
    total, t0 = 7, time.time()
    times = {}

    t = _step(1, total, "data: Fashion-MNIST from Debian's dataset-fashion-mnist package")
    from qsilicon.quant.datasets import fashion_mnist

    x, _ = fashion_mnist("train")
    xt, _ = fashion_mnist("test")
    print(f"  {len(x)} training and {len(xt)} test images, 28x28")
    times["data"] = time.time() - t

    t = _step(2, total, "model: the Quasar-ViT supernet (cached checkpoint, or trained now)")
    sn = Path(cfg["model.supernet"])
    if not sn.exists():
        print(f"  {sn} missing: training it ({cfg['model.train_epochs']} epochs, several minutes)")
        import yaml

        out.mkdir(parents=True, exist_ok=True)
        space_file = out / "supernet_space.yaml"  # train on the flow's space, not the default one
        space_file.write_text(yaml.safe_dump(space.model.to_dict()))
        import argparse

        from .commands.supernet import cmd_supernet_train
        from .common import DEFAULT_VIT

        cmd_supernet_train(argparse.Namespace(epochs=cfg["model.train_epochs"], seed=0, random=2,
                                              space=str(space_file), init=str(DEFAULT_VIT), no_layer_scale=False,
                                              no_entangle=False, output=str(sn)))
    from qsilicon.quant.supernet import load_supernet

    sv, meta = load_supernet(sn)
    print(f"  {sn}: trained {meta.get('epochs')} epochs from {meta.get('init')}; space {space.model.depths} blocks, "
          f"dims {space.model.dims}")
    times["model"] = time.time() - t

    t = _step(3, total, f"search: NSGA-II over subnets x designs for the {board.name} ({cfg['search.trials']} trials)")
    from tqdm import tqdm

    from .commands.search import search_to_dir

    bar = tqdm(total=cfg["search.trials"], desc="search", unit="trial")

    def show(done, n):
        bar.n = min(done, n)
        bar.refresh()

    try:
        doc = search_to_dir(board, space, out / "search", trials=cfg["search.trials"], storage=cfg["search.storage"],
                            checkpoint=sn, seed=cfg["search.seed"], images=cfg["search.images"],
                            on_trial=show)
    finally:
        bar.close()
    from .commands.search import load_point

    _, rec = load_point(out / "search" / "pareto.json", str(cfg["search.pick"]))
    print(f"  {doc['trials']} trials, {doc['feasible']} feasible, {len(doc['front'])} Pareto points; chosen trial "
          f"{rec['number']}: {rec['subnet']}, {rec['accuracy']:.2f}% (held-out {rec.get('heldout_accuracy', 0):.2f}%), "
          f"{rec['fps']:.0f} FPS predicted")
    times["search"] = time.time() - t

    t = _step(4, total, "quantize: the chosen subnet, integer-only (row-wise int4/int8 weights, int8 activations)")
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.supernet import Subnet, export_subnet

    subnet = Subnet.parse(rec["subnet"], space.model)
    ex = export_subnet(sv, subnet)
    iv = IntViT(ex.model, x[: cfg["quantize.calib_images"]], "mixed", weights=ex.weights)
    _, yt = fashion_mnist("test")
    from .commands.search import SEARCH_IMAGES

    nt = cfg["quantize.test_images"]  # held-out: after the search split
    int_acc = iv.accuracy(xt[SEARCH_IMAGES : SEARCH_IMAGES + nt], yt[SEARCH_IMAGES : SEARCH_IMAGES + nt])
    int8_share = sum(int((b == 8).sum()) for _, _, b in ex.weights.values()) / sum(
        int(b.numel()) for _, _, b in ex.weights.values())
    print(f"  integer-only accuracy {int_acc:.2f}% on {nt} held-out test images; "
          f"{100 * int8_share:.1f}% of weight rows int8")
    times["quantize"] = time.time() - t

    t = _step(5, total, f"Verilog and the {board.name} build files of the chosen design")
    from .commands.search import write_design

    files = write_design(doc, rec, board, out / "design")
    print(f"  {len(files)} files in {out / 'design'}")
    design = json.loads((out / "design" / "design.json").read_text())
    times["verilog"] = time.time() - t

    t = _step(6, total, f"cocotb on Verilator: encoder block {cfg['verify.block']}'s layers on the chosen GEMM engine")
    from qsilicon.search.accel import AccelConfig

    progress(f"building {AccelConfig(**rec['hw']).gemm.tag} with Verilator (a few minutes for a large array; "
              f"log: {out / 'verilator.log'})")
    ver = _verify_block(iv, AccelConfig(**rec["hw"]), cfg["verify.block"], cfg["verify.image"], out / "verilator.log")
    for r in ver:
        print(f"  {r['layer']:<8} {r['shape']:<10} {'bit-exact' if r['bit_exact'] else 'MISMATCH':<9} "
              f"{r['rtl_cycles']:>7} RTL cycles, {r['predicted_cycles']:>7} predicted")
    times["verify"] = time.time() - t

    t = _step(7, total, "report")
    _breakdown_plot(design["prediction"], out / "latency_breakdown.png")
    report = _report(cfg, doc, rec, design, ver, int_acc, int8_share, times, nt)
    tmp = out / ".report.md.tmp"
    tmp.write_text(report)
    tmp.replace(out / "report.md")
    ok = all(r["bit_exact"] for r in ver)
    (out / "flow.json").write_text(json.dumps({"pass": ok, "chosen": rec, "verify": ver, "integer_accuracy": int_acc,
                                               "seconds": times}, indent=2) + "\n")
    print(f"  {out / 'report.md'} (plots: search/pareto.png, latency_breakdown.png); "
          f"{time.time() - t0:.0f} s in all")
    print("flow: PASS" if ok else "flow: FAIL (RTL mismatch)")
    return 0 if ok else 1


def _report(cfg, doc, rec, design, ver, int_acc, int8_share, times, nt) -> str:
    hw, util, res = rec["hw"], rec["util"], design["resources"]
    pred = design["prediction"]
    lines = [
        f"# qsilicon flow report: {doc['board']} ({doc['part']})", "",
        f"Config: `{cfg.source}`. Study `{doc['study']}` in `{doc['storage']}`: {doc['trials']} trials, "
        f"{doc['feasible']} feasible, {len(doc['front'])} on the Pareto front (accuracy, FPS, largest resource "
        f"share), {len(doc['accuracy_fps_front'])} of them on the accuracy-FPS front (the table).", "",
        "## Pareto front (accuracy vs predicted FPS; colour = DSP share)", "", "![Pareto front](search/pareto.png)", "",
        "| trial | accuracy (search split) | held-out | FPS (predicted) | LUT % | DSP % | BRAM % | subnet | design |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    stair = set(doc["accuracy_fps_front"])
    for r in (r for r in doc["front"] if r["number"] in stair):
        h = r["hw"]
        lines.append(f"| {r['number']} | {r['accuracy']:.2f} | {r.get('heldout_accuracy', float('nan')):.2f} | "
                     f"{r['fps']:.0f} | {100 * r['util']['lut']:.1f} | {100 * r['util']['dsp']:.1f} | "
                     f"{100 * r['util']['bram36']:.1f} | `{r['subnet']}` | r{h['rows']}c{h['cols']} {h['packing']} "
                     f"l{h['lanes']} w{h['wbuf_kib']}k a{h['abuf_kib']}k {h['clock_mhz']:g} MHz |")
    conv = doc["convergence"]
    lines += ["", "Hypervolume (accuracy x FPS above the reference point) by trials: "
              + ", ".join(f"{c['trials']}: {c['hypervolume']:.0f}" for c in conv), "",
              f"## Chosen design (trial {rec['number']}, `{cfg['search.pick']}`)", "",
              f"- subnet `{rec['subnet']}`; accuracy {rec['accuracy']:.2f}% (search split), "
              f"{rec.get('heldout_accuracy', float('nan')):.2f}% (held-out, fake-quant), integer-only "
              f"{int_acc:.2f}% on {nt} held-out test images; {100 * int8_share:.1f}% of weight rows int8",
              f"- accelerator: {hw['rows']}x{hw['cols']} MAC array ({hw['packing']}), {hw['lanes']}-lane row unit, "
              f"weight buffer {hw['wbuf_kib']} KiB, activation buffer {hw['abuf_kib']} KiB, {hw['clock_mhz']:g} MHz",
              f"- predicted: {pred['cycles']} cycles per image, {rec['fps']:.0f} FPS, {pred['dram_bytes']} DRAM bytes",
              f"- resources (model): LUT {res['lut']:.0f} ({100 * util['lut']:.1f}%), FF {res['ff']:.0f} "
              f"({100 * util['ff']:.1f}%), DSP {res['dsp']} ({100 * util['dsp']:.1f}%), BRAM36 {res['bram36']:g} "
              f"({100 * util['bram36']:.1f}%)",
              "- Verilog and build files: `design/` (GEMM engine, row unit, element-wise unit, the board's build "
              "plan of the GEMM engine in the self-test shell, `design.json`)", "",
              "![latency breakdown](latency_breakdown.png)", "",
              f"## RTL verification (cocotb, Verilator): encoder block {cfg['verify.block']}, test image "
              f"{cfg['verify.image']}", "",
              "| layer | M x K x N | int8 rows | result | RTL cycles | predicted | error |",
              "|---|---|---:|---|---:|---:|---:|"]
    for r in ver:
        lines.append(f"| {r['layer']} | {r['shape']} | {r['int8_rows']} | "
                     f"{'bit-exact' if r['bit_exact'] else str(r['mismatches']) + ' mismatches'} | {r['rtl_cycles']} | "
                     f"{r['predicted_cycles']} | {100 * r['cycle_error']:.2f}% |")
    lines += ["", "## Assumptions", "",
              f"- DRAM {doc['assumptions']['dram_gbps']} GB/s (the board's PS DDR peak); every resource <= "
              f"{100 * doc['assumptions']['util_cap']:.0f}% of the board; latency target: "
              f"{doc['assumptions']['latency_ms'] or 'none'}.",
              "- FPS: batch 1, predicted by the latency model (GEMM compute cycles equal the RTL's; LayerNorm, "
              "Shiftmax, GELU and adds from the block accelerator's fitted model); clock per design point, not a "
              "timing-closure result.",
              f"- accuracy: {doc['accuracy']}.", "",
              "## Time per step", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in times.items()]
    return "\n".join(lines) + "\n"

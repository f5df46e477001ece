"""``qsilicon flow CONFIG.yaml``: data -> model -> search -> quantize the pick -> the chosen design
built whole (Verilog and the board's system plan) -> the whole model on it in cocotb on Verilator
-> Markdown report.

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
    "verify.image": (int, "a test image index in [0, 9999]", lambda v: 0 <= v < 10000),
    "verify.images": (int, "a number of test images in [1, 100] for the RTL", lambda v: 0 < v <= 100),
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
    if values["verify.image"] + values["verify.images"] > 10000:
        raise CliError(f"{src}: verify.image + verify.images = {values['verify.image'] + values['verify.images']}: "
                       "expected at most the 10000 test images")
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


def _breakdown_plot(pred: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(pred)
    fig, ax = plt.subplots(figsize=(6, 2.8), dpi=120)
    y = range(len(kinds))
    ax.barh([v - 0.2 for v in y], [pred[k]["rtl_cycles"] for k in kinds], height=0.4, color="#4c72b0", label="RTL")
    ax.barh([v + 0.2 for v in y], [pred[k]["predicted_cycles"] for k in kinds], height=0.4, color="#dd8452",
            label="latency model")
    ax.set_yticks(list(y), kinds)
    ax.set_xlabel("cycles per image (the images verified)")
    ax.set_title("where the chosen design spends its cycles: RTL and model", fontsize=9)
    ax.legend(fontsize=7)
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
    from .commands.design import load_point

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

    t = _step(5, total, f"Verilog of the chosen design, whole, and its {board.name} system plan")
    from qsilicon.search.accel import AccelConfig

    from .commands.design import verify_vit, write_design

    hw = AccelConfig(**rec["hw"])
    extra = {"subnet": rec["subnet"], "trial": rec["number"], "study": doc.get("study"),
             "search_accuracy": rec["accuracy"], "heldout_accuracy": rec.get("heldout_accuracy"),
             "predicted_fps": rec["fps"]}
    files = write_design(hw, board, out / "design", extra=extra)
    print(f"  {len(files)} files in {out / 'design'} (top module vit_accel)")
    times["verilog"] = time.time() - t

    n_img, first = cfg["verify.images"], cfg["verify.image"]
    t = _step(6, total, f"cocotb on Verilator: the whole subnet on the whole design, {n_img} test image(s)")
    progress(f"building {hw.tag} with Verilator (minutes for a large array; log: {out / 'verilator.log'})")
    from qsilicon.sim.runner import SimulationError

    from .common import simulation_error

    try:
        ver = verify_vit(iv, hw, xt[first : first + n_img], log_file=out / "verilator.log")
    except SimulationError as e:
        raise simulation_error(e, out / "verilator.log") from None
    per = n_img
    print(f"  logits {'bit-exact' if ver['bit_exact'] else 'MISMATCH'} on {n_img} image(s), memory "
          f"{'equal' if ver['memory_equal_to_iss'] else 'NOT equal'} to the ISS's; {ver['rtl_cycles'] // per} RTL "
          f"cycles per image, {ver['predicted_cycles'] // per} predicted ({100 * ver['cycle_error']:.2f}%)")
    for k, v in sorted(ver["per_kind"].items(), key=lambda kv: -kv[1]["rtl_cycles"]):
        print(f"  {k:<10} {v['rtl_cycles'] // per:>9} RTL {v['predicted_cycles'] // per:>9} predicted "
              f"{100 * v['error']:5.2f}%")
    times["verify"] = time.time() - t

    t = _step(7, total, "report")
    per_kind = {k: {"rtl_cycles": v["rtl_cycles"] // per, "predicted_cycles": v["predicted_cycles"] // per}
                for k, v in ver["per_kind"].items()}
    _breakdown_plot(per_kind, out / "latency_breakdown.png")
    report = _report(cfg, doc, rec, hw, ver, int_acc, int8_share, times, nt)
    tmp = out / ".report.md.tmp"
    tmp.write_text(report)
    tmp.replace(out / "report.md")
    ok = ver["bit_exact"] and ver["memory_equal_to_iss"] is not False
    (out / "flow.json").write_text(json.dumps({"pass": ok, "chosen": rec, "verify": ver, "integer_accuracy": int_acc,
                                               "seconds": times}, indent=2) + "\n")
    print(f"  {out / 'report.md'} (plots: search/pareto.png, latency_breakdown.png); "
          f"{time.time() - t0:.0f} s in all")
    print("flow: PASS" if ok else "flow: FAIL (RTL mismatch)")
    return 0 if ok else 1


def _report(cfg, doc, rec, hw, ver, int_acc, int8_share, times, nt) -> str:
    from qsilicon.search.accel import resources

    h, util, res = rec["hw"], rec["util"], resources(hw)
    n = ver["images"]
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
        lines.append(f"| {r['number']} | {r['accuracy']:.2f} | {r.get('heldout_accuracy', float('nan')):.2f} | "
                     f"{r['fps']:.0f} | {100 * r['util']['lut']:.1f} | {100 * r['util']['dsp']:.1f} | "
                     f"{100 * r['util']['bram36']:.1f} | `{r['subnet']}` | `{_tag(r['hw'])}` |")
    conv = doc["convergence"]
    rtl_per = ver["rtl_cycles"] / n
    lines += ["", "Hypervolume (accuracy x FPS above the reference point) by trials: "
              + ", ".join(f"{c['trials']}: {c['hypervolume']:.0f}" for c in conv), "",
              f"## Chosen design (trial {rec['number']}, `{cfg['search.pick']}`): `{hw.tag}`", "",
              f"- subnet `{rec['subnet']}`; accuracy {rec['accuracy']:.2f}% (search split), "
              f"{rec.get('heldout_accuracy', float('nan')):.2f}% (held-out, fake-quant), integer-only "
              f"{int_acc:.2f}% on {nt} held-out test images; {100 * int8_share:.1f}% of weight rows int8",
              f"- accelerator: {h['rows']}x{h['cols']} MAC array ({h['packing']}), {h['lanes']}-lane vector units and "
              f"memory words, weight ring {h['wbuf_kib']} KiB, activation buffer {h['abuf_kib']} KiB, "
              + (f"{h['rowbuf']}-element row buffer, " if h.get("rowbuf") else "")
              + f"{h['clock_mhz']:g} MHz (an assumption of the search, not a timing result)",
              f"- measured on the RTL: {rtl_per:.0f} cycles per image = {h['clock_mhz'] * 1e6 / rtl_per:.0f} FPS at "
              f"{h['clock_mhz']:g} MHz; predicted by the search's model: {ver['predicted_cycles'] / n:.0f} cycles, "
              f"{rec['fps']:.0f} FPS (error {100 * ver['cycle_error']:.2f}%)",
              f"- resources (model): LUT {res['lut']:.0f} ({100 * util['lut']:.1f}%), FF {res['ff']:.0f} "
              f"({100 * util['ff']:.1f}%), DSP {res['dsp']} ({100 * util['dsp']:.1f}%), BRAM36 {res['bram36']:g} "
              f"({100 * util['bram36']:.1f}%); `qsilicon synth design --design {hw.tag}` synthesizes it",
              f"- Verilog and the {doc['board']} system plan: `design/` (`vit_accel.v`, the Vivado wrapper, "
              "`build_system.tcl`, the register header and address map, `design.json`)", "",
              "![latency breakdown](latency_breakdown.png)", "",
              f"## RTL verification (cocotb, Verilator): the whole model, test images {cfg['verify.image']} to "
              f"{cfg['verify.image'] + n - 1}", "",
              f"Logits: **{'bit-exact' if ver['bit_exact'] else 'MISMATCH'}** (`torch.equal` to the integer model) on "
              f"{n} image(s); the memory after each run "
              f"{'equals' if ver['memory_equal_to_iss'] else 'differs from'} the ISS's; top-1 agrees on "
              f"{ver['top1_agree']} of {n}.", "",
              "| descriptors | RTL cycles per image | predicted | error |", "|---|---:|---:|---:|"]
    for k, v in sorted(ver["per_kind"].items(), key=lambda kv: -kv[1]["rtl_cycles"]):
        lines.append(f"| {k} | {v['rtl_cycles'] / n:.0f} | {v['predicted_cycles'] / n:.0f} | {100 * v['error']:.2f}% |")
    lines.append(f"| **whole image** | {rtl_per:.0f} | {ver['predicted_cycles'] / n:.0f} | "
                 f"{100 * ver['cycle_error']:.2f}% |")
    lines += ["", "## Assumptions", "",
              f"- DRAM {doc['assumptions']['dram_gbps']} GB/s (the board's PS DDR peak); every resource <= "
              f"{100 * doc['assumptions']['util_cap']:.0f}% of the board; latency target: "
              f"{doc['assumptions']['latency_ms'] or 'none'}.",
              "- FPS: batch 1; the search's figures are the latency model's (fitted to RTL runs of whole models); the "
              "RTL figures above are the chosen design's own, with an ideal memory (one beat per cycle).",
              f"- accuracy: {doc['accuracy']}.", "",
              "## Time per step", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in times.items()]
    return "\n".join(lines) + "\n"


def _tag(hw: dict) -> str:
    from qsilicon.search.accel import AccelConfig

    return AccelConfig(**hw).tag

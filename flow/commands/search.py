"""The hardware-aware search: ``qsilicon search``, ``qsilicon latency vit`` and ``qsilicon verilog
design``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ..common import DEFAULT_SUPERNET, CliError, OutputDir, get_board, progress, rowbuf_suffix, write_manifest

__all__ = ["SEARCH_IMAGES", "AccuracyCache", "register", "search_to_dir"]


SEARCH_IMAGES = 2000


class AccuracyCache:
    """Accuracy (percent, fake-quant, inherited weights) of supernet subnets on ``images`` test
    images from ``start``, cached by subnet."""

    def __init__(self, checkpoint, start: int = 0, images: int = SEARCH_IMAGES) -> None:
        import torch

        from qsilicon.quant.datasets import fashion_mnist
        from qsilicon.quant.supernet import load_supernet

        if not Path(checkpoint).exists():
            raise CliError(f"supernet checkpoint {checkpoint} not found: run 'qsilicon supernet train' first")
        torch.set_num_threads(1)
        if not Path(checkpoint).is_file():
            raise CliError(f"supernet checkpoint {checkpoint} is not a file")
        self.sv, _ = load_supernet(checkpoint)
        digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:12]
        #: what the scores depend on: the checkpoint's content and the images
        self.source = f"supernet {digest}, test images {start}..{start + images if images else 10000}"
        xt, yt = fashion_mnist("test")
        stop = len(xt) if images is None else start + images
        self.x, self.y = xt[start:stop], yt[start:stop]
        self.cache: dict[str, float] = {}

    def __call__(self, subnet) -> float:
        if subnet.spec not in self.cache:
            self.cache[subnet.spec] = self.sv.accuracy(subnet, self.x, self.y)
        return self.cache[subnet.spec]


def joint_space(path):
    from qsilicon.search.joint import SpaceError, load_space

    try:
        return load_space(path)
    except SpaceError as e:
        raise CliError(str(e)) from None


def _storage_url(args, out: Path) -> str:
    if args.storage:
        if not args.storage.startswith(("sqlite://", "postgresql://", "postgresql+")):
            raise CliError(f"--storage {args.storage}: expected sqlite:///FILE or postgresql://USER@HOST/DB")
        return args.storage
    out.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(out / 'study.db').resolve()}"


def _plot(front: list[dict], records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    feas = [r for r in records if r["feasible"]]
    infeas = [r for r in records if not r["feasible"]]
    if infeas:
        ax.scatter([r["fps"] for r in infeas], [r["accuracy"] for r in infeas], s=8, c="#dddddd",
                   label="infeasible (over budget)")
    ax.scatter([r["fps"] for r in feas], [r["accuracy"] for r in feas], s=8, c="#aaaaaa", label="feasible trials")
    sc = ax.scatter([r["fps"] for r in front], [r["accuracy"] for r in front], s=40,
                    c=[100 * r["util"]["dsp"] for r in front], cmap="viridis", edgecolors="black", linewidths=0.5,
                    label="Pareto front", zorder=3)
    # the accuracy-FPS staircase of the front (the third objective, utilization, is the colour's cousin)
    from qsilicon.search.joint import accuracy_fps_front

    stair = accuracy_fps_front(front)
    ax.step([r["fps"] for r in stair], [r["accuracy"] for r in stair], where="post", c="black", lw=0.6, zorder=2,
            label="accuracy-FPS front")
    fig.colorbar(sc, ax=ax, label="DSP share of the board (%)")
    ax.set_xscale("log")
    ax.set_xlabel("predicted frames per second (latency model)")
    ax.set_ylabel("top-1 accuracy, search split (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def search_to_dir(board, space, out: Path, *, trials: int, storage: str | None, checkpoint, seed: int = 0,
                  holdout: bool = True, images: int = SEARCH_IMAGES, on_trial=None) -> dict:
    """Run or continue the search, then write ``pareto.json`` and ``pareto.png`` into ``out``
    (atomically: a file is replaced only when complete).  Returns the Pareto document."""
    import optuna

    from qsilicon.search.joint import (
        SpaceError,
        accuracy_fps_front,
        convergence,
        knee,
        open_storage,
        pareto_front,
        run_search,
        trial_records,
    )

    if not 0 < images <= SEARCH_IMAGES:
        raise CliError(f"--images must be in [1, {SEARCH_IMAGES}] (the search split), not {images}")
    acc = AccuracyCache(checkpoint, 0, images)
    if acc.sv.space != space.model:
        raise CliError(f"the space's model section differs from the supernet's ({checkpoint}): search the space the "
                       "supernet was trained on (its subnets are the only ones it can score)")
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        summary = run_search(board, space, acc, trials=trials, storage=url, source=acc.source, seed=seed,
                             log=progress, progress=on_trial)
        study = optuna.load_study(study_name=summary["study"], storage=open_storage(url))
    except SpaceError as e:
        raise CliError(str(e)) from None
    records = trial_records(study)
    front = pareto_front(records)
    if not front:
        raise CliError(f"no feasible design among {len(records)} trials on {board.name}: raise "
                       "constraints.util_cap or latency_ms, or add smaller hardware choices to the space")
    stair = accuracy_fps_front(front)
    pick = knee(stair)  # the knee of the accuracy-FPS trade-off
    ref = min(r["accuracy"] for r in records) - 0.5
    if holdout:
        progress(f"scoring the {len(stair)} accuracy-FPS front points on the {10000 - SEARCH_IMAGES} held-out "
                  "test images")
        held = AccuracyCache(checkpoint, SEARCH_IMAGES, None)
        from qsilicon.quant.supernet import Subnet

        for r in stair:
            r["heldout_accuracy"] = held(Subnet.parse(r["subnet"], space.model))
    doc = {
        "board": board.name, "part": board.part, "study": summary["study"], "storage": url.split("@")[-1],
        "space": space.to_dict(), "trials": len(records), "feasible": sum(r["feasible"] for r in records),
        "resumed_from": summary["resumed_from"],
        "workers": sorted({r["worker"] for r in records if r["worker"] is not None}),
        "accuracy_source": acc.source,
        "accuracy": f"fake-quant, inherited supernet weights, first {images} Fashion-MNIST test images "
                    f"(held-out: the other {10000 - SEARCH_IMAGES})",
        "assumptions": {"dram_gbps": board.dram_gbps, "util_cap": space.util_cap,
                        "latency_ms": space.latency_ms, "clock": "per point (hw.clock_mhz), not a timing result",
                        "fps": "batch 1, one image after another, latency model (search/accel.py)"},
        "convergence": [{"trials": n, "hypervolume": hv} for n, hv in convergence(records, ref)],
        "hypervolume_reference": {"accuracy": ref, "fps": 0.0},
        "knee": pick, "accuracy_fps_front": [r["number"] for r in stair], "front": front,
    }
    tmp = out / ".pareto.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(out / "pareto.json")
    _plot(front, records, out / ".pareto.tmp.png",
          f"{board.name}: {len(records)} trials, {len(front)} Pareto points (colour: DSP share)")
    (out / ".pareto.tmp.png").replace(out / "pareto.png")
    return doc


VIT_ONLY = ("board", "space", "checkpoint", "images", "no_holdout")
DEPTH_ONLY = ("target", "model", "max_area", "max_latency", "max_energy", "clock")


def cmd_search(args) -> int:
    from qsilicon.search.joint import SpaceError, check_board

    defaults = {"space": "default", "checkpoint": str(DEFAULT_SUPERNET), "images": SEARCH_IMAGES, "no_holdout": False}
    if args.engine == "depth":
        given = [k for k in VIT_ONLY if getattr(args, k) not in (None, defaults.get(k))]
        if given:
            raise CliError(f"--{given[0].replace('_', '-')} belongs to the ViT search ('qsilicon search --board ...'), "
                           "not to 'qsilicon search depth'")
        return cmd_search_depth(args)
    given = [k for k in DEPTH_ONLY if k != "model" and getattr(args, k) is not None]
    if given:
        raise CliError(f"--{given[0].replace('_', '-')} belongs to 'qsilicon search depth', not to the ViT search")
    if args.board is None:
        raise CliError("the ViT search needs --board (e.g. --board zcu102); 'qsilicon search depth --target asic' "
                       "searches the depth engine")
    board = get_board(args.board)
    try:
        check_board(board)
    except SpaceError as e:
        raise CliError(str(e)) from None
    space = joint_space(args.space)
    if args.trials < 1:
        raise CliError(f"--trials must be a positive integer, not {args.trials}")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CliError(f"-o {out}: exists and is not a directory")
    fresh = not out.exists()
    try:
        if args.model:
            from .imported import search_model

            given = [k for k in ("checkpoint", "images", "no_holdout") if getattr(args, k) != defaults[k]]
            if given:
                raise CliError(f"--{given[0].replace('_', '-')} belongs to the supernet search; --model searches the "
                               "hardware for an imported model (its accuracy is fixed)")
            return search_model(args, board, space, out, _storage_url(args, out))
        return _search(args, board, space, out)
    except CliError:
        # a failed first run leaves nothing behind, unless its study already holds trials (resumable)
        if fresh and out.is_dir() and not (out / "study.db").exists():
            shutil.rmtree(out)
        raise


def _search(args, board, space, out: Path) -> int:
    storage = _storage_url(args, out)
    from tqdm import tqdm

    bar = tqdm(total=args.trials, desc="search", unit="trial", disable=args.json or None, leave=False)

    def show(done, total):
        bar.n = min(done, total)
        bar.refresh()

    try:
        doc = search_to_dir(board, space, out, trials=args.trials, storage=storage, checkpoint=args.checkpoint,
                            seed=args.seed, holdout=not args.no_holdout, images=args.images, on_trial=show)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{doc['trials']} trials ({doc['feasible']} feasible) in study {doc['study']} ({doc['storage']}); "
          f"Pareto front: {len(doc['front'])} points, {len(doc['accuracy_fps_front'])} on the accuracy-FPS front:")
    print(f"{'#':>4} {'accuracy':>8} {'held-out':>8} {'FPS':>9} {'LUT%':>5} {'DSP%':>5} {'BRAM%':>5}  subnet / design")
    stair = set(doc["accuracy_fps_front"])
    for r in (r for r in doc["front"] if r["number"] in stair):
        h = r["hw"]
        print(f"{r['number']:>4} {r['accuracy']:>8.2f} {r.get('heldout_accuracy', float('nan')):>8.2f} "
              f"{r['fps']:>9.0f} {100 * r['util']['lut']:>5.1f} {100 * r['util']['dsp']:>5.1f} "
              f"{100 * r['util']['bram36']:>5.1f}  {r['subnet']}  r{h['rows']}c{h['cols']} {h['packing']} "
              f"l{h['lanes']} w{h['wbuf_kib']}k a{h['abuf_kib']}k{rowbuf_suffix(h)} {h['clock_mhz']:g} MHz")
    print(f"knee point: trial {doc['knee']['number']}; wrote {out / 'pareto.json'} and {out / 'pareto.png'}")
    return 0


def cmd_search_depth(args) -> int:
    from qsilicon.search.depth_search import Budgets, DepthSearchError, check_inputs, run_depth_search

    from .depth_engine import depth_model

    if args.target != "asic":
        raise CliError("'qsilicon search depth' needs --target asic (the depth engine's cost model is the ASIC flow's: "
                       "area in mm2, energy per inference)")
    budgets = Budgets(args.max_area, args.max_latency, args.max_energy)
    try:
        check_inputs(1, args.trials, budgets, args.clock)
    except DepthSearchError as e:
        raise CliError(str(e)) from None
    if args.output == "out/search":  # the ViT search's default folder: not replaced by a depth search
        args.output = "out/search-depth"
    storage = args.storage
    if storage is not None:
        if not storage.startswith(("sqlite://", "postgresql://", "postgresql+")):
            raise CliError(f"--storage {storage}: expected sqlite:///FILE or postgresql://USER@HOST/DB")
        if storage.startswith("sqlite:///"):
            db = Path(storage.removeprefix("sqlite:///")).resolve()
            if db.is_relative_to(Path(args.output).resolve()):
                raise CliError(f"--storage {storage}: the study must live outside -o {args.output}, which is "
                               "replaced when the search ends")
            if not db.parent.is_dir():
                raise CliError(f"--storage {storage}: no directory {db.parent}")
    out = OutputDir(args.output)
    ig, size, _, what = depth_model(args.model)
    from tqdm import tqdm

    bar = tqdm(total=args.trials, desc="search", unit="trial", disable=args.json or None, leave=False)

    def show(done, total):
        bar.n = min(done, total)
        bar.refresh()

    with out as tmp:
        try:
            res = run_depth_search(ig, size, trials=args.trials, seed=args.seed, storage=storage, budgets=budgets,
                                   clock_mhz=args.clock, progress=show)
        except DepthSearchError as e:
            raise CliError(str(e)) from None
        finally:
            bar.close()
        recs = res["records"]
        if not res["front"]:
            over = "" if not any(r["compiles"] for r in recs) else " within the budgets"
            raise CliError(f"no engine of the {len(recs)} trials compiles the network{over}: raise --max-area, "
                           "--max-latency or --max-energy")
        front = res["front"]
        pick = {"smallest": min(front, key=lambda r: r["area_mm2"])["number"],
                "fastest": min(front, key=lambda r: r["latency_ms"])["number"],
                "lowest_energy": min(front, key=lambda r: r["energy_uj"])["number"]}
        doc = {"engine": "depth", "target": "asic", "model": what, "input": f"{size}x{size}", "study": res["study"],
               "trials": len(recs), "distinct_engines": len({r["tag"] + str(r["engine"]) for r in recs}),
               "space_size": res["space_size"], "feasible": sum(r["feasible"] for r in recs),
               "resumed_from": res["resumed_from"],
               "budgets": {"max_area_mm2": args.max_area, "max_latency_ms": args.max_latency,
                           "max_energy_uj": args.max_energy},
               "objectives": ["latency_ms", "area_mm2", "energy_uj"],
               "assumptions": {"figures": "predictions: cycles by the engine's latency model, area and energy by the "
                                          "ASIC cost model (search/depth_asic.py) calibrated on the OSU 0.18 um flow "
                                          "(bench/asic_depth_model.py); logic power at the default activity",
                               "clock": f"{args.clock} MHz" if args.clock else "each engine at the model's fmax"},
               "picks": pick, "front": front,
               "records": [{k: r.get(k) for k in ("number", "tag", "engine", "compiles", "feasible", "latency_ms",
                                                  "area_mm2", "energy_uj")} for r in recs],
               "infeasible_reasons": sorted({r["reason"] for r in recs if not r["compiles"]})[:5]}
        (tmp / "pareto.json").write_text(json.dumps(doc, indent=2) + "\n")
        write_manifest(tmp, {"command": "search depth", "files": ["pareto.json"]})
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{doc['trials']} trials ({doc['distinct_engines']} distinct engines of {doc['space_size']}, "
          f"{doc['feasible']} feasible) on {what}; Pareto front: {len(front)} engines (predictions):")
    print(f"{'#':>4} {'engine':<22} {'act':>5} {'wgt':>5} {'out':>4} {'area mm2':>9} {'latency ms':>10} "
          f"{'inf/s':>7} {'energy mJ':>9} {'MHz':>6}")
    for r in front:
        e, a = r["engine"], r["asic"]
        print(f"{r['number']:>4} {r['tag']:<22} {e['act_depth']:>5} {e['wgt_depth']:>5} {e['out_depth']:>4} "
              f"{r['area_mm2']:>9.3f} {r['latency_ms']:>10.3f} {a['inferences_per_s']:>7.1f} "
              f"{r['energy_uj'] / 1e3:>9.3f} {a['clock_mhz']:>6.1f}")
    print("smallest: #{smallest}; fastest: #{fastest}; lowest energy: #{lowest_energy}".format(**pick)
          + f"; wrote {Path(args.output) / 'pareto.json'}")
    return 0


def _accel_config(args):
    from qsilicon.search.accel import AccelConfig

    try:
        return AccelConfig(args.rows, args.cols, args.packing, args.lanes, args.wbuf_kib, args.abuf_kib,
                           float(args.clock), args.rowbuf)
    except (TypeError, ValueError) as e:
        raise CliError(f"{e} (see qsilicon latency vit --help)") from None


def cmd_latency_vit(args) -> int:
    from qsilicon.search.accel import predict, resources, subnet_workload, utilization, workload_macs
    from qsilicon.search.joint import SpaceError, check_board

    board = get_board(args.board)
    cfg = _accel_config(args)
    if args.model:
        from qsilicon.search.accel import int_vit_workload

        from .imported import load_model_dir

        if args.shape:
            raise CliError("give --model or --shape, not both")
        md = load_model_dir(args.model)
        ops = int_vit_workload(md.int_model(), cfg)
        what = f"{md.name} ({md.quant['precision']})"
    elif args.shape:
        from qsilicon.search.paper import DEIT

        if args.shape not in DEIT:
            raise CliError(f"--shape {args.shape}: expected one of {', '.join(DEIT)}")
        try:
            ops = DEIT[args.shape].workload(cfg, args.ratio8)
        except ValueError as e:
            raise CliError(str(e)) from None
        what = f"{args.shape}-shaped ViT, int8 share {args.ratio8:g}"
    else:
        space = joint_space(args.space).model
        from qsilicon.quant.supernet import Subnet

        try:
            s = Subnet.parse(args.subnet, space)
            ops = subnet_workload(s, space, cfg)
        except ValueError as e:
            raise CliError(str(e)) from None
        what = s.spec
    p = predict(cfg, ops, board.dram_gbps, detail=True)
    try:
        check_board(board)
        util = utilization(cfg, board)
    except SpaceError:
        util = None
    report = {"model": what, "board": board.name, "config": cfg.to_dict(), "macs": workload_macs(ops),
              **p.to_dict(), "latency_ms": 1e3 / p.fps, "resources": resources(cfg), "utilization": util}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if args.per_op:
        for name, kind, c, bound in p.per_op:
            print(f"  {name:<14} {kind:<10} {c:>10} {bound}")
    r = report["resources"]
    print(f"{what} on {cfg.tag} ({board.name}, DRAM {board.dram_gbps:g} GB/s): {p.cycles} cycles, "
          f"{1e3 / p.fps:.3f} ms, {p.fps:.1f} FPS; {report['macs'] / 1e6:.2f} M MACs; {p.memory_bound_ops} "
          f"memory-bound GEMMs; LUT {r['lut']:.0f}, FF {r['ff']:.0f}, DSP {r['dsp']}, BRAM36 {r['bram36']:g}"
          + (f" (max share {100 * max(util.values()):.1f}%)" if util else ""))
    return 0


def register(sub, groups) -> None:
    s = sub.add_parser("search", help="joint NSGA-II search of supernet subnets x accelerator designs for a board; "
                       "'search depth --target asic': QuartDepth engines for a depth network by area, latency and "
                       "energy")
    s.add_argument("engine", nargs="?", choices=("vit", "depth"), default="vit",
                   help="vit (default): supernet subnets x ViT accelerators on an FPGA board; depth: QuartDepth "
                        "engine configurations for one integer depth network (--target asic)")
    s.add_argument("--board", help="vit: a Zynq UltraScale+ board of the registry (e.g. zcu102)")
    s.add_argument("--space", default="default", help="joint search-space YAML, or 'default' "
                   "(configs/search_space.yaml)")
    s.add_argument("--trials", type=int, default=200, help="complete trials the study should hold (default 200)")
    s.add_argument("--storage", help="Optuna storage URL (vit: default sqlite:///OUTPUT/study.db; depth: default in "
                   "memory, a sqlite file outside -o to resume); postgresql://... lets several processes and "
                   "machines share the study")
    s.add_argument("--checkpoint", default=str(DEFAULT_SUPERNET), help="supernet checkpoint")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--images", type=int, default=SEARCH_IMAGES,
                   help=f"test images that score subnets during the search (default {SEARCH_IMAGES})")
    s.add_argument("--no-holdout", action="store_true", help="skip scoring the front on the held-out images")
    s.add_argument("--target", help="depth: asic (area in mm2 and energy per inference from the ASIC cost model)")
    s.add_argument("--model", help="vit: an imported, quantized model directory (qsilicon import): search only the "
                   "hardware for it; depth: int_graph.pt or its directory (from 'qsilicon quantize depth -o'); default "
                   "the reduced network (random weights, 16x16)")
    s.add_argument("--max-area", type=float, help="depth: area budget in mm2 (a constraint)")
    s.add_argument("--max-latency", type=float, help="depth: latency budget in ms per inference (a constraint)")
    s.add_argument("--max-energy", type=float, help="depth: energy budget in uJ per inference (a constraint)")
    s.add_argument("--clock", type=float, help="depth: clock in MHz for every engine (default each at the cost "
                   "model's fmax)")
    s.add_argument("-o", "--output", default="out/search", help="output directory (default out/search; depth: "
                   "out/search-depth)")
    s.add_argument("--json", action="store_true", help="print the Pareto document")
    s.set_defaults(func=cmd_search)

    lv = groups["latency"].add_parser("vit", help="a supernet subnet (or a DeiT-shaped ViT) on an accelerator "
                                      "design")
    lv.add_argument("--board", default="zcu102")
    lv.add_argument("--subnet", default="largest", help="subnet spec, 'largest' or 'smallest'")
    lv.add_argument("--space", default="default")
    lv.add_argument("--shape", help="instead of a subnet: deit-tiny, deit-small or deit-base")
    lv.add_argument("--model", help="instead of a subnet: an imported, quantized model directory (qsilicon import)")
    lv.add_argument("--ratio8", type=float, default=0.5, help="int8 share of the DeiT shape's rows (default 0.5)")
    lv.add_argument("--rows", type=int, default=8)
    lv.add_argument("--cols", type=int, default=8)
    lv.add_argument("--packing", choices=("none", "dsp2", "dot2"), default="dsp2")
    lv.add_argument("--lanes", type=int, default=8)
    lv.add_argument("--wbuf-kib", type=int, default=32)
    lv.add_argument("--abuf-kib", type=int, default=32)
    lv.add_argument("--clock", type=float, default=150.0, help="MHz (default 150)")
    lv.add_argument("--rowbuf", type=int, default=0, help="row buffer of the LayerNorm unit, elements (0: none; "
                    "64 to 4096): LayerNorm rows up to that length read once")
    lv.add_argument("--per-op", action="store_true", help="print every operation's cycles")
    lv.add_argument("--json", action="store_true")
    lv.set_defaults(func=cmd_latency_vit)

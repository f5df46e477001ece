"""The hardware-aware search: ``qsilicon search``, ``qsilicon latency vit`` and ``qsilicon verilog
design``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ..common import DEFAULT_SUPERNET, CliError, get_board, progress

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


def cmd_search(args) -> int:
    from qsilicon.search.joint import SpaceError, check_board

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
              f"l{h['lanes']} w{h['wbuf_kib']}k a{h['abuf_kib']}k {h['clock_mhz']:g} MHz")
    print(f"knee point: trial {doc['knee']['number']}; wrote {out / 'pareto.json'} and {out / 'pareto.png'}")
    return 0


def _accel_config(args):
    from qsilicon.search.accel import AccelConfig

    try:
        return AccelConfig(args.rows, args.cols, args.packing, args.lanes, args.wbuf_kib, args.abuf_kib,
                           float(args.clock))
    except (TypeError, ValueError) as e:
        raise CliError(f"{e} (see qsilicon latency vit --help)") from None


def cmd_latency_vit(args) -> int:
    from qsilicon.search.accel import predict, resources, subnet_workload, utilization, workload_macs
    from qsilicon.search.joint import SpaceError, check_board

    board = get_board(args.board)
    cfg = _accel_config(args)
    if args.shape:
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
    s = sub.add_parser("search", help="joint NSGA-II search of supernet subnets x accelerator designs for a board")
    s.add_argument("--board", required=True, help="a Zynq UltraScale+ board of the registry (e.g. zcu102)")
    s.add_argument("--space", default="default", help="joint search-space YAML, or 'default' "
                   "(configs/search_space.yaml)")
    s.add_argument("--trials", type=int, default=200, help="complete trials the study should hold (default 200)")
    s.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUTPUT/study.db); postgresql://... "
                   "lets several processes and machines share the study")
    s.add_argument("--checkpoint", default=str(DEFAULT_SUPERNET), help="supernet checkpoint")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--images", type=int, default=SEARCH_IMAGES,
                   help=f"test images that score subnets during the search (default {SEARCH_IMAGES})")
    s.add_argument("--no-holdout", action="store_true", help="skip scoring the front on the held-out images")
    s.add_argument("-o", "--output", default="out/search", help="output directory (default out/search)")
    s.add_argument("--json", action="store_true", help="print the Pareto document")
    s.set_defaults(func=cmd_search)

    lv = groups["latency"].add_parser("vit", help="a supernet subnet (or a DeiT-shaped ViT) on an accelerator "
                                      "design")
    lv.add_argument("--board", default="zcu102")
    lv.add_argument("--subnet", default="largest", help="subnet spec, 'largest' or 'smallest'")
    lv.add_argument("--space", default="default")
    lv.add_argument("--shape", help="instead of a subnet: deit-tiny, deit-small or deit-base")
    lv.add_argument("--ratio8", type=float, default=0.5, help="int8 share of the DeiT shape's rows (default 0.5)")
    lv.add_argument("--rows", type=int, default=8)
    lv.add_argument("--cols", type=int, default=8)
    lv.add_argument("--packing", choices=("none", "dsp2"), default="dsp2")
    lv.add_argument("--lanes", type=int, default=8)
    lv.add_argument("--wbuf-kib", type=int, default=32)
    lv.add_argument("--abuf-kib", type=int, default=32)
    lv.add_argument("--clock", type=float, default=150.0, help="MHz (default 150)")
    lv.add_argument("--per-op", action="store_true", help="print every operation's cycles")
    lv.add_argument("--json", action="store_true")
    lv.set_defaults(func=cmd_latency_vit)

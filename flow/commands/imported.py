"""Users' own models: ``qsilicon import SOURCE -o DIR`` and ``qsilicon quantize model DIR``.

A model directory holds ``model.pt`` (the mapped float model, a :mod:`qsilicon.quant.models.vit`
checkpoint), ``import.json`` (source, configuration, operators, the numerical check), and after
quantizing ``quant.pt`` (precision, calibration images, a few evaluation images) and
``quant.json`` (accuracy before and after).  ``--model DIR`` on ``compile vit``, ``verify vit``,
``verify vit-layer``, ``latency vit`` and ``search`` takes such a directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..common import MANIFEST, CliError, OutputDir, progress, write_manifest

__all__ = ["ModelDir", "load_model_dir", "register"]

#: Evaluation images kept in ``quant.pt`` for ``verify`` (the first of the named set).
KEPT_EVAL = 16
PRECISIONS = ("w8a8", "w4a8", "w4a4", "mixed")


@dataclass
class ModelDir:
    path: Path
    model: object
    meta: dict
    quant: dict | None

    @property
    def name(self) -> str:
        return self.path.name

    def int_model(self):
        """The integer model (:class:`~qsilicon.quant.models.int_vit.IntViT`) as quantized."""
        from qsilicon.quant.models.int_vit import IntViT

        if self.quant is None:
            raise CliError(f"model directory {self.path} is not quantized yet: run 'qsilicon quantize model "
                           f"{self.path} --calib ...' first")
        q = self.quant
        return IntViT(self.model, q["calib"], q["precision"], q["ratio8"])

    def eval_images(self):
        """``(images, labels or None)`` kept for verification."""
        if self.quant is None:
            raise CliError(f"model directory {self.path} is not quantized yet: run 'qsilicon quantize model' first")
        return self.quant["eval"], self.quant.get("eval_labels")


def load_model_dir(path: str | os.PathLike) -> ModelDir:
    import torch

    from qsilicon.quant.models.vit import load

    p = Path(path)
    if p.is_file() and p.name == "model.pt":
        p = p.parent
    if not (p / "model.pt").is_file() or not (p / "import.json").is_file():
        raise CliError(f"{path} is not an imported model directory (no model.pt and import.json): run "
                       "'qsilicon import SOURCE -o DIR' first")
    model, _ = load(p / "model.pt")
    meta = json.loads((p / "import.json").read_text())
    quant = torch.load(p / "quant.pt", weights_only=True) if (p / "quant.pt").is_file() else None
    return ModelDir(p, model, meta, quant)


def cmd_import(args) -> int:
    import torch

    from qsilicon.quant.frontend import UnsupportedModelError, import_vit, load_source, parse_input_shape
    from qsilicon.quant.models.vit import save

    out = OutputDir(args.output)
    try:
        shape = parse_input_shape(args.input_shape) if args.input_shape else None
        progress(f"capturing {args.source} with torch.export")
        src = load_source(args.source, input_shape=shape, weights=args.weights, seed=args.seed)
        vi = import_vit(src)
    except UnsupportedModelError as e:
        raise CliError(str(e)) from None
    report = vi.to_dict() | {"input_shape": list(src.input_shape), "weights": args.weights or f"random (seed "
                             f"{args.seed})"}
    with out as tmp:
        save(vi.model, tmp / "model.pt", {"source": args.source, "imported": True})
        (tmp / "import.json").write_text(json.dumps(report, indent=1) + "\n")
        files = ["model.pt", "import.json"]
        if src.module is not None:
            torch.export.save(src.program, tmp / "source.pt2")
            files.append("source.pt2")
        write_manifest(tmp, {"component": "imported-model", "source": args.source, "files": files})
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        c = vi.model.cfg
        print(f"imported {args.source}: ViT, {c.depth} blocks, dim {c.dim}, {c.heads} heads of {c.hd}, "
              f"{c.image}x{c.image}x{c.channels} in {c.patch}x{c.patch} patches, {c.classes} classes"
              + (", distillation token" if c.distilled else "")
              + f"; {report['parameters']:,} parameters; matches the captured graph to {vi.max_abs_diff:.2g} "
              f"(logits up to {vi.max_abs_logit:.3g}); written to {out.target}")
    return 0


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    tmp.replace(path)


def cmd_quantize_model(args) -> int:
    import torch

    from qsilicon.quant.frontend import UnsupportedModelError
    from qsilicon.quant.frontend.data import load_images
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import evaluate

    md = load_model_dir(args.model_dir)
    if args.precision == "w4a4":
        raise CliError("w4a4: the ViT accelerator's activations are int8 (its array takes int8 operands); use w4a8 "
                       "or mixed (4-bit activations run on the depth engine, for CNNs)")
    if args.ratio8 is not None and args.precision != "mixed":
        raise CliError("--ratio8 goes with --precision mixed")
    ratio8 = 0.5 if args.ratio8 is None else args.ratio8
    if not 0 <= ratio8 <= 1:
        raise CliError(f"--ratio8 must be from 0 to 1, not {ratio8}")
    if not 1 <= args.calib_images <= 100000:
        raise CliError(f"--calib-images must be from 1 to 100000, not {args.calib_images}")
    c = md.model.cfg
    shape = (c.channels, c.image, c.image)
    torch.set_num_threads(2)
    try:
        x_cal, _ = load_images(args.calib, shape, split="train", limit=args.calib_images, seed=args.seed)
        x_ev, y_ev = load_images(args.eval, shape, split="test", limit=args.eval_images, seed=args.seed + 1) \
            if args.eval else (x_cal, None)
    except UnsupportedModelError as e:
        raise CliError(str(e)) from None
    progress(f"quantizing {md.name} to {args.precision} on {len(x_cal)} calibration images")
    iv = IntViT(md.model, x_cal, "mixed" if args.precision == "mixed" else args.precision, ratio8)
    with torch.no_grad():
        f_top = torch.cat([md.model(x_ev[i : i + 256]).argmax(-1) for i in range(0, len(x_ev), 256)])
        q_top = torch.cat([iv.logits(x_ev[i : i + 256]).argmax(-1) for i in range(0, len(x_ev), 256)])
    n8 = sum(int((iv.linear_layer(n).bits == 8).sum()) for n in _layers(iv))
    rows = sum(int(iv.linear_layer(n).bits.numel()) for n in _layers(iv))
    report = {"model": md.meta["source"], "precision": args.precision,
              "ratio8": ratio8 if args.precision == "mixed" else None, "int8_rows": n8, "rows": rows,
              "calib": args.calib, "calib_images": len(x_cal), "eval": args.eval or "(the calibration images)",
              "eval_images": len(x_ev), "top1_agreement": float((f_top == q_top).float().mean()) * 100}
    if y_ev is not None:
        report["float_accuracy"] = evaluate(md.model, x_ev, y_ev)
        report["integer_accuracy"] = float((q_top == y_ev).float().mean()) * 100
    quant = {"precision": "mixed" if args.precision == "mixed" else args.precision, "ratio8": ratio8,
             "calib": x_cal, "eval": x_ev[:KEPT_EVAL].clone()}
    if y_ev is not None:
        quant["eval_labels"] = y_ev[:KEPT_EVAL].clone()
    _write_atomic(md.path / "quant.pt", lambda p: torch.save(quant, p))
    _write_atomic(md.path / "quant.json", lambda p: p.write_text(json.dumps(report, indent=1) + "\n"))
    man = md.path / MANIFEST
    if man.is_file():
        m = json.loads(man.read_text())
        m["files"] = sorted(set(m.get("files", [])) | {"quant.pt", "quant.json"})
        _write_atomic(man, lambda p: p.write_text(json.dumps(m, indent=2) + "\n"))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        acc = (f"top-1 {report['float_accuracy']:.2f}% float -> {report['integer_accuracy']:.2f}% integer on "
               f"{len(x_ev)} images" if y_ev is not None else
               f"no labels: integer top-1 agrees with float on {report['top1_agreement']:.1f}% of {len(x_ev)} images")
        print(f"{md.name} quantized to {args.precision}" + (f" ({n8} of {rows} rows int8)" if args.precision == "mixed"
                                                             else "") + f": {acc}; written to {md.path}")
    return 0


def _layers(iv) -> list[str]:
    return ["embed", *(f"b{i}.{r}" for i in range(len(iv.blocks)) for r in ("qkv", "proj", "fc1", "fc2")), "head"]


def register(sub, groups) -> None:
    im = sub.add_parser("import", help="capture a PyTorch model (timm:, module: or .pt2) with torch.export and map it "
                        "to the ViT accelerator's model")
    im.add_argument("source", help="timm:NAME[?key=value&...] (e.g. timm:vit_tiny_patch16_224?img_size=32&"
                    "patch_size=4&num_classes=10), module:pkg.mod:factory[?key=value&...], or a torch.export .pt2")
    im.add_argument("--input-shape", help="C,H,W of one image (default: the model's own where it says, e.g. timm "
                    "ViTs)")
    im.add_argument("--weights", help="a state dict file to load (timm: and module: sources; default random weights)")
    im.add_argument("--seed", type=int, default=0, help="seed of random weights (default 0)")
    im.add_argument("-o", "--output", required=True, help="model directory to write")
    im.add_argument("--json", action="store_true")
    im.set_defaults(func=cmd_import)

    qm = groups["quantize"].add_parser("model", help="an imported model (qsilicon import) to integers, without a "
                                       "supernet")
    qm.add_argument("model_dir", help="the directory 'qsilicon import' wrote")
    qm.add_argument("--precision", choices=PRECISIONS, default="mixed",
                    help="w8a8, w4a8, or mixed (row-wise int4/int8 rows by Hessian-weighted sensitivity; default)")
    qm.add_argument("--ratio8", type=float, default=None, help="mixed: share of int8 rows per layer (default 0.5)")
    qm.add_argument("--calib", required=True, help="calibration images: fashion-mnist[:train|:test][:N], "
                    "random[:N], a .pt file or a directory of images")
    qm.add_argument("--calib-images", type=int, default=512, help="at most this many calibration images (default 512)")
    qm.add_argument("--eval", help="evaluation images with labels for accuracy (same forms; default: agreement with "
                    "the float model on the calibration images)")
    qm.add_argument("--eval-images", type=int, default=None, help="at most this many evaluation images")
    qm.add_argument("--seed", type=int, default=0, help="seed of random images")
    qm.add_argument("--json", action="store_true")
    qm.set_defaults(func=cmd_quantize_model)


def search_model(args, board, space, out: Path, storage: str) -> int:
    """``qsilicon search --model DIR --board B``: NSGA-II over the space's hardware section for one
    imported model (FPS up, largest resource share down); ``pareto.json`` in ``out``."""
    from qsilicon.search.accel import int_vit_workload
    from qsilicon.search.joint import FixedModel, SpaceError, pareto_front, run_search, trial_records

    md = load_model_dir(args.model)
    iv = md.int_model()
    rep = json.loads((md.path / "quant.json").read_text())
    acc = rep.get("integer_accuracy", rep["top1_agreement"])
    what = "integer top-1 accuracy" if "integer_accuracy" in rep else "integer top-1 agreement with float (no labels)"
    fixed = FixedModel(f"{md.name} ({md.quant['precision']})", lambda hw: int_vit_workload(iv, hw), acc)
    source = f"model:{md.path.resolve()}:{md.quant['precision']}:{md.quant['ratio8']}"
    progress(f"searching accelerator designs for {fixed.name} on {board.name}")
    try:
        summary = run_search(board, space, fixed, trials=args.trials, storage=storage, source=source, seed=args.seed,
                             log=progress)
    except SpaceError as e:
        raise CliError(str(e)) from None
    import optuna

    from qsilicon.search.joint import open_storage

    study = optuna.load_study(study_name=summary["study"], storage=open_storage(storage))
    records = trial_records(study)
    front = pareto_front(records)
    if not front:
        raise CliError(f"no design among {len(records)} trials on {board.name} holds {fixed.name}: add larger "
                       "activation buffers (abuf_kib) or relax constraints.util_cap in the space")
    pick = _knee_fps_util(front)
    doc = {"board": board.name, "part": board.part, "study": summary["study"], "model": fixed.name,
           "model_dir": str(md.path), "accuracy": acc, "accuracy_source": what, "space": space.to_dict(),
           "trials": len(records), "feasible": sum(r["feasible"] for r in records),
           "assumptions": {"dram_gbps": board.dram_gbps, "util_cap": space.util_cap, "latency_ms": space.latency_ms,
                           "fps": "batch 1, latency model (search/accel.py): a prediction"},
           "knee": pick, "front": front}
    _write_atomic(out / "pareto.json", lambda p: p.write_text(json.dumps(doc, indent=2) + "\n"))
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{doc['trials']} trials ({doc['feasible']} feasible) for {fixed.name} on {board.name}; Pareto front "
          f"(predicted FPS up, largest resource share down): {len(front)} designs")
    print(f"{'#':>4} {'FPS':>9} {'LUT%':>5} {'DSP%':>5} {'BRAM%':>5}  design")
    for r in front:
        h = r["hw"]
        mark = "  <- knee" if r["number"] == pick["number"] else ""
        print(f"{r['number']:>4} {r['fps']:>9.0f} {100 * r['util']['lut']:>5.1f} {100 * r['util']['dsp']:>5.1f} "
              f"{100 * r['util']['bram36']:>5.1f}  r{h['rows']}c{h['cols']} {h['packing']} l{h['lanes']} "
              f"w{h['wbuf_kib']}k a{h['abuf_kib']}k {h['clock_mhz']:g} MHz{mark}")
    print(f"written to {out / 'pareto.json'}; build the knee with 'qsilicon verilog design --pareto "
          f"{out / 'pareto.json'} -o DIR'")
    return 0


def _knee_fps_util(front: list[dict]) -> dict:
    """The front design nearest the ideal corner (highest FPS, lowest largest resource share),
    each axis normalized (log FPS)."""
    import math

    f = [math.log(r["fps"]) for r in front]
    u = [r["max_util"] for r in front]
    df, du = (max(f) - min(f)) or 1.0, (max(u) - min(u)) or 1.0
    return min(front, key=lambda r: ((max(f) - math.log(r["fps"])) / df) ** 2 + ((r["max_util"] - min(u)) / du) ** 2)

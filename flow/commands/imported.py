"""Users' own models: ``qsilicon import SOURCE -o DIR``, ``qsilicon quantize model DIR`` and
``qsilicon export DIR -o FILE.onnx``.

A model directory holds ``model.pt`` (the mapped float model: a :mod:`qsilicon.quant.models.vit`
checkpoint, or a CNN's conv nodes), ``import.json`` (source, family, configuration, operators, the
numerical check), ``source.pt2`` (the captured program), and after quantizing ``quant.pt``
(precision, calibration images, a few evaluation images), ``quant.json`` (accuracy or SQNR before
and after) and for a CNN ``int_graph.pt``.  ``--model DIR`` on ``compile|verify|latency vit``,
``verify vit-layer`` and ``search`` (ViT) or ``compile|verify|latency|search depth`` (CNN) takes
such a directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..common import MANIFEST, CliError, OutputDir, progress, rowbuf_suffix, write_manifest

__all__ = ["ModelDir", "load_model_dir", "register"]

#: Evaluation images kept in ``quant.pt`` for ``verify`` (the first of the named set).
KEPT_EVAL = 16
PRECISIONS = ("w8a8", "w4a8", "w4a4", "mixed")
#: Calibration images kept in ``quant.pt`` (every later command recalibrates the ViT on them).
MAX_CALIB = 4096


@dataclass
class ModelDir:
    path: Path
    model: object
    meta: dict
    quant: dict | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def family(self) -> str:
        return self.meta.get("family", "vit")

    def quantized(self) -> dict:
        """``quant.pt``'s contents, or the one-line error that says how to make it."""
        if self.quant is None:
            raise CliError(f"model directory {self.path} is not quantized yet: run 'qsilicon quantize model "
                           f"{self.path} --calib ...' first")
        return self.quant

    def int_model(self):
        """The integer model (:class:`~qsilicon.quant.models.int_vit.IntViT`) as quantized."""
        from qsilicon.quant.models.int_vit import IntViT

        if self.family != "vit":
            raise CliError(f"{self.path} holds a CNN (for the depth engine: 'qsilicon compile|verify|latency depth "
                           f"--model {self.path}'), not a ViT")
        q = self.quantized()
        return IntViT(self.model, q["calib"], q["precision"], q["ratio8"])

    def eval_images(self):
        """``(images, labels or None)`` kept for verification."""
        q = self.quantized()
        return q["eval"], q.get("eval_labels")


def load_model_dir(path: str | os.PathLike) -> ModelDir:
    import torch

    from qsilicon.quant.models.vit import load

    p = Path(path)
    if p.is_file() and p.name == "model.pt":
        p = p.parent
    if not (p / "model.pt").is_file() or not (p / "import.json").is_file():
        raise CliError(f"{path} is not an imported model directory (no model.pt and import.json): run "
                       "'qsilicon import SOURCE -o DIR' first")
    meta = json.loads((p / "import.json").read_text())
    if meta.get("family") == "cnn":
        from qsilicon.quant.ptq.graph import ConvNode

        d = torch.load(p / "model.pt", weights_only=True)
        model = [ConvNode(**{**n, "inputs": tuple(tuple(i) for i in n["inputs"])}) for n in d["nodes"]]
    else:
        model, _ = load(p / "model.pt")
    quant = torch.load(p / "quant.pt", weights_only=True) if (p / "quant.pt").is_file() else None
    return ModelDir(p, model, meta, quant)


def cmd_import(args) -> int:
    import torch

    from qsilicon.quant.frontend import UnsupportedModelError, VitImport, import_model, load_source, parse_input_shape
    from qsilicon.quant.models.vit import save

    out = OutputDir(args.output)
    try:
        shape = parse_input_shape(args.input_shape) if args.input_shape else None
        progress(f"capturing {args.source} with torch.export")
        src = load_source(args.source, input_shape=shape, weights=args.weights, seed=args.seed)
        vi = import_model(src)
    except UnsupportedModelError as e:
        raise CliError(str(e)) from None
    weights = args.weights or ("the archive's" if src.module is None else f"random (seed {args.seed})")
    report = vi.to_dict() | {"input_shape": list(src.input_shape), "weights": weights}
    with out as tmp:
        if isinstance(vi, VitImport):
            save(vi.model, tmp / "model.pt", {"source": args.source, "imported": True})
        else:
            torch.save({"family": "cnn", "nodes": [vars(n) for n in vi.nodes]}, tmp / "model.pt")
        (tmp / "import.json").write_text(json.dumps(report, indent=1) + "\n")
        files = ["model.pt", "import.json"]
        if src.module is not None:
            torch.export.save(src.program, tmp / "source.pt2")
            files.append("source.pt2")
        write_manifest(tmp, {"component": "imported-model", "source": args.source, "files": files})
    if args.json:
        print(json.dumps(report, indent=2))
    elif not isinstance(vi, VitImport):
        print(f"imported {args.source}: CNN of {len(vi.nodes)} convolutions (batch norm folded) for the depth "
              f"engine, input {'x'.join(map(str, src.input_shape[1:]))}; {report['parameters']:,} parameters; matches "
              f"the captured graph to {vi.max_abs_diff:.2g} (outputs up to {vi.max_abs_out:.3g}); written to "
              f"{out.target}")
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

    md = load_model_dir(args.model_dir)
    if not 1 <= args.calib_images <= MAX_CALIB:
        raise CliError(f"--calib-images must be from 1 to {MAX_CALIB}, not {args.calib_images}")
    if args.eval_images is not None and not 1 <= args.eval_images <= 100000:
        raise CliError(f"--eval-images must be from 1 to 100000, not {args.eval_images}")
    if args.precision is None:
        args.precision = "w4a4" if md.family == "cnn" else "mixed"
    if md.family == "cnn":
        return _quantize_cnn(args, md)
    if args.method:
        raise CliError("--method is the CNN's post-training quantization; a ViT is quantized per row (--precision)")
    if args.precision == "w4a4":
        raise CliError("w4a4: the ViT accelerator's activations are int8 (its array takes int8 operands); use w4a8 "
                       "or mixed (4-bit activations run on the depth engine, for CNNs)")
    if args.ratio8 is not None and args.precision != "mixed":
        raise CliError("--ratio8 goes with --precision mixed")
    ratio8 = 0.5 if args.ratio8 is None else args.ratio8
    if not 0 <= ratio8 <= 1:
        raise CliError(f"--ratio8 must be from 0 to 1, not {ratio8}")
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
    if float(x_cal.abs().max()) > 1:
        progress("calibration images outside [-1, 1]: the integer ViT's input codes are int8 of scale 1/127, values "
                 "outside are clamped")
    iv = IntViT(md.model, x_cal, args.precision, ratio8)
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
        report["float_accuracy"] = float((f_top == y_ev).float().mean()) * 100
        report["integer_accuracy"] = float((q_top == y_ev).float().mean()) * 100
    quant = {"precision": args.precision, "ratio8": ratio8,
             "calib": x_cal, "eval": x_ev[:KEPT_EVAL].clone()}
    if y_ev is not None:
        quant["eval_labels"] = y_ev[:KEPT_EVAL].clone()
    _write_atomic(md.path / "quant.pt", lambda p: torch.save(quant, p))
    _write_atomic(md.path / "quant.json", lambda p: p.write_text(json.dumps(report, indent=1) + "\n"))
    _add_files(md.path, ["quant.pt", "quant.json"])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        acc = (f"top-1 {report['float_accuracy']:.2f}% float -> {report['integer_accuracy']:.2f}% integer on "
               f"{len(x_ev)} images" if y_ev is not None else
               f"no labels: integer top-1 agrees with float on {report['top1_agreement']:.1f}% of {len(x_ev)} images")
        print(f"{md.name} quantized to {args.precision}" + (f" ({n8} of {rows} rows int8)" if args.precision == "mixed"
                                                             else "") + f": {acc}; written to {md.path}")
    return 0


def _quantize_cnn(args, md: ModelDir) -> int:
    """A CNN: QuartDepth's post-training quantization (or a simpler method), the integer graph
    (``int_graph.pt``, as ``qsilicon quantize depth -o`` writes it), the output's SQNR against the
    float graph on the evaluation images (the network's own metric is unknown here)."""
    import torch

    from qsilicon.quant.frontend import UnsupportedModelError
    from qsilicon.quant.frontend.data import load_images
    from qsilicon.quant.ptq import method_config, quantize_graph
    from qsilicon.quant.ptq.export import export_graph
    from qsilicon.quant.ptq.graph import run_graph

    from .depth_model import INT_GRAPH

    bits = {"w8a8": (8, 8), "w4a8": (4, 8), "w4a4": (4, 4)}
    if args.precision not in bits:
        raise CliError(f"--precision {args.precision}: a CNN on the depth engine is w8a8, w4a8 or w4a4 (row-wise mixed "
                       "precision is the ViT accelerator's)")
    if args.ratio8 is not None:
        raise CliError("--ratio8 goes with a ViT's --precision mixed")
    method = args.method or "quartdepth"
    if method == "quartdepth-ada":
        raise CliError("--method quartdepth-ada needs depth maps for its Fisher weights: use quartdepth")
    shape = tuple(md.meta["input_shape"][1:])
    if shape[1] != shape[2]:
        raise CliError(f"input {shape[1]}x{shape[2]}: the depth engine's compiler takes square inputs")
    torch.set_num_threads(2)
    try:
        x_cal, _ = load_images(args.calib, shape, split="train", limit=args.calib_images, seed=args.seed)
        x_ev, _ = load_images(args.eval, shape, split="test", limit=args.eval_images or 64, seed=args.seed + 1) \
            if args.eval else (x_cal[:64], None)
    except UnsupportedModelError as e:
        raise CliError(str(e)) from None
    wb, ab = bits[args.precision]
    progress(f"quantizing {md.name} with {method} (W{wb}A{ab}, first and last layers W8A8) on {len(x_cal)} "
             "calibration images")
    if float(x_cal.min()) < 0 or float(x_cal.max()) > 1:
        progress("calibration images outside [0, 1]: the engine reads 8-bit images of scale 1/255, values outside "
                 "are clamped")
    try:
        qg = quantize_graph(md.model, x_cal, None, method_config(method, wb, ab, seed=args.seed))
        ig = export_graph(qg)
    except ValueError as e:
        raise CliError(f"{md.name} cannot be quantized for the depth engine: {e}") from None
    with torch.no_grad():
        ref = run_graph(md.model, x_ev.clamp(0, 1))[0][md.model[-1].output].double()
        got = torch.cat([ig.forward(x_ev[i : i + 8]) for i in range(0, len(x_ev), 8)]).double() * \
            ig.tensors[ig.output].scale
    sqnr = float(10 * torch.log10((ref**2).sum() / ((ref - got) ** 2).sum().clamp(min=1e-30)))
    report = {"model": md.meta["source"], "family": "cnn", "precision": args.precision, "method": method,
              "calib": args.calib, "calib_images": len(x_cal), "eval": args.eval or "(the calibration images)",
              "eval_images": len(x_ev), "output_sqnr_db": round(sqnr, 2),
              "output": {"kind": ig.tensors[ig.output].kind, "bits": ig.tensors[ig.output].bits,
                         "scale": ig.tensors[ig.output].scale}}
    quant = {"precision": args.precision, "ratio8": None, "calib": x_cal[:64].clone(), "eval": x_ev[:KEPT_EVAL].clone()}
    _write_atomic(md.path / INT_GRAPH, lambda p: torch.save(ig.to_dict(), p))
    _write_atomic(md.path / "quant.pt", lambda p: torch.save(quant, p))
    _write_atomic(md.path / "quant.json", lambda p: p.write_text(json.dumps(report, indent=1) + "\n"))
    _add_files(md.path, ["quant.pt", "quant.json", INT_GRAPH])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{md.name} quantized to {args.precision} with {method}: output SQNR {sqnr:.1f} dB against the float "
              f"graph on {len(x_ev)} images; integer graph {md.path / INT_GRAPH} (for 'qsilicon compile|verify|latency "
              f"depth --model {md.path}')")
    return 0


def cmd_export(args) -> int:
    """``qsilicon export DIR -o FILE.onnx``: the quantized integer model as standard ONNX (a CNN's
    conv graph written operator by operator; a ViT's integer forward pass traced), run with ONNX's
    reference evaluator on kept evaluation images against the integer model before it is written."""
    import numpy as np
    import torch
    from onnx.reference import ReferenceEvaluator

    from qsilicon.quant.ptq.onnx_export import graph_to_onnx

    from .depth_model import load_int_depth

    md = load_model_dir(args.model_dir)
    out = Path(args.output)
    if out.suffix != ".onnx":
        raise CliError(f"-o {out}: write a .onnx file")
    md.quantized()
    if not 1 <= args.check_images <= KEPT_EVAL:
        raise CliError(f"--check-images must be from 1 to {KEPT_EVAL}, not {args.check_images}")
    x, _ = md.eval_images()
    x = x[: args.check_images]
    torch.set_num_threads(2)
    if md.family == "cnn":
        ig = load_int_depth(md.path).ig
        _, _, h, w = md.meta["input_shape"]
        model = graph_to_onnx(ig, h, w, name=md.name)
        got = ReferenceEvaluator(model).run(None, {"img_codes": ig.image_codes(x).numpy().astype(np.uint8)})[0]
        exact = bool(torch.equal(torch.from_numpy(got.astype(np.int64)), ig.forward(x).to(torch.int64)))
    else:
        from qsilicon.quant.models.int_vit_onnx import int_vit_to_onnx

        iv = md.int_model()
        progress(f"tracing the integer {md.name} to ONNX")
        model = int_vit_to_onnx(iv, x[:1])
        run = ReferenceEvaluator(model)
        exact = all(np.array_equal(run.run(None, {"image": x[i : i + 1].numpy()})[0], iv.logits(x[i : i + 1]).numpy())
                    for i in range(len(x)))
    if not exact:
        raise CliError("the ONNX model's output differs from the integer model's: exporter bug, nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(out, lambda p: p.write_bytes(model.SerializeToString()))
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    report = {"model": md.meta["source"], "file": str(out), "bytes": out.stat().st_size, "opset": model.opset_import[0]
              .version, "operators": ops, "checked_images": len(x), "bit_exact_vs_integer_model": exact}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"exported {md.name} to {out} ({report['bytes']:,} bytes, ONNX opset {report['opset']}, "
              f"{sum(ops.values())} operators); ONNX's reference evaluator reproduces the integer model bit for bit on "
              f"{len(x)} images")
    return 0


def _add_files(path: Path, files: list[str]) -> None:
    man = path / MANIFEST
    if man.is_file():
        m = json.loads(man.read_text())
        m["files"] = sorted(set(m.get("files", [])) | set(files))
        _write_atomic(man, lambda p: p.write_text(json.dumps(m, indent=2) + "\n"))


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
    qm.add_argument("--precision", choices=PRECISIONS, default=None,
                    help="ViT: w8a8, w4a8 or mixed (row-wise int4/int8 rows by Hessian-weighted sensitivity; "
                    "default); CNN: w8a8, w4a8 or w4a4 (default)")
    qm.add_argument("--ratio8", type=float, default=None, help="mixed: share of int8 rows per layer (default 0.5)")
    qm.add_argument("--calib", required=True, help="calibration images: fashion-mnist[:train|:test][:N], "
                    "random[:N], a .pt file or a directory of images")
    qm.add_argument("--calib-images", type=int, default=512, help=f"at most this many calibration images (default 512, "
                    f"at most {MAX_CALIB})")
    qm.add_argument("--eval", help="evaluation images with labels for accuracy (same forms; default: agreement with "
                    "the float model on the calibration images)")
    qm.add_argument("--eval-images", type=int, default=None, help="at most this many evaluation images")
    qm.add_argument("--method", choices=("rtn", "percentile", "polish", "compensate", "quartdepth", "quartdepth-u4"),
                    help="CNN: post-training quantization method (default quartdepth: activation polishing, "
                    "compensation, GPTQ weight reconstruction)")
    qm.add_argument("--seed", type=int, default=0, help="seed of random images")
    qm.add_argument("--json", action="store_true")
    qm.set_defaults(func=cmd_quantize_model)

    ex = sub.add_parser("export", help="a quantized imported model as a standard ONNX model whose arithmetic is "
                        "integer (checked against the integer model with ONNX's reference evaluator)")
    ex.add_argument("model_dir", help="the directory 'qsilicon import' and 'qsilicon quantize model' wrote")
    ex.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    ex.add_argument("--check-images", type=int, default=4, help=f"kept evaluation images run through ONNX's reference "
                    f"evaluator against the integer model before writing (1 to {KEPT_EVAL}; default 4)")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_export)


def search_model(args, board, space, out: Path, storage: str) -> int:
    """``qsilicon search --model DIR --board B``: NSGA-II over the space's hardware section for one
    imported model (FPS up, largest resource share down); ``pareto.json`` in ``out``."""
    from qsilicon.search.accel import int_vit_workload
    from qsilicon.search.joint import FixedModel, SpaceError, knee_fps_util, pareto_front, run_search, trial_records

    md = load_model_dir(args.model)
    iv = md.int_model()
    rep = json.loads((md.path / "quant.json").read_text())
    acc = rep.get("integer_accuracy", rep["top1_agreement"])
    what = "integer top-1 accuracy" if "integer_accuracy" in rep else "integer top-1 agreement with float (no labels)"
    fixed = FixedModel(f"{md.name} ({md.quant['precision']})", lambda hw: int_vit_workload(iv, hw), acc)
    digest = hashlib.sha256((md.path / "model.pt").read_bytes() + (md.path / "quant.pt").read_bytes()).hexdigest()
    source = f"model:{digest[:16]}:{md.quant['precision']}:{md.quant['ratio8']}"  # a changed model is a new study
    out.mkdir(parents=True, exist_ok=True)
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
    pick = knee_fps_util(front)
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
              f"w{h['wbuf_kib']}k a{h['abuf_kib']}k{rowbuf_suffix(h)} {h['clock_mhz']:g} MHz{mark}")
    print(f"written to {out / 'pareto.json'}; build the knee with 'qsilicon verilog design --pareto "
          f"{out / 'pareto.json'} -o DIR'")
    return 0

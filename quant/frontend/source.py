"""Where an imported model comes from, and its capture with :func:`torch.export.export`.

A source spec is one of:

* ``timm:NAME[?key=value&...]``: an architecture of the ``timm`` package built with
  ``pretrained=False`` and those keyword arguments (values are Python literals: ``img_size=32``,
  ``qkv_bias=False``, ``global_pool=token``); weights from ``--weights`` or random with the seed;
* ``module:pkg.mod:factory[?key=value&...]``: any importable function returning an ``nn.Module``;
* ``PATH.pt2``: a program saved by :func:`torch.export.save` (its input shape is its own).

Weights (``weights``): a file of a state dict, or of a dict holding one under ``state_dict``,
``model`` or ``state``, loaded strictly.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import torch
from torch import nn

from .errors import UnsupportedModelError

__all__ = ["ImportedSource", "export_source", "import_timm", "load_source", "parse_input_shape"]


@dataclass
class ImportedSource:
    """A source's module (``None`` for a ``.pt2``), its exported program and example input shape."""

    spec: str
    module: nn.Module | None
    program: torch.export.ExportedProgram
    input_shape: tuple[int, ...]


def _literal(v: str):
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None}.get(v.lower(), v)


def _split_args(spec: str) -> tuple[str, dict]:
    head, _, query = spec.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise UnsupportedModelError(f"source {spec!r}: keyword arguments must be key=value pairs joined by '&'") \
            from None
    return head, {k: _literal(v) for k, v in pairs}


def import_timm():
    """``timm``, imported so that it works beside the CPU build of torch.

    PyPI's torchvision wheels are built against CUDA torch: beside the CPU wheel their C
    extension does not load, and ``import torchvision`` then fails registering fake kernels of
    two operators its extension would have defined (``torchvision::nms``, ``qnms``).  timm needs
    only torchvision's Python parts; the two schemas are declared (without kernels) so that the
    import completes.  Detection operators stay unusable, which no imported model here needs.
    """
    try:
        import timm
        return timm
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.") or m == "timm"
                 or m.startswith("timm.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        with contextlib.suppress(RuntimeError):  # already declared
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import_timm._lib = lib  # the library must outlive this call
    import timm
    return timm


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def _from_timm(name: str, kwargs: dict) -> nn.Module:
    timm = import_timm()
    if name not in timm.list_models():
        near = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        raise UnsupportedModelError(f"timm has no model {name!r}" + (f" (similar: {', '.join(near)})" if near else ""))
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except Exception as e:  # noqa: BLE001 (timm raises many types for bad keyword arguments)
        raise UnsupportedModelError(f"timm:{name} cannot be built with {kwargs}: {type(e).__name__}: "
                                    f"{_first_line(e)}") from None


def _from_module(target: str, kwargs: dict) -> nn.Module:
    mod_name, _, fn_name = target.rpartition(":")
    if not mod_name or not fn_name:
        raise UnsupportedModelError(f"module source {target!r}: write module:pkg.mod:factory")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise UnsupportedModelError(f"module {mod_name!r} cannot be imported: {e}") from None
    fn = getattr(mod, fn_name, None)
    if fn is None or not callable(fn):
        raise UnsupportedModelError(f"module {mod_name!r} has no callable {fn_name!r}")
    try:
        model = fn(**kwargs)
    except Exception as e:  # noqa: BLE001 (the user's factory may raise anything)
        call = f"{mod_name}:{fn_name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
        raise UnsupportedModelError(f"{call} raised {type(e).__name__}: {_first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"{mod_name}:{fn_name} returned {type(model).__name__}, not an nn.Module")
    return model


def _load_weights(model: nn.Module, path: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise UnsupportedModelError(f"weights file {path} not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (any unreadable file is the same error for the user)
        raise UnsupportedModelError(f"weights file {path} is not a torch state dict: {e}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model", "state"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise UnsupportedModelError(f"weights file {path} does not fit the model: "
                                    f"{' '.join(x.strip() for x in first[:2])[:300]}") from None


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``3,32,32`` or ``1x3x32x32`` -> ``(1, 3, 32, 32)`` (a batch of one is added)."""
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise UnsupportedModelError(f"--input-shape {text!r}: write C,H,W (e.g. 3,32,32)") from None
    if len(dims) == 3:
        dims = (1, *dims)
    if len(dims) != 4 or any(d < 1 for d in dims):
        raise UnsupportedModelError(f"--input-shape {text!r}: an image model takes C,H,W (e.g. 3,32,32)")
    return dims


def _default_shape(model: nn.Module) -> tuple[int, ...] | None:
    pe = getattr(model, "patch_embed", None)
    size = getattr(pe, "img_size", None)
    proj = getattr(pe, "proj", None)
    if size is not None and isinstance(proj, nn.Conv2d):
        return (1, proj.in_channels, *size)
    return None


def load_source(spec: str, *, input_shape: tuple[int, ...] | None = None, weights: str | None = None,
                seed: int = 0) -> ImportedSource:
    """The module of ``spec`` (in eval mode) and its exported program."""
    if spec.endswith(".onnx"):
        raise UnsupportedModelError("ONNX files are not imported: export the model with torch.export.save (.pt2) "
                                    "or give its timm:/module: source")
    if spec.endswith(".pt2"):
        if weights:
            raise UnsupportedModelError("--weights goes with timm: and module: sources; a .pt2 holds its own")
        if not Path(spec).is_file():
            raise UnsupportedModelError(f"exported program {spec} not found")
        try:
            ep = torch.export.load(spec)
        except Exception as e:  # noqa: BLE001
            raise UnsupportedModelError(f"{spec} is not a torch.export archive: {str(e).splitlines()[0]}") from None
        inputs = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in ep.graph_signature.user_inputs]
        if len(inputs) != 1:
            raise UnsupportedModelError(f"{spec}: the program takes {len(inputs)} inputs; an image model takes one")
        dims = inputs[0].meta["val"].shape
        if any(not isinstance(d, int) for d in dims):
            raise UnsupportedModelError(f"{spec}: its input has a dynamic shape {tuple(dims)}; export it with static "
                                        "shapes (the accelerators need every shape fixed)")
        shape = tuple(int(d) for d in dims)
        if input_shape is not None and tuple(input_shape[-3:]) != shape[-3:]:
            raise UnsupportedModelError(f"--input-shape {tuple(input_shape[1:])} differs from the program's own "
                                        f"{shape[1:]}: leave it out for a .pt2")
        return ImportedSource(spec, None, ep, shape)
    torch.manual_seed(seed)
    if spec.startswith("timm:"):
        name, kwargs = _split_args(spec[5:])
        model = _from_timm(name, kwargs)
    elif spec.startswith("module:"):
        target, kwargs = _split_args(spec[7:])
        model = _from_module(target, kwargs)
    else:
        raise UnsupportedModelError(f"source {spec!r}: use timm:NAME[?k=v&...], module:pkg.mod:factory or a .pt2 "
                                    "file")
    if weights:
        _load_weights(model, weights)
    model.eval()
    if spec.startswith("timm:"):
        # train-time branches (RepVGG, MobileOne ...) merged into the convolutions they deploy as
        from timm.utils.model import reparameterize_model

        model = reparameterize_model(model)
    shape = input_shape or _default_shape(model)
    if shape is None:
        raise UnsupportedModelError(f"{spec}: give the input shape (--input-shape C,H,W)")
    return ImportedSource(spec, model, export_source(model, shape), tuple(shape))


def export_source(model: nn.Module, shape: tuple[int, ...]) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` on a zero input of ``shape``, its failures as one line."""
    try:
        with torch.no_grad():
            return torch.export.export(model, (torch.zeros(shape),))
    except Exception as e:  # noqa: BLE001 (torch.export raises many types; the user needs the reason)
        lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
        raise UnsupportedModelError(f"torch.export cannot capture the model ({type(e).__name__}: "
                                    f"{lines[0][:240] if lines else ''}); a model must have static shapes and no "
                                    "data-dependent control flow") from None

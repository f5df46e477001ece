"""Images for calibrating and evaluating an imported model, from a spec.

* ``fashion-mnist[:train|:test][:N]``: the installed Fashion-MNIST split (train by default for
  calibration, the caller picks), first ``N`` images, resized and channel-repeated to the
  model's input where it differs (bilinear; values in [0, 1]);
* ``random[:N]``: ``N`` images of uniform values in [0, 1) (seeded): for calibrating a model with
  random weights, whose accuracy means nothing;
* ``PATH.pt``: a tensor ``[N, C, H, W]``, or a dict with ``images`` (and ``labels``): used as given,
  so any normalisation the model expects is the file's;
* a directory: PNG/JPEG/BMP files (recursively, sorted), converted to the model's channels, resized
  to its input and scaled to [0, 1]; when every file sits in a subdirectory, the subdirectories
  (sorted) are the classes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import UnsupportedModelError

__all__ = ["load_images"]

_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def _fit(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    c, h, w = shape
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.repeat(1, c, 1, 1)
        elif c == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise UnsupportedModelError(f"images with {x.shape[1]} channels for a model of {c}")
    if tuple(x.shape[2:]) != (h, w):
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.contiguous()


def _count(text: str, spec: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise UnsupportedModelError(f"data {spec!r}: {text!r} is not a number of images") from None
    if n < 1:
        raise UnsupportedModelError(f"data {spec!r}: the number of images must be at least 1")
    return n


def load_images(spec: str, shape: tuple[int, int, int], *, split: str = "train", limit: int | None = None,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images [N, C, H, W] float32, labels [N] or None)`` of ``spec`` for an input of ``shape``."""
    parts = spec.split(":")
    if parts[0] == "fashion-mnist":
        from ..datasets import fashion_mnist

        rest = parts[1:]
        if rest and rest[0] in ("train", "test"):
            split, rest = rest[0], rest[1:]
        n = _count(rest[0], spec) if rest else limit
        n = min(n, limit) if n is not None and limit is not None else n
        try:
            x, y = fashion_mnist(split)
        except FileNotFoundError as e:
            raise UnsupportedModelError(str(e)) from None
        x, y = x[:n], y[:n]
        return _fit(x, shape), y
    if parts[0] == "random":
        n = _count(parts[1], spec) if len(parts) > 1 else (limit or 64)
        n = min(n, limit) if limit is not None else n
        g = torch.Generator().manual_seed(seed)
        return torch.rand((n, *shape), generator=g), None
    p = Path(spec)
    if p.suffix == ".pt":
        if not p.is_file():
            raise UnsupportedModelError(f"data file {spec} not found")
        d = torch.load(p, map_location="cpu", weights_only=True)
        x, y = (d.get("images"), d.get("labels")) if isinstance(d, dict) else (d, None)
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != tuple(shape):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UnsupportedModelError(f"data file {spec}: images of shape {got}, the model takes [N, {shape[0]}, "
                                        f"{shape[1]}, {shape[2]}]")
        if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],)):
            raise UnsupportedModelError(f"data file {spec}: labels must be a tensor of one class per image")
        return x.float()[:limit], (y.long()[:limit] if y is not None else None)
    if p.is_dir():
        from PIL import Image

        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in _EXT)
        if not files:
            raise UnsupportedModelError(f"data directory {spec} holds no PNG/JPEG/BMP images")
        files = files[:limit]
        mode = "L" if shape[0] == 1 else "RGB"
        imgs = []
        for f in files:
            with Image.open(f) as im:
                im = im.convert(mode).resize((shape[2], shape[1]), Image.BILINEAR)
                t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
                imgs.append(t.reshape(shape[1], shape[2], -1).permute(2, 0, 1).float() / 255.0)
        x = torch.stack(imgs)
        classes = sorted({f.parent for f in files})
        labels = None
        if all(f.parent != p for f in files):
            labels = torch.tensor([classes.index(f.parent) for f in files])
        return x, labels
    raise UnsupportedModelError(f"data {spec!r}: use fashion-mnist[:train|:test][:N], random[:N], a .pt file or a "
                                "directory of images")

"""RGB-D data for the depth path, offline: procedural scenes rendered with pybullet's CPU
renderer, and the Middlebury "Motorcycle" pair shipped with scikit-image as a real-image check.

Scenes (:func:`render_scene`) are deterministic by seed: a textured ground plane, two or three
walls, 3 to 14 objects (pybullet_data's random meshes, duck, teddy, table, tray, cubes, spheres,
soccer ball), textures from real photographs in scikit-image, a random camera (height, pitch,
yaw, field of view 45 to 75 degrees) and light, with shadows.  Depth is metric, from the
z-buffer; sky pixels (nothing within ``far``) are 0, meaning invalid.

Splits use disjoint seed ranges (train from 0, calibration from 1,000,000, test from 2,000,000)
and are cached as ``.npz`` under :func:`qsilicon.paths.cache_root` (``depth/``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["SPLIT_SEEDS", "aloe", "depth_split", "motorcycle", "render_scene", "scene_cache_path"]

RES = 64
NEAR, FAR = 0.1, 12.0
SPLIT_SEEDS = {"train": 0, "calib": 1_000_000, "test": 2_000_000}
_VERSION = 2
_TEXTURES = ("brick", "grass", "gravel", "coffee", "astronaut", "chelsea", "rocket", "camera", "coins", "moon")
_OBJECTS = ("duck_vhacd.urdf", "teddy_vhacd.urdf", "table/table.urdf", "tray/traybox.urdf", "cube.urdf",
            "sphere2.urdf", "soccerball.urdf")


def _pybullet():
    try:
        import pybullet as p
        import pybullet_data
    except ImportError:
        raise ImportError("pybullet is not installed: run \"pip install -e '.[depth]'\" (or 'make test')") from None
    return p, pybullet_data


def _texture_files() -> list[str]:
    """The scikit-image photographs as PNG files pybullet can load (written once)."""
    from qsilicon.paths import cache_root

    d = cache_root() / "depth" / "textures"
    d.mkdir(parents=True, exist_ok=True)
    files = []
    for name in _TEXTURES:
        f = d / f"{name}.png"
        if not f.exists():
            import skimage.data
            import skimage.io
            from skimage.transform import resize

            img = getattr(skimage.data, name)()
            if img.ndim == 2:
                img = np.stack([img] * 3, -1)
            # 128x128 is plenty for 64x64 renders and keeps texture loading cheap
            img = (resize(img[:, :, :3], (128, 128), anti_aliasing=True) * 255).round().astype(np.uint8)
            tmp = f.with_suffix(".tmp.png")
            skimage.io.imsave(tmp, img[:, :, :3], check_contrast=False)
            os.replace(tmp, f)
        files.append(str(f))
    return files


class _Renderer:
    """One pybullet DIRECT connection, reused for many scenes."""

    def __init__(self) -> None:
        self.p, data = _pybullet()
        self.cid = self.p.connect(self.p.DIRECT)
        self.data = data.getDataPath()
        self.p.setAdditionalSearchPath(self.data, physicsClientId=self.cid)
        self.textures = _texture_files()

    def close(self) -> None:
        self.p.disconnect(self.cid)

    def scene(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        p, c = self.p, self.cid
        rng = np.random.default_rng(seed)
        p.resetSimulation(physicsClientId=c)
        loaded: dict[int, int] = {}  # textures are loaded after each reset (it drops them), only those used

        def texture() -> int:
            k = int(rng.integers(0, len(self.textures)))
            if k not in loaded:
                loaded[k] = p.loadTexture(self.textures[k], physicsClientId=c)
            return loaded[k]

        plane = p.loadURDF("plane.urdf", physicsClientId=c)
        p.changeVisualShape(plane, -1, textureUniqueId=texture(), physicsClientId=c)
        yaw = rng.uniform(-math.pi, math.pi)
        fwd = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        side = np.array([-fwd[1], fwd[0], 0.0])
        # walls: a back wall and one or two side walls, textured
        dist = rng.uniform(3.0, 8.0)
        walls = [(fwd * dist, yaw)]
        for sgn in rng.choice([-1, 1], size=rng.integers(1, 3), replace=False):
            walls.append((fwd * dist * 0.5 + side * sgn * rng.uniform(1.5, 4.0), yaw + math.pi / 2))
        for pos, ang in walls:
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[0.05, 6.0, 2.0], rgbaColor=[1, 1, 1, 1],
                                      physicsClientId=c)
            body = p.createMultiBody(0, -1, vis, [pos[0], pos[1], 2.0], p.getQuaternionFromEuler([0, 0, ang]),
                                     physicsClientId=c)
            p.changeVisualShape(body, -1, textureUniqueId=texture(), physicsClientId=c)
        for _ in range(int(rng.integers(3, 15))):
            if rng.random() < 0.5:
                k = int(rng.integers(0, 1000))
                urdf, scale = f"random_urdfs/{k:03d}/{k:03d}.urdf", rng.uniform(3.0, 9.0)
            else:
                urdf = _OBJECTS[int(rng.integers(0, len(_OBJECTS)))]
                scale = rng.uniform(0.5, 2.0) * (0.5 if "table" in urdf else 1.0)
            pos = fwd * rng.uniform(1.0, dist - 0.5) + side * rng.uniform(-2.0, 2.0)
            try:
                body = p.loadURDF(urdf, [pos[0], pos[1], rng.uniform(0.0, 0.5)],
                                  p.getQuaternionFromEuler(list(rng.uniform(-math.pi, math.pi, 3))),
                                  globalScaling=float(scale), useFixedBase=True, physicsClientId=c)
            except p.error:
                continue
            if rng.random() < 0.5:
                p.changeVisualShape(body, -1, textureUniqueId=texture(), physicsClientId=c)
        h = rng.uniform(0.4, 2.0)
        pitch = rng.uniform(-35.0, -5.0) * math.pi / 180
        eye = np.array([0.0, 0.0, h])
        target = eye + 4.0 * np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch),
                                       math.sin(pitch)])
        view = p.computeViewMatrix(eye.tolist(), target.tolist(), [0, 0, 1], physicsClientId=c)
        fov = rng.uniform(45.0, 75.0)
        proj = p.computeProjectionMatrixFOV(fov, 1.0, NEAR, FAR, physicsClientId=c)
        light = [float(v) for v in rng.uniform([-1, -1, 0.5], [1, 1, 1.5])]
        _, _, rgb, zb, _ = p.getCameraImage(RES, RES, view, proj, renderer=p.ER_TINY_RENDERER, shadow=1,
                                            lightDirection=light, physicsClientId=c)
        rgb = np.asarray(rgb, dtype=np.uint8).reshape(RES, RES, 4)[:, :, :3]
        zb = np.asarray(zb, dtype=np.float64).reshape(RES, RES)
        depth = FAR * NEAR / (FAR - (FAR - NEAR) * zb)
        depth[depth >= 0.99 * FAR] = 0.0
        return rgb.copy(), depth.astype(np.float32)


def render_scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb [64, 64, 3] uint8, depth [64, 64] float32 metres, 0 = invalid)`` of scene ``seed``."""
    r = _Renderer()
    try:
        return r.scene(seed)
    finally:
        r.close()


def scene_cache_path(split: str, n: int) -> Path:
    from qsilicon.paths import cache_root

    return cache_root() / "depth" / f"{split}_{n}_v{_VERSION}.npz"


def depth_split(split: str, n: int, *, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [n, 3, 64, 64] float in [0, 1], depth [n, 1, 64, 64])`` of ``split`` (``train``,
    ``calib`` or ``test``), rendered on first use and cached."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"Depth split must be one of {', '.join(SPLIT_SEEDS)}, not {split!r}")
    if not isinstance(n, int) or n < 1 or n > 1_000_000:
        raise ValueError(f"Number of scenes must be from 1 to 1000000, not {n!r}")
    path = scene_cache_path(split, n)
    if not path.exists():
        r = _Renderer()
        rgbs, depths = [], []
        try:
            for i in range(n):
                rgb, d = r.scene(SPLIT_SEEDS[split] + i)
                rgbs.append(rgb)
                depths.append(d)
                if progress is not None and (i + 1) % 100 == 0:
                    progress(f"{split}: {i + 1}/{n} scenes")
        finally:
            r.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, rgb=np.stack(rgbs), depth=np.stack(depths))
        os.replace(tmp, path)
    z = np.load(path)
    x = torch.from_numpy(z["rgb"]).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.from_numpy(z["depth"])[:, None]


def motorcycle() -> tuple[torch.Tensor, torch.Tensor]:
    """Middlebury 2014 "Motorcycle" (scikit-image): the left image centre-cropped and resized to
    64x64 and its metric depth (nearest sample; invalid pixels 0), as ``[1, 3, 64, 64]`` and
    ``[1, 1, 64, 64]``."""
    import skimage.data
    from skimage.transform import resize

    left, _, disp = skimage.data.stereo_motorcycle()
    h, w = disp.shape
    x0 = (w - h) // 2
    img = left[:, x0 : x0 + h]
    d = disp[:, x0 : x0 + h].astype(np.float64)
    depth = np.where(np.isfinite(d), 994.978 * 0.193001 / (d + 31.086), 0.0)
    img = resize(img, (RES, RES), anti_aliasing=True)
    idx = (np.arange(RES) * h // RES + h // (2 * RES))
    depth = depth[np.ix_(idx, idx)]
    return (torch.from_numpy(img).permute(2, 0, 1)[None].float(),
            torch.from_numpy(depth.astype(np.float32))[None, None])


ALOE_DIR = Path("/usr/share/doc/opencv-doc/examples/data")


def aloe() -> tuple[torch.Tensor, torch.Tensor]:
    """Middlebury 2006 "Aloe" from Debian's ``opencv-doc``: the left image centre-cropped and resized to
    64x64, and depth proportional to 1 / disparity (``aloeGT.png``; 0 = unknown stays invalid), scaled
    to a median of 1 (the pair's focal length and baseline are not shipped: use scale-aligned metrics
    only, AbsRel and delta1)."""
    img_p, gt_p = ALOE_DIR / "aloeL.jpg", ALOE_DIR / "aloeGT.png"
    if not (img_p.exists() and gt_p.exists()):
        raise FileNotFoundError(f"{img_p} not found: install Debian's opencv-doc (apt-get install opencv-doc; "
                                "make does it)")
    from skimage import io
    from skimage.transform import resize

    left, disp = io.imread(img_p), io.imread(gt_p).astype(np.float64)
    h, w = disp.shape
    x0 = (w - h) // 2
    img = resize(left[:, x0 : x0 + h], (RES, RES), anti_aliasing=True)
    idx = np.arange(RES) * h // RES + h // (2 * RES)
    d = disp[:, x0 : x0 + h][np.ix_(idx, idx)]
    depth = np.where(d > 0, 1.0 / np.maximum(d, 1e-9), 0.0)
    depth /= np.median(depth[depth > 0])
    return (torch.from_numpy(img).permute(2, 0, 1)[None].float(),
            torch.from_numpy(depth.astype(np.float32))[None, None])

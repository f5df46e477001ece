"""Depth path: rendered RGB-D scenes, the Middlebury pair, the metrics, the network's training."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from qsilicon.quant.depth_data import FAR, NEAR, SPLIT_SEEDS, depth_split, motorcycle, render_scene
from qsilicon.quant.models.depthnet import DepthNet, depth_metrics, evaluate_depth, train_depth


def test_scenes_are_deterministic_and_metric():
    a, b, c = render_scene(7), render_scene(7), render_scene(8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    for rgb, d in (a, c):
        assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8 and d.shape == (64, 64)
        valid = d > 0
        assert valid.mean() > 0.3 and d[valid].min() >= NEAR and d[valid].max() < FAR


def test_splits_are_disjoint_and_cached():
    starts = sorted(SPLIT_SEEDS.values())
    assert all(b - a >= 1_000_000 for a, b in zip(starts, starts[1:], strict=False))
    x, d = depth_split("calib", 3)
    x2, d2 = depth_split("calib", 3)  # from the cache
    assert x.shape == (3, 3, 64, 64) and d.shape == (3, 1, 64, 64) and torch.equal(x, x2) and torch.equal(d, d2)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    with pytest.raises(ValueError, match="Depth split must be one of train, calib, test"):
        depth_split("val", 3)


def test_motorcycle_is_real_metric_depth():
    x, d = motorcycle()
    assert x.shape == (1, 3, 64, 64) and d.shape == (1, 1, 64, 64)
    valid = d > 0
    assert valid.float().mean() > 0.8 and 1.0 < float(d[valid].min()) < float(d[valid].max()) < 10.0


def test_metrics_are_scale_aligned():
    g = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 4 + 1
    g[0, 0, 0, 0] = 0  # invalid pixel ignored
    perfect = depth_metrics(g.clone(), g)
    assert perfect["abs_rel"] == 0 and perfect["rmse"] == 0 and perfect["delta1"] == 1
    assert depth_metrics(3 * g, g)["abs_rel"] < 1e-6  # scale does not count (up to float32 rounding of 3g)
    off = g.clone()
    off[1, 0, :3] *= 2.0  # 3 of 8 rows off by 2x: whatever the median alignment does, some pixels stay off
    assert depth_metrics(off, g)["delta1"] < 1.0


def test_depth_net_learns_a_little():
    x, d = depth_split("calib", 48)
    torch.manual_seed(0)
    m = DepthNet()
    before = evaluate_depth(m, x, d)["abs_rel"]
    train_depth(m, x, d, epochs=6, seed=0, batch=16, lr=3e-3, log=lambda *_: None)
    after = evaluate_depth(m, x, d)["abs_rel"]
    assert after < 0.8 * before, (before, after)


def test_cli_data_depth_bad_input():
    p = subprocess.run([sys.executable, "-m", "qsilicon.flow", "data", "depth", "--train", "0"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "--train must be a positive number of scenes, not 0" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_committed_depth_checkpoint():
    """The committed network (qsilicon train depth, 40 epochs) on the first 100 synthetic test
    scenes: median-aligned AbsRel below 0.15 and delta < 1.25 above 0.8."""
    from pathlib import Path

    from qsilicon.quant.models.depthnet import load_depth

    model, meta = load_depth(Path(__file__).resolve().parents[2] / "checkpoints" / "depth_synth.pt")
    x, d = depth_split("test", 100)
    m = evaluate_depth(model, x, d)
    assert m["abs_rel"] < 0.15 and m["delta1"] > 0.8, m
    assert meta["epochs"] == 40

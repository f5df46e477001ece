"""The ViT accelerator's latency model against whole-model RTL runs, and its traffic counts against
the ISS's."""

import json
import math
import re

import pytest
import torch

from qsilicon.hw.config import AccelConfig
from qsilicon.search import accel
from qsilicon.search import vit_latency as vl


def test_stored_model_is_the_fit_of_the_stored_data():
    runs = vl.load_runs()
    fitted, stored = vl.fit(runs), json.loads(accel.MODEL.read_text())
    for kind, coef in stored.items():
        for name, v in coef.items():
            assert math.isclose(v, fitted[kind][name], rel_tol=1e-6, abs_tol=1e-3), (kind, name)


def test_held_out_runs():
    """Designs and model shapes the fit did not see: every run within 3%, every kind of descriptor
    (summed over a run) within 5%."""
    runs = vl.load_runs()
    model = json.loads(accel.MODEL.read_text())
    held = [e for e in vl.errors(runs, model) if e["split"] == "held_out"]
    assert len(held) >= 3 and len({e["design"] for e in held}) >= 3
    # designs with a row buffer among them, one with LayerNorm rows bound by the read port
    assert any("layernorm_rb" in e["kinds"] and "softmax_rb" in e["kinds"] for e in held)
    assert any(e["model"][2] >= 384 and "layernorm_rb" in e["kinds"] for e in held)
    # programs with GELU fused into fc1 (the compiler's default) and with a GELU descriptor
    assert any(e["fuse_gelu"] for e in held) and any("gelu" in e["kinds"] for e in held)
    assert max(e["error"] for e in held) <= 0.03, held
    for e in held:
        assert all(k["error"] <= 0.05 for k in e["kinds"].values()), (e["design"], e["kinds"])


@pytest.mark.parametrize("tag", ["r16c32_dsp2_l8_w8k_a8k_100mhz", "r8c64_none_l8_w1k_a8k_100mhz",
                                 "r32c16_dsp2_l16_w16k_a16k_100mhz", "r16c32_dot2_l8_w1k_a8k_100mhz"])
def test_gemm_traffic_equals_the_iss(tag):
    """Every GEMM descriptor's words read and written and array beats, as the model counts them, are
    the ISS's (resident and streamed weight tiles, kT and rows weights, feature maps, wide logits)."""
    from qsilicon.hw.vit.compiler import compile_vit
    from qsilicon.hw.vit.iss import run_program
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import ViT, ViTConfig

    torch.manual_seed(1)
    model = ViT(ViTConfig(dim=48, depth=1, heads=3, mlp=96, head_dim=16)).eval()
    iv = IntViT(model, torch.rand(32, 1, 28, 28), "mixed", 0.25)
    cfg = AccelConfig.from_tag(tag)
    prog = compile_vit(iv, cfg)
    ops = {o.name: o for o in accel.int_vit_workload(iv, cfg)}
    image = prog.with_input(prog.input_codes(torch.rand(1, 1, 28, 28))[0])
    st = run_program(image, prog.program, cfg)
    gemms = 0
    for info, rd, wr, beats in zip(prog.ops, st.read_words, st.write_words, st.mac_beats, strict=True):
        if info.kind != "gemm":
            continue
        g = accel.gemm_terms(cfg, ops[re.sub(r"^(b\d+\.(?:qk|av))\d+$", r"\1", info.name)])
        assert (g.read + accel.DESC_BYTES // cfg.lanes, g.write, g.beats) == (rd, wr, beats), info.name
        gemms += 1
    assert gemms == 2 + 4 + 2 * 3


def test_slower_memory_slows_memory_bound_gemms_only():
    cfg = AccelConfig(16, 64, "dsp2", 8, 8, 8, 200.0)
    from qsilicon.quant.supernet import SearchSpace

    sp = SearchSpace()
    ops = accel.subnet_workload(sp.largest(), sp, cfg)
    fast, slow = accel.predict(cfg, ops, 0.0), accel.predict(cfg, ops, 0.4)  # 2 B/cycle at 200 MHz
    assert slow.cycles > fast.cycles and slow.memory_bound_ops >= fast.memory_bound_ops
    assert sum(slow.shares.values()) == pytest.approx(1.0, abs=0.01)


def test_gemm_replay_shortcut_equals_the_full_replay():
    """The replay jumps over a resident column tile's later token tiles once they repeat; on DeiT-
    and Fashion-MNIST-sized layers of every kind, on designs of the search's grid, with and without
    a slower memory, it gives the cycles of the replay of every tile."""
    import itertools

    model = json.loads(accel.MODEL.read_text())["gemm"]
    shapes = [(197, 384, 1152, 576), (197, 1536, 384, 0), (197, 64, 197, 197), (17, 64, 192, 100), (50, 48, 96, 96)]
    checked = 0
    for (t, k, n, n8), (r, c, lanes, wb), slow in itertools.product(
            shapes, [(8, 8, 8, 8), (16, 64, 16, 64), (32, 32, 8, 1), (64, 16, 16, 512)], (1.0, 2.5)):
        cfg = AccelConfig(r, c, "dsp2", lanes, wb, 1024, 200.0)
        m = -(-t // r) * r
        for o in (accel.Op("x", "gemm", "fc1", m, k, n, n8), accel.Op("x", "gemm", "qk", m, 64, t, t, "kT"),
                  accel.Op("x", "gemm", "av", m, t, 64, 64, "rows")):
            g = accel._layout(cfg, o)
            args = (g, r, c, lanes, o.k, wb * 1024 // c, 1, model["lat"], model["pipe"], model["tail"] + model["one"],
                    slow)
            assert accel._replay(*args) == pytest.approx(accel._replay(*args, jump=False), abs=1e-6), (cfg, o)
            checked += 1
    assert checked == 120

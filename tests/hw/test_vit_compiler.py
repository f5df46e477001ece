"""The ViT accelerator's compiler and instruction-set simulator: what compiles runs bit-exact in the
ISS, what cannot compile is refused the same way by the compiler and the search's ``fits``."""

from __future__ import annotations

import pytest
import torch

from qsilicon.hw.config import AccelConfig
from qsilicon.hw.vit.compiler import CompileError, compile_vit
from qsilicon.hw.vit.iss import run_program
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.quant.models.vit import ViT, ViTConfig
from qsilicon.search.accel import fits, int_vit_workload


def _model(dim: int, heads: tuple, mlp: tuple, head_dim: int = 16) -> IntViT:
    torch.manual_seed(0)
    cfg = ViTConfig(image=28, patch=7, dim=dim, depth=len(heads), heads=heads[0], mlp=mlp[0], head_dim=head_dim,
                    block_heads=heads, block_mlp=mlp)
    return IntViT(ViT(cfg).eval(), torch.rand(32, 1, 28, 28), "mixed", 0.5)


@pytest.mark.parametrize("dim,heads,mlp", [(48, (3, 2), (72, 96)), (40, (1,), (24,))])
@pytest.mark.parametrize("tag", ["r16c32_none_l16_w64k_a16k_100mhz", "r16c16_dsp2_l16_w8k_a8k_100mhz"])
def test_widths_that_are_not_multiples_of_the_lanes_run_bit_exact_in_the_iss(dim, heads, mlp, tag):
    """A word holds one feature of ``lanes`` tokens, so the embedding and MLP widths need not be
    multiples of the lanes (dim 48 and MLP 72 on 16 lanes): the search may pick such pairs."""
    iv, cfg = _model(dim, heads, mlp), AccelConfig.from_tag(tag)
    assert fits(cfg, int_vit_workload(iv, cfg)) is None
    prog = compile_vit(iv, cfg)
    images = torch.rand(2, 1, 28, 28)
    codes, expect = prog.input_codes(images), iv.logits(images)
    for i in range(2):
        image = prog.with_input(codes[i])
        run_program(image, prog.program, cfg)
        assert torch.equal(prog.read_logits(image), expect[i].to(prog.read_logits(image).dtype))


def test_an_attention_width_off_the_lanes_is_refused_by_compiler_and_search_alike():
    iv, cfg = _model(48, (3,), (48,), head_dim=8), AccelConfig.from_tag("r16c16_dsp2_l16_w8k_a8k_100mhz")
    why = fits(cfg, int_vit_workload(iv, cfg))
    assert why is not None and "attention width (24)" in why
    with pytest.raises(CompileError, match=r"attention width \(heads x head dim\) 24 is not a multiple of the lanes"):
        compile_vit(iv, cfg)
    narrow = AccelConfig.from_tag("r8c8_dsp2_l8_w8k_a8k_100mhz")
    assert fits(narrow, int_vit_workload(iv, narrow)) is None
    compile_vit(iv, narrow)

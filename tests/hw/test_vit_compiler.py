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
@pytest.mark.parametrize("tag", ["r16c32_none_l16_w64k_a16k_100mhz", "r16c16_dsp2_l16_w8k_a8k_100mhz",
                                 "r16c16_dsp2_l16_w8k_a8k_rb64_100mhz"])
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


def test_rows_the_row_buffer_holds_are_read_once():
    """On a design with a row buffer the compiler marks LayerNorm and Shiftmax descriptors whose rows it holds
    (``buf``) and reads them once; rows longer than the buffer stream three times, both bit-exact in
    the ISS, which refuses a buffered row longer than the buffer."""
    from qsilicon.hw.payload import pack, unpack
    from qsilicon.hw.vit.iss import IssError
    from qsilicon.hw.vit.system import DESC_BYTES, descriptor_layout

    iv = _model(48, (3,), (72,))
    images = torch.rand(1, 1, 28, 28)
    reads = {}
    for rowbuf in (0, 64):
        cfg = AccelConfig(16, 16, "dsp2", 16, 8, 8, 100.0, rowbuf)
        prog = compile_vit(iv, cfg)
        image = prog.with_input(prog.input_codes(images)[0])
        stats = run_program(image, prog.program, cfg)
        assert torch.equal(prog.read_logits(image), iv.logits(images)[0].to(prog.read_logits(image).dtype))
        ln = [o.index for o in prog.ops if o.kind == "layernorm"]
        sm = [o.index for o in prog.ops if o.kind == "softmax"]
        reads[rowbuf] = [stats.read_words[i] for i in ln + sm]
    # int16 rows: 2 words a beat, three passes or one; gamma/beta a word a beat either way.  Shiftmax
    # rows (one per token, 17 here): a word a beat, three passes or one
    assert len(sm) == 3 and all(b < s for b, s in zip(reads[64], reads[0], strict=True))
    fetch = DESC_BYTES // 16  # the descriptor's own words
    assert (reads[64][-1] - fetch) * 3 == reads[0][-1] - fetch
    lay = descriptor_layout()
    at = prog.program + ln[0] * DESC_BYTES
    d = unpack(lay, int.from_bytes(prog.memory.data[at : at + DESC_BYTES], "little"))
    assert d["vec"]["buf"] == 1 and d["vec"]["k"] == 48
    d["vec"]["k"] = 65
    bad = bytearray(prog.memory.data)
    bad[at : at + DESC_BYTES] = pack(lay, {"vec": d["vec"]}).to_bytes(DESC_BYTES, "little")
    with pytest.raises(IssError, match="rows of 65 through the row buffer of a design with rowbuf 64"):
        run_program(bad, prog.program, cfg)
    # rows longer than the buffer stream on the same design (buf clear, read three times), bit-exact
    wide = _model(80, (5,), (96,))
    prog = compile_vit(wide, cfg)
    image = prog.with_input(prog.input_codes(images)[0])
    stats = run_program(image, prog.program, cfg)
    assert torch.equal(prog.read_logits(image), wide.logits(images)[0].to(prog.read_logits(image).dtype))
    for o in (o for o in prog.ops if o.kind == "layernorm"):
        at = prog.program + o.index * DESC_BYTES
        assert unpack(lay, int.from_bytes(prog.memory.data[at : at + DESC_BYTES], "little"))["vec"]["buf"] == 0
    assert stats.ops == len(prog.ops)

"""The self-test shell keeps the whole engine in a board build."""

import pytest

from qsilicon.boards import build_plan
from qsilicon.hw.config import GemmConfig
from qsilicon.hw.gemm import GemmEngine
from qsilicon.hw.shell import SelfTestShell


@pytest.mark.parametrize("board", ["zcu102", "kv260", "ulx3s"])
def test_plan_contains_the_engine(board, tmp_path):
    files = build_plan(board, SelfTestShell(GemmEngine(GemmConfig(2, 2, 4, 4))), tmp_path, name="top")
    text = "".join(p.read_text(errors="replace") for p in files if p.suffix in (".v", ".il"))
    assert "requant" in text and "array" in text  # the engine's submodules are in the design
    assert "lfsr_i_act" in text and "fold" in text


def test_plain_ports_get_lfsr_inputs_and_folded_outputs(tmp_path):
    from amaranth import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Plain(wiring.Component):
        x: In(40)
        y: Out(4)

        def elaborate(self, platform):
            m = Module()
            m.d.sync += self.y.eq(self.x[:4] ^ self.x[36:])
            return m

    files = build_plan("ulx3s", SelfTestShell(Plain()), tmp_path, name="top")
    il = next(f for f in files if str(f).endswith(".il")).read_text()
    assert "lfsr_x" in il and "fold_y" in il

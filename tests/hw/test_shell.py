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


def test_rejects_non_stream_members():
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In

    class Plain(wiring.Component):
        x: In(4)

        def elaborate(self, platform):
            raise AssertionError

    with pytest.raises(TypeError, match="member 'x' is not a stream"):
        SelfTestShell(Plain())

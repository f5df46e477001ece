"""The in-place byte transposer (hw/blocks/transpose.py) against a plain transposition."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qsilicon.hw.blocks.transpose import Transposer
from qsilicon.sim.pysim import pysim_streams


def words(tile):
    """A tile's rows as words (byte ``c`` of word ``r`` = ``tile[r, c]``)."""
    return [sum(int(v) << (8 * c) for c, v in enumerate(row)) for row in tile]


def run(lanes, tiles, **kw):
    x = torch.randint(0, 256, (tiles, lanes, lanes), generator=torch.Generator().manual_seed(lanes * 100 + tiles))
    beats = [w for t in x for w in words(t)]
    out, cycles = pysim_streams(Transposer(lanes), {"i": beats}, "o", len(beats), **kw)
    assert out == [w for t in x for w in words(t.T)]
    return cycles


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lanes=st.sampled_from([2, 4, 8]), tiles=st.integers(1, 5),
       valid=st.lists(st.integers(0, 1), min_size=1, max_size=5).filter(any),
       ready=st.lists(st.integers(0, 1), min_size=1, max_size=5).filter(any))
def test_transposes_with_stalls(lanes, tiles, valid, ready):
    """Every tile transposed, in order, whatever the input and output stalls."""
    run(lanes, tiles, valid_pattern=valid, ready_pattern=ready)


@pytest.mark.parametrize("lanes", [8, 16])
def test_a_word_a_cycle(lanes):
    """Without stalls, n tiles take (n + 1) x lanes cycles: a load-then-emit array takes 2 n x lanes."""
    for tiles in (1, 4):
        assert run(lanes, tiles) == (tiles + 1) * lanes


def test_bad_lanes():
    for lanes in (1, 65, True, 4.0):
        with pytest.raises(ValueError, match="Transposer lanes must be an integer from 2 to 64"):
            Transposer(lanes)

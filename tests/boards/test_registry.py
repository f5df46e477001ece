"""Tests of qsilicon.boards.registry: figures, citations, look-up and serialisation."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest

from qsilicon.boards import (
    BOARDS,
    FAMILIES,
    NUMERIC_FIELDS,
    Board,
    UnknownBoardError,
    board_names,
    get_board,
)

# Datasheet figures, restated here so that an accidental edit of the registry fails a test.
# (name, part, luts, ffs, dsps, bram36, bram_kbits, uram, clock_mhz, dram_gbps)
EXPECTED = [
    ("zcu102", "xczu9eg-ffvb1156-2-e", 274_080, 548_160, 2_520, 912, 32_832, 0, 125.0, 17.064),
    ("zcu104", "xczu7ev-ffvc1156-2-e", 230_400, 460_800, 1_728, 312, 11_232, 96, 125.0, 17.064),
    ("ultra96-v2", "xczu3eg-sbva484-1-i", 70_560, 141_120, 360, 216, 7_776, 0, 100.0, 4.264),
    ("kv260", "xck26-sfvc784-2LV-c", 117_120, 234_240, 1_248, 144, 5_184, 64, 100.0, 19.2),
    ("pynq-z2", "xc7z020clg400-1", 53_200, 106_400, 220, 140, 5_040, 0, 125.0, 2.1),
    ("ulx3s", "LFE5U-85F-6BG381C", 83_640, 83_640, 156, 0, 3_744, 0, 25.0, 0.332),
    ("icebreaker", "iCE40UP5K-SG48", 5_280, 5_280, 8, 0, 120, 0, 12.0, 0.0),
]


def test_registry_holds_exactly_the_seven_boards():
    assert set(BOARDS) == {row[0] for row in EXPECTED}
    assert board_names() == tuple(sorted(BOARDS))
    for key, board in BOARDS.items():
        assert key == board.name == board.name.lower()


@pytest.mark.parametrize("row", EXPECTED, ids=[row[0] for row in EXPECTED])
def test_figures_match_datasheets(row):
    name, part, luts, ffs, dsps, bram36, bram_kbits, uram, clock_mhz, dram_gbps = row
    board = get_board(name)
    assert board.part == part
    assert (board.luts, board.ffs, board.dsps) == (luts, ffs, dsps)
    assert (board.bram36, board.bram_kbits, board.uram) == (bram36, bram_kbits, uram)
    assert board.clock_mhz == pytest.approx(clock_mhz)
    assert board.dram_gbps == pytest.approx(dram_gbps)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_numeric_value_has_a_reference(name):
    board = BOARDS[name]
    keys = set(NUMERIC_FIELDS) | {f"extra.{key}" for key in board.extra}
    for key in keys:
        ref = board.refs.get(key, "")
        assert ref.strip(), f"{name}: no reference for {key}"
        # A citation names a document or a concrete source, not just a number.
        assert any(ch.isalpha() for ch in ref), f"{name}: reference for {key} is not a citation"
    assert set(board.refs) <= keys, f"{name}: references for unknown keys {set(board.refs) - keys}"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_vendor_family_and_memory_conventions(name):
    board = BOARDS[name]
    assert board.family in FAMILIES[board.vendor]
    if board.vendor == "xilinx":
        assert board.part.startswith("xc")
        assert board.bram_kbits == 36 * board.bram36
        assert board.lut_inputs == 6
        assert not board.extra
    else:
        assert board.bram36 == 0 and board.uram == 0
        assert board.lut_inputs == 4
        if board.family == "ecp5":
            assert board.bram_kbits == 18 * board.extra["ebr18k"]
        else:
            assert board.bram_kbits == 4 * board.extra["ebr4k"]
    assert board.dram_gbps > 0 or name == "icebreaker"


def test_datasheet_derived_totals():
    # DS891: ZU7EV 11.0 Mb block RAM + 27.0 Mb UltraRAM; iCE40UP5K: 120 Kb EBR + 1 Mb SPRAM.
    assert get_board("zcu104").onchip_ram_kbits == 312 * 36 + 96 * 288
    assert get_board("icebreaker").onchip_ram_kbits == 120 + 1024
    # The K26 SOM has the resources of the XCZU5EV.
    kv260 = get_board("kv260")
    assert (kv260.luts, kv260.dsps, kv260.bram36, kv260.uram) == (117_120, 1_248, 144, 64)


def test_ps_clocked_boards_are_documented():
    for name in ("ultra96-v2", "kv260"):
        board = get_board(name)
        assert "pl_clk0" in board.notes
        assert "pl_clk0" in board.refs["clock_mhz"]


def test_get_board_ignores_case_and_whitespace():
    assert get_board("  ZCU102 ") is BOARDS["zcu102"]
    assert get_board("Ultra96-V2") is BOARDS["ultra96-v2"]


def test_unknown_board_error_message():
    with pytest.raises(UnknownBoardError) as info:
        get_board("zcu100")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unknown board 'zcu100': choose one of ")
    listed = message.split("choose one of ", 1)[1].split(", ")
    assert listed == sorted(BOARDS)


def test_unknown_board_error_for_non_string():
    with pytest.raises(UnknownBoardError, match="unknown board 3"):
        get_board(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_to_dict_is_json_and_complete(name):
    board = BOARDS[name]
    data = json.loads(json.dumps(board.to_dict()))
    for f in dataclasses.fields(Board):
        assert f.name in data
    assert data["refs"] == dict(board.refs)
    assert data["extra"] == dict(board.extra)
    assert data["luts"] == board.luts
    assert data["onchip_ram_kbits"] == board.onchip_ram_kbits
    # Round trip through the constructor.
    rebuilt = Board(**{f.name: data[f.name] for f in dataclasses.fields(Board)})
    assert rebuilt == board


def test_board_is_immutable_and_hashable():
    board = get_board("zcu102")
    with pytest.raises(dataclasses.FrozenInstanceError):
        board.luts = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        board.refs["luts"] = "x"  # type: ignore[index]
    assert len({board, get_board("zcu102"), get_board("kv260")}) == 2


def test_board_rejects_missing_reference():
    board = get_board("pynq-z2")
    refs = dict(board.refs)
    del refs["dsps"]
    with pytest.raises(ValueError, match="no reference for dsps"):
        dataclasses.replace(board, refs=refs)


def test_board_rejects_missing_extra_reference():
    board = get_board("icebreaker")
    refs = {k: v for k, v in board.refs.items() if k != "extra.spram256k"}
    with pytest.raises(ValueError, match=r"no reference for extra\.spram256k"):
        dataclasses.replace(board, refs=refs)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"family": "ecp5"}, "not a xilinx family"),
        ({"vendor": "intel"}, "unknown vendor"),
        ({"luts": -1}, "luts must be finite"),
        ({"dram_gbps": float("nan")}, "dram_gbps must be finite"),
        ({"clock_mhz": 0.0}, "clock_mhz must be positive"),
        ({"bram_kbits": 1}, "36 \\* bram36"),
        ({"name": "ZCU102"}, "lower case"),
    ],
)
def test_board_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(get_board("zcu102"), **changes)


def test_package_imports_without_amaranth():
    code = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("amaranth", "amaranth_boards"):
                    raise ImportError("blocked " + name)

        sys.meta_path.insert(0, Block())
        import qsilicon.boards as boards
        assert boards.get_board("kv260").uram == 64
        assert not any(m.split(".")[0] == "amaranth" for m in sys.modules)
        try:
            boards.get_platform
        except ImportError:
            print("lazy")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lazy"

"""The QuartDepth engine's instruction set: field layouts, encodings and the engine configuration.

Pure Python (no Amaranth, no torch): the compiler, the instruction-set simulator, the gateware and
the search read this one definition.

Every instruction is :data:`INSN_BYTES` (32) bytes, four little-endian 64-bit memory words, fields
packed from bit 0 upwards in the order of :data:`FIELDS` (the gateware views the same bits through an
``amaranth.lib.data.StructLayout`` built from that list).  All instructions start with the common
header::

    op:4  pop_prev:1  pop_next:1  push_prev:1  push_next:1  barrier:1  tag:8

``op`` selects the unit: LOAD (load unit), COMPUTE (MAC array and post-ops), STORE (store unit),
END.  The units run concurrently, each on its own queue in program order; they synchronise
through four token counters (the dependency-token scheme of decoupled access/execute
accelerators): load -> compute "data ready", compute -> load "buffer free", compute -> store
"result ready", store -> compute "result buffer free".  ``pop_*`` waits for and takes a token from
the counter shared with the previous / next unit (load < compute < store) before the
instruction starts; ``push_*`` adds one when it has finished.  ``barrier`` holds the dispatch
until every unit is idle (layer boundaries: a layer reads what the previous one stored).  ``tag``
is free for the program (the compiler puts the layer index there; the engine reports it with its
activity so per-layer cycles can be measured).

On-chip memories (words; sizes in :class:`EngineConfig`):

* ``act``: one word = one row of one channel, ``max_width`` byte lanes (4-bit codes zero-extended).
* ``wgt``: one word = ``co`` signed 8-bit weights of one (input channel, ky, kx) for the
  ``co`` output channels of a group (4-bit weights sign-extended on load).
* ``par``: one word (32 bytes) per output channel: bias int32 (bytes 0-3), M0 uint16 (4-5),
  shift (6), 15 encoder thresholds (7-21).
* ``tab``: one word (16 bytes) per input channel: the 16-entry decode table of polished codes.
* ``out``: one word = one output row of one channel, ``max_width`` 16-bit lanes.

Paired 4-bit tensors (W4A4 layers on an engine with ``nibble`` packing).  A COMPUTE with ``pair``
reads each ``act`` byte lane as the 4-bit codes of two input channels (channel ``2i`` in the low
nibble, ``2i + 1`` in the high one; a segment's ``ch`` counts channel pairs) and each ``wgt`` byte
as their two signed 4-bit weights, and every PE accumulates both products in the cycle: half the
beats of the unpaired layer.  A COMPUTE with ``pair_out`` (format u4) writes output channels
``2i`` and ``2i + 1`` into the low and high nibbles of ``out`` row ``i`` (a STORE in format u8 then
writes the paired tensor, a byte per pixel); an odd last channel leaves its high nibble 0.

Which buffers are double-buffered is the program's choice: the compiler ping-pongs between the two
halves of ``act``, ``wgt``, ``par`` and ``out`` and orders the halves with the tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = [
    "FIELDS", "FMT_BITS", "FMT_S16", "FMT_U4", "FMT_U8", "INSN_BYTES", "MEM_ACT", "MEM_PAR", "MEM_TAB", "MEM_WGT",
    "MODE_BYTES", "MODE_NIBBLE_S", "MODE_NIBBLE_U", "OPCODES", "OP_COMPUTE", "OP_END", "OP_LOAD", "OP_STORE",
    "PACKINGS", "PAR_BYTES", "TAB_BYTES", "EngineConfig", "IllegalInstruction", "check", "decode", "encode",
    "isa_table",
]

INSN_BYTES = 32
WORD_BYTES = 8
OP_END, OP_LOAD, OP_COMPUTE, OP_STORE = 0, 1, 2, 3
OPCODES = {"end": OP_END, "load": OP_LOAD, "compute": OP_COMPUTE, "store": OP_STORE}
MEM_ACT, MEM_WGT, MEM_PAR, MEM_TAB = 0, 1, 2, 3
MEMS = ("act", "wgt", "par", "tab")
MODE_BYTES, MODE_NIBBLE_U, MODE_NIBBLE_S = 0, 1, 2
FMT_U4, FMT_U8, FMT_S16 = 0, 1, 2
#: Output formats: bits, signed.
FMT_BITS = {FMT_U4: (4, False), FMT_U8: (8, False), FMT_S16: (16, True)}
PAR_BYTES, TAB_BYTES = 32, 16
#: MAC-array multipliers of the engine (:class:`EngineConfig`).
PACKINGS = ("none", "dsp2", "nibble")

_HEADER = [("op", 4), ("pop_prev", 1), ("pop_next", 1), ("push_prev", 1), ("push_next", 1), ("barrier", 1),
           ("tag", 8)]
_PATTERN = [("base", 32), ("run", 16), ("n0", 16), ("s0", 32), ("n1", 16), ("s1", 32)]
_SEG = [("ch", 11), ("up", 1), ("in_h", 8), ("in_w", 8), ("row0", 8), ("band", 8), ("base", 16)]

#: Field layout of each opcode, low bits first (``(name, bits)``; nested lists are sub-structures).
FIELDS: dict[int, list] = {
    OP_END: _HEADER,
    OP_LOAD: _HEADER + [("mem", 2), ("mode", 2), ("flush", 1), ("nbytes", 7), ("sram", 16), ("dram", _PATTERN)],
    OP_COMPUTE: _HEADER + [
        ("k", 2), ("stride", 2), ("decode", 1), ("encode", 1), ("fmt", 2), ("n_co", 8), ("oy0", 8), ("out_h", 8),
        ("out_w", 8), ("wgt", 16), ("par", 12), ("tab", 12), ("out", 12), ("seg0", _SEG), ("seg1", _SEG),
        ("res", 1), ("res_base", 16), ("pair", 1), ("pair_out", 1)],
    OP_STORE: _HEADER + [("fmt", 2), ("width", 8), ("out", 12), ("dram", _PATTERN)],
}


def _width(fields) -> int:
    return sum(b if isinstance(b, int) else _width(b) for _, b in fields)


for _op, _f in FIELDS.items():
    assert _width(_f) <= 8 * INSN_BYTES, (_op, _width(_f))


class IllegalInstruction(ValueError):
    """An instruction the engine rejects (sticky error, the run stops)."""


@dataclass(frozen=True)
class EngineConfig:
    """Size of the QuartDepth engine.

    Parameters
    ----------
    co : int
        MAC-array rows: output channels computed at once (4, 8 or 16).
    px : int
        MAC-array columns: output pixels of one row computed at once (4, 8 or 16).
    max_width : int
        Widest feature-map row (pixels) the row buffers hold (16, 32 or 64).
    act_depth, wgt_depth, out_depth, par_depth, tab_depth : int
        Words of the on-chip memories (powers of two).
    packing : str
        The MAC array's multiplier lanes (:mod:`qsilicon.hw.blocks.packed`): ``none`` (one int8 x
        uint8 multiplier per PE), ``dsp2`` (one DSP48E2 multiplication for two PEs of a row) or
        ``nibble`` (one precision-scalable multiplier per PE: an int8 x uint8 product, or in a
        COMPUTE with ``pair`` two int4 x uint4 products of two input channels; see
        :func:`~qsilicon.hw.blocks.packed.nibble_mul`).
    """

    co: int = 16
    px: int = 8
    max_width: int = 64
    act_depth: int = 1024
    wgt_depth: int = 4096
    out_depth: int = 256
    par_depth: int = 64
    tab_depth: int = 256
    packing: str = "none"

    def __post_init__(self) -> None:
        if self.packing not in PACKINGS:
            raise ValueError(f"packing must be one of {', '.join(PACKINGS)}, not {self.packing!r}")
        for name, allowed in (("co", (4, 8, 16)), ("px", (4, 8, 16)), ("max_width", (16, 32, 64))):
            v = getattr(self, name)
            if v not in allowed or isinstance(v, bool):
                raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, not {v!r}")
        if self.max_width % self.px:
            raise ValueError(f"max_width ({self.max_width}) must be a multiple of px ({self.px})")
        for name in ("act_depth", "wgt_depth", "out_depth", "par_depth", "tab_depth"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 16 or v > 65536 or v & (v - 1):
                raise ValueError(f"{name} must be a power of two from 16 to 65536, not {v!r}")
        if self.par_depth < 2 * self.co:
            raise ValueError(f"par_depth ({self.par_depth}) must hold two groups of {self.co} channels")
        if self.out_depth > 4096 or self.par_depth > 4096 or self.tab_depth > 4096:
            raise ValueError("out_depth, par_depth and tab_depth address fields are 12 bits: at most 4096 words")

    @property
    def macs(self) -> int:
        return self.co * self.px

    @property
    def tag(self) -> str:
        return f"depth_c{self.co}p{self.px}w{self.max_width}" + ("" if self.packing == "none" else f"_{self.packing}")

    def depth(self, mem: int) -> int:
        return (self.act_depth, self.wgt_depth, self.par_depth, self.tab_depth)[mem]

    def word_bytes(self, mem: int) -> int:
        """Bytes of one word of on-chip memory ``mem`` (what a LOAD's ``nbytes`` may reach)."""
        return (self.max_width, self.co, PAR_BYTES, TAB_BYTES)[mem]

    def sram_bytes(self) -> dict[str, int]:
        return {"act": self.act_depth * self.max_width, "wgt": self.wgt_depth * self.co,
                "par": self.par_depth * PAR_BYTES, "tab": self.tab_depth * TAB_BYTES,
                "out": self.out_depth * self.max_width * 2}

    def sram_shapes(self) -> dict[str, tuple[int, int, int]]:
        """``{memory: (words, bits per word, read ports)}`` of the engine's on-chip memories as the
        gateware declares them (act has a second read port for residual rows)."""
        b = self.sram_bytes()
        widths = {"act": self.max_width, "wgt": self.co, "par": PAR_BYTES, "tab": TAB_BYTES, "out": self.max_width * 2}
        return {m: (b[m] // w, 8 * w, 2 if m == "act" else 1) for m, w in widths.items()}

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- encoding


def _pack(fields, values: dict, shift: int, word: int) -> tuple[int, int]:
    for name, bits in fields:
        if isinstance(bits, list):
            word, shift = _pack(bits, values.get(name, {}), shift, word)
            continue
        v = int(values.get(name, 0))
        if not 0 <= v < 2**bits:
            raise ValueError(f"field {name}={v} does not fit in {bits} bits")
        word |= v << shift
        shift += bits
    return word, shift


def _unpack(fields, word: int, shift: int) -> tuple[dict, int]:
    out = {}
    for name, bits in fields:
        if isinstance(bits, list):
            out[name], shift = _unpack(bits, word, shift)
            continue
        out[name] = (word >> shift) & ((1 << bits) - 1)
        shift += bits
    return out, shift


def encode(insn: dict) -> bytes:
    """An instruction (``{"op": ..., field: value, ...}``, nested dicts for ``dram``/``seg*``) as 32 bytes."""
    op = insn["op"]
    if op not in FIELDS:
        raise ValueError(f"unknown opcode {op!r}")
    word, _ = _pack(FIELDS[op], insn, 0, 0)
    return word.to_bytes(INSN_BYTES, "little")


def decode(raw: bytes) -> dict:
    word = int.from_bytes(raw[:INSN_BYTES], "little")
    op = word & 15
    if op not in FIELDS:
        return {"op": op}
    return _unpack(FIELDS[op], word, 0)[0]


def check(insn: dict, cfg: EngineConfig) -> None:
    """Raise :class:`IllegalInstruction` for what the engine's decoder rejects (the same rules).

    Cause codes (``STATUS`` bits 11:8): 1 unknown opcode, 2 illegal field."""
    op = insn["op"]
    if op not in FIELDS:
        raise IllegalInstruction(f"unknown opcode {op}")

    def bad(msg):
        raise IllegalInstruction(msg)

    if (op == OP_LOAD and (insn["pop_prev"] or insn["push_prev"])) or \
            (op == OP_STORE and (insn["pop_next"] or insn["push_next"])):
        bad("token flags towards a unit that does not exist (load has no previous unit, store no next)")
    if op == OP_LOAD:
        if insn["mode"] > MODE_NIBBLE_S:
            bad(f"LOAD mode {insn['mode']}")
        if not 1 <= insn["nbytes"] <= cfg.word_bytes(insn["mem"]):
            bad(f"LOAD nbytes {insn['nbytes']} for {MEMS[insn['mem']]} words of {cfg.word_bytes(insn['mem'])} bytes")
    elif op == OP_COMPUTE:
        if insn["k"] not in (1, 3):
            bad(f"COMPUTE kernel {insn['k']}")
        if insn["stride"] not in (1, 2):
            bad(f"COMPUTE stride {insn['stride']}")
        if insn["fmt"] not in FMT_BITS or (insn["encode"] and insn["fmt"] != FMT_U8):
            bad(f"COMPUTE format {insn['fmt']} (encode needs u8)")
        if not 1 <= insn["n_co"] <= cfg.co:
            bad(f"COMPUTE n_co {insn['n_co']}")
        if not 1 <= insn["out_w"] <= cfg.max_width or insn["out_h"] < 1:
            bad(f"COMPUTE output {insn['out_h']}x{insn['out_w']}")
        for s in ("seg0", "seg1"):
            seg = insn[s]
            if seg["ch"] and (not 1 <= seg["in_w"] <= cfg.max_width or (seg["up"] and insn["stride"] != 1)):
                bad(f"COMPUTE {s}: width {seg['in_w']}, upsample {seg['up']} with stride {insn['stride']}")
        if insn["seg0"]["ch"] == 0:
            bad("COMPUTE seg0 has no channels")
        if insn["pair"] and (cfg.packing != "nibble" or insn["decode"]):
            bad("COMPUTE pair needs an engine with nibble packing and no decode")
        if insn["pair_out"] and (insn["fmt"] != FMT_U4 or insn["encode"] or insn["res"]):
            bad("COMPUTE pair_out needs the u4 format without encode or residual")
    elif op == OP_STORE:
        if insn["fmt"] not in FMT_BITS:
            bad(f"STORE format {insn['fmt']}")
        if not 1 <= insn["width"] <= cfg.max_width:
            bad(f"STORE width {insn['width']}")


def isa_table() -> str:
    """Markdown table of the instructions and their fields (for the README and ``hw`` docs)."""
    names = {OP_END: "END", OP_LOAD: "LOAD", OP_COMPUTE: "COMPUTE", OP_STORE: "STORE"}
    what = {
        OP_END: "wait until every unit is idle; done (irq)",
        OP_LOAD: "DRAM address pattern -> unpack bytes or 4-bit codes -> `nbytes`-byte words of act/wgt/par/tab "
                 "from word `sram` on",
        OP_COMPUTE: "conv over `out_h` rows x `out_w` pixels x `n_co` channels: k 1/3, stride 1/2, padding k//2, "
                    "two input segments (concat; each optionally nearest-2x upsampled) with decode tables; fused "
                    "bias, requant, ReLU/clamp to u4/u8/s16, residual add (act rows from `res_base`), polished "
                    "encode -> out",
        OP_STORE: "out rows -> pack u4/u8/s16 -> DRAM address pattern",
    }
    rows = ["| op | code | unit | does | fields after the header (bits) |", "|---|---|---|---|---|"]
    for op, f in FIELDS.items():
        desc = ", ".join(f"{n}:{b}" if isinstance(b, int) else f"{n}{{{', '.join(f'{m}:{c}' for m, c in b)}}}"
                         for n, b in f[len(_HEADER):]) or "-"
        unit = {OP_END: "dispatcher", OP_LOAD: "load", OP_COMPUTE: "compute", OP_STORE: "store"}[op]
        rows.append(f"| {names[op]} | {op} | {unit} | {what[op]} | {desc} |")
    return "\n".join(rows)

"""The RTL path of the QuartDepth engine: a compiled program run on the generated Verilog (cocotb,
Verilator) and compared with the integer graph and the instruction-set simulator."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qsilicon.hw.depth.engine import DepthEngine
from qsilicon.hw.depth.isa import EngineConfig
from qsilicon.hw.export import to_verilog

from .runner import Simulation, prepare

__all__ = ["RtlRun", "build_depth_engine", "depth_engine_verilog", "rtl_run"]

TOPLEVEL = "depth_engine"


@dataclass(frozen=True)
class RtlRun:
    """What a run left: the memory image after it, the registers, per-tag compute cycles and beats."""

    memory: bytes
    regs: dict
    busy_by_tag: dict
    beats_by_tag: dict
    first_by_tag: dict  # testbench cycle (from the start) of each tag's first compute beat
    end_cycle: int  # testbench cycle at which the engine raised irq

    def layer_cycles(self) -> dict:
        """Cycles per tag: from the tag's first compute beat to the next tag's (the first tag from
        the start, the last to the end of the run), so that they add up to the run's length.  A
        layer's span thus holds its compute, its last stores and the next layer's first loads."""
        tags = sorted(self.first_by_tag, key=self.first_by_tag.get)
        bounds = [0, *(self.first_by_tag[t] for t in tags[1:]), self.end_cycle]
        return {t: bounds[i + 1] - bounds[i] for i, t in enumerate(tags)}

    @property
    def cycles(self) -> int:
        return self.regs["CYCLES"]

    @property
    def error_cause(self) -> int:
        return (self.regs["STATUS"] >> 8) & 15 if self.regs["STATUS"] & 4 else 0


def depth_engine_verilog(cfg: EngineConfig) -> str:
    return to_verilog(DepthEngine(cfg), TOPLEVEL)


def build_depth_engine(cfg: EngineConfig, sim: str = "verilator", log_file: Path | None = None,
                       waves: bool = False) -> Simulation:
    if sim != "verilator":
        raise ValueError(f"the whole engine runs on Verilator only (Icarus is too slow for it), not {sim!r}")
    return prepare(depth_engine_verilog(cfg), TOPLEVEL, sim, cfg.tag + ("_waves" if waves else ""), log_file,
                   waves=waves)


def rtl_run(cfg: EngineConfig, memory: bytes | bytearray, prog_addr: int, *, sim: str = "verilator",
            ready_p: float = 1.0, seed: int = 0, expect_error: bool = False, max_cycles: int = 20_000_000,
            log_file: Path | None = None, netlist=None, vcd: Path | None = None, saif: Path | None = None,
            waves: Path | None = None) -> RtlRun:
    """Run the program at ``prog_addr`` in ``memory`` on the engine's RTL (AXI4 memory model with
    ``ready_p`` handshake probability, AXI4-Lite start and status).

    ``netlist`` (a :class:`~qsilicon.hw.asic.AsicNetlist` of this engine) runs the mapped
    gate-level netlist instead: on Verilator (``saif``: its nets' toggle counts written there, a
    SAIF file), or on Icarus when ``vcd`` names a file to dump its nets to (slow: hours for a few
    thousand cycles of the small engine).  ``waves``: the RTL run's FST waveform goes there."""
    plusargs = None
    if netlist is not None:
        from qsilicon.hw.asic import gate_level_verilog

        gl_sim = "icarus" if vcd is not None else "verilator"
        verilog = gate_level_verilog(netlist, flat=gl_sim == "verilator")
        simulation = prepare(verilog, TOPLEVEL, gl_sim, f"{cfg.tag}_gl_{netlist.library}",
                             log_file, saif=saif is not None, gate_level=True)
        if vcd is not None:
            plusargs = [f"+qs_vcd={vcd}"]
    else:
        simulation = build_depth_engine(cfg, sim, log_file, waves=waves is not None)
    with tempfile.TemporaryDirectory(prefix="qs-depth-") as tmp:
        tmp = Path(tmp)
        (tmp / "mem.bin").write_bytes(bytes(memory))
        env = {"QS_MEM": str(tmp / "mem.bin"), "QS_PROG": str(prog_addr), "QS_DUMP": str(tmp / "dump.bin"),
               "QS_RESULT": str(tmp / "result.json"), "QS_READY_P": str(ready_p), "QS_SEED": str(seed),
               "QS_EXPECT_ERROR": "1" if expect_error else "0", "QS_MAX_CYCLES": str(max_cycles)}
        simulation.run("qsilicon.sim.tb_depth", env, tmp / "results.xml", log_file, plusargs=plusargs,
                       trace_file=saif if netlist is not None else waves)
        res = json.loads((tmp / "result.json").read_text())
        image = (tmp / "dump.bin").read_bytes()
    return RtlRun(image, res["regs"], {int(k): v for k, v in res["busy_by_tag"].items()},
                  {int(k): v for k, v in res["beats_by_tag"].items()},
                  {int(k): v for k, v in res["first_by_tag"].items()}, res["end_cycle"])


def random_program(cfg: EngineConfig, seed: int, n: int = 40, sync: str = "barrier") -> tuple[bytearray, int]:
    """A random program of legal instructions over random data: ``(memory image, program address)``.

    ``sync`` ``barrier``: every instruction a barrier (the units never overlap), the program cut at
    ``n`` instructions.  ``tokens``: whole rounds (loads, a compute, a store) until at least ``n``
    instructions, ordered by the units' tokens as the compiler orders a layer's tiles: the last load
    of a round hands the compute its inputs, the compute hands the store its output and frees the
    inputs for the next round's loads, the store frees ``out`` for the next compute; no barriers, so
    the next round's loads run beside this round's store.

    Loads pick a memory, mode, run and pattern at random from a random-data region (parameter words
    come from a region of legal ones: M0 < 2**16, shift <= 47, sorted thresholds); computes pick
    kernel, stride, upsampling, decode/encode, residual add, format, W4A4 pairs (``nibble`` engines) and
    paired output, and both segments' geometry at random; stores
    pick format, width and pattern into an output region.  The ISS and the RTL must leave the same
    memory image."""
    import random

    from qsilicon.hw.depth.isa import (
        FMT_S16,
        FMT_U4,
        FMT_U8,
        MEM_PAR,
        MODE_NIBBLE_S,
        OP_COMPUTE,
        OP_END,
        OP_LOAD,
        OP_STORE,
        PAR_BYTES,
        encode,
    )

    if sync not in ("barrier", "tokens"):
        raise ValueError(f"sync must be 'barrier' or 'tokens', not {sync!r}")
    rng = random.Random(seed)
    prog_bytes = (n + 1 + (24 if sync == "tokens" else 0)) * 32  # tokens: whole rounds, up to 10 past n
    data_at, data_len = 4096, 16384
    par_at, par_words = data_at + data_len, 128
    out_at, out_len = par_at + par_words * PAR_BYTES, 16384
    mem = bytearray(out_at + out_len)
    mem[data_at : data_at + data_len] = bytes(rng.getrandbits(8) for _ in range(data_len))
    for i in range(par_words):
        w = bytearray(PAR_BYTES)
        w[0:4] = rng.randint(-2**20, 2**20).to_bytes(4, "little", signed=True)
        w[4:6] = rng.randint(1, 2**16 - 1).to_bytes(2, "little")
        w[6] = rng.randint(8, 30)
        w[7:22] = bytes(sorted(rng.randint(0, 255) for _ in range(15)))
        mem[par_at + i * PAR_BYTES : par_at + (i + 1) * PAR_BYTES] = w
    assert prog_bytes <= data_at
    def load(mid, sram):
        if mid == MEM_PAR:
            run = 4 * rng.randint(cfg.co // 2, cfg.co)  # whole parameter words
            base = par_at + PAR_BYTES * rng.randrange(par_words - run // 4)
            return {"op": OP_LOAD, "mem": mid, "mode": 0, "flush": rng.randrange(2), "nbytes": PAR_BYTES,
                    "sram": sram, "dram": {"base": base, "run": run, "n0": 1, "n1": 1}}
        run, n0, n1 = rng.randint(1, 4), rng.randint(1, 6), rng.randint(1, 6)
        s0, s1 = 8 * rng.randint(0, 8), 8 * rng.randint(0, 40)
        span = (run - 1) * 8 + (n0 - 1) * s0 + (n1 - 1) * s1 + 8
        base = data_at + 8 * rng.randrange((data_len - span) // 8)
        return {"op": OP_LOAD, "mem": mid, "mode": rng.randrange(MODE_NIBBLE_S + 1), "flush": rng.randrange(2),
                "nbytes": rng.randint(1, cfg.word_bytes(mid)), "sram": sram,
                "dram": {"base": base, "run": run, "n0": n0, "n1": n1, "s0": s0, "s1": s1}}

    insns = []
    rounds = 0
    while len(insns) < n:
        # a round: fill the memories around random anchors, compute from them, store the result
        anchors = [rng.randrange(cfg.depth(mid)) for mid in range(4)]
        first_load = len(insns)
        for mid in rng.sample(range(4), 4):
            for _ in range(rng.randint(1, 2)):
                off = 0 if mid == MEM_PAR else rng.randint(0, 4)
                insns.append(load(mid, (anchors[mid] + off) % cfg.depth(mid)))
        if sync == "tokens":
            insns[first_load]["pop_next"] = int(rounds > 0)  # the previous compute freed the inputs
            insns[-1]["push_next"] = 1  # inputs ready
        stride = rng.choice((1, 2))
        fmt = rng.randrange(FMT_S16 + 1)
        enc = int(fmt == FMT_U8 and rng.random() < 0.5)

        def seg(present, stride=stride, act0=anchors[0]):
            if not present:
                return {"ch": 0}
            up = int(stride == 1 and rng.random() < 0.4)
            return {"ch": rng.randint(1, 4), "up": up, "in_h": rng.randint(1, 12),
                    "in_w": rng.randint(1, cfg.max_width), "row0": rng.randint(0, 3), "band": rng.randint(1, 4),
                    "base": (act0 + rng.randint(0, 3)) % cfg.act_depth}

        out = rng.randrange(cfg.out_depth)
        out_h = rng.randint(1, 3)
        n_co = rng.randint(1, cfg.co)
        pair = int(cfg.packing == "nibble" and rng.random() < 0.5)  # W4A4 pairs (no decode)
        pair_out = int(fmt == FMT_U4 and rng.random() < 0.5)  # channel pairs packed (no residual)
        insns.append({"op": OP_COMPUTE, "k": rng.choice((1, 3)), "stride": stride,
                      "decode": 0 if pair else rng.randrange(2),
                      "encode": enc, "fmt": fmt, "n_co": n_co, "oy0": rng.randint(0, 6), "out_h": out_h,
                      "out_w": rng.randint(1, cfg.max_width), "wgt": anchors[1], "par": anchors[2], "tab": anchors[3],
                      "out": out, "seg0": seg(True), "seg1": seg(rng.random() < 0.5), "tag": rng.randrange(256),
                      "res": int(not pair_out and rng.random() < 0.4),
                      "res_base": (anchors[0] + rng.randint(0, 3)) % cfg.act_depth, "pair": pair, "pair_out": pair_out})
        if sync == "tokens":
            insns[-1].update(pop_prev=1, push_prev=1, push_next=1, pop_next=int(rounds > 0))
        run, n0, n1 = rng.randint(1, 4), out_h, n_co
        s0, s1 = 8 * rng.randint(4, 8), 8 * rng.randint(30, 60)
        span = (n0 - 1) * s0 + (n1 - 1) * s1 + run * 8
        base = out_at + 8 * rng.randrange((out_len - span) // 8)
        insns.append({"op": OP_STORE, "fmt": rng.randrange(FMT_S16 + 1), "width": rng.randint(1, cfg.max_width),
                      "out": out, "dram": {"base": base, "run": run, "n0": n0, "n1": n1, "s0": s0, "s1": s1}})
        if sync == "tokens":
            insns[-1].update(pop_prev=1, push_prev=1)
        rounds += 1
    if sync == "barrier":
        insns = insns[:n]
    insns.append({"op": OP_END})
    assert len(insns) * 32 <= prog_bytes
    for i, ins in enumerate(insns):
        ins["barrier"] = int(sync == "barrier")
        mem[32 * i : 32 * (i + 1)] = encode(ins)
    return mem, 0

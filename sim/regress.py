"""Constrained-random regressions of the accelerators: many cases per simulator build, functional
coverage, failing cases written to files that replay alone.

A regression of ``accel`` (:data:`ACCELS`) draws ``cases`` random cases from ``seed`` over the
accelerator's pool of configurations (formats x packings, :meth:`Accel.pool`), builds each
configuration once, and streams the cases through one simulation per configuration (``jobs``
simulations side by side, each a share of the cases).  Every case is checked in the testbench
against ``quant/`` (the GEMM engines) or the instruction-set simulator (the depth engine), bit for
bit, with a cycle limit: a case that does not finish is a failure (``hang``), never a stuck run.

Coverage is functional: bins of what a case was built to exercise (formats, packings, shape
classes, corner values, back-pressure, row patterns; opcodes, modes, synchronisation and injected
faults for the engine) and of what the testbench saw happen (stalls on both sides, saturation,
errors reported by the engine, the run after a fault).  A report gives bins hit over total per
group.

A failing case is written to ``failures/`` as one file (:func:`save_case`) with its configuration,
its data and what went wrong; :func:`replay` runs it alone (``qsilicon verify ACCEL --case FILE``)
and names the first mismatching output: tile, row, column, expected, got and the cycle.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ACCELS", "Accel", "CaseResult", "Coverage", "RegressReport", "accel", "load_case", "regress", "replay",
           "save_case"]

#: Primes that shape classes draw from.
_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101,
           103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179, 181, 191, 193, 197, 199)


class Coverage:
    """Functional coverage: named groups of bins, each hit or not (with a count).

    Parameters
    ----------
    groups : dict
        ``group: [bin, ...]``.  Hitting a bin that is not declared is an error (a typo in a
        generator would otherwise pass unnoticed).
    """

    def __init__(self, groups: dict[str, list[str]]) -> None:
        self._hits = {g: dict.fromkeys(bins, 0) for g, bins in groups.items()}

    def hit(self, group: str, name: str) -> None:
        try:
            self._hits[group][name] += 1
        except KeyError:
            raise KeyError(f"coverage bin {group}/{name} is not declared") from None

    @property
    def total(self) -> int:
        return sum(len(b) for b in self._hits.values())

    @property
    def covered(self) -> int:
        return sum(1 for b in self._hits.values() for n in b.values() if n)

    def missed(self) -> list[str]:
        return [f"{g}/{name}" for g, b in self._hits.items() for name, n in b.items() if not n]

    def to_dict(self) -> dict:
        return {"bins": self.covered, "total": self.total,
                "ratio": round(self.covered / self.total, 4) if self.total else 1.0,
                "groups": {g: {"hit": sum(1 for n in b.values() if n), "total": len(b), "counts": dict(b)}
                           for g, b in self._hits.items()},
                "missed": self.missed()}


@dataclass
class CaseResult:
    """What the testbench found for one case."""

    index: int
    ok: bool
    cycles: int
    error: str | None = None
    first: dict | None = None  # the first mismatching output
    observed: list = field(default_factory=list)  # coverage bins seen in the run, "group/bin"

    @classmethod
    def from_dict(cls, d: dict) -> CaseResult:
        return cls(**d)


@dataclass
class RegressReport:
    accel: str
    seed: int
    sim: str
    cases: int
    failures: int
    coverage: dict
    wall_s: float
    jobs: int
    configs: dict  # tag -> {"cases", "failures", "cycles"}
    failure_files: list = field(default_factory=list)
    rtl_coverage: dict | None = None  # Verilator's line and toggle points: {"line": {"hit", "total"}, ...}

    def to_dict(self) -> dict:
        return {"accel": self.accel, "seed": self.seed, "sim": self.sim, "cases": self.cases,
                "failures": self.failures, "coverage": self.coverage, "wall_s": round(self.wall_s, 2),
                "jobs": self.jobs, "configs": self.configs, "failure_files": self.failure_files,
                "rtl_coverage": self.rtl_coverage}


# --------------------------------------------------------------------------- accelerators


class Accel:
    """One accelerator's regression: its configuration pool, case generator, coverage bins,
    simulator build and testbench module (which reads ``QS_CASES``, a ``torch.save`` list of
    case dicts, and appends one JSON line per case to ``QS_RESULTS``)."""

    name: str = ""
    testbench: str = ""
    sims: tuple = ("verilator", "icarus")

    def pool(self) -> list:
        raise NotImplementedError

    def bins(self, pool: list) -> dict[str, list[str]]:
        raise NotImplementedError

    def generate(self, rng: random.Random, cfg) -> dict:
        """One case for ``cfg``: a dict that ``torch.save`` can write, with ``bins`` (the
        ``group/bin`` it was built to hit)."""
        raise NotImplementedError

    def config_dict(self, cfg) -> dict:
        return cfg.to_dict()

    def config_from(self, d: dict):
        raise NotImplementedError

    def verilog(self, cfg) -> str:
        raise NotImplementedError

    def toplevel(self) -> str:
        raise NotImplementedError

    def build(self, cfg, sim: str, waves: bool = False, log_file: Path | None = None, coverage: bool = False):
        from .runner import prepare

        return prepare(self.verilog(cfg), self.toplevel(), sim, self.build_tag(cfg) + _suffix(waves, coverage),
                       log_file, waves=waves, coverage=coverage)

    def build_tag(self, cfg) -> str:
        return cfg.tag


def _suffix(waves: bool, coverage: bool) -> str:
    return ("_waves" if waves else "") + ("_cov" if coverage else "")


def _dim(rng: random.Random, cls: str, size: int) -> int:
    """A dimension of shape class ``cls`` around an array side of ``size``."""
    if cls == "one":
        return 1
    if cls == "array":
        return size
    if cls == "above":
        return size + 1
    if cls == "prime":
        return rng.choice([p for p in _PRIMES if p <= 3 * size + 3])
    if cls == "multi":
        return size * rng.randint(2, 3)
    return rng.randint(1, 3 * size)  # random


SHAPE_CLASSES = ("one", "array", "above", "prime", "multi", "random")
K_CLASSES = {"one": (1, 1), "short": (2, 8), "prime": None, "long": (100, 200)}
VALUE_MODES = ("uniform", "extreme_codes", "max_acc", "sat_hi", "sat_lo", "zp_extreme", "shift_zero", "shift_max")
BACKPRESSURE = ("none", "idle", "backpressure", "both")
ROW_PATTERNS = ("all4", "all8", "alternating", "random")


def _fmt_tag(cfg) -> str:
    return f"w{cfg.wbits}a{cfg.abits}{'s' if cfg.a_signed else 'u'}"


class GemmAccel(Accel):
    """The GEMM engine (``gemm``) or its row-wise mixed-precision form (``mpgemm``)."""

    testbench = "qsilicon.sim.tb_regress_gemm"

    def __init__(self, mixed: bool) -> None:
        self.mixed = mixed
        self.name = "mpgemm" if mixed else "gemm"

    def pool(self) -> list:
        from qsilicon.hw.config import GemmConfig

        if self.mixed:
            return [GemmConfig(4, 4, 8, 8, True, "dsp2", True), GemmConfig(3, 2, 8, 8, False, "none", True),
                    GemmConfig(4, 2, 8, 8, True, "dot2", True), GemmConfig(2, 4, 8, 8, True, "dot2", True, 5)]
        return [GemmConfig(4, 4, 4, 8, True), GemmConfig(4, 4, 4, 4, True, "dsp4"), GemmConfig(4, 2, 4, 8, True, "lut"),
                GemmConfig(3, 4, 8, 8, False, "dsp2"), GemmConfig(2, 3, 4, 4, False, "lut"),
                GemmConfig(5, 2, 8, 4, True, "dsp2"), GemmConfig(2, 4, 4, 4, False, "dsp4", requant_stages=4),
                GemmConfig(3, 3, 8, 8, True, requant_stages=5)]

    def config_from(self, d: dict):
        from qsilicon.hw.config import GemmConfig

        return GemmConfig(**d)

    def toplevel(self) -> str:
        return "gemm_engine"

    def verilog(self, cfg) -> str:
        from .gemm import gemm_verilog

        return gemm_verilog(cfg)

    def bins(self, pool: list) -> dict[str, list[str]]:
        packings = sorted({c.packing for c in pool})
        groups = {
            "config": [c.tag for c in pool],
            "format_x_packing": sorted({f"{_fmt_tag(c)}:{c.packing}" for c in pool}),
            "m": list(SHAPE_CLASSES), "k": list(K_CLASSES), "n": list(SHAPE_CLASSES),
            "values_x_packing": [f"{v}:{p}" for v in VALUE_MODES for p in packings],
            "backpressure_x_packing": [f"{b}:{p}" for b in BACKPRESSURE for p in packings],
            "sequence": ["reset", "back_to_back"],
            "requant_stages": sorted({str(c.requant_stages) for c in pool}),
            "observed": ["input_wait", "output_wait", "saturated_hi", "saturated_lo", "acc_at_int32_limit"],
        }
        if self.mixed:
            groups["rows_x_packing"] = [f"{r}:{p}" for r in ROW_PATTERNS for p in packings]
        return groups

    def generate(self, rng: random.Random, cfg) -> dict:
        import torch

        from qsilicon.quant import GemmCase, random_gemm_case, ref_gemm
        from qsilicon.quant.intops import ACC_BITS, M0_BITS, SHIFT_MAX

        mc, kc, nc = rng.choice(SHAPE_CLASSES), rng.choice(list(K_CLASSES)), rng.choice(SHAPE_CLASSES)
        m, n = _dim(rng, mc, cfg.rows), _dim(rng, nc, cfg.cols)
        k = rng.choice(_PRIMES[4:]) if kc == "prime" else rng.randint(*K_CLASSES[kc])
        values, bp = rng.choice(VALUE_MODES), rng.choice(BACKPRESSURE)
        rows = rng.choice(ROW_PATTERNS) if self.mixed else None
        ratio8 = {"all4": 0.0, "all8": 1.0, "alternating": 0.5, "random": rng.random()}.get(rows)
        case = random_gemm_case(m, k, n, wbits=cfg.wbits, abits=cfg.abits, a_signed=cfg.a_signed,
                                seed=rng.getrandbits(31), ratio8=ratio8)
        g = torch.Generator().manual_seed(rng.getrandbits(31))
        st = case.state()
        if rows == "alternating":
            rb = torch.tensor([8 if i % 2 == 0 else 4 for i in range(n)], dtype=st["w"].dtype)
            w4 = torch.randint(-8, 8, (n, k), generator=g, dtype=st["w"].dtype)
            w8 = torch.randint(-128, 128, (n, k), generator=g, dtype=st["w"].dtype)
            st["row_bits"], st["w"] = rb, torch.where((rb == 4)[:, None], w4, w8)
        a_fmt, out_fmt = case.a_fmt, case.out_fmt
        wmin = torch.full((n,), -(1 << (cfg.wbits - 1)), dtype=st["w"].dtype)
        if st["row_bits"] is not None:
            wmin = torch.where(st["row_bits"] == 4, -8, -128).to(st["w"].dtype)
        acc_max, acc_min = (1 << (ACC_BITS - 1)) - 1, -(1 << (ACC_BITS - 1))
        if values in ("extreme_codes", "max_acc", "shift_max"):
            # every code at the end of its range that gives the largest products
            st["x"] = torch.full_like(st["x"], a_fmt.qmin if a_fmt.signed else a_fmt.qmax)
            sign = torch.tensor([rng.choice((-1, 1)) for _ in range(n)], dtype=st["w"].dtype)
            wext = torch.where(sign > 0, wmin, -wmin - 1) if a_fmt.signed else torch.where(sign > 0, -wmin - 1, wmin)
            st["w"] = wext[:, None].expand(n, k).clone()
        if values in ("max_acc", "shift_max"):
            # the bias takes every sum to the int32 end on its side (the bias itself stays in int32)
            s = st["x"].to(torch.int64) @ st["w"].to(torch.int64).T  # [m, n]
            hi, lo = s.max(dim=0).values, s.min(dim=0).values
            st["bias"] = torch.where(hi >= 0, acc_max - hi, acc_min - lo).to(st["bias"].dtype)
        if values == "sat_hi":
            st["bias"] = st["bias"] + (1 << rng.randint(20, 28))
        elif values == "sat_lo":
            st["bias"] = st["bias"] - (1 << rng.randint(20, 28))
        elif values == "zp_extreme":
            st["zero_point"] = torch.tensor([rng.choice((out_fmt.qmin, out_fmt.qmax)) for _ in range(n)],
                                            dtype=st["zero_point"].dtype)
        elif values == "shift_zero":
            st["shift"] = torch.zeros_like(st["shift"])
            st["m0"] = torch.tensor([rng.randint(0, 3) for _ in range(n)], dtype=st["m0"].dtype)
        elif values == "shift_max":
            st["shift"] = torch.full_like(st["shift"], SHIFT_MAX)
            st["m0"] = torch.tensor([rng.randint(1 << (M0_BITS - 1), (1 << M0_BITS) - 1) for _ in range(n)],
                                    dtype=st["m0"].dtype)
        ref_gemm(GemmCase.from_state(st))  # the case is legal (no accumulator overflow)
        vp = {"none": 1.0, "idle": rng.uniform(0.2, 0.9), "backpressure": 1.0, "both": rng.uniform(0.2, 0.9)}[bp]
        rp = {"none": 1.0, "idle": 1.0, "backpressure": rng.uniform(0.2, 0.9), "both": rng.uniform(0.2, 0.9)}[bp]
        reset = rng.random() < 0.1
        bins = [("config", cfg.tag), ("format_x_packing", f"{_fmt_tag(cfg)}:{cfg.packing}"), ("m", mc), ("k", kc),
                ("n", nc), ("values_x_packing", f"{values}:{cfg.packing}"),
                ("backpressure_x_packing", f"{bp}:{cfg.packing}"), ("sequence", "reset" if reset else "back_to_back"),
                ("requant_stages", str(cfg.requant_stages))]
        if rows:
            bins.append(("rows_x_packing", f"{rows}:{cfg.packing}"))
        return {"case": st, "valid_p": vp, "ready_p": rp, "reset": reset, "seed": rng.getrandbits(31),
                "values": values, "bins": [f"{g}/{b}" for g, b in bins]}


def _draw_fault(rng: random.Random, kinds: tuple, *, bursts: int, first: int,
                reset_by: int) -> tuple[dict, str, float]:
    """An engine case's fault, back-pressure class and ready probability: no fault (7 in 10) or one
    of ``kinds[1:]`` with its parameters (the burst a bus error answers, a stall's start and length,
    the cycle of a reset, where an illegal instruction goes)."""
    kind = "none" if rng.random() < 0.7 else rng.choice(kinds[1:])
    bp = rng.choice(("none", "light", "heavy"))
    ready_p = {"none": 1.0, "light": rng.uniform(0.6, 0.95), "heavy": rng.uniform(0.15, 0.5)}[bp]
    f: dict = {"kind": kind}
    if kind.startswith(("read_", "write_")):
        f["n"] = rng.randint(0, bursts)
        f["resp"] = 2 if kind.endswith("slverr") else 3
    elif kind == "stall":
        f["first"], f["length"] = rng.randint(1, first), rng.randint(1000, 5000)
    elif kind == "reset":
        f["at"] = rng.randint(5, reset_by)
    elif kind.startswith("illegal"):
        f["at"] = rng.random()
    return f, bp, ready_p


class DepthAccel(Accel):
    """The QuartDepth engine: random legal programs (barrier- or token-synchronised) against the
    instruction-set simulator, and faults (bus errors, long stalls, a reset in the middle of a run,
    illegal and truncated programs)."""

    name = "depth"
    testbench = "qsilicon.sim.tb_regress_depth"
    sims = ("verilator",)
    FAULTS = ("none", "read_slverr", "read_decerr", "write_slverr", "write_decerr", "stall", "reset",
              "illegal_opcode", "illegal_field", "truncated")

    def pool(self) -> list:
        from qsilicon.hw.depth.isa import EngineConfig

        small = EngineConfig(co=8, px=4, max_width=16, act_depth=128, out_depth=32, wgt_depth=512, par_depth=16,
                             tab_depth=64)
        return [small, EngineConfig(**{**small.__dict__, "packing": "nibble"})]

    def config_from(self, d: dict):
        from qsilicon.hw.depth.isa import EngineConfig

        return EngineConfig(**d)

    def config_dict(self, cfg) -> dict:
        return dict(cfg.__dict__)

    def toplevel(self) -> str:
        return "depth_engine"

    def verilog(self, cfg) -> str:
        from .depth import depth_engine_verilog

        return depth_engine_verilog(cfg)

    def bins(self, pool: list) -> dict[str, list[str]]:
        return {
            "config": [c.tag for c in pool],
            "sync": ["barrier", "tokens"],
            # an instruction that waits for the unit before it (its inputs) or after it (room to write)
            "hazard": ["barrier", "load_waits_next", "compute_waits_prev", "compute_waits_next", "store_waits_prev"],
            "load": [f"{m}:{mode}" for m in ("act", "wgt", "tab") for mode in ("bytes", "nibble_u", "nibble_s")]
            + ["par:bytes", "flush"],
            "compute": ["k1", "k3", "stride1", "stride2", "upsample", "decode", "encode", "residual", "pair",
                        "pair_out", "two_segments", "fmt_u4", "fmt_u8", "fmt_s16"],
            "store": ["u4", "u8", "s16"],
            "fault": list(self.FAULTS),
            "outcome": ["completed", "stopped_read", "stopped_write", "stopped_opcode", "stopped_field",
                        "completed_after_reset", "correct_after_fault"],
            "backpressure": ["none", "light", "heavy"],
        }

    def generate(self, rng: random.Random, cfg) -> dict:
        sync = rng.choice(("barrier", "tokens"))
        f, bp, ready_p = _draw_fault(rng, self.FAULTS, bursts=12, first=300, reset_by=400)
        fault = f["kind"]
        return {"prog_seed": rng.getrandbits(31), "n": rng.randint(4, 16), "sync": sync, "fault": f,
                "ready_p": ready_p, "seed": rng.getrandbits(31),
                "bins": [f"config/{cfg.tag}", f"sync/{sync}", f"fault/{fault}", f"backpressure/{bp}"]}


class VitAccel(Accel):
    """The whole ViT accelerator: windows of one to four descriptors of random small integer ViTs
    (compiled by :func:`~qsilicon.hw.vit.compiler.compile_vit`) over random activations, against the
    ViT instruction-set simulator; faults as for the depth engine, plus the watchdog."""

    name = "vit"
    testbench = "qsilicon.sim.tb_regress_vit"
    sims = ("verilator",)
    FAULTS = ("none", "read_slverr", "read_decerr", "write_slverr", "write_decerr", "stall", "reset",
              "illegal_opcode", "illegal_gemm", "watchdog", "truncated")
    PRECISIONS = ("w8a8", "w4a8", "mixed25", "mixed50", "mixed75")
    DESCRIPTORS = ("embed", "qkv", "qk", "av", "proj", "fc1", "fc2", "head", "ln", "softmax", "add", "transpose")

    def pool(self) -> list:
        from qsilicon.hw.config import AccelConfig

        # plain, int4 rows two steps a beat, LayerNorm rows through a row buffer (every drawn shape fits it)
        return [AccelConfig(8, 8, "dsp2", 8, 8, 8, 100.0), AccelConfig(8, 8, "dot2", 8, 8, 8, 100.0),
                AccelConfig(8, 8, "dsp2", 8, 8, 8, 100.0, 64)]

    def config_from(self, d: dict):
        from qsilicon.hw.config import AccelConfig

        return AccelConfig(**d)

    def toplevel(self) -> str:
        return "vit_accel"

    def verilog(self, cfg) -> str:
        from .vit_accel import vit_accel_verilog

        return vit_accel_verilog(cfg)

    def build_tag(self, cfg) -> str:
        return f"vit_accel_{cfg.tag}"

    def bins(self, pool: list) -> dict[str, list[str]]:
        return {
            "config": [c.tag for c in pool],
            "descriptor": list(self.DESCRIPTORS),
            "precision": list(self.PRECISIONS),
            "shape": ["dim16", "dim32", "heads1", "heads2", "tokens5", "tokens17", "mlp16", "mlp32", "mlp64"],
            "window": ["1", "2-3", "4"],
            "fault": list(self.FAULTS),
            "outcome": ["completed", "stopped_read", "stopped_write", "stopped_opcode", "stopped_gemm",
                        "stopped_watchdog", "completed_after_reset", "correct_after_fault"],
            "backpressure": ["none", "light", "heavy"],
        }

    def generate(self, rng: random.Random, cfg) -> dict:
        dim, heads, mlp, patch = rng.choice((16, 32)), rng.choice((1, 2)), rng.choice((16, 32, 64)), rng.choice((7, 14))
        precision = rng.choice(self.PRECISIONS)
        window = rng.choice((1, 1, 2, 3, 4))
        f, bp, ready_p = _draw_fault(rng, self.FAULTS, bursts=10, first=200, reset_by=300)
        fault = f["kind"]
        tokens = (28 // patch) ** 2 + 1
        return {"model": {"dim": dim, "heads": heads, "mlp": mlp, "patch": patch, "precision": precision,
                          "seed": rng.getrandbits(16)},
                "start": rng.random(), "window": window, "data_seed": rng.getrandbits(31), "fault": f,
                "ready_p": ready_p, "seed": rng.getrandbits(31),
                "bins": [f"config/{cfg.tag}", f"precision/{precision}", f"shape/dim{dim}", f"shape/heads{heads}",
                         f"shape/tokens{tokens}", f"shape/mlp{mlp}", f"fault/{fault}", f"backpressure/{bp}",
                         f"window/{'1' if window == 1 else '4' if window == 4 else '2-3'}"]}


ACCELS: dict[str, Accel] = {"gemm": GemmAccel(False), "mpgemm": GemmAccel(True), "depth": DepthAccel(),
                            "vit": VitAccel()}
#: Other names of the accelerators (the issue's and the ``verify`` commands').
ALIASES = {"depth-engine": "depth", "vit-system": "vit"}


def accel(name: str) -> Accel:
    """The accelerator ``name`` (or an alias); ``ValueError`` naming the choices otherwise."""
    key = ALIASES.get(name, name)
    if key not in ACCELS:
        raise ValueError(f"unknown accelerator {name!r}: choose one of {', '.join(ACCELS)}")
    return ACCELS[key]


# --------------------------------------------------------------------------- cases on disk


def save_case(path: Path, acc: Accel, cfg, case: dict, result: CaseResult | None = None, *, seed: int | None = None,
              sim: str | None = None) -> None:
    """One case in a file of its own, replayable with :func:`replay`."""
    import torch

    torch.save({"qsilicon_case": 1, "accel": acc.name, "config": acc.config_dict(cfg), "case": case,
                "result": None if result is None else result.__dict__, "seed": seed, "sim": sim}, path)


def load_case(path: Path) -> tuple[Accel, object, dict, dict]:
    """``(accelerator, config, case, the file's whole record)``; ``ValueError`` for a file that is
    not a saved case."""
    import pickle

    import torch

    try:
        d = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError):
        raise ValueError(f"{path}: not a case file written by 'qsilicon regress'") from None
    if not isinstance(d, dict) or d.get("qsilicon_case") != 1:
        raise ValueError(f"{path}: not a case file written by 'qsilicon regress'")
    acc = accel(d["accel"])
    return acc, acc.config_from(d["config"]), d["case"], d


# --------------------------------------------------------------------------- running


def _run_batch(simulation, acc: Accel, cfg, cases: list[dict], workdir: Path, results: Path,
               trace_file: Path | None, log_file: Path | None = None, coverage_file: Path | None = None) -> None:
    import torch

    from .runner import SimulationError

    workdir.mkdir(parents=True, exist_ok=True)
    torch.save(cases, workdir / "cases.pt")
    env = {"QS_CASES": str(workdir / "cases.pt"), "QS_RESULTS": str(results),
           "QS_CONFIG": json.dumps(acc.config_dict(cfg))}
    try:
        simulation.run(acc.testbench, env, workdir / "results.xml", log_file or workdir / "sim.log",
                       trace_file=trace_file,
                       plusargs=[f"+verilator+coverage+file+{coverage_file}"] if coverage_file else None)
    except SimulationError as e:
        done = len(results.read_text().splitlines()) if results.exists() else 0
        if done < len(cases):  # the testbench itself broke (not a failing case)
            raise SimulationError(f"{e}; {done} of {len(cases)} cases ran") from None


def _read_results(path: Path) -> list[CaseResult]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(CaseResult.from_dict(json.loads(line)))
    return out


def regress(name: str, cases: int, seed: int, *, sim: str = "verilator", jobs: int = 1, out_dir: Path,
            waves: bool = False, rtl_coverage: bool = False, pool: list | None = None,
            on_progress: Callable[[int, int, int], None] | None = None,
            on_build: Callable[[str], None] | None = None) -> RegressReport:
    """Run ``cases`` random cases of accelerator ``name`` from ``seed``; write failing cases to
    ``out_dir/failures`` (and with ``waves`` one waveform per simulation to ``out_dir/waves``);
    ``rtl_coverage`` (Verilator): builds with line and toggle coverage and reports it.
    ``pool`` replaces the accelerator's configurations; ``on_progress(done, total, failures)`` is
    called as cases finish."""
    acc = accel(name)
    if not isinstance(cases, int) or isinstance(cases, bool) or cases < 1:
        raise ValueError(f"cases must be a positive integer, not {cases!r}")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, not {jobs!r}")
    if sim not in acc.sims:
        raise ValueError(f"{acc.name} regressions run on {' or '.join(acc.sims)}, not {sim!r}")
    if rtl_coverage and sim != "verilator":
        raise ValueError("line and toggle coverage needs Verilator")
    pool = list(pool or acc.pool())
    t0 = time.monotonic()
    cov = Coverage(acc.bins(pool))
    # cases: case i runs on configuration i mod len(pool), drawn from its own generator
    per_cfg: dict[int, list[tuple[int, dict]]] = {}
    for i in range(cases):
        ci = i % len(pool)
        case = acc.generate(random.Random(f"{acc.name}:{seed}:{i}"), pool[ci])
        case["index"] = i
        per_cfg.setdefault(ci, []).append((i, case))
    out_dir = Path(out_dir)
    (out_dir / "failures").mkdir(parents=True, exist_ok=True)
    if waves:
        (out_dir / "waves").mkdir(exist_ok=True)
    sims = {}
    for ci in per_cfg:
        if on_build:
            on_build(pool[ci].tag)
        sims[ci] = acc.build(pool[ci], sim, waves, coverage=rtl_coverage)
    work = Path(tempfile.mkdtemp(prefix=f"qs-regress-{acc.name}-"))
    batches = []
    for ci, items in per_cfg.items():
        n = min(jobs, len(items))
        for j in range(n):
            part = items[j::n]
            tag = f"{pool[ci].tag}-{j}"
            trace = (out_dir / "waves" / f"{tag}.{'fst' if sim == 'verilator' else 'vcd'}") if waves else None
            batches.append((ci, [c for _, c in part], work / tag, work / tag / "results.jsonl", trace))
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            if on_progress:
                texts = [b[3].read_text() if b[3].exists() else "" for b in batches]
                on_progress(sum(t.count("\n") for t in texts), cases, sum(t.count('"ok": false') for t in texts))

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        return _finish(acc, seed, sim, cases, jobs, pool, per_cfg, batches, sims, out_dir, cov, t0, rtl_coverage,
                       stop, watcher, on_progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _finish(acc, seed, sim, cases, jobs, pool, per_cfg, batches, sims, out_dir, cov, t0, rtl_coverage, stop, watcher,
            on_progress) -> RegressReport:
    """Run the batches, then gather their results, coverage and failing cases."""
    try:
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            (out_dir / "logs").mkdir(exist_ok=True)
            futures = [ex.submit(_run_batch, sims[ci], acc, pool[ci], part, wd, res, tr,
                                 out_dir / "logs" / f"{wd.name}.log", wd / "coverage.dat" if rtl_coverage else None)
                       for ci, part, wd, res, tr in batches]
            for f in futures:
                f.result()
    finally:
        stop.set()
        watcher.join()
    failures, files = 0, []
    configs: dict = {}
    by_index = {c["index"]: (ci, c) for ci, items in per_cfg.items() for _, c in items}
    results = [r for b in batches for r in _read_results(b[3])]
    rtl_cov = None
    if rtl_coverage:
        from .runner import read_coverage

        rtl_cov = read_coverage([b[2] / "coverage.dat" for b in batches if (b[2] / "coverage.dat").exists()])
    if len(results) != cases:
        raise RuntimeError(f"{len(results)} of {cases} cases reported a result")
    for r in sorted(results, key=lambda r: r.index):
        ci, case = by_index[r.index]
        cfg = pool[ci]
        for b in (*case["bins"], *r.observed):
            cov.hit(*b.split("/", 1))
        c = configs.setdefault(cfg.tag, {"cases": 0, "failures": 0, "cycles": 0})
        c["cases"] += 1
        c["cycles"] += r.cycles
        if not r.ok:
            failures += 1
            c["failures"] += 1
            path = out_dir / "failures" / f"{acc.name}-{seed}-{r.index:06d}.pt"
            save_case(path, acc, cfg, case, r, seed=seed, sim=sim)
            files.append(str(path))
    if on_progress:
        on_progress(cases, cases, failures)
    return RegressReport(acc.name, seed, sim, cases, failures, cov.to_dict(), time.monotonic() - t0, jobs, configs,
                         files, rtl_cov)


def replay(path: Path, *, sim: str | None = None, waves: Path | None = None,
           log_file: Path | None = None) -> tuple[CaseResult, dict]:
    """Run the saved case at ``path`` alone (after a reset); ``waves``: the waveform's file.
    Returns the result and the file's record."""
    acc, cfg, case, record = load_case(Path(path))
    sim = sim or record.get("sim") or acc.sims[0]
    if sim not in acc.sims:
        raise ValueError(f"{acc.name} cases run on {' or '.join(acc.sims)}, not {sim!r}")
    case = {**case, "reset": True}
    simulation = acc.build(cfg, sim, waves is not None, log_file)
    with tempfile.TemporaryDirectory(prefix="qs-replay-") as tmp:
        tmp = Path(tmp)
        _run_batch(simulation, acc, cfg, [case], tmp, tmp / "results.jsonl", waves)
        results = _read_results(tmp / "results.jsonl")
    if len(results) != 1:
        raise RuntimeError(f"the testbench reported {len(results)} results for one case")
    return results[0], record


def cycle_limit_gemm(m: int, k: int, n: int, rows: int, cols: int) -> int:
    """A GEMM case's cycle limit: 50 times its tiles' beats and drains, plus a margin (every case
    with back-pressure of 0.2 on both sides finishes well inside it)."""
    tiles = math.ceil(m / rows) * math.ceil(n / cols) * 2  # (two precision groups at most)
    return 50 * tiles * (k + rows + 8) + 2000

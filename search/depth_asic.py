"""ASIC cost model of the QuartDepth engine: area, clock and energy per inference of an engine
configuration on a standard-cell library, without mapping it (for the design-space search).

* **Memories**: the SRAM-macro model of :mod:`qsilicon.hw.asic` (area per bit, energy per word
  access) applied to the engine's memories as the gateware declares them
  (:meth:`~qsilicon.hw.depth.isa.EngineConfig.sram_shapes`; the calibration checks that they are
  the macros the mapping makes), each access of one inference counted from the program's
  instructions (:func:`~qsilicon.hw.depth.iss.program_accesses`, equal to the instruction-set
  simulator's counts).  Exact under the macro model: no fit.
* **Logic and flip-flops**: area (um^2) and power (mW at the mapping clock, OpenSTA at the default
  activity: 0.1 transitions per cycle on every input, propagated) are linear in the array's
  :data:`FEATURES`, fitted by least squares to engines mapped by the flow
  (``bench/asic_depth_model.py`` maps them, fits, reports held-out errors and writes
  ``data/depth_asic_<library>.json``).  Logic energy per cycle = that power / the mapping clock
  (switching and internal power scale with the clock; leakage, under 0.01% at 0.18 um, is
  counted the same way).
* **Clock**: the lowest fmax of the calibrated engines (OpenSTA, typical corner): their critical
  path runs from the configuration registers into the 512-bit activation-row path, which does not
  grow with the array.
* **Cycles**: the engine's latency model (:mod:`qsilicon.search.depth_latency`) on the compiled
  program.

Every figure is a prediction until the configuration is mapped (``qsilicon synth engine --target
asic``) and run on the RTL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from qsilicon.hw.depth.isa import EngineConfig

__all__ = ["FEATURES", "AsicCost", "engine_cost", "features", "fit", "load_model", "memory_area_um2",
           "memory_energy_uj"]

DATA = Path(__file__).resolve().parent / "data"
#: What the logic and flip-flop area and power are linear in: a constant (control, AXI, row
#: buffers' muxes, post-op units), output channels (per-channel accumulators and requantizers),
#: pixels, processing elements, and the nibble multipliers' difference per element.
FEATURES = ("one", "co", "px", "macs", "nibble_macs")
TARGETS = ("logic_um2", "flip_flops_um2", "logic_mw")


def model_path(library: str = "osu018") -> Path:
    return DATA / f"depth_asic_{library}.json"


def load_model(library: str = "osu018") -> dict:
    path = model_path(library)
    if not path.exists():
        raise FileNotFoundError(f"no ASIC cost model of the depth engine for library {library!r} ({path}): "
                                "run 'python bench/asic_depth_model.py' to calibrate one")
    return json.loads(path.read_text())


def features(cfg: EngineConfig) -> list[float]:
    nibble = cfg.packing == "nibble"
    return [1.0, float(cfg.co), float(cfg.px), float(cfg.macs), float(cfg.macs if nibble else 0)]


def fit(points: list[dict]) -> dict:
    """Least-squares coefficients of each of :data:`TARGETS` over :data:`FEATURES` from calibration
    points (``{"config": EngineConfig dict, "logic_um2", "flip_flops_um2", "logic_mw"}``)."""
    import numpy as np

    x = np.array([features(EngineConfig(**p["config"])) for p in points])
    if np.linalg.matrix_rank(x) < len(FEATURES):
        raise ValueError(f"{len(points)} calibration points do not determine the {len(FEATURES)} coefficients")
    out = {}
    for t in TARGETS:
        coef, *_ = np.linalg.lstsq(x, np.array([p[t] for p in points]), rcond=None)
        out[t] = dict(zip(FEATURES, (round(float(c), 4) for c in coef), strict=True))
    return out


def _linear(coefs: dict, cfg: EngineConfig) -> float:
    return sum(coefs[f] * v for f, v in zip(FEATURES, features(cfg), strict=True))


def _macros(cfg: EngineConfig):
    from qsilicon.hw.asic import SramMacro

    return {m: SramMacro(d, w, r) for m, (d, w, r) in cfg.sram_shapes().items()}


def memory_area_um2(cfg: EngineConfig, library: str = "osu018") -> float:
    from qsilicon.hw.asic import library as tech_library

    node = tech_library(library).node_um
    return sum(m.area_um2(node) for m in _macros(cfg).values())


def memory_energy_uj(cfg: EngineConfig, accesses: dict, library: str = "osu018") -> dict[str, float]:
    """Access energy (uJ) of each memory for ``accesses`` (``{memory: [reads, writes]}``)."""
    from qsilicon.hw.asic import library as tech_library

    tech = tech_library(library)
    return {name: (accesses[name][0] + accesses[name][1]) * m.access_energy_pj(tech.node_um, tech.voltage) * 1e-6
            for name, m in _macros(cfg).items()}


@dataclass(frozen=True)
class AsicCost:
    """Predicted ASIC figures of one engine configuration running one program."""

    area_um2: dict  # logic, flip_flops, memories, total
    fmax_mhz: float
    clock_mhz: float
    cycles: int
    energy_uj: dict  # logic, memories, total (and each memory's)
    library: str

    @property
    def area_mm2(self) -> float:
        return self.area_um2["total"] / 1e6

    @property
    def latency_ms(self) -> float:
        return self.cycles / (self.clock_mhz * 1e3)

    @property
    def inferences_per_s(self) -> float:
        return self.clock_mhz * 1e6 / self.cycles

    @property
    def power_mw(self) -> float:
        return self.energy_uj["total"] / self.latency_ms

    def to_dict(self) -> dict:
        return {"library": self.library, "area_mm2": round(self.area_mm2, 4),
                "area_um2": {k: round(v, 1) for k, v in self.area_um2.items()},
                "fmax_mhz": round(self.fmax_mhz, 2), "clock_mhz": round(self.clock_mhz, 2), "cycles": self.cycles,
                "latency_ms": round(self.latency_ms, 4), "inferences_per_s": round(self.inferences_per_s, 3),
                "energy_per_inference_uj": round(self.energy_uj["total"], 3),
                "energy_uj": {k: round(v, 3) for k, v in self.energy_uj.items()},
                "power_mw": round(self.power_mw, 3)}


def engine_cost(prog, model: dict | None = None, clock_mhz: float | None = None) -> AsicCost:
    """ASIC cost of running the compiled program ``prog`` on its engine (``prog.cfg``): at
    ``clock_mhz``, or at the model's fmax when not given (a faster clock than fmax is an error)."""
    from qsilicon.hw.depth.iss import program_accesses
    from qsilicon.search.depth_latency import predict_program

    model = model or load_model()
    cfg, lib = prog.cfg, model["library"]
    fmax = model["fmax_mhz"]
    clock = fmax if clock_mhz is None else float(clock_mhz)
    if not 0 < clock <= fmax:
        raise ValueError(f"clock {clock_mhz} MHz: the engine closes timing up to {fmax} MHz on {lib}")
    coefs = model["coefficients"]
    logic, ffs = _linear(coefs["logic_um2"], cfg), _linear(coefs["flip_flops_um2"], cfg)
    mem = memory_area_um2(cfg, lib)
    cycles = predict_program(prog).cycles
    per_mem = memory_energy_uj(cfg, program_accesses(prog.insns, cfg), lib)
    logic_uj = _linear(coefs["logic_mw"], cfg) / model["clock_mhz"] * cycles * 1e-3  # mW / MHz = nJ per cycle
    mem_uj = sum(per_mem.values())
    energy = {"logic": logic_uj, "memories": mem_uj, "total": logic_uj + mem_uj,
              **{f"memory_{k}": v for k, v in per_mem.items()}}
    area = {"logic": logic, "flip_flops": ffs, "memories": mem, "total": logic + ffs + mem}
    return AsicCost(area, fmax, clock, cycles, energy, lib)

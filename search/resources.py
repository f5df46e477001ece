"""Resource model of the GEMM engine on Zynq UltraScale+ (``synth_xilinx -family xcup``).

Pure Python (no Amaranth): the search evaluates it for every candidate.  DSP counts are exact
formulas; LUT and FF counts are linear in per-component features, with coefficients fitted by
least squares to Yosys synthesis of the configurations in ``data/resource_calibration.json``
(the training split; the held-out split only measures the error).  ``data/resource_model.json``
holds the fitted coefficients; ``python -m qsilicon.search.resources`` refits them.

Components and their features:

* operand registers: ``R * abits + C * wbits`` FFs;
* multiplier lanes, by packing: plain ``a * w`` (a DSP48E2 per PE when the product is wider than 8
  bits, else LUT logic ~ ``abits * wbits``), ``dsp2`` (one DSP per PE pair, field split and sign
  correction in LUTs), ``dsp4`` (one DSP per 2x2 PEs), ``lut`` (shift-and-add, ~ ``abits * wbits``);
* product registers ``R*C*(a+w+1)``, accumulators and drain buffer ``R*C*64`` FFs, the
  accumulate adders ``R*C`` 32-bit;
* the drain's output multiplexer (``MacArray(drain="mux")``): per column bit a ``rows``-to-1
  multiplexer, ``C*32*max(R, 4)/2`` (LUTs only: it has no flip-flops);
* requantizer: per column a 32x16 multiply (two DSP48E2), the parameter registers, rounding
  shifter and saturation;
* mixed precision: per column the int4/int8 weight select;
* ``dot2``: a DSP48E2 per PE (a 22 x 18 multiply), per PE the field select and the borrow carried
  into the accumulator, per row and per column the packed ports (an adder and a mux each).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from qsilicon.hw.config import GemmConfig

__all__ = [
    "BufferEstimate", "ResourceEstimate", "buffer_resources", "dsp_count", "estimate", "features", "fit",
    "load_calibration",
]

DATA = Path(__file__).parent / "data"
CALIBRATION = DATA / "resource_calibration.json"
MODEL = DATA / "resource_model.json"

#: DSP48E2 per requantizer column: a 32x16 signed x unsigned multiply needs two 27x18 slices.
REQUANT_DSP_PER_COL = 2
#: Features of pure logic: the FF fit leaves them out.
LUT_ONLY = ("drain_mux",)


def _mac_dsps(cfg: GemmConfig) -> int:
    pes = cfg.rows * cfg.cols
    if cfg.packing == "dsp2":
        return pes // 2
    if cfg.packing == "dsp4":
        return pes // 4
    if cfg.packing == "lut":
        return 0
    if cfg.packing == "dot2":
        return pes
    # Plain a * w: Yosys maps a product wider than 8 bits to a DSP48E2, narrower ones to LUTs.
    return pes if cfg.abits + cfg.wbits > 8 else 0


def dsp_count(cfg: GemmConfig) -> int:
    """Exact DSP48E2 count of the engine."""
    return _mac_dsps(cfg) + REQUANT_DSP_PER_COL * cfg.cols


def features(cfg: GemmConfig) -> dict[str, float]:
    """Per-component features that LUT and FF counts are linear in."""
    R, C, a, w = cfg.rows, cfg.cols, cfg.abits, cfg.wbits
    pes = R * C
    lut_mul = cfg.packing == "lut" or (cfg.packing == "none" and a + w <= 8)
    return {
        "pe": pes,                                           # accumulate adder + drain per PE
        "pe_prod_bits": pes * (a + w + 1),                   # product registers
        "pe_lut_mul": pes * a * w if lut_mul else 0.0,       # multipliers built from LUTs
        "pe_packed": pes if cfg.packing in ("dsp2", "dsp4") else 0.0,  # field split + sign fix
        "pe_dot": pes if cfg.packing == "dot2" else 0.0,      # dot2 field select and borrow
        "dot_ports": R + C if cfg.packing == "dot2" else 0.0,  # dot2 packed row and column ports
        "col": C,                                            # requantizer lane
        "operand_bits": R * a + C * w,                       # operand registers
        "mixed_col": C if cfg.mixed else 0.0,                # int4/int8 weight select
        "log_rows": math.log2(R) if R > 1 else 0.0,          # drain row counter
        "drain_mux": C * 32 * max(R, 4) / 2,                  # the drain's rows-to-1 output multiplexer
        "one": 1.0,
    }


@dataclass(frozen=True)
class ResourceEstimate:
    lut: float
    ff: float
    dsp: int

    def to_dict(self) -> dict:
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp}


# --------------------------------------------------------------------------- buffers

# Widest simple-dual-port aspect of a block RAM for a given depth: (max depth, width) pairs.
_BRAM36_ASPECTS = ((512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1))
_BRAM18_ASPECTS = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
#: Cost of a BRAM36 and of one LUTRAM primitive, in BRAM18 units, as Yosys's memory mapper weighs
#: them on xcup (fitted to the buffer calibration data: a BRAM36 is taken when it replaces at least
#: two BRAM18; LUTRAM when fewer than 8 primitives replace one BRAM18).
_BRAM36_COST = 2.0
_LUTRAM_COST = 1.0 / 8


@dataclass(frozen=True)
class BufferEstimate:
    """Primitives of one buffer: block RAMs (36 Kb, 18 Kb) or LUTRAM (``RAM64M8``/``RAM32M16``)."""

    bram36: int
    bram18: int
    lutram: int

    @property
    def bram36_equivalent(self) -> float:
        return self.bram36 + self.bram18 / 2


def _blocks(width: int, depth: int, aspects) -> int:
    """Blocks of the cheapest aspect ratio, stacked in depth where one block is too shallow (a
    128 x 16384 memory is 4 x 15 blocks of 4K x 9, not 64 of 16K x 2: Yosys counts the parity bits
    as data and muxes the stacked blocks)."""
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in aspects)


def buffer_resources(width: int, depth: int) -> BufferEstimate:
    """How a ``width x depth`` simple dual-port buffer (:class:`qsilicon.hw.blocks.buffer.Buffer`)
    maps on Zynq UltraScale+: the cheapest of BRAM36s, BRAM18s and LUTRAM in Yosys's weighting."""
    if width < 1 or depth < 2:
        raise ValueError(f"A buffer needs width >= 1 and depth >= 2, not {width} x {depth}")
    n18 = _blocks(width, depth, _BRAM18_ASPECTS)
    n36 = _blocks(width, depth, _BRAM36_ASPECTS)
    bram = BufferEstimate(n36, 0, 0) if _BRAM36_COST * n36 <= n18 else BufferEstimate(0, n18, 0)
    bram_cost = n18 if bram.bram18 else _BRAM36_COST * n36
    # RAM32M16 holds 32 words x 14 bits, RAM64M8 64 words x 7 bits: the fewer primitives.
    lutram = min(math.ceil(depth / 32) * math.ceil(width / 14), math.ceil(depth / 64) * math.ceil(width / 7))
    if lutram * _LUTRAM_COST < bram_cost:
        return BufferEstimate(0, 0, lutram)
    return bram


def _load_model() -> dict:
    return json.loads(MODEL.read_text())


_COEFFS: dict | None = None


def estimate(cfg: GemmConfig, model: dict | None = None) -> ResourceEstimate:
    """LUT, FF (fitted) and DSP (exact) of the engine for ``cfg``; fitted on 3-stage requantizers
    only (``ValueError`` for deeper ones)."""
    global _COEFFS
    if cfg.requant_stages != 3:
        raise ValueError(f"the resource model is fitted on 3-stage requantizers, not {cfg.requant_stages} "
                         f"({cfg.tag}): synthesize it (qsilicon synth gemm --requant-stages {cfg.requant_stages})")
    if model is None:
        if _COEFFS is None:
            _COEFFS = _load_model()
        model = _COEFFS
    f = features(cfg)
    lut = sum(model["lut"].get(k, 0.0) * v for k, v in f.items())
    ff = sum(model["ff"].get(k, 0.0) * v for k, v in f.items())
    return ResourceEstimate(lut=max(lut, 0.0), ff=max(ff, 0.0), dsp=dsp_count(cfg))


def load_buffer_calibration(path: Path = CALIBRATION) -> list[tuple[str, int, int, BufferEstimate]]:
    """``(split, width, depth, synthesized primitives)`` for every calibrated buffer."""
    out = []
    for row in json.loads(Path(path).read_text()).get("buffers", []):
        cells = row["cells"]
        lutram = sum(v for k, v in cells.items() if k.startswith("RAM") and not k.startswith("RAMB"))
        out.append((row["split"], row["width"], row["depth"],
                    BufferEstimate(cells.get("RAMB36E2", 0), cells.get("RAMB18E2", 0), lutram)))
    return out


def load_calibration(path: Path = CALIBRATION) -> list[tuple[str, GemmConfig, dict]]:
    """``(split, config, counts)`` for every synthesized configuration."""
    doc = json.loads(Path(path).read_text())
    return [(row["split"], GemmConfig(**row["config"]), row["counts"]) for row in doc["configs"]]


def _lstsq(rows: list[list[float]], y: list[float], ridge: float = 1e-6) -> list[float]:
    """Least squares with a tiny ridge term (normal equations; the systems are small)."""
    import numpy as np

    a = np.asarray(rows, dtype=float)
    b = np.asarray(y, dtype=float)
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)
    an = a / scale
    coef = np.linalg.solve(an.T @ an + ridge * np.eye(an.shape[1]), an.T @ b)
    return list(coef / scale)


def fit(calibration: list[tuple[str, GemmConfig, dict]]) -> dict:
    """Fit LUT and FF coefficients on the training split; return the model document."""
    train = [(cfg, counts) for split, cfg, counts in calibration if split == "train"]
    names = list(features(train[0][0]))
    x = [[features(cfg)[k] for k in names] for cfg, _ in train]
    model = {"target": "xcup", "features": names}
    for res in ("lut", "ff"):
        keep = [i for i, k in enumerate(names) if res == "lut" or k not in LUT_ONLY]
        coef = _lstsq([[row[i] for i in keep] for row in x], [counts[res] for _, counts in train])
        model[res] = {names[i]: round(float(c), 6) for i, c in zip(keep, coef, strict=True)}
    return model


def errors(calibration, model: dict) -> dict[str, dict[str, float]]:
    """Mean absolute percentage error of LUT and FF per split, and the DSP mismatches."""
    out: dict[str, dict[str, float]] = {}
    for split in ("train", "held_out"):
        rows = [(cfg, c) for s, cfg, c in calibration if s == split]
        est = [(estimate(cfg, model), c) for cfg, c in rows]
        out[split] = {
            "lut_mape": 100 * sum(abs(e.lut - c["lut"]) / c["lut"] for e, c in est) / len(est),
            "ff_mape": 100 * sum(abs(e.ff - c["ff"]) / c["ff"] for e, c in est) / len(est),
            "dsp_mismatches": sum(e.dsp != c.get("dsp", 0) for e, c in est),
            "configs": len(est),
        }
    return out


def main() -> None:
    calibration = load_calibration()
    model = fit(calibration)
    MODEL.write_text(json.dumps(model, indent=1) + "\n")
    for split, e in errors(calibration, model).items():
        print(f"{split:<8} configs {e['configs']:>3}  LUT MAPE {e['lut_mape']:5.2f}%  FF MAPE {e['ff_mape']:5.2f}%  "
              f"DSP mismatches {e['dsp_mismatches']}")
    print(f"wrote {MODEL}")


if __name__ == "__main__":
    main()

"""``make demo`` at this stage: the GEMM engine for the ZCU102, verified on Verilator."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

from .cli import main as cli_main

__all__ = ["run"]

DEMO_PROBLEMS = [  # (component, extra engine args, M, K, N, seed, valid_p, ready_p)
    ("gemm", ["--wbits", "8"], 64, 64, 64, 1, 1.0, 1.0),   # 64 output tiles, no stalls: utilization
    ("gemm", ["--wbits", "8"], 50, 77, 29, 2, 0.7, 0.6),   # ragged shape, idle cycles, backpressure
    ("mpgemm", ["--ratio8", "0.5"], 64, 64, 64, 3, 1.0, 1.0),  # half int8, half int4 rows, dsp2 lanes
]
DEMO_ENGINE = ["--rows", "8", "--cols", "8", "--abits", "8"]


def _vit_layers_on_rtl() -> list[dict]:
    """Layers of the trained ViT, on real integer activations of two test images, on the RTL."""
    import torch

    from qsilicon.hw.config import GemmConfig
    from qsilicon.quant.datasets import fashion_mnist
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import load
    from qsilicon.sim.gemm import GemmMismatchError, rtl_gemm

    from .cli import DEFAULT_VIT

    x, _ = fashion_mnist("train")
    xt, _ = fashion_mnist("test")
    model, _ = load(DEFAULT_VIT)
    rows = []
    for precision, cfg, name in (("w8a8", GemmConfig(8, 8, 8, 8, packing="dsp2"), "b0.qkv"),
                                 ("mixed", GemmConfig(8, 8, 8, 8, packing="dsp2", mixed=True), "b1.fc1")):
        iv = IntViT(model, x[:1000], precision, 0.5)
        trace: dict = {}
        iv.logits(xt[:2], trace)
        case = iv.gemm_case(name, trace[f"{name}.in"])
        expect = trace[f"{name}.out"].reshape(case.shape[0], case.shape[2])
        try:
            res = rtl_gemm(case, cfg, sim="verilator")
            mismatches = int((res.out.to(torch.int64) != expect).sum())
        except GemmMismatchError as e:
            res, mismatches = e.result, e.result.mismatches
        m, k, n = case.shape
        rows.append({"component": "vit-layer", "layer": name, "precision": precision, "shape": f"{m}x{k}x{n}",
                     "pass": mismatches == 0, "mismatches": mismatches, "cycles": res.cycles})
    return rows


def run(output: str) -> int:
    out = Path(output)
    print("== 1/3 Verilog and the ZCU102 build plan")
    rc = cli_main(["verilog", "gemm", *DEMO_ENGINE, "--wbits", "8", "--board", "zcu102",
                   "-o", str(out / "gemm_zcu102")])
    if rc:
        return rc
    from qsilicon.boards import get_board
    from qsilicon.hw.config import GemmConfig
    from qsilicon.search.resources import estimate

    board = get_board("zcu102")
    print(f"\nresource model (Yosys-calibrated) for 8x8 engines on the {board.name} ({board.part}):")
    for label, cfg in (("W8A8, plain multipliers", GemmConfig(8, 8, 8, 8)),
                       ("W8A8, dsp2 packing", GemmConfig(8, 8, 8, 8, packing="dsp2")),
                       ("mixed int4/int8 rows, dsp2", GemmConfig(8, 8, 8, 8, packing="dsp2", mixed=True))):
        e = estimate(cfg)
        print(f"  {label:<28} LUT {e.lut:>7.0f} ({100 * e.lut / board.luts:4.1f}%)  FF {e.ff:>7.0f} "
              f"({100 * e.ff / board.ffs:4.1f}%)  DSP {e.dsp:>4} ({100 * e.dsp / board.dsps:4.1f}%)")
    print("\n== 2/3 cocotb on Verilator against the integer reference (random problems, trained ViT layers)")
    reports = []
    for comp, extra, m, k, n, seed, vp, rp in DEMO_PROBLEMS:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = cli_main(["verify", comp, *DEMO_ENGINE, *extra, "--m", str(m), "--k", str(k), "--n", str(n),
                           "--seed", str(seed), "--sim", "verilator", "--valid-p", str(vp),
                           "--ready-p", str(rp), "--json"])
        if rc == 2:
            return rc
        reports.append(json.loads(buf.getvalue()))
    vit = _vit_layers_on_rtl()
    print("\n== 3/3 report")
    print(f"{'engine':<22} {'M x K x N':<10} {'stalls':<21} {'result':<6} {'mismatch':>8} {'cycles':>7} {'ideal':>7} "
          f"{'util':>7}")
    for r in reports:
        stalls = "none" if r["valid_p"] == 1 and r["ready_p"] == 1 else f"valid {r['valid_p']}, ready {r['ready_p']}"
        engine = (f"mpgemm ({r['int8_rows']}/{r['n']} int8)" if r["component"] == "mpgemm"
                  else f"gemm w{r['config']['wbits']}a{r['config']['abits']}")
        shape = f"{r['m']}x{r['k']}x{r['n']}"
        print(f"{engine:<22} {shape:<10} {stalls:<21} {'PASS' if r['pass'] else 'FAIL':<6} "
              f"{r['mismatches']:>8} {r['cycles']:>7} {r['ideal_cycles']:>7} {100 * r['utilization']:>6.1f}%")
    for row in vit:
        print(f"{'vit ' + row['layer'] + ' (' + row['precision'] + ')':<22} {row['shape']:<10} {'none':<21} "
              f"{'PASS' if row['pass'] else 'FAIL':<6} {row['mismatches']:>8} {row['cycles']:>7}")
    reports += vit
    (out / "report.json").write_text(json.dumps(reports, indent=2) + "\n")
    print(f"\nreport: {out / 'report.json'}; Verilog and build plan: {out / 'gemm_zcu102'}")
    ok = all(r["pass"] for r in reports)
    print("demo: PASS" if ok else "demo: FAIL", file=sys.stderr if not ok else sys.stdout)
    return 0 if ok else 1

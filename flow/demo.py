"""``make demo`` at this stage: the GEMM engine for the ZCU102, verified on Verilator."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .cli import main as cli_main

__all__ = ["run"]

DEMO_ENGINE = ["--rows", "8", "--cols", "8", "--wbits", "8", "--abits", "8"]
DEMO_PROBLEMS = [  # (M, K, N, seed, valid_p, ready_p)
    (64, 64, 64, 1, 1.0, 1.0),   # 64 output tiles, streams never stall: utilization
    (50, 77, 29, 2, 0.7, 0.6),   # ragged shape with random idle cycles and backpressure
]


def run(output: str) -> int:
    out = Path(output)
    print("== 1/3 Verilog and the ZCU102 build plan")
    rc = cli_main(["verilog", "gemm", *DEMO_ENGINE, "--board", "zcu102", "-o", str(out / "gemm_zcu102")])
    if rc:
        return rc
    print("\n== 2/3 cocotb on Verilator against the integer reference")
    reports = []
    for m, k, n, seed, vp, rp in DEMO_PROBLEMS:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = cli_main(["verify", "gemm", *DEMO_ENGINE, "--m", str(m), "--k", str(k), "--n", str(n),
                           "--seed", str(seed), "--sim", "verilator", "--valid-p", str(vp),
                           "--ready-p", str(rp), "--json"])
        if rc == 2:
            return rc
        reports.append(json.loads(buf.getvalue()))
    print("\n== 3/3 report")
    print(f"{'M x K x N':<14} {'stalls':<22} {'result':<6} {'mismatch':>8} {'cycles':>7} {'ideal':>7} {'util':>7}")
    for r in reports:
        stalls = "none" if r["valid_p"] == 1 and r["ready_p"] == 1 else f"valid {r['valid_p']}, ready {r['ready_p']}"
        print(f"{r['m']}x{r['k']}x{r['n']:<8} {stalls:<22} {'PASS' if r['pass'] else 'FAIL':<6} "
              f"{r['mismatches']:>8} {r['cycles']:>7} {r['ideal_cycles']:>7} {100 * r['utilization']:>6.1f}%")
    (out / "report.json").write_text(json.dumps(reports, indent=2) + "\n")
    print(f"\nreport: {out / 'report.json'}; Verilog and build plan: {out / 'gemm_zcu102'}")
    ok = all(r["pass"] for r in reports)
    print("demo: PASS" if ok else "demo: FAIL", file=sys.stderr if not ok else sys.stdout)
    return 0 if ok else 1

"""``make demo`` at this stage: the GEMM engine for the ZCU102, verified on Verilator, and an
encoder block of the trained ViT on the block accelerator (``--full``: every block, a few test
images, the predicted classes next to the integer model's)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
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


def _vit_full_on_rtl(images: int = 4) -> list[dict]:
    """Every encoder block of the W8A8 ViT on the accelerator's RTL for the first ``images`` test
    images; embedding and classifier on the host (integer model)."""
    import torch

    from qsilicon.hw.vit.program import build_block_program
    from qsilicon.quant.datasets import fashion_mnist
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import load
    from qsilicon.sim.vit import rtl_vit_block

    from .cli import DEFAULT_VIT

    x, _ = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    model, _ = load(DEFAULT_VIT)
    iv = IntViT(model, x[:1000], "w8a8")
    rows = []
    log = Path(tempfile.mkdtemp(prefix="qs-demo-")) / "sim.log"
    for n in range(images):
        t = iv.embed_tokens(xt[n : n + 1])
        ref = t
        cycles, exact = 0, True
        for i in range(len(iv.blocks)):
            res = rtl_vit_block(build_block_program(iv, i, t[0]), log_file=log)
            exact &= res.ok
            cycles += res.cycles
            t = res.got["out"][None]
            ref = iv._block(i, ref)
        exact &= bool(torch.equal(t, ref))
        rtl_class, ref_class = int(iv.classify(t).argmax()), int(iv.classify(ref).argmax())
        rows.append({"image": n, "label": int(yt[n]), "rtl_class": rtl_class, "reference_class": ref_class,
                     "blocks_bit_exact": exact, "cycles": cycles, "pass": exact and rtl_class == ref_class})
        print(f"  test image {n}: label {int(yt[n])}, RTL predicts {rtl_class}, integer model {ref_class}, "
              f"{'bit-exact' if exact else 'MISMATCH'} through {len(iv.blocks)} blocks, {cycles} cycles")
    return rows


def _vit_block_on_rtl() -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main(["verify", "vit-block", "--block", "0", "--image", "0", "--json"])
    if rc == 2:
        raise SystemExit(2)
    return json.loads(buf.getvalue())


def run(output: str, full: bool = False) -> int:
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
    block = _vit_block_on_rtl()
    full_rows = []
    if full:
        print("\n== every encoder block of the W8A8 ViT on the accelerator's RTL (Verilator)")
        full_rows = _vit_full_on_rtl()
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
    print(f"\nViT encoder block 0 (W8A8, test image 0) on the block accelerator (AXI4 memory model, Verilator): "
          f"{'PASS' if block['pass'] else 'FAIL'}, {len(block['mismatches'])} intermediates, "
          f"{sum(block['mismatches'].values())} mismatches, {block['cycles']} cycles")
    for o in block["ops"]:
        if o["op"] in ("ln1", "q", "qk0", "softmax0", "av0", "fc1", "gelu", "add2"):
            util = f", MAC utilization {100 * o['mac_utilization']:.1f}%" if o["mac_utilization"] is not None else ""
            print(f"  {o['op']:<9} {o['kind']:<10} {o['cycles']:>6} cycles{util}")
    reports.append({"component": "vit-block", **block})
    reports += [{"component": "vit-full", **r} for r in full_rows]
    (out / "report.json").write_text(json.dumps(reports, indent=2) + "\n")
    print(f"\nreport: {out / 'report.json'}; Verilog and build plan: {out / 'gemm_zcu102'}")
    ok = all(r["pass"] for r in reports)
    print("demo: PASS" if ok else "demo: FAIL", file=sys.stderr if not ok else sys.stdout)
    return 0 if ok else 1

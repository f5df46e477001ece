"""Kernel fusion on the QuartDepth engine, measured: external-memory traffic and cycles of the whole
64x64 depth network with fusion on and off.

* fused: concatenation, nearest 2x upsampling and the polished decode happen in the compute unit's
  operand fetch; bias, requantization, ReLU and the polished encode in its post-op pipeline.
* unfused upsampling (run): every upsampled tensor is first materialised by the engine (an identity
  1x1 convolution that writes the 2x tensor), then read by the decoder layer.
* unfused post-ops (computed, not run): what it would cost to write int32 accumulators and read
  them back for a separate requantize/encode pass (8 bytes per output element, plus the codes).

Traffic comes from the instruction-set simulator (exact byte counts, the same as the RTL's
RD_WORDS/WR_WORDS registers); cycles from the RTL on Verilator (``--no-rtl`` skips it).  Both
programs' outputs are checked equal to the integer graph.

    python bench/fusion.py [--calib 32] [--no-rtl]    -> bench/results/fusion.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from qsilicon.hw.depth.compiler import compile_graph
from qsilicon.hw.depth.isa import EngineConfig
from qsilicon.hw.depth.iss import run_program
from qsilicon.quant.depth_data import depth_split
from qsilicon.quant.models.depthnet import load_depth
from qsilicon.quant.ptq import fold_depthnet, method_config, quantize_graph
from qsilicon.quant.ptq.export import export_graph

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--no-rtl", action="store_true")
    ap.add_argument("-o", "--output", default=str(ROOT / "bench" / "results" / "fusion.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, _ = load_depth(ROOT / "checkpoints" / "depth_synth.pt")
    xc, dc = depth_split("calib", args.calib)
    ig = export_graph(quantize_graph(fold_depthnet(model), xc, dc, method_config("quartdepth", 4, 4)))
    xt, _ = depth_split("test", 1)
    img = xt[:1]
    cfg = EngineConfig()
    ref = ig.forward(img)
    rows = {}
    for name, fuse in (("fused", True), ("unfused_upsample", False)):
        prog = compile_graph(ig, cfg, fuse=fuse)
        mem = prog.with_input(ig.image_codes(img)[0])
        iss = bytearray(mem)
        st = run_program(iss, prog.prog_addr, cfg)
        assert torch.equal(prog.read(iss), ref), name
        row = {"instructions": len(prog.insns), "dram_read_bytes": st.dram_read, "dram_written_bytes": st.dram_written,
               "mac_beats": sum(st.beats.values())}
        if not args.no_rtl:
            from qsilicon.sim.depth import rtl_run

            t0 = time.perf_counter()
            rtl = rtl_run(cfg, mem, prog.prog_addr)
            assert torch.equal(prog.read(rtl.memory), ref), f"{name}: RTL differs from the integer graph"
            assert rtl.regs["RD_WORDS"] * 8 == st.dram_read and rtl.regs["WR_WORDS"] * 8 == st.dram_written
            row.update(cycles=rtl.cycles, compute_busy=rtl.regs["CP_BUSY"], load_busy=rtl.regs["LD_BUSY"],
                       store_busy=rtl.regs["ST_BUSY"], sim_seconds=round(time.perf_counter() - t0, 1))
        rows[name] = row
        print(name, row, flush=True)
    # computed: unfused post-ops write int32 accumulators and read them back
    fused_prog = compile_graph(ig, cfg)
    outs = sum(t.channels * t.height * t.width for n, t in fused_prog.tensors.items() if n != "img")
    f = rows["fused"]
    rows["unfused_postops_computed"] = {"dram_read_bytes": f["dram_read_bytes"] + 4 * outs,
                                       "dram_written_bytes": f["dram_written_bytes"] + 4 * outs,
                                       "note": "computed, not run: int32 accumulators written and read back once"}
    total = {k: v["dram_read_bytes"] + v["dram_written_bytes"] for k, v in rows.items()}
    result = {"network": "DepthNet widths 16/32/64/96, 64x64, W4A4 quartdepth (first/last W8A8)",
              "engine": cfg.to_dict(), "rows": rows,
              "traffic_ratio_unfused_upsample": round(total["unfused_upsample"] / total["fused"], 3),
              "traffic_ratio_unfused_postops": round(total["unfused_postops_computed"] / total["fused"], 3)}
    if "cycles" in rows["fused"]:
        result["cycle_ratio_unfused_upsample"] = round(rows["unfused_upsample"]["cycles"] / rows["fused"]["cycles"], 3)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()

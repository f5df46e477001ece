"""Per-layer RTL cycle counts of compiled depth networks on the QuartDepth engine (Verilator).

Writes ``search/data/depth_layer_cycles.json``: for each (network, input size, engine
configuration) the per-layer spans measured by the testbench (:meth:`RtlRun.layer_cycles`) and the
program's instructions as the latency model reads them (:func:`qsilicon.search.depth_latency.program_ops`).  The whole
64x64 network needs ``checkpoints/depth_synth.pt`` exported by ``qsilicon quantize depth``
(``--whole DIR``); without it only the reduced networks run.

    python bench/depth_layer_cycles.py [--whole out/qd]
"""

from __future__ import annotations

import argparse
import json
import time

from qsilicon.hw.depth.compiler import compile_graph
from qsilicon.hw.depth.isa import EngineConfig
from qsilicon.quant.ptq.toy import reduced_depth_graph
from qsilicon.search.depth_latency import CYCLES, program_ops
from qsilicon.sim.depth import rtl_run

SMALL = EngineConfig(co=8, px=4, max_width=16, act_depth=128, out_depth=32, wgt_depth=512, par_depth=16,
                     tab_depth=64)
MID = EngineConfig(co=8, px=8, max_width=32, act_depth=512, par_depth=16)
RUNS = [  # (label, widths, size, config)
    ("reduced-8-16", (8, 16), 16, EngineConfig()),
    ("reduced-8-16", (8, 16), 32, EngineConfig()),
    ("reduced-8-16", (8, 16), 48, EngineConfig()),
    ("reduced-16-32", (16, 32), 32, EngineConfig()),
    ("reduced-8-16", (8, 16), 16, SMALL),
    ("reduced-8-16", (8, 16), 16, MID),
    ("reduced-8-16", (8, 16), 32, MID),
]


def measure(label, ig, size, cfg) -> list[dict]:
    """One run: the program's schedule features and the measured span of every layer."""
    prog = compile_graph(ig, cfg, height=size, width=size)
    t = time.time()
    run = rtl_run(cfg, prog.memory, prog.prog_addr)
    spans = run.layer_cycles()
    row = {"network": label, "size": size, "config": cfg.tag, "ops": program_ops(prog),
           "names": {str(info.tag): info.name for info in prog.layers},
           "measured": {str(info.tag): spans[info.tag] for info in prog.layers}, "end_cycle": run.end_cycle,
           "cycles_register": run.cycles}
    total = sum(spans.values())
    print(f"{label} {size}x{size} {cfg.tag}: {total} cycles (CYCLES register {run.cycles}), "
          f"{time.time() - t:.0f} s", flush=True)
    return [row]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--whole", help="exported whole network (int_graph.pt or its directory)")
    args = ap.parse_args()
    rows = []
    for label, widths, size, cfg in RUNS:
        ig, _ = reduced_depth_graph(seed=0, widths=widths)
        rows += measure(label, ig, size, cfg)
    if args.whole:
        from qsilicon.flow.commands.depth_model import load_int_depth

        rows += measure("whole", load_int_depth(args.whole).ig, 64, EngineConfig())
    CYCLES.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {CYCLES} ({len(rows)} runs)")


if __name__ == "__main__":
    main()

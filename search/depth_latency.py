"""Latency model of the QuartDepth engine, per layer, from a compiled program (pure Python).

The compiler fixes every instruction, so the model needs no data: it replays the program's
schedule.  Each instruction gets a duration from its own fields:

* LOAD: ``a_l`` per 64-bit word plus ``b_l`` per address run (a burst) plus ``c_l``;
* COMPUTE: one cycle per MAC-array beat (``out_h * ceil(out_w / px) * cin * k * k``, ``cin``
  counting channel pairs in a W4A4 ``pair`` COMPUTE; two cycles per beat of any other COMPUTE
  on an engine with ``nibble`` packing) plus
  ``r_c`` per output row it writes (``n_co * out_h``) plus ``c_c``;
* STORE: ``a_s`` per word plus ``b_s`` per run plus ``c_s``;

and the engine's rules decide when it starts: the dispatcher fetches instructions in order
(``f`` cycles each) into 4-deep per-unit queues and holds a ``barrier`` instruction until every
unit is idle; a unit runs its queue in order, and an instruction waits for the dependency tokens
it pops (load -> compute -> store and back, FIFO counters), pushing its own when it ends.  The
per-layer span is measured as on the RTL: from the first cycle the compute unit works on the layer
(``d_c`` after its first COMPUTE starts) to the next layer's (:meth:`qsilicon.sim.depth.RtlRun.layer_cycles`).

The ten coefficients are fitted (Nelder-Mead, mean relative error of layer spans and totals) to
spans measured on the RTL (``data/depth_layer_cycles.json``, ``bench/depth_layer_cycles.py``);
``python -m qsilicon.search.depth_latency`` refits on the training runs, rewrites
``data/depth_latency_model.json`` and prints every layer's and run's error, held-out runs
included.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from qsilicon.hw.depth.isa import OP_COMPUTE, OP_LOAD, OP_STORE

__all__ = ["PARAMS", "DepthPrediction", "fit", "load_model", "predict_program", "program_ops", "schedule"]

DATA = Path(__file__).resolve().parent / "data"
CYCLES = DATA / "depth_layer_cycles.json"
MODEL = DATA / "depth_latency_model.json"
PARAMS = ("f", "a_l", "b_l", "c_l", "r_c", "c_c", "d_c", "a_s", "b_s", "c_s")
#: Runs held out of the fit: (network label, input size, engine tag).
HELD_OUT = (("whole", 64, "depth_c16p8w64"), ("reduced-16-32", 32, "depth_c16p8w64"),
            ("reduced-8-16", 32, "depth_c8p8w32"))
QUEUE = 4
UNIT = {OP_LOAD: 0, OP_COMPUTE: 1, OP_STORE: 2}


def program_ops(prog) -> list[list[int]]:
    """``[op, tag, barrier, pop_prev, pop_next, push_prev, push_next, words, runs, beats, rows]``
    for every LOAD, COMPUTE and STORE of a compiled :class:`DepthProgram`."""
    px, out, tag = prog.cfg.px, [], 0
    for i in prog.insns:
        if i["op"] not in UNIT:
            continue
        tag = i.get("tag", tag)
        words = runs = beats = rows = 0
        if i["op"] == OP_COMPUTE:
            cin = i["seg0"]["ch"] + i["seg1"]["ch"]
            beats = i["out_h"] * -(-i["out_w"] // px) * cin * i["k"] * i["k"]
            if prog.cfg.packing == "nibble" and not i.get("pair"):
                beats *= 2  # an int8 beat takes two cycles on the nibble multipliers
            rows = i["n_co"] * i["out_h"]
        else:
            d = i["dram"]
            runs, words = d["n0"] * d["n1"], d["n0"] * d["n1"] * d["run"]
        out.append([i["op"], tag, int(i.get("barrier", 0)), int(i.get("pop_prev", 0)), int(i.get("pop_next", 0)),
                    int(i.get("push_prev", 0)), int(i.get("push_next", 0)), words, runs, beats, rows])
    return out


def schedule(ops: list[list[int]], p: dict) -> tuple[dict[int, float], float]:
    """``(first compute beat per tag, end)`` of the program under coefficients ``p``."""
    n = len(ops)
    dur = []
    for op, _, _, _, _, _, _, words, runs, beats, rows in ops:
        if op == OP_LOAD:
            dur.append(p["a_l"] * words + p["b_l"] * runs + p["c_l"])
        elif op == OP_COMPUTE:
            dur.append(beats + p["r_c"] * rows + p["c_c"])
        else:
            dur.append(p["a_s"] * words + p["b_s"] * runs + p["c_s"])
    # token channels: (producer unit, consumer unit) -> push times in order; pops in order
    pushes: dict[tuple, list] = defaultdict(list)
    popped: dict[tuple, int] = defaultdict(int)
    start = [None] * n
    end = [None] * n
    dispatch = [None] * n
    per_unit: list[list[int]] = [[], [], []]
    for k, o in enumerate(ops):
        per_unit[UNIT[o[0]]].append(k)
    pos = [0, 0, 0]  # next instruction of each unit (index into per_unit)
    unit_free = [0.0, 0.0, 0.0]
    d_next, d_time = 0, 0.0
    last_end = 0.0
    progress = True
    while progress:
        progress = False
        # dispatcher: in order, a queue slot and (for a barrier) idle units needed
        while d_next < n:
            o = ops[d_next]
            u = UNIT[o[0]]
            t = d_time + p["f"]
            # queue slot: the instruction QUEUE places earlier in this unit must have started
            mine = _rank(per_unit[u], d_next)
            if mine >= QUEUE:
                s = start[per_unit[u][mine - QUEUE]]
                if s is None:
                    break
                t = max(t, s)
            if o[2]:  # barrier: everything dispatched before must have finished
                if any(end[j] is None for j in range(d_next)):
                    break
                t = max(t, max((end[j] for j in range(d_next)), default=0.0))
            dispatch[d_next] = t
            d_time = t
            d_next += 1
            progress = True
        # units: in order, waiting for dispatch and tokens
        for u in range(3):
            while pos[u] < len(per_unit[u]):
                k = per_unit[u][pos[u]]
                if dispatch[k] is None:
                    break
                o = ops[k]
                need = []
                if o[3]:  # pop_prev: from the unit before
                    need.append((u - 1, u))
                if o[4]:  # pop_next: from the unit after
                    need.append((u + 1, u))
                ready = True
                t = max(unit_free[u], dispatch[k])
                for ch in need:
                    if popped[ch] >= len(pushes[ch]):
                        ready = False
                        break
                    t = max(t, pushes[ch][popped[ch]])
                if not ready:
                    break
                for ch in need:
                    popped[ch] += 1
                start[k], end[k] = t, t + dur[k]
                unit_free[u] = end[k]
                last_end = max(last_end, end[k])
                if o[5]:
                    pushes[(u, u - 1)].append(end[k])
                if o[6]:
                    pushes[(u, u + 1)].append(end[k])
                pos[u] += 1
                progress = True
    if d_next < n or any(pos[u] < len(per_unit[u]) for u in range(3)):
        raise ValueError("the program's tokens deadlock: an instruction pops a token nobody pushes")
    first: dict[int, float] = {}
    for k, o in enumerate(ops):
        if o[0] == OP_COMPUTE and o[1] not in first:
            first[o[1]] = start[k] + p["d_c"]
    return first, last_end


def _rank(lst: list[int], k: int) -> int:
    # per-unit lists are increasing: binary search
    lo, hi = 0, len(lst)
    while lo < hi:
        mid = (lo + hi) // 2
        if lst[mid] < k:
            lo = mid + 1
        else:
            hi = mid
    return lo


def spans(ops: list[list[int]], p: dict) -> dict[int, int]:
    """Per-tag spans (first compute beat to the next tag's), adding up to the run's end."""
    first, end = schedule(ops, p)
    tags = sorted(first, key=first.get)
    bounds = [0.0, *(first[t] for t in tags[1:]), end]
    return {t: round(bounds[i + 1] - bounds[i]) for i, t in enumerate(tags)}


def load_model(path: Path = MODEL) -> dict:
    return json.loads(path.read_text())


@dataclass(frozen=True)
class DepthPrediction:
    cycles: int
    per_layer: tuple  # (layer name, cycles)


def predict_program(prog, model: dict | None = None) -> DepthPrediction:
    """Predicted cycles of every layer of ``prog`` and their sum."""
    model = model or load_model()
    sp = spans(program_ops(prog), model["params"])
    per = tuple((info.name, sp.get(info.tag, 0)) for info in prog.layers)
    return DepthPrediction(sum(c for _, c in per), per)


def _key(run: dict) -> tuple:
    return (run["network"], run["size"], run["config"])


def split(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    return [r for r in runs if _key(r) not in HELD_OUT], [r for r in runs if _key(r) in HELD_OUT]


def errors(runs: list[dict], params: dict) -> tuple[list[dict], list[dict]]:
    """Per-layer and per-run errors of the model against the measured spans."""
    layers, totals = [], []
    for r in runs:
        sp = spans(r["ops"], params)
        for tag, name in r["names"].items():
            m, pr = r["measured"][tag], sp[int(tag)]
            layers.append({"network": r["network"], "size": r["size"], "config": r["config"], "layer": name,
                           "measured": m, "predicted": pr, "error": abs(pr - m) / m})
        m, pr = sum(r["measured"].values()), sum(sp.values())
        totals.append({"network": r["network"], "size": r["size"], "config": r["config"], "measured": m,
                       "predicted": pr, "error": abs(pr - m) / m})
    return layers, totals


START = {"f": 6.0, "a_l": 1.0, "b_l": 2.0, "c_l": 10.0, "r_c": 0.5, "c_c": 10.0, "d_c": 5.0, "a_s": 1.0,
         "b_s": 2.0, "c_s": 10.0}


def fit(runs: list[dict]) -> dict:
    """Coefficients minimizing the mean relative error of the runs' layer spans and totals."""
    import numpy as np
    from scipy.optimize import minimize

    def loss(x):
        p = dict(zip(PARAMS, np.abs(x), strict=True))
        layers, totals = errors(runs, p)
        return float(np.mean([e["error"] for e in layers]) + np.mean([e["error"] for e in totals]))

    x0 = np.array([START[k] for k in PARAMS])
    res = minimize(loss, x0, method="Nelder-Mead", options={"maxiter": 3000, "xatol": 1e-3, "fatol": 1e-7})
    return {"params": {k: float(abs(v)) for k, v in zip(PARAMS, res.x, strict=True)}, "loss": float(res.fun)}


def main() -> None:
    runs = json.loads(CYCLES.read_text())
    train, held = split(runs)
    model = fit(train)
    MODEL.write_text(json.dumps(model, indent=1) + "\n")
    print("coefficients: " + ", ".join(f"{k} {v:.3f}" for k, v in model["params"].items()))
    for label, part in (("training", train), ("held-out", held)):
        layers, totals = errors(part, model["params"])
        print(f"{label}: {len(layers)} layers, max error {100 * max(e['error'] for e in layers):.2f}%, "
              f"mean {100 * sum(e['error'] for e in layers) / len(layers):.2f}%")
        for e in layers:
            print(f"  {e['network']:<14} {e['size']:>3} {e['config']:<16} {e['layer']:<6} {e['measured']:>9} "
                  f"{e['predicted']:>9} {100 * e['error']:6.2f}%")
        for t in totals:
            print(f"  total {t['network']:<14} {t['size']:>3} {t['config']:<16} {t['measured']:>9} "
                  f"{t['predicted']:>9} {100 * t['error']:6.2f}%")


if __name__ == "__main__":
    main()

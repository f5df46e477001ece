"""Design-space search of the QuartDepth engine for one integer depth network on an ASIC (NSGA-II
on Optuna, three objectives: latency, area, energy per inference).

A point is an engine configuration (:data:`SPACE`: array rows ``co``, columns ``px``, multiplier
packing, the activation, weight and output buffers' words); the network is compiled for it (a
configuration whose buffers cannot hold a layer's band is infeasible, with the compiler's reason)
and costed by :func:`qsilicon.search.depth_asic.engine_cost`: cycles by the latency model, area and
energy by the ASIC cost model calibrated on the flow.  Optional budgets (``max_area_mm2``,
``max_latency_ms``, ``max_energy_uj``) are constraints: Optuna's NSGA-II ranks a point over
budget behind every point within it.  All figures are predictions.
"""

from __future__ import annotations

import hashlib
import itertools
import warnings
from dataclasses import dataclass

from qsilicon.hw.depth.isa import EngineConfig

__all__ = ["OBJECTIVES", "SPACE", "Budgets", "DepthSearchError", "check_inputs", "evaluate", "pareto_front",
           "run_depth_search"]

#: The search dimensions and their choices (par_depth and tab_depth stay at their defaults: 64 and
#: 256 words hold every layer of the networks here).
SPACE = {"co": (4, 8, 16), "px": (4, 8), "packing": ("none", "nibble"), "act_depth": (256, 512, 1024, 2048),
         "wgt_depth": (1024, 2048, 4096, 8192), "out_depth": (64, 128, 256, 512)}
#: Minimised, in this order in Optuna's values.
OBJECTIVES = ("latency_ms", "area_mm2", "energy_uj")
#: Objectives a budget may bound (Optuna constraints, with "compiles").
BUDGETS = ("area_mm2", "latency_ms", "energy_uj")


class DepthSearchError(ValueError):
    """A search that cannot run (bad budget, no calibrated library, an image wider than the engines)."""


@dataclass(frozen=True)
class Budgets:
    max_area_mm2: float | None = None
    max_latency_ms: float | None = None
    max_energy_uj: float | None = None

    def violations(self, r: dict) -> list[float]:
        """Amount over each budget of :data:`BUDGETS` relative to it (<= 0 within it; -1 without one)."""
        limits = (self.max_area_mm2, self.max_latency_ms, self.max_energy_uj)
        return [-1.0 if limit is None else r[key] / limit - 1.0 for key, limit in zip(BUDGETS, limits, strict=True)]


def space_size() -> int:
    return len(list(itertools.product(*SPACE.values())))


def evaluate(ig, size: int, point: dict, model: dict, clock_mhz: float | None = None) -> dict:
    """Compile ``ig`` (a ``size`` x ``size`` input) for the engine ``point`` and cost it: a record
    with the objectives, the engine and its predicted ASIC figures, or ``feasible`` False and the
    compiler's reason."""
    from qsilicon.hw.depth.compiler import CompileError, compile_graph
    from qsilicon.search.depth_asic import engine_cost

    cfg = EngineConfig(max_width=64, **point)
    rec = {"engine": cfg.to_dict(), "tag": cfg.tag}
    try:
        prog = compile_graph(ig, cfg, height=size, width=size)
    except CompileError as e:
        return {**rec, "compiles": False, "reason": str(e)}
    cost = engine_cost(prog, model, clock_mhz)
    d = cost.to_dict()
    return {**rec, "compiles": True, "latency_ms": d["latency_ms"], "area_mm2": d["area_mm2"],
            "energy_uj": d["energy_per_inference_uj"], "asic": d,
            "pair_layers": [layer.name for layer in prog.layers if layer.pair]}


def dominates(a: dict, b: dict) -> bool:
    return all(a[k] <= b[k] for k in OBJECTIVES) and any(a[k] < b[k] for k in OBJECTIVES)


def pareto_front(records: list[dict]) -> list[dict]:
    """Feasible records that no other feasible record dominates on :data:`OBJECTIVES` (one per engine)."""
    feas = list({r["tag"] + str(sorted(r["engine"].items())): r for r in records if r.get("feasible")}.values())
    front = [r for r in feas if not any(dominates(o, r) for o in feas)]
    return sorted(front, key=lambda r: (r["area_mm2"], r["latency_ms"]))


def graph_digest(ig) -> str:
    """A short hash of the integer graph's nodes (names, wiring, integer parameters) and tensors."""
    h = hashlib.sha256()
    for n in ig.nodes:
        h.update(repr((n.name, n.inputs, n.output, n.w_bits, n.stride)).encode())
        for t in (n.w, n.bias, n.m0, n.shift):
            h.update(t.cpu().numpy().tobytes())
    for name, t in sorted(ig.tensors.items()):
        h.update(repr((name, t.kind, t.bits, t.scale)).encode())
    return h.hexdigest()[:12]


def check_inputs(size: int, trials: int, budgets: Budgets, clock_mhz: float | None = None,
                 model: dict | None = None) -> dict:
    """Raise :class:`DepthSearchError` for a search that cannot run; returns the cost model."""
    from qsilicon.search.depth_asic import load_model

    for name, v in vars(budgets).items():
        if v is not None and not v > 0:
            raise DepthSearchError(f"the {name.replace('_', ' ')} budget must be positive, not {v}")
    if size > 64:
        raise DepthSearchError(f"the engines hold rows of at most 64 pixels; the network's input is {size} wide")
    if trials < 1:
        raise DepthSearchError(f"--trials must be a positive integer, not {trials}")
    try:
        model = model or load_model()
    except FileNotFoundError as e:
        raise DepthSearchError(str(e)) from None
    if clock_mhz is not None and not 0 < clock_mhz <= model["fmax_mhz"]:
        raise DepthSearchError(f"--clock {clock_mhz}: the calibrated engines close timing up to {model['fmax_mhz']} "
                               f"MHz on {model['library']} (give a clock in (0, {model['fmax_mhz']}])")
    return model


def run_depth_search(ig, size: int, *, trials: int, seed: int = 0, storage: str | None = None,
                     budgets: Budgets | None = None, clock_mhz: float | None = None, model: dict | None = None,
                     progress=None) -> dict:
    """Run (or continue, with a persistent ``storage``) the NSGA-II search; returns ``{"study",
    "records", "front", "space_size"}``.  Each distinct engine is compiled and costed once."""
    import optuna
    from optuna.samplers import NSGAIISampler
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    budgets = budgets or Budgets()
    model = check_inputs(size, trials, budgets, clock_mhz, model)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    cache: dict[tuple, dict] = {}

    def cost(point: dict) -> dict:
        key = tuple(sorted(point.items()))
        if key not in cache:
            cache[key] = evaluate(ig, size, point, model, clock_mhz)
        return cache[key]

    def objective(trial):
        point = {k: trial.suggest_categorical(k, list(v)) for k, v in SPACE.items()}
        r = cost(point)
        # a configuration that does not compile ranks behind every one that does, however far over budget
        trial.set_constraint("compiles", -1.0 if r["compiles"] else 1e6)
        if not r["compiles"]:
            trial.set_user_attr("reason", r["reason"])
            for key in BUDGETS:
                trial.set_constraint(key, 0.0)
            return tuple(float("inf") for _ in OBJECTIVES)
        for key, v in zip(BUDGETS, budgets.violations(r), strict=True):
            trial.set_constraint(key, v)
        return tuple(r[k] for k in OBJECTIVES)

    # everything the stored objectives and constraints depend on: a resumed study must have been run with the same
    what = repr((sorted(SPACE.items()), model["coefficients"], model["fmax_mhz"], vars(budgets), clock_mhz))
    name = (f"depth-{graph_digest(ig)}-{size}-{model['library']}-{seed}-"
            f"{hashlib.sha256(what.encode()).hexdigest()[:10]}")
    sampler = NSGAIISampler(population_size=24, seed=seed)
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, load_if_exists=True,
                                    directions=["minimize"] * len(OBJECTIVES))
    except Exception as e:  # noqa: BLE001 - the storage backends raise their own (SQLAlchemy, OSError, ...)
        raise DepthSearchError(f"--storage {storage}: cannot open the study there ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:160]})") from None
    study.set_metric_names(list(OBJECTIVES))
    done = sum(1 for t in study.trials if t.state == TrialState.COMPLETE)

    def report(study, trial):
        if progress is not None:
            progress(sum(1 for t in study.trials if t.state == TrialState.COMPLETE), trials)

    if done < trials:
        study.optimize(objective, callbacks=[MaxTrialsCallback(trials, states=(TrialState.COMPLETE,)), report])
    records = []
    for t in study.trials:
        if t.state != TrialState.COMPLETE:
            continue
        r = dict(cost(dict(t.params)))
        r["number"] = t.number
        r["feasible"] = r["compiles"] and all(v <= 0 for v in budgets.violations(r))
        records.append(r)
    return {"study": name, "records": records, "front": pareto_front(records), "space_size": space_size(),
            "resumed_from": done}

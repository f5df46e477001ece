"""Joint search over supernet subnets x accelerator designs for one board (NSGA-II on Optuna).

A candidate is a subnet of the Quasar-ViT supernet (depth, dim, heads and MLP width per block,
int8 share of every linear layer) and an :class:`~qsilicon.search.accel.AccelConfig` (array rows
and columns, packing, lanes, buffers, clock).  Objectives: accuracy of the subnet with inherited
weights (maximize), frames per second of the design (maximize), the largest share of any board
resource the design takes (minimize).  Constraints: every resource <= ``util_cap`` of the board,
and optionally the latency <= ``latency_ms``; Optuna's NSGA-II ranks infeasible trials behind
feasible ones by their violation.

Storage is Optuna's RDB storage: a SQLite file by default, or any SQLAlchemy URL
(``postgresql://...``) that several processes and machines share.  Each finished trial is
committed as it ends; heartbeats mark the trial of a killed process failed after a grace period,
and it is enqueued again, so a run killed with SIGKILL loses no finished trial and a restart
continues until the study holds ``trials`` complete trials.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qsilicon.hw.config import ACCEL_PACKINGS
from qsilicon.quant.supernet import SearchSpace, Subnet

from . import accel
from .accel import AccelConfig, fits, predict, subnet_workload, utilization

__all__ = ["Candidate", "FixedModel", "HardwareSpace", "JointSpace", "SpaceError", "evaluate", "evaluate_ops",
           "knee_fps_util", "load_space", "pareto_front", "run_search"]

DEFAULT_SPACE = Path(__file__).resolve().parents[1] / "configs" / "search_space.yaml"
RESOURCES = ("lut", "ff", "dsp", "bram36")
#: Optuna constraint names (<= 0 is feasible): every resource over the cap, the latency over the target,
#: and whether the design can hold the model at all (a GEMM input larger than its activation buffer).
CONSTRAINTS = (*RESOURCES, "latency", "holds")


class SpaceError(ValueError):
    """A malformed search-space file or value; the message names the key and what is expected."""


def _choices(section: str, key: str, values, kind, lo, hi) -> tuple:
    if not isinstance(values, list) or not values:
        raise SpaceError(f"{section}.{key}: expected a non-empty list, not {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, kind) or not lo <= v <= hi:
            what = kind.__name__ if isinstance(kind, type) else "number"
            raise SpaceError(f"{section}.{key}: every value must be a {what} in [{lo}, {hi}], not {v!r}")
        out.append(v)
    if len(set(out)) != len(out):
        raise SpaceError(f"{section}.{key}: values must be distinct, not {values!r}")
    return tuple(out)


@dataclass(frozen=True)
class HardwareSpace:
    """Choices for every field of :class:`AccelConfig`."""

    rows: tuple = (8, 16, 32)
    cols: tuple = (8, 16, 32, 64)
    packing: tuple = ("none", "dsp2")
    lanes: tuple = (8, 16)
    wbuf_kib: tuple = (8, 16, 32, 64, 128)
    abuf_kib: tuple = (8, 16, 32, 64)
    clock_mhz: tuple = (100, 150, 200)
    rowbuf: tuple = (0,)

    def pick(self, key: str, choose):
        """One choice of field ``key``; a field with a single choice is not drawn (``choose`` is not
        called), so that spaces without it search exactly as before it existed."""
        values = getattr(self, key)
        return values[0] if len(values) == 1 else choose(key, list(values))

    @classmethod
    def from_dict(cls, d: dict) -> HardwareSpace:
        if not isinstance(d, dict):
            raise SpaceError(f"hardware: expected a mapping of field to list of choices, not {d!r}")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise SpaceError(f"hardware.{sorted(unknown)[0]}: unknown key (expected one of "
                             f"{', '.join(cls.__dataclass_fields__)})")
        kw = {}
        for key, val in d.items():
            if key in ("rows", "cols"):
                kw[key] = _choices("hardware", key, val, int, 8, 64)
                if any(v & (v - 1) for v in kw[key]):
                    raise SpaceError(f"hardware.{key}: every value must be a power of two from 8 to 64 (a memory word "
                                     f"holds 8 or 16 tokens), not {val!r}")
            elif key == "lanes":
                kw[key] = _choices("hardware", key, val, int, 8, 16)
                if any(v not in (8, 16) for v in kw[key]):
                    raise SpaceError(f"hardware.lanes: every value must be 8 or 16, not {val!r}")
            elif key in ("wbuf_kib", "abuf_kib"):
                kw[key] = _choices("hardware", key, val, int, 1, 65536)
                if any(v & (v - 1) for v in kw[key]):
                    raise SpaceError(f"hardware.{key}: every value must be a power of two, not {val!r}")
            elif key == "clock_mhz":
                kw[key] = _choices("hardware", key, val, (int, float), 1, 1000)
                bound = accel.clock_bound_mhz()
                if any(v > bound for v in kw[key]):
                    raise SpaceError(f"hardware.clock_mhz: {max(kw[key]):g} MHz is above the {bound:g} MHz the "
                                     "generated designs' logic depth defends on UltraScale+ -2 (qsilicon.hw.timing): "
                                     f"list clocks up to {bound:g}")
            elif key == "rowbuf":
                kw[key] = _choices("hardware", key, val, int, 0, 4096)
                if any(v and (v < 64 or v & (v - 1)) for v in kw[key]):
                    raise SpaceError(f"hardware.rowbuf: every value must be 0 (no row buffer) or a power of two from "
                                     f"64 to 4096, not {val!r}")
            else:  # packing
                if not isinstance(val, list) or not val or any(v not in ACCEL_PACKINGS for v in val):
                    raise SpaceError(f"hardware.packing: expected a list of {' / '.join(map(repr, ACCEL_PACKINGS))}, "
                                     f"not {val!r}")
                kw[key] = tuple(val)
        return cls(**kw)


@dataclass(frozen=True)
class JointSpace:
    model: SearchSpace = field(default_factory=SearchSpace)
    hardware: HardwareSpace = field(default_factory=HardwareSpace)
    util_cap: float = 0.8
    latency_ms: float | None = None

    def to_dict(self) -> dict:
        hw = {k: list(v) for k, v in asdict(self.hardware).items()}
        if hw["rowbuf"] == [0]:  # the default: spaces written before the field keep their digest
            del hw["rowbuf"]
        return {"model": self.model.to_dict(), "hardware": hw,
                "constraints": {"util_cap": self.util_cap, "latency_ms": self.latency_ms}}

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]

    @classmethod
    def from_dict(cls, d, base: Path | None = None) -> JointSpace:
        if not isinstance(d, dict):
            raise SpaceError("search space: expected a mapping with keys model, hardware, constraints")
        unknown = set(d) - {"model", "hardware", "constraints"}
        if unknown:
            raise SpaceError(f"{sorted(unknown)[0]}: unknown key (expected model, hardware, constraints)")
        model = d.get("model", {})
        if isinstance(model, str):  # a supernet space file, relative to this file
            path = (base or Path.cwd()) / model
            if not path.exists():
                raise SpaceError(f"model: supernet space file {path} not found")
            try:
                model = SearchSpace.from_yaml(path)
            except ValueError as e:
                raise SpaceError(f"model ({path}): {e}") from None
        elif isinstance(model, dict):
            try:
                model = SearchSpace.from_dict(model)
            except (ValueError, TypeError) as e:
                raise SpaceError(f"model: {e}") from None
        else:
            raise SpaceError(f"model: expected a mapping or a file name, not {model!r}")
        hw = HardwareSpace.from_dict(d.get("hardware", {}) or {})
        cons = d.get("constraints", {}) or {}
        if not isinstance(cons, dict):
            raise SpaceError(f"constraints: expected a mapping (util_cap, latency_ms), not {cons!r}")
        unknown = set(cons) - {"util_cap", "latency_ms"}
        if unknown:
            raise SpaceError(f"constraints.{sorted(unknown)[0]}: unknown key (expected util_cap, latency_ms)")
        cap = cons.get("util_cap", 0.8)
        if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 < cap <= 1:
            raise SpaceError(f"constraints.util_cap: expected a number in (0, 1], not {cap!r}")
        lat = cons.get("latency_ms")
        if lat is not None and (isinstance(lat, bool) or not isinstance(lat, (int, float)) or lat <= 0):
            raise SpaceError(f"constraints.latency_ms: expected a positive number of milliseconds or null, not {lat!r}")
        return cls(model, hw, float(cap), None if lat is None else float(lat))


def load_space(path=None) -> JointSpace:
    """The joint space of a YAML file (``None`` or ``default``: the embedded default)."""
    import yaml

    path = DEFAULT_SPACE if path in (None, "default") else Path(path)
    if not path.exists():
        raise SpaceError(f"search space file {path} not found (use 'default' or a YAML file)")
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if isinstance(d, dict) and "depths" in d and "model" not in d:
        d = {"model": d}  # a plain supernet space file
    return JointSpace.from_dict(d, base=path.parent)


# --------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidate:
    subnet: Subnet
    hw: AccelConfig


def sample_candidate(space: JointSpace, rng: random.Random) -> Candidate:
    h = space.hardware
    s = space.model.sample(rng)
    rows, cols = rng.choice(h.rows), rng.choice(h.cols)
    hw = AccelConfig(rows, cols, rng.choice(h.packing), min(rng.choice(h.lanes), rows, cols), rng.choice(h.wbuf_kib),
                     rng.choice(h.abuf_kib), float(rng.choice(h.clock_mhz)),
                     h.pick("rowbuf", lambda _, v: rng.choice(v)))
    return Candidate(s, hw)


@dataclass(frozen=True)
class FixedModel:
    """A model the search does not change (an imported model): its name, its workload on a
    design (``workload(hw) -> ops``) and its accuracy; only the hardware is searched."""

    name: str
    workload: object
    accuracy: float


def evaluate(c: Candidate, space: JointSpace, board) -> dict:
    """The analytic part of a candidate's evaluation: FPS, latency, utilization, violations."""
    return evaluate_ops(c.hw, subnet_workload(c.subnet, space.model, c.hw), space, board)


def evaluate_ops(hw: AccelConfig, ops, space: JointSpace, board) -> dict:
    """:func:`evaluate` of a design ``hw`` running the workload ``ops``."""
    p = predict(hw, ops, board.dram_gbps)
    util = utilization(hw, board)
    latency_ms = 1e3 / p.fps
    violations = [util[r] - space.util_cap for r in RESOURCES]
    violations.append(latency_ms - space.latency_ms if space.latency_ms else 0.0)
    why = fits(hw, ops)
    violations.append(1.0 if why else 0.0)
    return {"fps": p.fps, "cycles": p.cycles, "latency_ms": latency_ms, "util": util,
            "max_util": max(util.values()), "violations": violations,
            "feasible": all(v <= 0 for v in violations), "dram_bytes": p.dram_bytes, "unfit": why}


def check_board(board) -> None:
    if board.family != "xcup":
        raise SpaceError(f"board {board.name}: the search's resource model is calibrated for Zynq UltraScale+ "
                         f"(family xcup), not {board.family}; choose zcu102, zcu104, ultra96-v2 or kv260")


# --------------------------------------------------------------------------- Optuna


def _suggest(trial, space: JointSpace) -> Candidate:
    m, h = space.model, space.hardware
    depth = trial.suggest_categorical("depth", list(m.depths))
    dim = trial.suggest_categorical("dim", list(m.dims))
    # every block's choices are suggested (unused ones for shallower subnets): a fixed-size genome
    # keeps NSGA-II's crossover meaningful across depths
    heads = [trial.suggest_categorical(f"heads{i}", list(m.heads)) for i in range(max(m.depths))]
    ratios = [trial.suggest_categorical(f"mlp{i}", list(m.mlp_ratios)) for i in range(max(m.depths))]
    r8 = [trial.suggest_categorical(f"r8_{i}", list(m.ratios8)) for i in range(4 * max(m.depths))]
    s = Subnet(depth, dim, tuple(heads[:depth]), tuple(round(dim * r) for r in ratios[:depth]), tuple(r8[:4 * depth]))
    return Candidate(s, _suggest_hw(trial, h))


def _suggest_hw(trial, h: HardwareSpace) -> AccelConfig:
    rows = trial.suggest_categorical("rows", list(h.rows))
    cols = trial.suggest_categorical("cols", list(h.cols))
    packing = trial.suggest_categorical("packing", list(h.packing))
    # lanes wider than the array cannot fill a memory word with its rows or columns: the design falls
    # back to the narrower vector units (rows and columns are multiples of 8)
    lanes = min(trial.suggest_categorical("lanes", list(h.lanes)), rows, cols)
    return AccelConfig(rows, cols, packing, lanes,
                       trial.suggest_categorical("wbuf_kib", list(h.wbuf_kib)),
                       trial.suggest_categorical("abuf_kib", list(h.abuf_kib)),
                       float(trial.suggest_categorical("clock_mhz", list(h.clock_mhz))),
                       h.pick("rowbuf", trial.suggest_categorical))


def open_storage(url: str, attempts: int = 5):
    """Optuna RDB storage with heartbeats (a killed worker's trial is failed after the grace period
    and retried); the first workers on a fresh database may race to create its tables, so opening
    is retried a few times."""
    import time

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats and metric names are marked experimental in Optuna; their warnings are noise here
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(attempts):
        try:
            st = RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=2, grace_period=8,
                            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
            if url.startswith("sqlite"):
                _sqlite_wal(st.engine)
            return st
        except Exception as e:  # sqlalchemy errors: connection refused, bad URL, missing driver, races
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if attempt + 1 < attempts and ("UniqueViolation" in msg or "already exists" in msg):
                time.sleep(0.3 + random.random())
                continue
            raise SpaceError(f"storage {url.split('@')[-1]}: cannot open ({msg}); check the URL and that the "
                             "server runs") from None


def _sqlite_wal(engine) -> None:
    """Write-ahead logging with ``synchronous=NORMAL``: a commit is durable once the process has
    written it (a SIGKILL loses nothing committed; only a power cut could drop the last ones), and
    a trial's ~40 small writes no longer wait for an fsync each."""
    import sqlalchemy

    @sqlalchemy.event.listens_for(engine, "connect")
    def _pragmas(conn, _record):
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    engine.dispose()  # connections opened before the listener reconnect with it


def study_name(board, space: JointSpace, source: str = "") -> str:
    """The study of a board, a joint space and an accuracy source (supernet checkpoint and scoring
    images): a different source is a different study, never a mix."""
    digest = hashlib.sha256(f"{space.digest}|{source}".encode()).hexdigest()[:10] if source else space.digest
    return f"qsilicon-{board.name}-{digest}"


def study_trials(storage, name: str) -> list:
    """Complete trials of the study ``name`` in ``storage`` (none if it does not exist yet)."""
    from optuna.trial import TrialState

    try:
        sid = storage.get_study_id_from_name(name)
    except KeyError:
        return []
    return storage.get_all_trials(sid, deepcopy=False, states=(TrialState.COMPLETE,))


def run_search(board, space: JointSpace, accuracy, *, trials: int, storage: str, source: str = "",
               seed: int = 0, population: int = 24, log=None, progress=None) -> dict:
    """Run (or continue) the study until it holds ``trials`` complete trials.

    ``accuracy`` is a callable scoring subnets, or a :class:`FixedModel` (then only the hardware
    section of the space is searched, for that model).

    ``accuracy(subnet) -> percent`` evaluates a subnet (cached by the caller) and ``source`` names
    what it scores with (it is part of the study name); the sampler seed mixes ``seed`` with the
    trials already done, so a restart does not replay the proposals it already evaluated;
    ``log(str)`` and ``progress(done, total)`` report.  Returns a summary with the study name and trial counts."""
    import optuna
    from optuna.samplers import NSGAIISampler
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    check_board(board)
    st = open_storage(storage)
    name = study_name(board, space, source)
    # one worker reproduces its run from its seed; workers sharing a study need different seeds, or
    # they propose the same candidates (each is still recorded as its own trial)
    done0 = len(study_trials(st, name))
    sampler = NSGAIISampler(population_size=population, seed=seed * 100_003 + done0)
    study = optuna.create_study(study_name=name, storage=st, sampler=sampler, load_if_exists=True,
                                directions=["maximize", "maximize", "minimize"])
    study.set_metric_names(["accuracy", "fps", "max_util"])
    study.set_user_attr("space", space.to_dict())
    study.set_user_attr("board", board.name)

    def objective(trial):
        if isinstance(accuracy, FixedModel):
            c = Candidate(None, _suggest_hw(trial, space.hardware))
            ev = evaluate_ops(c.hw, accuracy.workload(c.hw), space, board)
            acc, spec = accuracy.accuracy, accuracy.name
        else:
            c = _suggest(trial, space)
            ev = evaluate(c, space, board)
            acc, spec = accuracy(c.subnet), c.subnet.spec
        trial.set_user_attr("subnet", spec)
        trial.set_user_attr("hw", c.hw.to_dict())
        trial.set_user_attr("violations", ev["violations"])
        for key, v in zip(CONSTRAINTS, ev["violations"], strict=True):
            trial.set_constraint(key, v)
        trial.set_user_attr("feasible", ev["feasible"])
        trial.set_user_attr("util", ev["util"])
        trial.set_user_attr("cycles", ev["cycles"])
        trial.set_user_attr("worker", os.getpid())
        return acc, ev["fps"], ev["max_util"]

    done0 = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    study.set_user_attr("accuracy_source", source)
    if log:
        log(f"study {name} in {storage.split('@')[-1]}: {done0} complete trials, target {trials}")

    def report(study, trial):
        if progress:
            progress(len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))), trials)

    if done0 < trials:
        study.optimize(objective, n_trials=None, callbacks=[MaxTrialsCallback(trials), report],
                       gc_after_trial=False)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return {"study": name, "resumed_from": done0, "complete": done}


def trial_records(study) -> list[dict]:
    """Every complete trial as a plain record."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        acc, fps, mu = t.values
        out.append({"number": t.number, "subnet": t.user_attrs["subnet"], "hw": t.user_attrs["hw"],
                    "accuracy": acc, "fps": fps, "max_util": mu, "util": t.user_attrs["util"],
                    "cycles": t.user_attrs["cycles"], "feasible": t.user_attrs["feasible"],
                    "worker": t.user_attrs.get("worker")})
    return out


def pareto_front(records: list[dict]) -> list[dict]:
    """Feasible records not dominated in (accuracy up, FPS up, max utilization down), by FPS."""
    feas = [r for r in records if r["feasible"]]

    def dominates(a, b):
        ge = a["accuracy"] >= b["accuracy"] and a["fps"] >= b["fps"] and a["max_util"] <= b["max_util"]
        gt = a["accuracy"] > b["accuracy"] or a["fps"] > b["fps"] or a["max_util"] < b["max_util"]
        return ge and gt

    front = [r for r in feas if not any(dominates(o, r) for o in feas)]
    seen, out = set(), []
    for r in sorted(front, key=lambda r: (-r["fps"], -r["accuracy"])):
        key = (r["subnet"], json.dumps({"rowbuf": 0, **r["hw"]}, sort_keys=True))  # trials before rowbuf lack it
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def hypervolume_2d(records: list[dict], ref_acc: float, ref_fps: float = 0.0) -> float:
    """Area dominated by the feasible (accuracy, FPS) points above a reference point."""
    pts = sorted(((r["fps"], r["accuracy"]) for r in records if r["feasible"] and r["accuracy"] > ref_acc),
                 reverse=True)
    area, best_acc = 0.0, ref_acc
    for fps, acc in pts:
        if acc > best_acc:
            area += (fps - ref_fps) * (acc - best_acc)
            best_acc = acc
    return area


def convergence(records: list[dict], ref_acc: float, step: int = 25) -> list[tuple[int, float]]:
    """Hypervolume of the first n trials (by number) for n = step, 2 step, ..."""
    recs = sorted(records, key=lambda r: r["number"])
    out = [(n, hypervolume_2d(recs[:n], ref_acc)) for n in range(step, len(recs) + 1, step)]
    if recs and (not out or out[-1][0] != len(recs)):
        out.append((len(recs), hypervolume_2d(recs, ref_acc)))
    return out


def accuracy_fps_front(front: list[dict]) -> list[dict]:
    """The points of ``front`` that no other beats on both accuracy and FPS (the staircase the
    plot draws), by decreasing FPS."""
    out, best = [], -math.inf
    for r in sorted(front, key=lambda r: (-r["fps"], -r["accuracy"])):
        if r["accuracy"] > best:
            out.append(r)
            best = r["accuracy"]
    return out


def knee_fps_util(front: list[dict]) -> dict:
    """For a fixed model (only the hardware searched): the front design nearest the ideal corner
    (highest FPS, lowest largest resource share), each axis normalized (log FPS)."""
    if not front:
        raise ValueError("the Pareto front is empty: no feasible design (relax constraints or widen the space)")
    f = [math.log(r["fps"]) for r in front]
    u = [r["max_util"] for r in front]
    df, du = (max(f) - min(f)) or 1.0, (max(u) - min(u)) or 1.0
    return min(front, key=lambda r: ((max(f) - math.log(r["fps"])) / df) ** 2 + ((r["max_util"] - min(u)) / du) ** 2)


def knee(front: list[dict]) -> dict:
    """The front point nearest the ideal corner (best accuracy, best FPS), each axis normalized."""
    if not front:
        raise ValueError("the Pareto front is empty: no feasible design (relax constraints or widen the space)")
    a = [r["accuracy"] for r in front]
    f = [math.log(r["fps"]) for r in front]
    da, df = (max(a) - min(a)) or 1.0, (max(f) - min(f)) or 1.0
    return min(front, key=lambda r: ((max(a) - r["accuracy"]) / da) ** 2 + ((max(f) - math.log(r["fps"])) / df) ** 2)

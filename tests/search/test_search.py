"""The joint search: space files, the accelerator model, Optuna studies on SQLite (resumable after
SIGKILL) and on a real PostgreSQL server shared by two worker processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qsilicon.boards import get_board
from qsilicon.hw.config import GemmConfig
from qsilicon.search import accel, resources
from qsilicon.search.joint import (
    HardwareSpace,
    JointSpace,
    SpaceError,
    evaluate,
    load_space,
    pareto_front,
    sample_candidate,
    study_name,
)
from qsilicon.search.latency import gemm_cycles

ZCU = get_board("zcu102")
CLI = [sys.executable, "-m", "qsilicon.flow"]


def _write(tmp_path, text, name="space.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,msg", [
    ("hardware: {rows: [0, 8]}", r"hardware.rows: every value must be a int in \[8, 64\], not 0"),
    ("hardware: {cols: [8, 24]}", "hardware.cols: every value must be a power of two from 8 to 64"),
    ("hardware: {wbuf_kib: [12]}", "hardware.wbuf_kib: every value must be a power of two"),
    ("hardware: {packing: [dsp4]}", "hardware.packing: expected a list of 'none' / 'dsp2' / 'dot2'"),
    ("hardware: {lanes: [12]}", "hardware.lanes: every value must be 8 or 16"),
    ("hardware: {rowbuf: [0, 100]}", "hardware.rowbuf: every value must be 0 .no row buffer. or a power of two"),
    ("hardware: {rowbuf: [8192]}", r"hardware.rowbuf: every value must be a int in \[0, 4096\]"),
    ("hardware: {banks: [1]}", "hardware.banks: unknown key"),
    ("hardware: {clock_mhz: [200, 400]}", r"hardware.clock_mhz: 400 MHz is above the \d+(\.\d)? MHz the generated "
                                          "designs' logic depth defends"),
    ("constraints: {util_cap: 1.5}", r"constraints.util_cap: expected a number in \(0, 1\]"),
    ("constraints: {latency_ms: -1}", "constraints.latency_ms: expected a positive number"),
    ("model: {dims: [30]}", "model: search space: MLP width"),
    ("search: 1", "search: unknown key"),
    ("hardware: [1, 2", "not valid YAML"),
])
def test_malformed_space_files(tmp_path, text, msg):
    with pytest.raises(SpaceError, match=msg):
        load_space(_write(tmp_path, text))


def test_the_clock_bound_is_the_lowest_a_synthesized_design_defends():
    """Every whole top synthesized for the resource model carries its logic-depth bound; the search's
    bound is their lowest and is above the default space's clocks; the paper grid refuses a clock
    above it."""
    from qsilicon.search.accel import SYSTEM_RESOURCES, clock_bound_mhz
    from qsilicon.search.paper import DEIT, best_design

    points = json.loads(SYSTEM_RESOURCES.read_text())["points"]
    assert all("clock_bound_mhz" in p and p["critical_path"]["delay_ns"] > 0 for p in points)
    assert clock_bound_mhz() == min(p["clock_bound_mhz"] for p in points)
    assert max(load_space("default").hardware.clock_mhz) <= clock_bound_mhz()
    with pytest.raises(ValueError, match="logic depth defends"):
        best_design(DEIT["deit-tiny"], ZCU, clock_mhz=clock_bound_mhz() + 1, util_cap=0.8, ratio8=0.5)


def test_default_space_and_supernet_file():
    sp = load_space("default")
    assert sp.util_cap == 0.8 and sp.model.dims == (32, 48, 64) and 64 in sp.hardware.cols
    assert load_space(Path(accel.__file__).parents[1] / "configs" / "vit_space.yaml").model == sp.model


@pytest.mark.parametrize("rows,cols,m,k,n,n8", [(8, 16, 24, 64, 96, 40), (8, 8, 24, 48, 72, 0), (16, 8, 64, 7, 9, 9),
                                                (32, 64, 224, 192, 576, 288), (8, 8, 8, 1, 1, 1)])
def test_gemm_array_term_is_the_rtl_exact_engine(rows, cols, m, k, n, n8):
    """The array's part of a GEMM is the engine's RTL-exact count less its pipeline (``gemm_cycles``:
    tiles x max(K, rows + 1)), for all-int4, all-int8 and mixed layers."""
    cfg = accel.AccelConfig(rows, cols, "dsp2", 8, 64, 64, 150.0)
    g = accel.gemm_terms(cfg, accel.Op("x", "gemm", "fc1", m, k, n, n8))
    assert g.compute + k + rows + 5 - max(k, rows + 1) == gemm_cycles(cfg.gemm, m, k, n, n8)


def test_memory_terms():
    op = accel.Op("fc", "gemm", "fc1", 128, 512, 512, 256)
    big = accel.AccelConfig(16, 32, "dsp2", 8, 64, 64, 200.0)
    fast = accel.predict(big, [op], 19.2, detail=True)
    slow = accel.predict(big, [op], 0.5, detail=True)
    assert fast.per_op[0][3] == "compute" and slow.per_op[0][3] == "memory" and slow.cycles > fast.cycles
    # int4 rows stream half the weight bytes
    all4 = accel.predict(big, [accel.Op("fc", "gemm", "fc1", 128, 512, 512, 0)], 0.5)
    assert all4.dram_bytes < slow.dram_bytes
    # a column tile larger than the weight ring streams again for every token tile
    tiny = accel.AccelConfig(16, 32, "dsp2", 8, 8, 64, 200.0)
    big_op = accel.Op("fc", "gemm", "fc1", 64, 512, 512, 512)
    assert not accel.gemm_terms(tiny, big_op).resident and accel.gemm_terms(big, big_op).resident
    assert accel.predict(tiny, [big_op], 19.2).dram_bytes > accel.predict(big, [big_op], 19.2).dram_bytes
    # an input larger than the activation buffer: the design cannot hold the model
    assert "does not fit" in accel.fits(accel.AccelConfig(16, 32, "dsp2", 8, 64, 8, 200.0), [big_op])


def test_resources_grow_with_the_array():
    small = accel.resources(accel.AccelConfig(8, 8, "dsp2", 8, 16, 16))
    large = accel.resources(accel.AccelConfig(32, 64, "dsp2", 8, 16, 16))
    plain = accel.resources(accel.AccelConfig(32, 64, "none", 8, 16, 16))
    assert large["lut"] > small["lut"] and large["dsp"] > small["dsp"] and plain["dsp"] > large["dsp"]
    assert accel.resources(accel.AccelConfig(8, 8, "dsp2", 8, 128, 16))["bram36"] > small["bram36"]


def test_bad_accelerator_configs():
    with pytest.raises(ValueError, match="packing must be one of none, dsp2"):
        accel.AccelConfig(packing="dsp4")
    with pytest.raises(ValueError, match="cols must be a power of two from the lanes"):
        accel.AccelConfig(cols=5)
    with pytest.raises(ValueError, match="wbuf_kib must be a power of two"):
        accel.AccelConfig(wbuf_kib=12)
    with pytest.raises(ValueError, match="lanes must be 8 or 16"):
        accel.AccelConfig(lanes=4)
    for rb in (32, 96, 8192, True):
        with pytest.raises(ValueError, match="rowbuf must be 0 .no row buffer. or a power of two from 64 to 4096"):
            accel.AccelConfig(rowbuf=rb)
    for tag in ("r8c8_dsp2_l8_w8k_a8k_rb_100mhz", "r8c8_dsp2_l8_w8k_a8k_rb0_100mhz"):  # no buffer: no rb field
        with pytest.raises(ValueError, match=r"\[rb<elements>_\]<MHz>mhz"):
            accel.AccelConfig.from_tag(tag)


def test_row_buffer_design_point():
    """A row buffer is part of the design's name, its block RAMs are the memory rule's (one memory of
    ``lanes`` int16 values a word, two banks of ``rowbuf`` words), its LayerNorm and Shiftmax
    descriptors take the buffered coefficients when the rows fit and the streamed ones when they do
    not, long LayerNorm rows are bound by the read port (three words a beat); a space without the
    field keeps its digest and draws exactly the designs it drew before."""
    import random

    cfg = accel.AccelConfig(16, 64, "dot2", 16, 256, 512, 200.0, 1024)
    assert cfg.tag == "r16c64_dot2_l16_w256k_a512k_rb1024_200mhz" and accel.AccelConfig.from_tag(cfg.tag) == cfg
    plain = accel.AccelConfig(16, 64, "dot2", 16, 256, 512, 200.0)
    assert plain.tag == "r16c64_dot2_l16_w256k_a512k_200mhz"
    assert accel.memories(cfg)["rowbuf"] == (1, 256, 2048) and "rowbuf" not in accel.memories(plain)
    extra = accel.resources(cfg)["bram36"] - accel.resources(plain)["bram36"]
    b = resources.buffer_resources(256, 2048)
    assert extra == b.bram36 + b.bram18 / 2 > 0
    ln = accel.Op("ln", "layernorm", "ln", blocks=13, k=384)
    assert accel.coef_kind(cfg, ln) == "layernorm_rb" and accel.coef_kind(plain, ln) == "layernorm"
    assert accel.coef_kind(cfg, ln._replace(k=2048)) == "layernorm"
    assert accel.op_cycles(cfg, ln) < 0.8 * accel.op_cycles(plain, ln)
    # 384-element rows: the port's three words a beat set the pace of every block but the last
    assert accel.op_cycles(cfg, ln._replace(blocks=14)) - accel.op_cycles(cfg, ln) == pytest.approx(3 * 384)
    sm = accel.Op("sm", "softmax", "softmax", blocks=13, k=197)
    assert accel.coef_kind(cfg, sm) == "softmax_rb" and accel.coef_kind(plain, sm) == "softmax"
    assert accel.op_cycles(cfg, sm) < 0.8 * accel.op_cycles(plain, sm)
    default = JointSpace()  # a space without the field, as every space file was before it existed
    assert "rowbuf" not in default.to_dict()["hardware"] and default.hardware.rowbuf == (0,)
    # the draws of the sampler before the field existed, replayed on the same generator
    rng, old = random.Random(5), random.Random(5)
    h = default.hardware
    for _ in range(6):
        got = sample_candidate(default, rng)
        subnet = default.model.sample(old)
        rows, cols = old.choice(h.rows), old.choice(h.cols)
        expect = accel.AccelConfig(rows, cols, old.choice(h.packing), min(old.choice(h.lanes), rows, cols),
                                   old.choice(h.wbuf_kib), old.choice(h.abuf_kib), float(old.choice(h.clock_mhz)))
        assert (got.subnet, got.hw) == (subnet, expect)
    both = JointSpace(hardware=HardwareSpace(rowbuf=(0, 1024)))
    assert both.digest != JointSpace().digest
    rng = random.Random(0)
    assert {sample_candidate(both, rng).hw.rowbuf for _ in range(40)} == {0, 1024}


def test_candidates_and_pareto():
    import random

    sp = load_space()
    rng = random.Random(0)
    recs = []
    for i in range(200):
        c = sample_candidate(sp, rng)
        ev = evaluate(c, sp, ZCU)
        assert ev["feasible"] == (ev["max_util"] <= sp.util_cap)
        recs.append({"number": i, "subnet": c.subnet.spec, "hw": c.hw.to_dict(), "accuracy": rng.uniform(80, 90),
                     "fps": ev["fps"], "max_util": ev["max_util"], "util": ev["util"], "feasible": ev["feasible"]})
    front = pareto_front(recs)
    assert front and all(r["feasible"] for r in front)
    def dominates(a, b):
        return (a["accuracy"] >= b["accuracy"] and a["fps"] >= b["fps"] and a["max_util"] <= b["max_util"]
                and (a["accuracy"] > b["accuracy"] or a["fps"] > b["fps"] or a["max_util"] < b["max_util"]))

    feas = [r for r in recs if r["feasible"]]
    for r in front:  # nothing feasible dominates a front point ...
        assert not any(dominates(o, r) for o in feas)
    numbers = {r["number"] for r in front}
    for r in feas:  # ... and every feasible point off the front is dominated by one on it
        if r["number"] not in numbers:
            assert any(dominates(f, r) for f in front) or any(
                f["subnet"] == r["subnet"] and f["hw"] == r["hw"] for f in front)
    # a latency target turns slow designs infeasible
    tight = JointSpace(sp.model, sp.hardware, sp.util_cap, latency_ms=0.05)
    assert sum(evaluate(sample_candidate(tight, random.Random(i)), tight, ZCU)["feasible"] for i in range(50)) < \
        sum(evaluate(sample_candidate(sp, random.Random(i)), sp, ZCU)["feasible"] for i in range(50))


def _complete(url):
    """Complete trials of the one study in ``url`` (none before it exists)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        names = optuna.get_all_study_names(url)
    except Exception:  # the database is still being created
        return []
    if not names:
        return []
    assert len(names) == 1, names
    study = optuna.load_study(study_name=names[0], storage=url)
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def test_search_resumes_after_sigkill(tmp_path):
    """A search killed with SIGKILL keeps every finished trial; the restart continues to the target."""
    out = tmp_path / "s"
    url = f"sqlite:///{out / 'study.db'}"
    args = [*CLI, "search", "--board", "zcu102", "--trials", "40", "--images", "200", "--no-holdout", "-o", str(out)]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(_complete(url) if (out / "study.db").exists() else []) < 12:
        assert p.poll() is None and time.time() < deadline, "the search ended or stalled before the kill"
        time.sleep(0.5)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    before = {t.number: t.values for t in _complete(url)}
    assert 12 <= len(before) < 40
    r = subprocess.run(args + ["--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    after = {t.number: t.values for t in _complete(url)}
    assert all(after[n] == v for n, v in before.items())  # nothing lost, nothing changed
    assert len(after) >= 40 and doc["trials"] == len(after) and doc["resumed_from"] == len(before)
    assert doc["front"] and (out / "pareto.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def postgres():
    import shutil
    import tempfile

    from qsilicon.search.pgserver import PostgresError, start, stop

    # not under pytest's tmp_path: its root is private to root, and the server runs as postgres
    d = tempfile.mkdtemp(prefix="qs-pg-")
    try:
        url = start(d)
    except PostgresError as e:
        pytest.skip(f"PostgreSQL server could not start: {e}")
    yield url
    stop(d)
    shutil.rmtree(d, ignore_errors=True)


def test_two_workers_share_a_postgres_study(postgres, tmp_path):
    """Two worker processes on one study in a real PostgreSQL server: every trial is recorded once."""
    import sqlalchemy as sa

    procs = [subprocess.Popen([*CLI, "search", "--board", "zcu102", "--trials", "30", "--images", "200",
                               "--no-holdout", "--seed", str(i), "--storage", postgres, "-o", str(tmp_path / f"w{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    import optuna

    trials = _complete(postgres)
    (name,) = optuna.get_all_study_names(postgres)
    # the study is named by board, space and accuracy source (checkpoint, images), not the space alone
    assert name.startswith("qsilicon-zcu102-") and name != study_name(ZCU, load_space())
    assert 30 <= len(trials) <= 31  # each worker stops once the study holds 30; at most one overshoot
    workers = {t.user_attrs["worker"] for t in trials}
    assert workers == {p.pid for p in procs}
    engine = sa.create_engine(postgres)
    with engine.connect() as c:
        dup = c.execute(sa.text("SELECT number, count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                                "WHERE s.study_name = :n GROUP BY number HAVING count(*) > 1"), {"n": name}).all()
        values = c.execute(sa.text("SELECT t.trial_id, count(v.trial_value_id) FROM trials t JOIN studies s ON "
                                   "s.study_id = t.study_id LEFT JOIN trial_values v ON v.trial_id = t.trial_id "
                                   "WHERE s.study_name = :n AND t.state = 'COMPLETE' GROUP BY t.trial_id"),
                           {"n": name}).all()
        total = c.execute(sa.text("SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                                  "WHERE s.study_name = :n"), {"n": name}).scalar()
    engine.dispose()
    assert dup == [] and total == len(trials)
    assert len(values) == len(trials) and all(n == 3 for _, n in values)  # three objectives, once each
    # both workers wrote a Pareto file of the shared study
    docs = [json.loads((tmp_path / f"w{i}" / "pareto.json").read_text()) for i in range(2)]
    assert docs[0]["study"] == docs[1]["study"] == name


def test_cli_errors_leave_nothing(tmp_path):
    out = tmp_path / "o"
    cases = [(["--board", "ulx3s"], "calibrated for Zynq UltraScale+"),
             (["--board", "nope"], "nope"),
             (["--board", "zcu102", "--space", str(_write(tmp_path, "hardware: {rows: [128]}"))], "hardware.rows"),
             (["--board", "zcu102", "--trials", "0"], "--trials must be a positive integer"),
             (["--board", "zcu102", "--storage", "redis://x"], "--storage redis://x: expected"),
             (["--board", "zcu102", "--images", "10", "--space",
               str(_write(tmp_path, "model: {dims: [32, 48]}", "narrow.yaml"))], "differs from the supernet's"),
             (["--board", "zcu102", "--space", str(_write(tmp_path, "hardware: {cols: [12], packing: [dsp2]}",
                                                          "odd.yaml"))], "every value must be a power of two")]
    for extra, msg in cases:
        r = subprocess.run([*CLI, "search", *extra, "-o", str(out)], capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists()
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = subprocess.run([*CLI, "search", "--board", "zcu102", "-o", str(afile)], capture_output=True, text=True)
    assert r.returncode == 2 and "exists and is not a directory" in r.stderr
    bad = _write(tmp_path, '{"front": [{"number": 1}], "knee": {}}', "pareto.json")
    r = subprocess.run([*CLI, "verilog", "design", "--pareto", str(bad), "-o", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "not a Pareto file" in r.stderr and not out.exists()
    r = subprocess.run([*CLI, "search", "--board", "zcu102", "--storage", "postgresql://nobody@127.0.0.1:1/none",
                        "--trials", "1", "--images", "10", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot open" in r.stderr, r.stderr
    assert not out.exists()


def test_latency_cli():
    r = subprocess.run([*CLI, "latency", "vit", "--subnet", "largest", "--rows", "16", "--cols", "32", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    from qsilicon.quant.supernet import SearchSpace

    sp = SearchSpace()
    cfg = accel.AccelConfig(16, 32, "dsp2", 8, 32, 32, 150.0)
    expect = accel.predict(cfg, accel.subnet_workload(sp.largest(), sp, cfg), ZCU.dram_gbps)
    assert doc["cycles"] == expect.cycles and doc["fps"] == pytest.approx(150e6 / expect.cycles)
    assert doc["resources"]["dsp"] == accel.resources(cfg)["dsp"]
    r = subprocess.run([*CLI, "latency", "gemm", "--rows", "8", "--cols", "8", "--wbits", "8", "--abits", "8",
                        "--m", "64", "--k", "64", "--n", "64", "--json"], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["engine_cycles"] == gemm_cycles(
        GemmConfig(8, 8, 8, 8, packing="none"), 64, 64, 64)
    r = subprocess.run([*CLI, "latency", "vit", "--shape", "deit-small", "--rows", "16", "--cols", "64", "--lanes",
                        "16", "--abuf-kib", "512", "--rowbuf", "1024", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    buffered = json.loads(r.stdout)
    r = subprocess.run([*CLI, "latency", "vit", "--shape", "deit-small", "--rows", "16", "--cols", "64", "--lanes",
                        "16", "--abuf-kib", "512", "--json"], capture_output=True, text=True)
    assert r.returncode == 0 and buffered["cycles"] < json.loads(r.stdout)["cycles"]
    r = subprocess.run([*CLI, "latency", "vit", "--rowbuf", "100"], capture_output=True, text=True)
    assert r.returncode == 2 and "rowbuf must be 0 (no row buffer) or a power of two" in r.stderr
    r = subprocess.run([*CLI, "latency", "vit", "--shape", "deit-huge"], capture_output=True, text=True)
    assert r.returncode == 2 and "deit-tiny" in r.stderr
    r = subprocess.run([*CLI, "latency", "gemm", "--rows", "4", "--cols", "4", "--wbits", "8", "--abits", "8",
                        "--m", "4", "--k", "4", "--n", "4", "--n8", "2"], capture_output=True, text=True)
    assert r.returncode == 2 and "--n8 (int8 rows of a mixed layer) needs --mixed" in r.stderr
    r = subprocess.run([*CLI, "latency", "gemm", "--rows", "4", "--cols", "4", "--wbits", "8", "--abits", "8",
                        "--mixed", "--m", "4", "--k", "4", "--n", "8", "--n8", "2", "--json"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["engine_cycles"] == gemm_cycles(
        GemmConfig(4, 4, 8, 8, packing="none", mixed=True), 4, 4, 8, 2)


def test_paper_comparison_fits_the_budget():
    from qsilicon.search.paper import compare

    rows = compare(ZCU, clock_mhz=150.0, util_cap=0.8, ratio8=0.5)
    assert [r["model"] for r in rows] == ["deit-tiny", "deit-small", "deit-base"]
    assert rows[0]["predicted_fps"] > rows[1]["predicted_fps"] > rows[2]["predicted_fps"] > 0
    assert all(max(r["util"].values()) <= 0.8 for r in rows)

"""The qsilicon command line, run as a user runs it (a subprocess of the installed script)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qsilicon.hw.config import AccelConfig
from qsilicon.hw.vit.system import decode_info, info_words
from qsilicon.quant import random_gemm_case

QS = [sys.executable, "-m", "qsilicon.flow"]
ENGINE = ["--rows", "2", "--cols", "3", "--wbits", "4", "--abits", "8"]


def run(*args, env=None, cwd=None):
    return subprocess.run([*QS, *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_boards_json_has_references():
    p = run("boards", "--json")
    assert p.returncode == 0, p.stderr
    boards = {b["name"]: b for b in json.loads(p.stdout)}
    assert boards["zcu102"]["part"] == "xczu9eg-ffvb1156-2-e"
    assert boards["zcu102"]["dsps"] == 2520
    assert {"zcu102", "zcu104", "ultra96-v2", "kv260", "pynq-z2", "ulx3s", "icebreaker"} <= set(boards)
    text = run("boards")
    assert text.returncode == 0 and "xczu9eg-ffvb1156-2-e" in text.stdout


def test_verilog_byte_identical_across_processes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("verilog", "gemm", *ENGINE, "-o", str(a)).returncode == 0
    assert run("verilog", "gemm", *ENGINE, "-o", str(b)).returncode == 0
    assert (a / "gemm_engine.v").read_bytes() == (b / "gemm_engine.v").read_bytes()
    manifest = json.loads((a / "qsilicon.json").read_text())
    assert manifest["config"]["rows"] == 2 and manifest["files"] == ["gemm_engine.v"]
    # Regenerating into a previous output replaces it.
    assert run("verilog", "gemm", *ENGINE, "--abits", "4", "-o", str(a)).returncode == 0
    assert (a / "gemm_engine.v").read_bytes() != (b / "gemm_engine.v").read_bytes()


@pytest.mark.parametrize("args,msg", [
    (["verilog", "gemm", "--rows", "0", "--cols", "2", "--wbits", "4", "--abits", "4"],
     "Rows must be a positive integer, not 0"),
    (["verilog", "gemm", "--rows", "2", "--cols", "2", "--wbits", "5", "--abits", "4"],
     "argument --wbits: invalid choice: 5"),
    (["verilog", "gemm", *ENGINE, "--board", "zcu100"], "unknown board 'zcu100': choose one of"),
    (["verify", "gemm", *ENGINE, "--m", "2", "--k", "0", "--n", "2"], "K must be a positive integer, not 0"),
    (["verify", "gemm", *ENGINE, "--m", "2", "--k", "2", "--n", "2", "--sim", "questa"],
     "argument --sim: invalid choice: 'questa'"),
])
def test_bad_input_one_line_exit_2_no_output(tmp_path, args, msg):
    out = tmp_path / "out"
    p = run(*args, *(["-o", str(out)] if args[0] == "verilog" else []))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qsilicon: error: ") and msg in lines[0], p.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left either


def test_refuses_foreign_output_directory(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    p = run("verilog", "gemm", *ENGINE, "-o", str(tmp_path))
    assert p.returncode == 2 and "not a qsilicon output" in p.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_missing_simulator_names_the_fix(tmp_path):
    """With no iverilog on PATH the command stops before any work, saying how to install it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(sys.executable, bindir / "python3")
    env = {**os.environ, "PATH": str(bindir)}
    p = run("verify", "gemm", *ENGINE, "--m", "2", "--k", "2", "--n", "2", "--sim", "icarus", env=env)
    assert p.returncode == 2, p.stderr
    assert "Icarus Verilog is not installed: run 'apt-get install -y iverilog'" in p.stderr


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog (installed by make test)")
def test_verify_passes_and_reports_json():
    p = run("verify", "gemm", *ENGINE, "--m", "7", "--k", "11", "--n", "4", "--seed", "4242",
            "--sim", "icarus", "--valid-p", "0.8", "--ready-p", "0.7", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["pass"] and r["bit_exact"] and r["mismatches"] == 0 and r["outputs"] == 28
    assert r["cycles"] >= r["ideal_cycles"] > 0


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog (installed by make test)")
def test_deeper_requantizer_from_the_command_line():
    """--requant-stages 5 builds the engine with the deep requantizer: bit-exact, and its RTL
    cycles are what `latency gemm` predicts for it (two more than the 3-stage engine's)."""
    shape = ["--m", "5", "--k", "6", "--n", "4"]
    p = run("verify", "gemm", *ENGINE, *shape, "--requant-stages", "5", "--sim", "icarus", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["pass"] and r["bit_exact"] and r["config"]["requant_stages"] == 5
    lat = [json.loads(run("latency", "gemm", *ENGINE, *shape, *extra, "--json").stdout)["engine_cycles"]
           for extra in ([], ["--requant-stages", "5"])]
    assert r["cycles"] == lat[1] == lat[0] + 2
    bad = run("verify", "gemm", *ENGINE, *shape, "--requant-stages", "6")
    assert bad.returncode == 2 and "invalid choice: 6" in bad.stderr


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog (installed by make test)")
def test_verify_mismatch_exits_1(tmp_path):
    """Fault injection through the testbench: its model is given another bias than the RTL."""
    good = random_gemm_case(3, 5, 3, wbits=4, abits=8, seed=77)
    bad = type(good)(**{**good.__dict__, "bias": good.bias - 5000})
    bad.save(tmp_path / "model.pt")
    env = {**os.environ, "QS_MODEL_CASE": str(tmp_path / "model.pt")}
    p = run("verify", "gemm", *ENGINE, "--m", "3", "--k", "5", "--n", "3", "--seed", "77", "--sim", "icarus",
            env=env)
    assert p.returncode == 1, p.stderr[-3000:]
    assert p.stdout.startswith("FAIL:")
    mism = int(next(line for line in p.stdout.splitlines() if "mismatches" in line).split()[1])
    assert 0 < mism <= 9


def test_help_lists_commands():
    p = run("--help")
    assert p.returncode == 0
    for cmd in ("flow", "boards", "verilog", "verify", "demo"):
        assert cmd in p.stdout
    script = Path(sys.executable).parent / "qsilicon"  # the [project.scripts] entry point
    q = subprocess.run([str(script), "boards"], capture_output=True, text=True)
    assert q.returncode == 0 and "zcu102" in q.stdout


@pytest.mark.parametrize("args,msg", [
    (["synth", "gemm", *ENGINE, "--target", "vu9p"], "argument --target: invalid choice: 'vu9p'"),
    (["synth", "gemm", *ENGINE, "--target", "xcup", "--pnr"], "--pnr places and routes on ECP5 boards"),
    (["synth", "gemm", *ENGINE, "--target", "ecp5", "--board", "ulx3s"], "--board goes with --pnr"),
    (["synth", "gemm", *ENGINE, "--target", "ecp5", "--pnr", "--board", "zcu102"],
     "--pnr places and routes on ECP5 boards"),
])
def test_synth_bad_input(args, msg):
    p = run(*args)
    assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_synth_json():
    p = run("synth", "gemm", "--rows", "1", "--cols", "1", "--wbits", "4", "--abits", "4", "--target", "ice40",
            "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    assert r["target"] == "ice40" and r["counts"]["lut"] > 0 and r["counts"]["dsp"] >= 1


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog (installed by make test)")
def test_verify_mpgemm_json():
    p = run("verify", "mpgemm", "--rows", "2", "--cols", "2", "--abits", "8", "--m", "5", "--k", "7", "--n", "6",
            "--ratio8", "0.5", "--seed", "2024", "--sim", "icarus", "--valid-p", "0.7", "--ready-p", "0.8", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["component"] == "mpgemm" and r["pass"] and r["int8_rows"] == 3 and r["config"]["packing"] == "dsp2"


def test_verilog_mpgemm_differs_from_gemm(tmp_path):
    p = run("verilog", "mpgemm", "--rows", "2", "--cols", "2", "--abits", "8", "-o", str(tmp_path / "m"))
    assert p.returncode == 0, p.stderr
    assert run("verilog", "gemm", "--rows", "2", "--cols", "2", "--wbits", "8", "--abits", "8", "--packing", "dsp2",
               "-o", str(tmp_path / "g")).returncode == 0
    mv = (tmp_path / "m" / "gemm_engine.v").read_text()
    assert "i_wgt__payload" in mv and mv != (tmp_path / "g" / "gemm_engine.v").read_text()
    assert json.loads((tmp_path / "m" / "qsilicon.json").read_text())["component"] == "mpgemm"


@pytest.mark.parametrize("args,msg", [
    (["verify", "mpgemm", "--rows", "2", "--cols", "3", "--abits", "8", "--m", "1", "--k", "1", "--n", "1",
      "--ratio8", "0.5"], "dsp2 packing needs an even number of columns, not 3"),
    (["verify", "mpgemm", "--rows", "2", "--cols", "2", "--abits", "8", "--m", "1", "--k", "1", "--n", "1",
      "--ratio8", "1.5"], "--ratio8 must be from 0 to 1, not 1.5"),
    (["verify", "mpgemm", "--rows", "2", "--cols", "2", "--abits", "8", "--m", "1", "--k", "1", "--n", "1"],
     "verify mpgemm needs --ratio8 (or --case FILE to replay a saved case)"),
    (["verify", "gemm", *ENGINE, "--packing", "dsp4", "--m", "1", "--k", "1", "--n", "1"],
     "dsp4 packing is for W4A4, not W4A8"),
])
def test_mpgemm_bad_input(args, msg):
    p = run(*args)
    assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_verify_vit_layer_json():
    p = run("verify", "vit-layer", "--layer", "b1.proj", "--precision", "w4a8", "--images", "1", "--rows", "4",
            "--cols", "4", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["pass"] and r["mismatches"] == 0 and (r["m"], r["k"], r["n"]) == (17, 64, 64)
    bad = run("verify", "vit-layer", "--layer", "b9.fc1")
    assert bad.returncode == 2 and "Unknown layer 'b9.fc1'" in bad.stderr


SMALL_DESIGN = "r8c8_dsp2_l8_w8k_a8k_100mhz"


def test_verify_vit_whole_model_json():
    """The trained ViT (4 blocks, mixed rows) whole on a small design: bit-exact, every image's memory
    equal to the ISS's, cycles next to the model's."""
    p = run("verify", "vit", "--design", SMALL_DESIGN, "--vit", "checkpoints/vit_fmnist.pt", "--images", "1",
            "--first", "5", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["bit_exact"] and r["memory_equal_to_iss"] and r["images"] == 1 and r["top1_agree"] == 1
    assert r["rtl_cycles"] > 0 and r["predicted_cycles"] > 0 and r["cycle_error"] < 0.05
    assert {"gemm", "layernorm", "softmax", "add", "transpose"} <= set(r["per_kind"])


@pytest.mark.parametrize("args,msg", [
    (["verify", "vit", "--design", "r8c8_dsp3_l8_w8k_a8k_100mhz"], "design tag 'r8c8_dsp3_l8_w8k_a8k_100mhz'"),
    (["verify", "vit", "--design", "r8c8_dsp2_l16_w8k_a8k_100mhz"], "rows must be a power of two from the lanes (16)"),
    (["verify", "vit", "--design", "r8c8_dsp2_l8_w4k_a8k_100mhz"], "outside the search space: wbuf_kib 4"),
    (["verify", "vit", "--design", SMALL_DESIGN, "--subnet", "depth=9"], "--subnet: subnet spec"),
    (["verify", "vit", "--design", "r8c8_dsp2_l8_w8k_a1k_100mhz", "--any-design"], "cannot hold the model"),
    (["verify", "vit", "--design", SMALL_DESIGN, "--images", "0"], "--images must be from 1 to 10000, not 0"),
    (["verify", "vit", "--design", SMALL_DESIGN, "--vit", "nowhere.pt"], "ViT checkpoint nowhere.pt not found"),
    (["synth", "design", "--design", "r0c8_dsp2_l8_w8k_a8k_100mhz"], "rows must be a power of two"),
    (["verilog", "design", "--design", SMALL_DESIGN, "--board", "pynq-z2", "-o", "X"],
     "has no Zynq UltraScale+ processing system"),
    (["compile", "vit", "--design", "r8c8_dsp2_l8_w8k_a1k_100mhz", "--any-design", "-o", "X"], "cannot hold the model"),
])
def test_design_commands_bad_input(args, msg, tmp_path):
    args = [str(tmp_path / a) if a == "X" else a for a in args]
    p = run(*args)
    assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "X").exists()


def test_verilog_design_and_compile_vit(tmp_path):
    p = run("verilog", "design", "--design", SMALL_DESIGN, "--board", "kv260", "-o", str(tmp_path / "d"))
    assert p.returncode == 0, p.stderr
    d = tmp_path / "d" / "kv260"
    assert "module vit_accel(" in (d / "vit_accel.v").read_text()
    wrapper = (d / "vit_accel_wrapper.v").read_text()
    assert "module vit_accel_wrapper" in wrapper and "m_axi_mem_araddr" in wrapper and "s_axi_ctrl_wdata" in wrapper
    tcl = (d / "build_system.tcl").read_text()
    assert "zynq_ultra_ps_e" in tcl and "xck26" in tcl and "CONFIG.PSU__SAXIGP2__DATA_WIDTH {64}" in tcl
    amap = json.loads((d / "address_map.json").read_text())
    assert amap["registers"]["offsets"]["CTRL"] == 0 and amap["registers"]["base"] == 0xA000_0000
    header = (d / "vit_accel_regs.h").read_text()
    assert "#define VIT_ACCEL_STATUS 0x04u" in header
    # the INFO words the PS side can compare with the accelerator's registers (as the host driver does)
    info, info2 = info_words(AccelConfig.from_tag(SMALL_DESIGN))
    assert f"#define VIT_ACCEL_INFO_VALUE {info}u" in header and f"#define VIT_ACCEL_INFO2_VALUE {info2}u" in header
    assert amap["parameters"]["info_value"] == info and "#define VIT_ACCEL_ROWBUF 0u" in header
    assert decode_info(info, info2) == {k: v for k, v in AccelConfig.from_tag(SMALL_DESIGN).to_dict().items()
                                        if k != "clock_mhz"}
    p = run("compile", "vit", "--design", SMALL_DESIGN, "--vit", "checkpoints/vit_fmnist.pt", "-o",
            str(tmp_path / "c"), "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["iss_bit_exact"] and rep["descriptors"] == 88  # 9 + 3 x 4 heads a block (GELU fused)
    assert (tmp_path / "c" / "memory.bin").stat().st_size == rep["memory_bytes"]


SMALL_ENGINE = ["--co", "8", "--px", "4", "--max-width", "16", "--act-depth", "128", "--out-depth", "32",
                "--wgt-depth", "512", "--par-depth", "16", "--tab-depth", "64"]


def test_compile_and_verify_depth_reduced_network(tmp_path):
    p = run("compile", "depth", *SMALL_ENGINE, "-o", str(tmp_path / "prog"), "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout[p.stdout.index("{"):])
    assert rep["iss"]["bit_exact"] and rep["instructions"] > 10
    prog = json.loads((tmp_path / "prog" / "program.json").read_text())
    assert (tmp_path / "prog" / "memory.bin").stat().st_size == prog["memory_bytes"]
    assert prog["insns"][-1]["op"] == 0 and len(prog["insns"]) == rep["instructions"]
    p = run("verify", "depth", *SMALL_ENGINE, "--ready-p", "0.8", "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout[p.stdout.index("{"):])
    assert rep["bit_exact_vs_integer_graph"] and rep["memory_equal_to_iss"]
    assert rep["cycles"] > 0 and [r["name"] for r in rep["layers"]] == ["stem", "d0a", "d0b", "u0", "head"]


@pytest.mark.parametrize("args,msg", [
    (["compile", "depth", "--co", "5", "-o", "X"], "engine configuration: co must be one of 4, 8, 16, not 5"),
    (["compile", "depth", "--act-depth", "100", "-o", "X"], "act_depth must be a power of two"),
    (["compile", "depth", "--model", "nowhere", "-o", "X"], "nowhere not found: write one with"),
    (["verify", "depth", "--ready-p", "2"], "--ready-p must be in (0, 1], not 2.0"),
    (["synth", "engine", "--target", "xcup", "--pnr"], "--pnr places and routes on ECP5 boards"),
    (["verilog", "depth-engine", "--board", "nosuch", "-o", "X"], "nosuch"),
])
def test_depth_engine_bad_input(args, msg, tmp_path):
    args = [str(tmp_path / a) if a == "X" else a for a in args]
    p = run(*args)
    assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "X").exists()


def test_verilog_depth_engine(tmp_path):
    p = run("verilog", "depth-engine", *SMALL_ENGINE, "--board", "ulx3s", "-o", str(tmp_path / "de"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "de" / "ulx3s" / "top.lpf").exists()
    manifest = json.loads((tmp_path / "de" / "qsilicon.json").read_text())
    assert manifest["axi4_lite_slave"]["registers"]["STATUS"] == 4 and manifest["config"]["co"] == 8
    assert "module depth_engine(" in (tmp_path / "de" / "depth_engine.v").read_text()
    assert "| COMPUTE | 2 |" in (tmp_path / "de" / "ISA.md").read_text()

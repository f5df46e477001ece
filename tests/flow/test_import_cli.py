"""``qsilicon import`` / ``quantize model`` and ``--model DIR`` on the ViT commands, run as a user
runs them: timm models that were not written here, imported, quantized, compiled, predicted,
searched, and bit-exact on the RTL (a layer on the GEMM engine in the default run; the whole model on
the whole accelerator marked slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

QS = [sys.executable, "-m", "qsilicon.flow"]
MODELS = {
    "vit": "timm:vit_tiny_patch16_224?img_size=16&patch_size=4&embed_dim=32&depth=2&num_heads=2&num_classes=10",
    "deit": ("timm:deit_tiny_distilled_patch16_224?img_size=28&patch_size=7&embed_dim=32&depth=1&num_heads=2&"
             "num_classes=10&in_chans=1"),
}
DESIGN = ["--design", "r8c8_dsp2_l8_w8k_a16k_100mhz", "--any-design"]


def run(*args, cwd=None):
    return subprocess.run([*QS, *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("imported")
    out = {}
    for name, spec in MODELS.items():
        d = root / name
        p = run("import", spec, "-o", str(d), "--json")
        assert p.returncode == 0, p.stderr
        rep = json.loads(p.stdout)
        assert rep["family"] == "vit" and rep["check"]["max_abs_diff"] <= 1e-4 * max(1, rep["check"]["max_abs_logit"])
        # the deit reads Fashion-MNIST (1 channel, 28x28) with labels; the vit random images (3 channels)
        calib = ["--calib", "fashion-mnist:train:256", "--eval", "fashion-mnist:test:64"] if name == "deit" else \
            ["--calib", "random:128"]
        q = run("quantize", "model", str(d), "--precision", "mixed", *calib, "--json")
        assert q.returncode == 0, q.stderr
        qrep = json.loads(q.stdout)
        assert qrep["int8_rows"] * 2 == qrep["rows"] or abs(qrep["int8_rows"] * 2 - qrep["rows"]) <= 16
        assert ("integer_accuracy" in qrep) == (name == "deit")
        out[name] = d
    return out


def test_import_writes_the_model_directory(model_dirs):
    d = model_dirs["deit"]
    assert {p.name for p in d.iterdir()} >= {"model.pt", "import.json", "source.pt2", "quant.pt", "quant.json",
                                             "qsilicon.json"}
    rep = json.loads((d / "import.json").read_text())
    assert rep["config"]["distilled"] and rep["config"]["channels"] == 1
    assert rep["operators"]["scaled_dot_product_attention.default"] == 1
    assert "quant.pt" in json.loads((d / "qsilicon.json").read_text())["files"]


@pytest.mark.parametrize("name", ["vit", "deit"])
def test_compile_and_predict_an_imported_model(model_dirs, name, tmp_path):
    p = run("compile", "vit", "--model", str(model_dirs[name]), *DESIGN, "-o", str(tmp_path / "prog"), "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["iss_bit_exact"] is True
    names = [o["name"] for o in rep["ops"]]
    assert ("lnf.pair" in names) == (name == "deit")
    lat = run("latency", "vit", "--model", str(model_dirs[name]), "--rows", "8", "--cols", "8", "--abuf-kib", "16",
              "--clock", "100", "--json")
    assert lat.returncode == 0, lat.stderr
    assert json.loads(lat.stdout)["cycles"] > 0


@pytest.mark.parametrize(("name", "layer"), [("vit", "b1.qkv"), ("deit", "b0.fc2")])
def test_a_layer_of_each_imported_model_is_bit_exact_on_the_rtl(model_dirs, name, layer):
    p = run("verify", "vit-layer", "--model", str(model_dirs[name]), "--layer", layer, "--images", "1", "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["pass"] is True and rep["mismatches"] == 0 and rep["precision"] == "mixed"


def test_search_hardware_for_an_imported_model(model_dirs, tmp_path):
    p = run("search", "--model", str(model_dirs["deit"]), "--board", "zcu102", "--trials", "30", "-o",
            str(tmp_path / "s"), "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["trials"] == 30 and doc["front"] and doc["knee"]["feasible"]
    assert all(r["subnet"] == "deit (mixed)" for r in doc["front"])
    fps = [r["fps"] for r in doc["front"]]
    assert fps == sorted(fps, reverse=True)
    # a study kept outside -o (sqlite here; postgresql:// alike) resumes: no new trials, same front
    db = f"sqlite:///{tmp_path / 'study.db'}"
    first = run("search", "--model", str(model_dirs["deit"]), "--board", "zcu102", "--trials", "12", "--storage", db,
                "-o", str(tmp_path / "a"), "--json")
    assert first.returncode == 0, first.stderr
    again = run("search", "--model", str(model_dirs["deit"]), "--board", "zcu102", "--trials", "12", "--storage", db,
                "-o", str(tmp_path / "b"), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["front"] == json.loads(first.stdout)["front"]


def test_export_an_imported_vit_to_onnx(model_dirs, tmp_path):
    out = tmp_path / "deit.onnx"
    p = run("export", str(model_dirs["deit"]), "-o", str(out), "--check-images", "2", "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["bit_exact_vs_integer_model"] is True and rep["checked_images"] == 2 and out.stat().st_size > 10000
    bad = run("export", str(model_dirs["deit"]), "-o", str(tmp_path / "deit.txt"))
    assert bad.returncode == 2 and "write a .onnx file" in bad.stderr


@pytest.mark.slow
def test_whole_imported_deit_is_bit_exact_on_the_whole_accelerator(model_dirs):
    p = run("verify", "vit", "--model", str(model_dirs["deit"]), *DESIGN, "--images", "2", "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["bit_exact"] and rep["memory_equal_to_iss"] and rep["cycle_error"] < 0.03


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, model_dirs):
    out = tmp_path / "x"
    p = run("import", "timm:vit_tiny_patch16_224?img_size=16&patch_size=4&depth=1&act_layer=silu", "-o", str(out))
    assert p.returncode == 2 and not out.exists()
    err = p.stderr.splitlines()[-1]
    assert err.startswith("qsilicon: error: unsupported operator aten.silu.default: node 'silu'")
    assert "timm/layers/mlp.py:" in err and not p.stderr.replace(err, "").count("error")
    p = run("import", "timm:no_such_model", "-o", str(out))
    assert p.returncode == 2 and "timm has no model 'no_such_model'" in p.stderr and not out.exists()
    p = run("quantize", "model", str(model_dirs["vit"]), "--precision", "w4a4", "--calib", "random:8")
    assert p.returncode == 2 and "activations are int8" in p.stderr
    p = run("quantize", "model", str(tmp_path), "--calib", "random:8")
    assert p.returncode == 2 and "not an imported model directory" in p.stderr
    p = run("compile", "vit", "--model", str(model_dirs["vit"]), *DESIGN, "--precision", "w8a8", "-o", str(out))
    assert p.returncode == 2 and "--precision goes with a supernet subnet or --vit" in p.stderr and not out.exists()
    p = run("search", "--model", str(model_dirs["vit"]), "--board", "zcu102", "--images", "100", "-o", str(out))
    assert p.returncode == 2 and "--images belongs to the supernet search" in p.stderr and not out.exists()
    p = run("quantize", "model", str(model_dirs["vit"]), "--calib", "fashion-mnist:train:8")
    assert p.returncode == 0  # resized and channel-repeated to the model's 3x16x16
    p = run("quantize", "model", str(model_dirs["vit"]), "--calib", "random:128")  # back to the fixture's state
    assert p.returncode == 0


def test_a_timm_cnn_imported_quantized_and_bit_exact_on_the_depth_engine_rtl(tmp_path):
    d = tmp_path / "repvgg"
    p = run("import", "timm:repvgg_a0?features_only=True&out_indices=(1,)", "--input-shape", "3,16,16", "-o", str(d),
            "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["family"] == "cnn" and [layer["stride"] for layer in rep["layers"]] == [2, 2, 1]
    bad = run("quantize", "model", str(d), "--precision", "mixed", "--calib", "random:8")
    assert bad.returncode == 2 and "w8a8, w4a8 or w4a4" in bad.stderr
    q = run("quantize", "model", str(d), "--calib", "random:32", "--json")
    assert q.returncode == 0, q.stderr
    qrep = json.loads(q.stdout)
    assert qrep["precision"] == "w4a4" and qrep["method"] == "quartdepth" and qrep["output_sqnr_db"] > 20
    assert (d / "int_graph.pt").is_file()
    v = run("verify", "depth", "--model", str(d), "--json")
    assert v.returncode == 0, v.stderr
    vrep = json.loads(v.stdout)
    assert vrep["bit_exact_vs_integer_graph"] and vrep["memory_equal_to_iss"] and len(vrep["layers"]) == 3
    lat = run("latency", "depth", "--model", str(d), "--json")
    assert lat.returncode == 0, lat.stderr
    e = run("export", str(d), "-o", str(tmp_path / "m.onnx"), "--json")
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["bit_exact_vs_integer_model"] is True and (tmp_path / "m.onnx").stat().st_size > 1000
    wrong = run("compile", "vit", "--model", str(d), *DESIGN, "-o", str(tmp_path / "p"))
    assert wrong.returncode == 2 and "holds a CNN" in wrong.stderr and not (tmp_path / "p").exists()

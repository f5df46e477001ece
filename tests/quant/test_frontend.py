"""Importing models that were not written here: timm architectures, torch.nn.MultiheadAttention,
torch.export archives; the integer model of each runs bit-exact on the ViT accelerator's ISS; what
cannot be mapped is a one-line error naming the operator, the node and the source line."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from qsilicon.hw.config import AccelConfig
from qsilicon.hw.vit.compiler import compile_vit
from qsilicon.hw.vit.iss import run_program
from qsilicon.quant.frontend import UnsupportedModelError, import_vit, load_source, parse_input_shape
from qsilicon.quant.frontend.data import load_images
from qsilicon.quant.frontend.vit import RTOL
from qsilicon.quant.models.int_vit import IntViT
from qsilicon.search.accel import int_vit_workload

VIT = "timm:vit_tiny_patch16_224?img_size=16&patch_size=4&embed_dim=32&depth=2&num_heads=2&num_classes=10"
DEIT = ("timm:deit_tiny_distilled_patch16_224?img_size=16&patch_size=4&embed_dim=32&depth=1&num_heads=2&"
        "num_classes=7&in_chans=1")
DESIGN = AccelConfig.from_tag("r8c8_dsp2_l8_w8k_a16k_100mhz")


def _iss_exact(iv: IntViT, images: torch.Tensor) -> bool:
    prog = compile_vit(iv, DESIGN)
    assert [o.name for o in prog.ops if not o.name[1:2].isdigit()] == \
        [o.name for o in int_vit_workload(iv, DESIGN) if not o.name[1:2].isdigit()]
    for img, codes in zip(images, prog.input_codes(images), strict=True):
        mem = prog.with_input(codes)
        run_program(mem, prog.program, DESIGN)
        if not torch.equal(prog.read_logits(mem), iv.logits(img[None])[0].to(torch.int64)):
            return False
    return True


@pytest.mark.parametrize("spec", [VIT, DEIT])
def test_timm_vit_imports_quantizes_and_runs_bit_exact_on_the_iss(spec):
    vi = import_vit(load_source(spec, seed=1))
    cfg = vi.model.cfg
    distilled = "distilled" in spec
    assert cfg.distilled is distilled and cfg.prefix == (2 if distilled else 1)
    assert (cfg.dim, cfg.patch, cfg.image, cfg.heads, cfg.hd, cfg.ln_eps) == (32, 4, 16, 2, 16, 1e-6)
    assert cfg.channels == (1 if distilled else 3) and cfg.classes == (7 if distilled else 10)
    assert vi.max_abs_diff <= RTOL * max(1.0, vi.max_abs_logit) and vi.max_abs_logit > 0
    assert vi.param_map["blocks.0.qkv.weight"] == "blocks.0.attn.qkv.weight"
    assert vi.param_map["embed.weight"] == "patch_embed.proj.weight"
    if distilled:
        assert vi.param_map["dist"] == "dist_token" and vi.param_map["head_dist.weight"] == "head_dist.weight"
    x = torch.randn(64, cfg.channels, 16, 16, generator=torch.Generator().manual_seed(0))
    for precision in ("w8a8", "mixed"):
        iv = IntViT(vi.model, x[:48], precision, 0.5)
        assert _iss_exact(iv, x[48:50])
        if precision == "mixed":
            bits = iv.linear_layer("b0.fc1").bits
            assert int((bits == 8).sum()) == bits.numel() // 2


def test_the_float_model_of_a_distilled_deit_is_the_mean_of_its_two_classifiers():
    src = load_source(DEIT, seed=7)
    vi = import_vit(src)
    m = vi.model
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(m(x), src.module(x), atol=1e-5)  # timm's own eval-mode mean of the two heads
        t = torch.cat([m.prefix_tokens().expand(3, -1, -1), m.embed(m.patches(x))], 1) + m.pos
        for blk in m.blocks:
            t = blk(t)
        t = m.ln(t)
        assert torch.allclose(m.head(t[:, 0]), src.module.head(t[:, 0]))
        assert not torch.allclose(m.head(t[:, 0]), m(x), atol=1e-3)  # the distillation head counts
        # and the integer model's classifier is one layer on both tokens: [W_cls | W_dist] / 2
        iv = IntViT(m, torch.rand(32, 1, 16, 16), "w8a8")
        assert iv.head.w.shape == (7, 64)


def _write_module(tmp_path, monkeypatch, body: str) -> str:
    (tmp_path / "user_models.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_models", raising=False)  # another test's module of that name
    return "user_models"


MHA = """
import torch
from torch import nn

class Block(nn.Module):
    def __init__(self, d, h, act=nn.GELU):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, h, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), act(), nn.Linear(2 * d, d))

    def forward(self, x):
        y = self.n1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.n2(x))

class Net(nn.Module):
    def __init__(self, d=32, act=nn.GELU, nonzero=False):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, 4)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, 17, d) * 0.1)
        self.blocks = nn.Sequential(Block(d, 4, act), Block(d, 4, act))
        self.norm = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 5)
        self.nonzero = nonzero

    def forward(self, img):
        x = self.patch(img).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = self.norm(self.blocks(x))
        if self.nonzero:
            x = x[:, torch.nonzero(x[0, :, 0] > 0).flatten()]
        return self.fc(x[:, 0])

def net(**kw):
    return Net(act=nn.SiLU if kw.pop("silu", False) else nn.GELU, **kw)
"""


def test_module_source_with_torch_multihead_attention(tmp_path, monkeypatch):
    mod = _write_module(tmp_path, monkeypatch, MHA)
    vi = import_vit(load_source(f"module:{mod}:net", input_shape=(1, 3, 16, 16), seed=3))
    assert (vi.model.cfg.depth, vi.model.cfg.heads, vi.model.cfg.hd, vi.model.cfg.classes) == (2, 4, 8, 5)
    assert vi.param_map["blocks.1.qkv.weight"] == "blocks.1.attn.in_proj_weight"
    x = torch.randn(40, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    iv = IntViT(vi.model, x[:32], "w4a8")
    assert _iss_exact(iv, x[32:34])


def test_layernorm_of_the_picked_class_token_and_whole_patches_and_prefix_tokens(tmp_path, monkeypatch):
    mod = _write_module(tmp_path, monkeypatch, MHA.replace("x = self.norm(self.blocks(x))",
                                                           "x = self.blocks(x)").replace(
        "return self.fc(x[:, 0])", "return self.fc(self.norm(x[:, 0]))"))
    vi = import_vit(load_source(f"module:{mod}:net", input_shape=(1, 3, 16, 16)))
    assert vi.model.cfg.depth == 2 and vi.param_map["ln.weight"] == "norm.weight"
    with pytest.raises(UnsupportedModelError, match="18x18 is not a multiple of the patch 4"):
        import_vit(load_source("timm:vit_tiny_patch16_224?img_size=18&patch_size=4&embed_dim=32&depth=1&num_heads=2"))
    with pytest.raises(UnsupportedModelError, match="2 prefix tokens with one classifier"):
        import_vit(load_source("timm:vit_tiny_patch16_224?img_size=16&patch_size=4&embed_dim=32&depth=1&num_heads=2&"
                               "reg_tokens=1"))


def test_torch_export_archive_imports_with_its_own_input_shape(tmp_path):
    src = load_source(VIT)
    path = tmp_path / "vit.pt2"
    torch.export.save(src.program, path)
    vi = import_vit(load_source(str(path)))
    assert vi.model.cfg.image == 16
    with pytest.raises(UnsupportedModelError, match="differs from the program's own"):
        load_source(str(path), input_shape=(1, 3, 32, 32))
    a = import_vit(src).model.state_dict()
    assert all(torch.equal(a[k], v) for k, v in vi.model.state_dict().items())


@pytest.mark.parametrize(("spec", "words"), [
    ("timm:vit_tiny_patch16_224?img_size=16&patch_size=4&embed_dim=32&depth=1&num_heads=2&act_layer=silu",
     ["unsupported operator aten.silu.default: node 'silu'", "timm/layers/mlp.py:", "blocks.0.mlp.act"]),
    ("timm:vit_tiny_patch16_224?img_size=16&patch_size=4&embed_dim=32&depth=1&num_heads=2&init_values=0.1",
     ["aten.mul.Tensor", "timm/layers/layer_scale.py:", "blocks.0.ls1"]),
    ("timm:vit_tiny_patch16_224?img_size=16&patch_size=4&embed_dim=32&depth=1&num_heads=2&global_pool=avg",
     ["unsupported operator aten.mean.dim", "timm/models/vision_transformer.py:"]),
    ("timm:resnet10t", ["patch embedding with kernel (3, 3), stride (2, 2)", "node 'conv2d'"]),
])
def test_unsupported_operators_are_one_line_errors_with_node_and_source_line(spec, words):
    with pytest.raises(UnsupportedModelError) as e:
        import_vit(load_source(spec, input_shape=(1, 3, 16, 16)))
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_user_module_errors(tmp_path, monkeypatch):
    mod = _write_module(tmp_path, monkeypatch, MHA)
    with pytest.raises(UnsupportedModelError, match=r"aten.silu.default.*user_models.py:\d+"):
        import_vit(load_source(f"module:{mod}:net?silu=True", input_shape=(1, 3, 16, 16)))
    with pytest.raises(UnsupportedModelError, match="dynamic shape|cannot capture"):
        import_vit(load_source(f"module:{mod}:net?nonzero=True", input_shape=(1, 3, 16, 16)))
    with pytest.raises(UnsupportedModelError, match="give the input shape"):
        load_source(f"module:{mod}:net")
    with pytest.raises(UnsupportedModelError, match="has no callable 'nope'"):
        load_source(f"module:{mod}:nope")
    with pytest.raises(UnsupportedModelError, match=r"user_models:net\(d=-3\) raised RuntimeError"):
        load_source(f"module:{mod}:net?d=-3", input_shape=(1, 3, 16, 16))


def test_bad_sources_and_shapes():
    with pytest.raises(UnsupportedModelError, match="timm has no model 'vit_nonexistent'"):
        load_source("timm:vit_nonexistent")
    with pytest.raises(UnsupportedModelError, match="use timm:NAME"):
        load_source("resnet18")
    with pytest.raises(UnsupportedModelError, match="ONNX files are not imported"):
        load_source("model.onnx")
    with pytest.raises(UnsupportedModelError, match="weights file /nonexistent.pt not found"):
        load_source(VIT, weights="/nonexistent.pt")
    with pytest.raises(UnsupportedModelError, match="write C,H,W"):
        parse_input_shape("3,a,32")
    assert parse_input_shape("3,32,32") == (1, 3, 32, 32)


def test_weights_are_loaded_strictly(tmp_path):
    src = load_source(VIT, seed=5)
    state = src.module.state_dict()
    torch.save({"state_dict": state}, tmp_path / "w.pt")
    again = load_source(VIT, seed=9, weights=str(tmp_path / "w.pt"))
    assert all(torch.equal(v, again.module.state_dict()[k]) for k, v in state.items())
    state.pop("head.bias")
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(UnsupportedModelError, match="does not fit the model"):
        load_source(VIT, weights=str(tmp_path / "bad.pt"))


def test_image_specs(tmp_path):
    x, y = load_images("fashion-mnist:test:5", (3, 16, 16))
    assert x.shape == (5, 3, 16, 16) and y.shape == (5,) and torch.equal(x[:, 0], x[:, 2])
    r, none = load_images("random:3", (1, 8, 8), seed=1)
    assert r.shape == (3, 1, 8, 8) and none is None
    torch.save({"images": torch.rand(4, 1, 8, 8), "labels": torch.arange(4)}, tmp_path / "d.pt")
    assert load_images(str(tmp_path / "d.pt"), (1, 8, 8))[1].tolist() == [0, 1, 2, 3]
    with pytest.raises(UnsupportedModelError, match=r"images of shape \(4, 1, 8, 8\), the model takes"):
        load_images(str(tmp_path / "d.pt"), (3, 8, 8))
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("RGB", (10, 12), (255, 0, 0)).save(tmp_path / "imgs" / cls / "a.png")
    imgs, labels = load_images(str(tmp_path / "imgs"), (3, 8, 8))
    assert imgs.shape == (2, 3, 8, 8) and labels.tolist() == [0, 1] and float(imgs[0, 0].min()) == 1.0
    with pytest.raises(UnsupportedModelError, match="use fashion-mnist"):
        load_images("imagenet", (3, 8, 8))


# ---------------------------------------------------------------------------------------------- CNNs

REPVGG = "timm:repvgg_a0?features_only=True&out_indices=(1,)"


def test_a_module_cnn_maps_to_the_same_conv_graph_as_the_built_in_fold():
    from qsilicon.quant.frontend import import_model
    from qsilicon.quant.models.depthnet import DepthConfig, DepthNet
    from qsilicon.quant.ptq.graph import fold_depthnet

    torch.manual_seed(4)
    net = DepthNet(DepthConfig((8, 16, 24))).eval()
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    from qsilicon.quant.frontend.source import ImportedSource, export_source

    src = ImportedSource("module:DepthNet", net, export_source(net, (1, 3, 16, 16)), (1, 3, 16, 16))
    ci = import_model(src)
    ref = fold_depthnet(net)
    assert len(ci.nodes) == len(ref)
    names = {r.output: c.output for c, r in zip(ci.nodes, ref, strict=True)} | {"img": "img"}
    for c, r in zip(ci.nodes, ref, strict=True):
        assert c.inputs == tuple((names[t], up) for t, up in r.inputs)
        assert (c.stride, c.relu) == (r.stride, r.relu)
        assert torch.allclose(c.weight, r.weight, atol=1e-6) and torch.allclose(c.bias, r.bias, atol=1e-6)


def test_timm_repvgg_is_reparameterized_quantized_and_bit_exact_on_the_depth_iss():
    from qsilicon.hw.depth.compiler import compile_graph
    from qsilicon.hw.depth.isa import EngineConfig
    from qsilicon.hw.depth.iss import run_program as run_depth
    from qsilicon.quant.frontend import CnnImport, import_model
    from qsilicon.quant.ptq import method_config, quantize_graph
    from qsilicon.quant.ptq.export import export_graph

    ci = import_model(load_source(REPVGG, input_shape=(1, 3, 16, 16)))
    assert isinstance(ci, CnnImport)
    assert [(n.weight.shape[0], n.stride, n.relu) for n in ci.nodes] == [(48, 2, True), (48, 2, True), (48, 1, True)]
    assert "conv2d.default" in ci.operators and "batch_norm.default" not in ci.operators  # reparameterized
    x = torch.rand(20, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ig = export_graph(quantize_graph(ci.nodes, x[:16], None, method_config("quartdepth", 4, 4)))
    assert ig.tensors[ig.output].kind == "uniform" and ig.tensors[ig.output].bits == 8  # a ReLU output
    cfg = EngineConfig()
    prog = compile_graph(ig, cfg, height=16, width=16)
    mem = prog.with_input(ig.image_codes(x[16:17])[0])
    run_depth(mem, prog.prog_addr, cfg)
    assert torch.equal(prog.read(mem), ig.forward(x[16:17]))


@pytest.mark.parametrize(("spec", "words"), [
    ("timm:resnet10t?features_only=True&out_indices=(1,)", ["unsupported operator aten.max_pool2d.default",
                                                            "timm/models/_features.py:", "the depth engine runs"]),
    ("timm:mobilenetv3_small_050?features_only=True&out_indices=(0,)", ["unsupported operator aten.hardswish_"]),
])
def test_cnn_operators_the_depth_engine_does_not_run(spec, words):
    from qsilicon.quant.frontend import import_model

    with pytest.raises(UnsupportedModelError) as e:
        import_model(load_source(spec, input_shape=(1, 3, 16, 16)))
    assert "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_a_convolution_without_relu_inside_the_network_is_refused(tmp_path, monkeypatch):
    from qsilicon.quant.frontend import import_model

    mod = _write_module(tmp_path, monkeypatch, """
        from torch import nn

        def net():
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1))
    """)
    with pytest.raises(UnsupportedModelError, match="without ReLU feeds another layer.*activations are unsigned"):
        import_model(load_source(f"module:{mod}:net", input_shape=(1, 3, 8, 8)))


RES = """
import torch
from torch import nn

class Res(nn.Module):
    def __init__(self, skip_after_relu=False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.c1 = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Conv2d(16, 4, 1)
        self.skip_after_relu = skip_after_relu

    def forward(self, x):
        x = self.stem(x)
        y = self.c2(self.c1(x))
        if self.skip_after_relu:
            return self.head(torch.relu(y) + x)
        y += x
        return self.head(torch.relu(y))
"""


def test_identity_residual_adds_map_to_one_convolution_over_the_skip(tmp_path, monkeypatch):
    from qsilicon.hw.depth.compiler import compile_graph
    from qsilicon.hw.depth.isa import EngineConfig
    from qsilicon.hw.depth.iss import run_program as run_depth
    from qsilicon.quant.frontend import import_model
    from qsilicon.quant.ptq import method_config, quantize_graph
    from qsilicon.quant.ptq.export import export_graph

    mod = _write_module(tmp_path, monkeypatch, RES)
    ci = import_model(load_source(f"module:{mod}:Res", input_shape=(1, 3, 16, 16), seed=2))
    res = ci.nodes[2]
    assert res.inputs == (("c1", False), ("c0", False)) and res.weight.shape == (16, 32, 3, 3) and res.relu
    assert torch.equal(res.weight[:, 16:, 1, 1], torch.eye(16))  # the skip's identity at the kernel's centre
    x = torch.rand(20, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    ig = export_graph(quantize_graph(ci.nodes, x[:16], None, method_config("quartdepth", 4, 4)))
    cfg = EngineConfig()
    prog = compile_graph(ig, cfg, height=16, width=16)
    mem = prog.with_input(ig.image_codes(x[16:17])[0])
    run_depth(mem, prog.prog_addr, cfg)
    assert torch.equal(prog.read(mem), ig.forward(x[16:17]))
    with pytest.raises(UnsupportedModelError, match="an add other than an identity skip"):
        import_model(load_source(f"module:{mod}:Res?skip_after_relu=True", input_shape=(1, 3, 16, 16)))

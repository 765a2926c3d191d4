"""PhysMamba: paper-size parameter counts, official-checkpoint loading, output parity, tiny preset, errors.

The parity fixtures (released rPPG-Toolbox weights + outputs of the official code, see
``shared/weights/rppg/README.md``) live in the ``shared`` folder beside the repository checkout; set
``MMTRUST_SHARED`` to point elsewhere. Tests that need them are skipped when it is absent.

The released PhysMamba weights have a numerically dead Mamba branch, so their parity only checks the
CNN path; the ``physmamba_revived`` fixture (released PURE weights with seeded Mamba tensors) checks the
selective scan, the time-major token order and both scan directions.

Cost: ``test_parity_paper_size`` runs six PAPER-SIZE forwards (1x3x128x128x128, about 2 s each on 2 CPU
cores with the fast scan, plus checkpoint loading): released PURE / UBFC-rPPG / revived weights on inputs
(a) and (b); the (a) runs also compare per-module statistics (forward hooks) with the official run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmtrust.config import build_config
from mmtrust.methods.rppg import physmamba as physmamba_mod
from mmtrust.methods.rppg.physmamba import (
    CDC_T,
    MambaLayer,
    PhysMamba,
    PhysMambaConfig,
    PhysMambaRecipe,
    load_official,
)
from mmtrust.registry import _METHODS
from mmtrust.tasks.rppg import RPPGRecipe

PAPER_PARAMS = 728_769
CHECKPOINTS = {"PURE": "PURE_PhysMamba_DiffNormalized.pth", "UBFC-rPPG": "UBFC-rPPG_PhysMamba_DiffNormalized.pth"}
# spec table A.4 (official code + checkpoint)
MODULE_PARAMS = {
    "ConvBlock1": 1_248,
    "ConvBlock2": 13_920,
    "ConvBlock3": 55_488,
    "ConvBlock4": 16_576,
    "ConvBlock5": 4_192,
    "ConvBlock6": 3_168,
    "Block1": 155_776,
    "Block3": 155_776,
    "Block1.0": 110_592,  # CDC_T
    "Block1.1": 128,  # BatchNorm3d
    "Block1.3": 40_960,  # MambaLayer
    "Block1.4": 4_096,  # ChannelAttention3D
    "Block4": 42_560,
    "Block6": 42_560,
    "Block4.0": 27_648,
    "Block4.3": 13_824,
    "fuse_1": 6_336,
    "fuse_2": 6_336,
    "upsample1": 12_480,
    "upsample2": 13_968,
    "ConvBlockLast": 49,
}
TINY = PhysMambaConfig(frames=32, image_size=32, slow_width=16, fast_width=8)


def _weights_dir() -> Path:
    env = os.environ.get("MMTRUST_SHARED")
    shared = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return shared / "weights" / "rppg" if (shared / "weights" / "rppg").is_dir() else shared


def _require(name: str) -> Path:
    path = _weights_dir() / name
    if not path.is_file():
        pytest.skip(f"parity fixture {name} not found under {_weights_dir()} (set MMTRUST_SHARED)")
    return path


def _parity() -> dict:
    return json.loads(_require("parity.json").read_text())


def _info():
    try:
        from mmtrust.registry import get_method

        return get_method("physmamba")
    except Exception:  # other plugin modules may not exist yet
        return _METHODS["physmamba"]


def _build(preset: str) -> PhysMamba:
    info = _info()
    return info.model_cls(build_config(info.config_cls, info.presets, preset))


def _input(name: str) -> torch.Tensor:
    if name == "a":
        torch.manual_seed(0)
        return 0.5 * torch.randn(1, 3, 128, 128, 128)
    return torch.from_numpy(np.load(_require("parity_input_b.npy")))


def _revived_state_dict(parity: dict) -> dict[str, torch.Tensor]:
    """Released PURE weights with the manifest's norm1/mamba tensors substituted (prefix stripped)."""
    sd = torch.load(_require(CHECKPOINTS["PURE"]), map_location="cpu", weights_only=True)
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    flat = np.load(_require("physmamba_revived_mamba_weights.npy"))
    for entry in parity["physmamba_revived"]["manifest"]:
        assert entry["key"] in sd and list(sd[entry["key"]].shape) == entry["shape"], entry["key"]
        chunk = flat[entry["offset"] : entry["offset"] + entry["numel"]].reshape(entry["shape"])
        sd[entry["key"]] = torch.from_numpy(chunk.copy())
    return sd


def _assert_close_to_ref(y: torch.Tensor, ref_values: list[float], what: str) -> float:
    ref = torch.tensor(ref_values, dtype=torch.float32).reshape(1, -1)
    assert y.shape == ref.shape == (1, 128), what
    err = (y - ref).abs()
    bound = 1e-5 + 1e-4 * ref.abs()
    assert bool((err <= bound).all()), (
        f"{what}: max |diff| {err.max().item():.3g}, worst ratio {(err / bound).max().item():.3g}"
    )
    return err.max().item()


def _record_intermediates(model: PhysMamba) -> tuple[list[tuple[str, list[int], float, float]], list]:
    """Forward hooks named as in parity.json (``MaxpoolSpa`` once per call, ``BlockN.3.mamba`` on tokens).

    Each call records (name, shape, mean, abs max) of the module output.
    """
    seen: list[tuple[str, list[int], float, float]] = []
    handles = []
    names = [f"ConvBlock{i}" for i in range(1, 7)] + ["ConvBlockLast", "MaxpoolSpa", "fuse_1", "fuse_2",
                                                      "upsample1", "upsample2", "poolspa"]
    names += [f"drop_{i}" for i in range(1, 7)]
    for i in range(1, 7):
        names += [f"Block{i}", f"Block{i}.3", f"Block{i}.3.mamba"]
    for name in names:
        mod = model.get_submodule(name)
        label = name
        if name.endswith(".3"):
            label = f"{name}(MambaLayer)"
        elif name.endswith(".mamba"):
            label = f"{name}(Mamba, (B,L,C) tokens)"

        def hook(_m, _inp, out, label=label):
            seen.append((label, list(out.shape), out.double().mean().item(), out.abs().max().item()))

        handles.append(mod.register_forward_hook(hook))
    return seen, handles


# --------------------------------------------------------------------------- registry, config, sizes


def test_registered_with_contract():
    info = _info()
    assert info.model_cls is PhysMamba and info.config_cls is PhysMambaConfig
    assert info.family == "rppg" and info.task == "rppg" and info.trainable
    assert {"paper", "tiny"} <= set(info.presets)
    assert info.paper.arxiv == "2409.12031" and "SlowFast" in info.paper.title
    assert info.paper.code_url == "https://github.com/Chaoqi31/PhysMamba"
    model = _build("paper")
    assert model.input_type == "diffnormalized" and model.output_type == "diffnormalized"
    assert model.chunk_length == 128 and model.image_size == 128
    cfg = model.cfg
    assert (cfg.theta, cfg.slow_width, cfg.fast_width, cfg.d_state, cfg.scan) == (0.5, 64, 32, 16, "fast")
    train = cfg.train
    assert (train.epochs, train.batch_size, train.lr, train.weight_decay, train.optimizer, train.scheduler) == (
        20,
        4,
        3e-3,
        5e-4,
        "adam",
        "onecycle",
    )
    assert issubclass(model.recipe_cls, RPPGRecipe) and model.recipe_cls.batch_global_target
    quick = _build("quick")  # the demo preset: tiny network, trained about a minute
    assert (quick.chunk_length, quick.image_size, quick.cfg.train.epochs, quick.cfg.train.lr) == (32, 32, 4, 1e-2)


def test_paper_preset_parameter_counts_and_keys():
    model = _build("paper")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == PAPER_PARAMS
    for name, count in MODULE_PARAMS.items():
        assert sum(p.numel() for p in model.get_submodule(name).parameters()) == count, name
    keys = list(model.state_dict())
    assert len(keys) == 240
    assert keys[0] == "ConvBlock1.0.weight" and keys[-1] == "fuse_2.conv.1.num_batches_tracked"
    for key in ("Block1.0.conv.weight", "Block1.3.mamba.in_proj.weight", "Block1.3.mamba.A_b_log",
                "Block4.3.mamba.dt_proj_b.bias", "Block6.4.fc.2.weight", "upsample2.2.running_var"):
        assert key in keys
    mamba = model.Block1[3].mamba
    assert tuple(mamba.x_proj.weight.shape) == (36, 128) and tuple(mamba.dt_proj.weight.shape) == (128, 4)
    assert tuple(model.Block4[3].mamba.dt_proj_b.weight.shape) == (64, 2)


def test_init_follows_official_mamba_layer():
    layer = MambaLayer(32)
    m = layer.mamba
    for lin in (m.in_proj, m.x_proj, m.dt_proj, m.out_proj, m.x_proj_b, m.dt_proj_b):
        assert lin.weight.std().item() == pytest.approx(0.02, rel=0.35)
        assert lin.bias is None or torch.count_nonzero(lin.bias) == 0
    assert torch.equal(layer.norm1.weight, torch.ones(32)) and torch.equal(layer.norm2.bias, torch.zeros(32))


# --------------------------------------------------------------------------- official checkpoints


@pytest.mark.parametrize("dataset", sorted(CHECKPOINTS))
def test_official_weights_load_strictly(dataset):
    path = _require(CHECKPOINTS[dataset])
    model = load_official(PhysMamba(PhysMambaConfig()), path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert all(k.startswith("module.") for k in sd)
    stripped = {k.removeprefix("module."): v for k, v in sd.items()}
    assert list(stripped) == list(model.state_dict())  # same keys, same order
    for key in ("Block1.3.mamba.out_proj.weight", "ConvBlockLast.weight", "fuse_2.conv.1.running_var"):
        torch.testing.assert_close(model.state_dict()[key], stripped[key], rtol=0, atol=0)


def test_physnet_checkpoint_is_refused():
    path = _require("PURE_PhysNet_DiffNormalized.pth")
    with pytest.raises(ValueError, match="not a PhysMamba checkpoint") as err:
        PhysMamba(PhysMambaConfig()).load_pretrained(path)
    msg = str(err.value)
    assert "looks like a PhysNet checkpoint" in msg
    assert "unexpected keys" in msg and "ConvBlock7.0.weight" in msg
    assert "missing keys" in msg and "Block1.0.conv.weight" in msg
    assert "shape mismatches" in msg and "ConvBlock4.0.weight" in msg


def test_width_mismatch_and_module_prefix():
    src = PhysMamba(TINY)
    with pytest.raises(ValueError, match=r"shape mismatches \[ConvBlock1\.0\.weight") as err:
        load_official(PhysMamba(PhysMambaConfig()), src.state_dict())
    assert "PhysNet" not in str(err.value)
    prefixed = {f"module.{k}": v for k, v in src.state_dict().items()}
    dst = load_official(PhysMamba(TINY), {"state_dict": prefixed})
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)
    partial = dict(src.state_dict())
    partial.pop("Block2.3.mamba.D_b")
    with pytest.raises(ValueError, match=r"1 missing keys \[Block2\.3\.mamba\.D_b\]"):
        load_official(PhysMamba(TINY), partial)
    with pytest.raises(FileNotFoundError):
        load_official(dst, "/nonexistent/physmamba.pth")


# --------------------------------------------------------------------------- parity with the official code


@pytest.mark.parametrize("inp", ["a", "b"])
@pytest.mark.parametrize("weights", ["PURE", "UBFC-rPPG", "revived"])
def test_parity_paper_size(weights, inp):
    """PAPER-SIZE forward (seconds on CPU): output equals the official code's within 1e-5 + 1e-4*|ref|."""
    parity = _parity()
    model = PhysMamba(PhysMambaConfig())
    if weights == "revived":
        load_official(model, _revived_state_dict(parity))
        ref = parity["physmamba_revived"]["outputs"][inp]
    else:
        load_official(model, _require(CHECKPOINTS[weights]))
        ref = parity["physmamba"]["checkpoints"][weights]["outputs"][inp]
    model.eval()
    stats = ref.get("intermediates_sequential")
    seen, handles = _record_intermediates(model) if stats else ([], [])
    x = _input(inp)
    checksum = parity["inputs"][inp]["checksum"]
    assert list(x.shape) == checksum["shape"]
    np.testing.assert_allclose(x.flatten()[:8].numpy(), checksum["first8"], rtol=1e-6)
    with torch.no_grad():
        y = model(x)
    for h in handles:
        h.remove()
    _assert_close_to_ref(y, ref["rppg"], f"{weights}/{inp}")
    if stats:
        # per-module statistics of the official run (forward hooks in call order)
        assert [rec[0] for rec in seen] == [s["module"] for s in stats]
        for (name, shape, mean, amax), s in zip(seen, stats, strict=True):
            assert shape == s["shape"], name
            assert amax == pytest.approx(s["abs_max"], rel=1e-4, abs=1e-5), name
            assert mean == pytest.approx(s["mean"], rel=1e-3, abs=1e-5), name


# --------------------------------------------------------------------------- components


def test_cdc_t_equals_two_convolution_form():
    torch.manual_seed(0)
    conv = CDC_T(4, 6, theta=0.5)
    x = torch.randn(2, 4, 5, 7, 6)
    w = conv.conv.weight
    kd = (w[:, :, 0].sum((-2, -1)) + w[:, :, 2].sum((-2, -1)))[:, :, None, None, None]
    expected = F.conv3d(x, w, padding=1) - 0.5 * F.conv3d(x, kd)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
    conv.theta = 0.0
    torch.testing.assert_close(conv(x), F.conv3d(x, w, padding=1), rtol=1e-6, atol=1e-6)
    assert conv.conv.bias is None


def test_mamba_layer_token_order_and_post_norm():
    layer = MambaLayer(8).eval()
    seen = {}
    layer.mamba.register_forward_hook(lambda _m, inp, out: seen.update(tokens=inp[0], out=out))
    torch.manual_seed(0)
    x = torch.randn(2, 8, 3, 4, 5)
    with torch.no_grad():
        y = layer(x)
    tokens = seen["tokens"]  # norm1 of the time-major tokens
    assert tokens.shape == (2, 3 * 4 * 5, 8)
    t, h, w = 2, 1, 3
    torch.testing.assert_close(tokens[1, t * 20 + h * 5 + w], F.layer_norm(x[1, :, t, h, w], (8,)))
    flat = x.flatten(2).transpose(1, 2)
    expected = F.layer_norm(flat + seen["out"], (8,)).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(y, expected)
    y16 = layer(x.to(torch.bfloat16))
    assert y16.dtype == torch.float32


def _liven(model: torch.nn.Module) -> None:
    """Make every Mamba branch matter: the official init (std 0.02, dt = softplus(0)) leaves it tiny."""
    with torch.no_grad():
        for layer in (m for m in model.modules() if isinstance(m, MambaLayer)):
            mb = layer.mamba
            for lin in (mb.in_proj, mb.out_proj, mb.x_proj, mb.x_proj_b):
                lin.weight.mul_(25.0)
            dt = torch.full_like(mb.dt_proj.bias, 0.02)
            for proj in (mb.dt_proj, mb.dt_proj_b):
                proj.weight.zero_()
                proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # delta = softplus(bias) = 0.02: slow decay


def test_mamba_layer_is_bidirectional():
    torch.manual_seed(0)
    layer = MambaLayer(16)
    _liven(layer)
    layer.eval()
    x = torch.randn(1, 16, 2, 4, 4)  # 32 tokens; token 0 = (t0, h0, w0), token 31 = (t1, h3, w3)
    first, last = x.clone(), x.clone()
    first[0, :, 0, 0, 0] += torch.randn(16)  # not a constant shift: norm1 would remove it
    last[0, :, 1, 3, 3] += torch.randn(16)
    with torch.no_grad():
        y, y_first, y_last = layer(x), layer(first), layer(last)
    assert (y_first - y)[0, :, 1, 3, 3].abs().max() > 1e-3  # forward scan carries token 0 to the end
    assert (y_last - y)[0, :, 0, 0, 0].abs().max() > 1e-3  # backward scan carries the last token to the start


def test_fast_and_reference_scan_agree():
    torch.manual_seed(0)
    fast = PhysMamba(TINY)
    _liven(fast)
    fast.eval()
    ref = PhysMamba(dataclasses.replace(TINY, scan="ref"))
    ref.load_state_dict(fast.state_dict())
    ref.eval()
    x = torch.randn(1, 3, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-4, atol=1e-5)


def test_recipe_uses_batch_global_label_normalisation():
    torch.manual_seed(0)
    model = PhysMamba(TINY)
    recipe = model.recipe_cls(model, model.cfg.train)
    assert isinstance(recipe, PhysMambaRecipe) and recipe.batch_global_target is True
    off = PhysMamba(dataclasses.replace(TINY, batch_global_target=False))
    assert model.recipe_cls(off, off.cfg.train).batch_global_target is False
    x = torch.randn(2, 3, 32, 32, 32)
    y = torch.stack([torch.sin(torch.arange(32) / 3.0), 5 + 3 * torch.sin(torch.arange(32) / 3.0)])
    model.eval()
    with torch.no_grad():
        pred = model(x)
        loss, _ = recipe.compute_loss((x, y))
    from mmtrust.nn.losses import neg_pearson

    torch.testing.assert_close(loss, neg_pearson(pred, y, batch_global_target=True))
    assert not torch.allclose(loss, neg_pearson(pred, y))


# --------------------------------------------------------------------------- tiny preset, errors


def test_tiny_preset_forward_backward():
    torch.manual_seed(0)
    model = _build("tiny").train()
    cfg = model.cfg
    assert cfg.train.epochs == 2 and cfg.train.batch_size == 2
    x = torch.randn(2, 3, cfg.frames, cfg.image_size, cfg.image_size)
    y = model(x, fs=30.0)
    y.pow(2).mean().backward()
    assert y.shape == (2, cfg.frames)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(
    ("shape", "needle"),
    [
        ((3, 32, 32, 32), "5-D video"),
        ((1, 32, 3, 32, 32), "3 channels"),
        ((1, 3, 64, 32, 32), "T=32 frames"),
        ((1, 3, 30, 32, 32), "multiple of 4"),
        ((1, 3, 32, 40, 32), "multiples of 16"),
        ((1, 3, 32, 32, 8), "multiples of 16"),
    ],
)
def test_bad_input_shape(shape, needle):
    model = PhysMamba(TINY)
    with pytest.raises(ValueError, match=needle) as err:
        model(torch.zeros(shape))
    assert f"{tuple(shape)}" in str(err.value)  # the message shows what it got


def test_bad_config():
    with pytest.raises(ValueError, match="slow_width"):
        PhysMamba(PhysMambaConfig(slow_width=30))
    with pytest.raises(ValueError, match="fast_width"):
        PhysMamba(PhysMambaConfig(fast_width=7))
    with pytest.raises(ValueError, match="frames"):
        PhysMamba(PhysMambaConfig(frames=30))
    with pytest.raises(ValueError, match="image_size"):
        PhysMamba(PhysMambaConfig(image_size=72))
    with pytest.raises(ValueError, match="scan"):
        PhysMamba(PhysMambaConfig(scan="cuda"))
    doc = physmamba_mod.__doc__ or ""
    assert "Deviations from the paper" in doc and "Shape:" in doc

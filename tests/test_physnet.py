"""PhysNet: paper-size parameter count, official-checkpoint loading and output parity, the tiny preset.

The parity fixtures (released rPPG-Toolbox weights + outputs of the official code) live in the
``shared`` folder beside the repository checkout; set ``MMTRUST_SHARED`` to point elsewhere. Tests that
need them are skipped when it is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtrust.config import build_config
from mmtrust.methods.rppg import physnet as physnet_mod
from mmtrust.methods.rppg.physnet import PhysNet, PhysNetConfig, load_official
from mmtrust.registry import _METHODS

PAPER_PARAMS = 768_577
CHECKPOINTS = {"PURE": "PURE_PhysNet_DiffNormalized.pth", "UBFC-rPPG": "UBFC-rPPG_PhysNet_DiffNormalized.pth"}


def _weights_dir() -> Path:
    env = os.environ.get("MMTRUST_SHARED")
    shared = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return shared / "weights" / "rppg" if (shared / "weights" / "rppg").is_dir() else shared


def _require(name: str) -> Path:
    path = _weights_dir() / name
    if not path.is_file():
        pytest.skip(f"parity fixture {name} not found under {_weights_dir()} (set MMTRUST_SHARED)")
    return path


def _info():
    try:
        from mmtrust.registry import get_method

        return get_method("physnet")
    except Exception:  # other plugin modules may not exist yet
        return _METHODS["physnet"]


def _build(preset: str) -> PhysNet:
    info = _info()
    return info.model_cls(build_config(info.config_cls, info.presets, preset))


def test_registered_with_contract():
    info = _info()
    assert info.model_cls is PhysNet and info.config_cls is PhysNetConfig
    assert info.family == "rppg" and info.task == "rppg" and info.trainable
    assert {"paper", "tiny"} <= set(info.presets)
    assert info.paper.arxiv == "1905.02419"
    model = _build("paper")
    assert model.input_type == "diffnormalized" and model.output_type == "diffnormalized"
    assert model.chunk_length == 128 and model.image_size == 72
    train = model.cfg.train
    assert (train.epochs, train.batch_size, train.lr, train.optimizer, train.scheduler) == (
        30,
        4,
        9e-3,
        "adam",
        "onecycle",
    )


def test_paper_preset_parameter_count_and_keys():
    model = _build("paper")
    assert sum(p.numel() for p in model.parameters()) == PAPER_PARAMS
    keys = list(model.state_dict())
    assert len(keys) == 79
    assert keys[0] == "ConvBlock1.0.weight" and keys[-1] == "ConvBlock10.bias"
    assert "upsample2.1.running_var" in keys


@pytest.mark.parametrize("dataset", sorted(CHECKPOINTS))
def test_official_weights_load_strictly(dataset):
    path = _require(CHECKPOINTS[dataset])
    model = load_official(PhysNet(PhysNetConfig()), path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert set(sd) == set(model.state_dict())
    torch.testing.assert_close(model.ConvBlock10.weight.detach(), sd["ConvBlock10.weight"], rtol=0, atol=0)


@pytest.mark.parametrize("dataset", sorted(CHECKPOINTS))
def test_parity_with_official_outputs(dataset):
    ref_all = json.loads(_require("parity.json").read_text())["physnet"]["checkpoints"][dataset]
    assert ref_all["file"] == CHECKPOINTS[dataset]
    x = torch.from_numpy(np.load(_require("parity_input_b72.npy")))  # (1, 3, 128, 72, 72)
    model = load_official(PhysNet(PhysNetConfig()), _require(CHECKPOINTS[dataset])).eval()
    with torch.no_grad():
        feats = model.forward_features(x)
    y = feats["rppg"]
    ref = torch.tensor(ref_all["outputs"]["b72"]["rppg"], dtype=torch.float32).reshape(1, -1)
    assert y.shape == ref.shape == (1, 128)
    err = (y - ref).abs()
    bound = 1e-5 + 1e-4 * ref.abs()
    assert bool((err <= bound).all()), (
        f"max |diff| {err.max().item():.3g}, worst ratio {(err / bound).max().item():.3g}"
    )
    for name in ("x_visual3232", "x_visual1616"):
        aux = ref_all["outputs"]["b72"]["aux_outputs"][name]
        assert list(feats[name].shape) == aux["shape"]
        assert feats[name].mean().item() == pytest.approx(aux["mean"], abs=1e-5)
        assert feats[name].abs().max().item() == pytest.approx(aux["abs_max"], rel=1e-4)


def test_other_architecture_is_refused():
    path = _require("PURE_PhysMamba_DiffNormalized.pth")
    with pytest.raises(ValueError, match="not a PhysNet checkpoint") as err:
        load_official(PhysNet(PhysNetConfig()), path)
    msg = str(err.value)
    assert "unexpected keys" in msg and "Block1.0.conv.weight" in msg
    assert "missing keys" in msg and "ConvBlock7.0.weight" in msg
    assert "shape mismatches" in msg


def test_width_mismatch_and_module_prefix():
    tiny_cfg = PhysNetConfig(frames=32, image_size=32, width=16)
    src = PhysNet(tiny_cfg)
    with pytest.raises(ValueError, match=r"shape mismatches \[ConvBlock1\.0\.weight"):
        load_official(PhysNet(PhysNetConfig()), src.state_dict())
    prefixed = {f"module.{k}": v for k, v in src.state_dict().items()}
    dst = load_official(PhysNet(tiny_cfg), {"state_dict": prefixed})
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)
    with pytest.raises(FileNotFoundError):
        load_official(dst, "/nonexistent/physnet.pth")


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


def test_other_lengths_and_feature_shapes():
    model = PhysNet(PhysNetConfig(frames=32, image_size=32, width=16)).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, 48, 40, 36))
    assert feats["rppg"].shape == (1, 48)
    assert feats["x_visual6464"].shape == (1, 16, 48, 20, 18)
    assert feats["x_visual3232"].shape == (1, 16, 24, 10, 9)
    assert feats["x_visual1616"].shape == (1, 16, 12, 5, 4)


@pytest.mark.parametrize(
    ("shape", "needle"),
    [
        ((3, 32, 32, 32), "5-D video"),
        ((1, 32, 3, 32, 32), "3 channels"),
        ((1, 3, 30, 32, 32), "multiple of 4"),
        ((1, 3, 32, 8, 32), "H, W >= 16"),
    ],
)
def test_bad_input_shape(shape, needle):
    model = PhysNet(PhysNetConfig(frames=32, image_size=32, width=16))
    with pytest.raises(ValueError, match=needle) as err:
        model(torch.zeros(shape))
    assert f"{tuple(shape)}" in str(err.value)  # the message shows what it got


def test_bad_config():
    with pytest.raises(ValueError, match="width"):
        PhysNet(PhysNetConfig(width=6))
    with pytest.raises(ValueError, match="frames"):
        PhysNet(PhysNetConfig(frames=30))
    assert physnet_mod.__doc__ and "Deviations from the paper" in physnet_mod.__doc__

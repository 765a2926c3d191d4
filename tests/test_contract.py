"""One contract, every registered method: metadata, construct, forward, backward/train step, save/load."""

import dataclasses

import pytest
import torch

import mmtrust
from mmtrust.config import config_to_dict
from mmtrust.engine.checkpoint import CheckpointMismatchError, load_method, save_method
from mmtrust.registry import get_method, get_task

METHODS = mmtrust.list_methods()


def test_registry_is_populated():
    assert {"pos", "chrom", "green", "ica", "physnet"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_metadata(name):
    info = mmtrust.method_info(name)
    assert info["family"] and info["task"] and info["summary"]
    assert {"paper", "tiny"} <= set(info["presets"])
    paper = info["paper"]
    assert paper["title"] and paper["venue"] and paper["year"] and paper["licence"]
    assert paper["verified"] or paper["inferred"]
    assert dataclasses.is_dataclass(get_method(name).config_cls)


@pytest.mark.parametrize("name", METHODS)
def test_forward_train_step_and_roundtrip(name, tmp_path):
    entry = get_method(name)
    task = get_task(entry.task)
    torch.manual_seed(0)
    model = mmtrust.create_method(name, preset="tiny")
    x, y = task.example_batch(model)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == y.shape and torch.isfinite(out).all()

    if entry.trainable:
        module = task.recipe_cls(model, model.cfg.train)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
        before = [p.detach().clone() for p in model.parameters()]
        loss, _ = module.compute_loss((x, y))
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        opt.step()
        assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
        model.eval()
        with torch.no_grad():
            out = model(x)

    save_method(tmp_path / "ck", model, method=name, preset="tiny", config=config_to_dict(model.cfg))
    loaded, info = load_method(tmp_path / "ck", expected_method=name)
    assert info["method"] == name and info["preset"] == "tiny"
    with torch.no_grad():
        assert torch.allclose(loaded(x), out, atol=1e-6)
    other = next(m for m in METHODS if m != name)
    with pytest.raises(CheckpointMismatchError, match=f"{name!r}.*{other!r}"):
        load_method(tmp_path / "ck", expected_method=other)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(KeyError, match="Known methods: .*pos"):
        mmtrust.create_method("poss")
    with pytest.raises(KeyError, match="Did you mean 'pos'"):
        mmtrust.create_method("poss")
    with pytest.raises(KeyError, match="Known datasets: .*synthetic-rppg"):
        mmtrust.load_dataset("ubfc")


def test_config_overrides_and_errors():
    m = mmtrust.create_method("physnet", preset="tiny", **{"train.lr": "3e-3", "width": 8})
    assert m.cfg.train.lr == pytest.approx(3e-3) and m.cfg.width == 8
    with pytest.raises(ValueError, match="unknown config key 'widht'.*did you mean width"):
        mmtrust.create_method("physnet", preset="tiny", widht=8)
    with pytest.raises(ValueError, match="expected int"):
        mmtrust.create_method("physnet", preset="tiny", width="wide")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        mmtrust.create_method("physnet", preset="huge")

"""Online re-rendered training forgeries (``synthetic-deepfake?online=1``) and the ``strong`` training
augmentation (``augment=strong``) of the forgery task, on the tiny built-in data."""

import numpy as np
import pytest
import torch

import mmtrust
from mmtrust.data.synthetic_deepfake import OnlineSyntheticDeepfake, SyntheticDeepfake
from mmtrust.registry import get_task
from mmtrust.tasks.forgery import FaceFrames, augment_crop, flatten_items, resolve_data, train_augment


@pytest.fixture(scope="module")
def online(tiny_deepfake_root):
    return OnlineSyntheticDeepfake(tiny_deepfake_root)


def test_build_seed_reproduces_the_cache(online):
    # the re-made canvases and shared draws give back every cached train crop bit for bit
    for i in range(len(online)):
        assert np.array_equal(online.render(i, None).image, online[i].image), online.records[i]["id"]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(online.render_epoch(0), online, strict=True))


def test_epochs_give_fresh_deterministic_renders_of_train_identities(online):
    e1, e2, e1b = online.render_epoch(1), online.render_epoch(2), online.render_epoch(1)
    kinds = {s.forgery_type for s in e1}
    assert kinds == {"real", "sbi", "swap", "generator"}
    for a, b, c, r in zip(e1, e2, e1b, online.records, strict=True):
        assert a.id == b.id == r["id"] and a.forgery_type == b.forgery_type == r["kind"]
        assert a.label == b.label == (0 if r["kind"] == "real" else 1)
        assert a.identity in online.train_identities
        assert not np.array_equal(a.image, b.image), a.id  # a new render every epoch, reals included
        assert np.array_equal(a.image, c.image)  # deterministic in (seed, epoch)
        assert a.image.shape == online[0].image.shape and a.image.dtype == np.uint8
        if a.forgery_type == "swap":
            assert a.meta["donor_identity"] in online.train_identities and a.meta["donor_identity"] != a.identity
        if a.forgery_type in ("sbi", "swap"):
            assert a.mask.max() > 0.5  # a blend happened
        if a.forgery_type == "real":
            assert a.mask.max() == 0
    assert set(online.train_identities).isdisjoint(online.info["identities"]["val"])
    assert set(online.train_identities).isdisjoint(online.info["identities"]["test"])


def test_online_option_touches_only_the_train_split(tiny_deepfake_root):
    task = get_task("forgery")
    spec = f"synthetic-deepfake:{tiny_deepfake_root}?preset=tiny"
    tr = task.load_data(spec + "&online=1&kinds=[sbi]", "train", 32, progress=False)
    assert isinstance(tr, OnlineSyntheticDeepfake)
    assert {s.forgery_type for s in tr.render_epoch(3)} == {"real", "sbi"}
    for split in ("val", "test"):
        plain = task.load_data(spec, split, 32, progress=False)
        on = task.load_data(spec + "&online=1&augment=strong", split, 32, progress=False)
        assert type(on) is SyntheticDeepfake and on.records == plain.records
        assert all(np.array_equal(a.image, b.image) for a, b in zip(on, plain, strict=True))
    assert type(task.load_data(spec, "train", 32, progress=False)) is SyntheticDeepfake  # opt-in


def test_face_frames_set_epoch_and_strong_augment(online):
    ff = FaceFrames(online, 32, augment="strong")
    x0 = torch.stack([ff.pixels(i) for i in range(len(ff))])
    assert not ff.set_epoch(0) and torch.equal(torch.stack([ff.pixels(i) for i in range(len(ff))]), x0)
    assert ff.set_epoch(1)
    x1 = torch.stack([ff.pixels(i) for i in range(len(ff))])  # rendered when read
    assert not torch.equal(x1, x0) and x1.shape == x0.shape and x1.dtype == torch.uint8
    eager = flatten_items(online.render_epoch(1), 32)[0]  # the whole epoch rendered at once: the same crops
    assert torch.equal(x1, torch.from_numpy(eager).permute(0, 3, 1, 2))
    assert np.array_equal(ff.labels, online.labels)
    a, ya = ff[0]
    b, _ = ff[0]
    assert a.shape == (3, 32, 32) and 0 <= float(a.min()) and float(a.max()) <= 1 and float(ya) == online.labels[0]
    assert not torch.equal(a, b)  # random per draw
    plain = FaceFrames(online, 32, augment="none")
    assert torch.equal(plain[0][0], plain.x[0].float() / 255)
    assert plain.set_epoch(1)  # re-rendering does not depend on the augmentation
    img = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    out = augment_crop(img, np.random.default_rng(1))
    assert out.shape == img.shape and out.dtype == np.uint8
    with pytest.raises(ValueError, match="augment"):
        FaceFrames(online, 32, augment="heavy")


def test_protocol_options_and_train_augment():
    assert resolve_data("protocol:synthetic-intra?online=1", "train") == (
        "synthetic-deepfake?preset=quick&online=1", "train")
    assert resolve_data("protocol:synthetic-cross-forgery?online=1&augment=strong", "test") == (
        "synthetic-deepfake?preset=quick&kinds=[swap, generator]&online=1&augment=strong", "test")
    assert train_augment("protocol:synthetic-intra?augment=strong") == "strong"
    assert train_augment("synthetic-deepfake?preset=tiny") == "flip"
    with pytest.raises(ValueError, match="augment"):
        train_augment("synthetic-deepfake?augment=heavy")


def test_training_re_renders_every_epoch(tiny_deepfake_root, tmp_path, monkeypatch):
    seen = []
    orig = FaceFrames.set_epoch

    def spy(self, epoch):
        changed = orig(self, epoch)
        seen.append((epoch, changed, sum(self.pixels(i).sum().item() for i in range(len(self)))))
        return changed

    monkeypatch.setattr(FaceFrames, "set_epoch", spy)
    task = get_task("forgery")
    model = mmtrust.create_method("dtn", preset="tiny")
    model.cfg.train.epochs = 2
    spec = f"synthetic-deepfake:{tiny_deepfake_root}?preset=tiny&online=1&augment=strong"
    task.train(model, model.cfg, spec, tmp_path, progress=False)
    # engine.fit sets the starting epoch before the loader is iterated, the epoch hook then sets each epoch
    assert [(e, c) for e, c, _ in seen] == [(0, False), (0, False), (1, True)]
    assert seen[0][2] != seen[-1][2]

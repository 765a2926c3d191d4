"""The forgery task on the tiny built-in data: data specs and protocols, training with validation selection,
frame/video/per-type metrics, attention logging, born-again generations, predict on a shipped photo/video."""

import csv
import json

import numpy as np
import pytest
import torch

import mmtrust
from mmtrust.registry import get_method, get_task


@pytest.fixture(scope="module")
def task():
    return get_task("forgery")


def test_data_specs_kinds_and_protocols(task, tiny_deepfake_root, tmp_path):
    spec = f"synthetic-deepfake:{tiny_deepfake_root}?preset=tiny"
    train = task.load_data(spec, "train", 32, progress=False)
    sbi = task.load_data(spec + "&kinds=[sbi]", "train", 32, progress=False)
    assert {r["kind"] for r in train.records} == {"real", "sbi", "swap", "generator"}
    assert {r["kind"] for r in sbi.records} == {"real", "sbi"}
    proto = tmp_path / "p.yaml"
    proto.write_text(f'name: p\ntrain_data: "{spec}&kinds=[sbi]"\ntest_data: "{spec}&kinds=[swap]"\ntest_split: test\n')
    tr, te = (task.load_data(str(proto), s, 32, progress=False) for s in ("train", "test"))
    assert {r["kind"] for r in tr.records} == {"real", "sbi"} and tr.split == "train"
    assert {r["kind"] for r in te.records} == {"real", "swap"} and te.split == "test"
    assert not (tr.identities & te.identities)  # identity-disjoint
    with pytest.raises(ValueError, match="forgery dataset"):
        task.load_data("no-such-data", "train", 32)
    from mmtrust.protocols import list_protocols

    assert {"synthetic-intra", "synthetic-cross-forgery", "ffpp-to-celebdf"} <= set(list_protocols("forgery"))


def test_train_selects_on_val_and_reports_metrics(task, tiny_deepfake_root, tmp_path):
    spec = f"synthetic-deepfake:{tiny_deepfake_root}?preset=tiny"
    entry = get_method("dtn")
    row = task.bench(entry, "tiny", spec, tmp_path, quick=True, overrides={"train.epochs": 1})
    m = row["metrics"]
    for k in ("AUC", "EER", "ACC", "AP", "AUC_sbi", "AUC_swap", "AUC_generator"):
        assert 0.0 <= m[k] <= 1.0, k
    assert m["n_frames"] == 8 and m["n_real"] == 2 and 0.0 < m["attn_similarity"] <= 1.0
    assert (tmp_path / "dtn_roc.png").stat().st_size > 1000
    run = tmp_path / "train" / "dtn"
    assert list((run / "checkpoints").glob("best-*.ckpt"))  # chosen by validation loss
    rows = list(csv.DictReader(open(run / "logs" / "metrics.csv")))
    assert any(r.get("train_attn_sim") for r in rows) and any(r.get("val_loss") for r in rows)
    assert any(r.get("train_kd") for r in rows)  # DSD active from epoch 0 in the tiny preset


def test_evaluate_video_level_write_eval_and_one_class_error(task, tmp_path):
    model = mmtrust.create_method("vit", preset="tiny").eval()

    class Vid:
        def __init__(self, i, label):
            self.id, self.label, self.forgery_type = f"v{i}", label, "real" if label == 0 else "swap"
            self.frames = np.random.default_rng(i).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)

    metrics, records = task.evaluate(model, [Vid(i, i % 2) for i in range(6)])
    assert metrics["n_frames"] == 18 and metrics["n_videos"] == 6 and "video_AUC" in metrics
    assert len(records) == 18 and all(0 <= r["fake_prob"] <= 1 for r in records)
    task.write_eval(tmp_path / "ev", "vit", "videos", "test", metrics, records, None)
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["metrics"]["AUC"] == metrics["AUC"] and len(saved["crops"]) == 18
    assert (tmp_path / "ev" / "roc.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="one class"):
        task.evaluate(model, [Vid(0, 1), Vid(1, 1)])


def test_born_again_generations(task, tiny_deepfake_root, tmp_path):
    model = mmtrust.create_method("dtn", preset="tiny", **{"dsd.teacher": "previous", "dsd.generations": 2})
    assert model.generations() == 2
    res = task.train(model, model.cfg, f"synthetic-deepfake:{tiny_deepfake_root}?preset=tiny", tmp_path, progress=False)
    assert (tmp_path / "gen0" / "checkpoints").is_dir() and (tmp_path / "gen1" / "checkpoints").is_dir()
    rows1 = list(csv.DictReader(open(tmp_path / "gen1" / "logs" / "metrics.csv")))
    rows0 = list(csv.DictReader(open(tmp_path / "gen0" / "logs" / "metrics.csv")))
    assert any(r.get("train_kd") for r in rows1) and not any(r.get("train_kd") for r in rows0)
    assert res.train_seconds > 0


def test_predict_on_a_shipped_photo_and_a_video(task, tmp_path):
    import cv2
    from skimage import data as skdata

    from mmtrust.data.video import write_video

    photo = skdata.astronaut()  # NASA photo, public domain
    img = tmp_path / "astronaut.png"
    cv2.imwrite(str(img), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    torch.manual_seed(0)
    model = mmtrust.create_method("dtn", preset="tiny").eval()
    res = task.predict(model, img, tmp_path / "out", detector="haar")
    assert res["kind"] == "image" and res["face_found"] and 0 <= res["fake_prob"] <= 1
    face = res["faces"][0]
    x, y, w, h = face["box"]
    assert 100 < x + w / 2 < 300 and 0 < y + h / 2 < 250  # her face, upper middle of the photo
    assert (tmp_path / "out" / "astronaut_forgery.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "astronaut_forgery.json").read_text())["fake_prob"] == res["fake_prob"]

    small = cv2.resize(photo, (256, 256))
    frames = np.stack([np.roll(small, k, axis=1) for k in range(0, 12, 2)])  # 6 frames, slight motion
    vid = tmp_path / "clip.avi"
    write_video(vid, frames, fps=10)
    out = task.predict(model, vid, tmp_path / "out", detector="haar", n_frames=4)
    assert out["kind"] == "video" and out["n_frames"] == 4
    probs = [f["faces"][0]["fake_prob"] for f in out["frames"]]
    assert out["fake_prob"] == pytest.approx(float(np.mean(probs)))


def test_a_model_without_attention_has_no_attention_similarity(task, tiny_deepfake_root):
    """The CNN baseline has no attention maps: the metric is left out, not reported as nan."""
    from mmtrust import create_method

    model = create_method("effnet-lite0", preset="tiny").eval()
    test = task.load_data(f"synthetic-deepfake:{tiny_deepfake_root}?preset=tiny", "test", model.image_size, progress=False)
    m, _ = task.evaluate(model, test)
    assert "attn_similarity" not in m and 0.0 <= m["AUC"] <= 1.0


def test_val_auc_is_logged_and_selects_the_kept_epoch(task, tiny_deepfake_root, tmp_path):
    """With train.monitor=val_auc the kept epoch is the one with the highest validation AUC, and the logged
    val_auc is the AUC of that model's scores on the validation split (checked with scikit-learn)."""
    from sklearn.metrics import roc_auc_score

    from mmtrust.config import build_config
    from mmtrust.tasks.forgery import FaceFrames

    spec = f"synthetic-deepfake:{tiny_deepfake_root}?preset=tiny"
    entry = get_method("dtn")
    cfg = build_config(entry.config_cls, entry.presets, "tiny",
                       overrides={"train.epochs": 3, "train.monitor": "val_auc", "dsd.enabled": False})
    torch.manual_seed(0)
    model = entry.model_cls(cfg)
    res = task.train(model, cfg, spec, tmp_path / "run", progress=False)
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "logs" / "metrics.csv")) if r.get("val_auc")]
    aucs = {int(r["epoch"]): float(r["val_auc"]) for r in rows}
    assert sorted(aucs) == [0, 1, 2] and all(0.0 <= a <= 1.0 for a in aucs.values())
    best_epoch = int(res.best_path.stem.split("=")[1])
    assert aucs[best_epoch] == max(aucs.values())
    val = FaceFrames(task.load_data(spec, "val", model.image_size, progress=False), model.image_size)
    scores, _ = task.scores(model, val)
    assert roc_auc_score(val.labels, scores) == pytest.approx(aucs[best_epoch], abs=1e-4)


def test_val_auc_ranks_all_batches_on_one_scale():
    """One validation batch whose logits all lie in [0, 1] and one whose logits do not: the logged val_auc is
    still the AUC of the whole split (torchmetrics alone would apply the sigmoid to the second batch only).
    A one-class validation split logs no val_auc and cannot be selected on."""
    import lightning as L
    from sklearn.metrics import roc_auc_score
    from torch.utils.data import DataLoader, TensorDataset

    from mmtrust.config import TrainSettings
    from mmtrust.tasks.forgery import ForgeryRecipe

    class Echo(torch.nn.Module):  # the "image" is the logit
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x.reshape(len(x)) * self.w

    logits = torch.tensor([0.9, 0.8, 0.2, 0.1, 0.85, 0.15, 3.0, -3.0, 0.5, -0.5, 2.0, -2.0])
    labels = torch.tensor([0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 0])
    loader = DataLoader(TensorDataset(logits[:, None], labels), batch_size=6)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    out = trainer.validate(ForgeryRecipe(Echo(), TrainSettings()), loader, verbose=False)[0]
    assert out["val_auc"] == pytest.approx(roc_auc_score(labels.numpy(), logits.numpy()), abs=1e-6)
    # a validation split of one class: no val_auc is logged; choosing the epoch on it is refused, with the counts
    one_class = DataLoader(TensorDataset(logits[:, None], torch.zeros(12, dtype=torch.long)), batch_size=6)
    out = trainer.validate(ForgeryRecipe(Echo(), TrainSettings()), one_class, verbose=False)[0]
    assert "val_auc" not in out and "val_loss" in out
    with pytest.raises(ValueError, match="12 real and 0 fake"):
        trainer.validate(ForgeryRecipe(Echo(), TrainSettings(monitor="val_auc")), one_class, verbose=False)

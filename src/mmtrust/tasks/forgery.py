"""The face-forgery task: binary real (0) / fake (1) detection, trained and evaluated the same way for every
forgery method (DTN and its baselines).

* **Model contract** (:class:`~mmtrust.methods.forgery.base.ForgeryModel`): ``model(x)`` with ``x`` float
  ``(B, 3, S, S)`` RGB in ``[0, 1]`` (``S = model.image_size``) returns one fake logit per image ``(B,)``;
  ``model.aux_loss()`` adds auxiliary training losses (MoE load balancing), ``model.attn_similarity()`` the
  attention-collapse measure of the last forward (NaN for models without attention).
* **Training** (:class:`ForgeryRecipe`): binary cross-entropy on the logit (a 2-way softmax with one logit
  fixed at 0), plus the model's auxiliary loss, plus a recipe's extra term (DTN's self-distillation
  overrides :meth:`ForgeryRecipe.extra_loss`). Training augmentation from the data string's ``augment=``
  option: ``flip`` (default: random horizontal flips), ``strong`` (:func:`augment_crop`: random resized
  crop, colour jitter, JPEG, flip) or ``none``; ``synthetic-deepfake?online=1`` re-renders the train
  split's crops every epoch (:meth:`FaceFrames.set_epoch`). The epoch kept is the best on the
  **validation** split by ``train.monitor`` (the engine's rule: the lowest ``val_loss`` unless set; the
  recipe also logs ``val_auc``, the AUC of the whole validation split); the test split is never used for
  selection.
* **Evaluation**: frame-level AUC, EER, ACC (at 0.5), AP, video-level ones over the mean frame score per
  video (DeepfakeBench), ``AUC_<type>`` for each forgery type against all real frames, and
  ``attn_similarity`` (mean over test batches; left out for a model without attention).
* **Data**: ``--data`` is a registered forgery dataset (``synthetic-deepfake``, ``faceforensics++:ROOT``,
  ...), options after ``?`` (``synthetic-deepfake?preset=quick&kinds=[sbi]``), or ``protocol:NAME`` /
  a protocol YAML (``protocols/forgery/*.yaml``): its ``train_data`` gives the train and val splits, its
  ``test_data`` (``test_split``) the test split. Intra-dataset, cross-forgery (``kinds=`` for the built-in
  data, ``methods=`` for FF++) and cross-dataset (FF++ -> Celeb-DF / DFDC) protocols ship as YAML.
* **Predict**: an image or a video; faces are detected (``create_detector("auto")``), cropped x1.3 like the
  training data, scored; a video is sampled at ``n_frames`` evenly spaced frames and aggregated (mean of
  the per-frame score of the largest face). Writes ``NAME_forgery.png`` and ``NAME_forgery.json``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..config import parse_data_options
from ..data.cache import atomic_path
from ..engine.module import TaskModule
from ..metrics.classification import binary_auc, forgery_report
from ..registry import get_dataset, list_datasets, register_task

__all__ = ["ForgeryTask", "ForgeryRecipe", "FaceFrames", "augment_crop", "flatten_items", "resolve_data",
           "train_augment"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


# ------------------------------------------------------------------------------------------------ data
def flatten_items(dataset: Any, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Every face crop of a forgery dataset: ``(images uint8 (N, S, S, 3), labels (N,), videos, types)``.

    Images (:class:`ForgerySample`) are their own video; a :class:`ForgeryVideo` contributes each frame.
    Crops of another size are resized (``INTER_AREA`` when shrinking).
    """
    import cv2

    imgs, labels, videos, types = [], [], [], []

    def add(img: np.ndarray, label: int, video: str, kind: str) -> None:
        if img.shape[0] != image_size or img.shape[1] != image_size:
            shrink = img.shape[0] > image_size
            img = cv2.resize(img, (image_size, image_size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        imgs.append(np.ascontiguousarray(img[..., :3]))
        labels.append(int(label))
        videos.append(video)
        types.append(kind)

    for item in dataset:
        if hasattr(item, "image"):
            add(item.image, item.label, item.video or item.id, item.forgery_type)
        else:
            for frame in item.frames:
                add(frame, item.label, item.id, item.forgery_type)
    if not imgs:
        raise ValueError(f"the dataset {dataset!r} holds no face crop")
    return np.stack(imgs), np.asarray(labels, np.int64), videos, types


AUGMENTS = ("none", "flip", "strong")


def augment_crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ``strong`` training augmentation of one uint8 ``(S, S, 3)`` face crop (same size out), applied to
    real and fake crops alike: random resized crop (area 0.75-1, aspect 0.9-1.1, resized back to ``S``),
    colour jitter (p 0.8: brightness, contrast, saturation x0.8-1.2), JPEG re-compression (p 0.3, quality
    60-95) and a horizontal flip (p 0.5)."""
    import cv2

    from ..data.faces.material import jpeg

    s = img.shape[0]
    area, ratio = rng.uniform(0.75, 1.0), np.exp(rng.uniform(np.log(0.9), np.log(1.1)))
    w = int(round(min(s, s * np.sqrt(area * ratio))))
    h = int(round(min(s, s * np.sqrt(area / ratio))))
    x0, y0 = int(rng.integers(0, s - w + 1)), int(rng.integers(0, s - h + 1))
    out = cv2.resize(img[y0:y0 + h, x0:x0 + w], (s, s), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    if rng.random() < 0.8:
        b, c, sat = rng.uniform(0.8, 1.2, 3)
        out = out * b
        out = (out - out.mean()) * c + out.mean()
        grey = out.mean(-1, keepdims=True)
        out = grey + (out - grey) * sat
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        out = jpeg(out, int(rng.integers(60, 96)))
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


class FaceFrames(Dataset):
    """Face crops as ``(x float (3, S, S) in [0, 1], y float ())``.

    ``augment``: ``"none"`` (or False), ``"flip"`` (or True: random horizontal flip) or ``"strong"``
    (:func:`augment_crop`). A dataset with a ``render_epoch(epoch)`` method (the online built-in data,
    ``synthetic-deepfake?online=1``) is re-rendered by :meth:`set_epoch`, which the engine calls before every
    epoch (``engine.fit`` and ``TaskModule.on_train_epoch_start``, before the loader's workers copy the
    dataset); ids, labels and kinds must stay the same, only the pixels change.
    """

    def __init__(self, dataset: Any, image_size: int, augment: bool | str = False) -> None:
        imgs, self.labels, self.videos, self.types = flatten_items(dataset, image_size)
        self.x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S) uint8
        self.augment = ("flip" if augment else "none") if isinstance(augment, bool) else augment
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
        self.dataset, self.image_size, self.epoch = dataset, image_size, 0
        # one crop per sample and a per-sample render(i, epoch): crops of epoch >= 1 are rendered when read,
        # i.e. spread over the loader's workers (and DDP ranks read only their share)
        self._render = getattr(dataset, "render", None) if len(self.labels) == len(dataset) else None

    def set_epoch(self, epoch: int) -> bool:
        """Re-render the crops for ``epoch`` where the dataset can (returns whether the pixels changed)."""
        render = getattr(self.dataset, "render_epoch", None)
        if render is None or epoch == self.epoch:
            return False
        if self._render is not None:  # rendered lazily in pixels()
            self.epoch = epoch
            return True
        imgs, labels, videos, types = flatten_items(render(epoch), self.image_size)
        if not (np.array_equal(labels, self.labels) and videos == self.videos and types == self.types):
            raise RuntimeError("an epoch's re-render changed the samples' labels, ids or kinds")
        self.x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S) uint8
        self.epoch = epoch
        return True

    def pixels(self, i: int) -> torch.Tensor:
        """Crop ``i`` of the current epoch, ``(3, S, S)`` uint8 (before augmentation)."""
        if self._render is None or self.epoch <= 0:
            return self.x[i]
        sample = self._render(i, self.epoch)
        if int(sample.label) != int(self.labels[i]):
            raise RuntimeError(f"the epoch-{self.epoch} render of sample {i} changed its label")
        return torch.from_numpy(flatten_items([sample], self.image_size)[0][0]).permute(2, 0, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.pixels(i)  # (3, S, S) uint8
        if self.augment == "strong":
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))  # follows torch's (Lightning's) seed
            img = augment_crop(pixels.permute(1, 2, 0).numpy(), rng)  # (S, S, 3) uint8
            x = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0  # (3, S, S)
        else:
            x = pixels.float() / 255.0  # (3, S, S)
            if self.augment == "flip" and torch.rand(()) < 0.5:
                x = x.flip(-1)
        return x, torch.tensor(float(self.labels[i]))


#: options of a ``--data`` string that the task reads itself (the dataset never sees them)
TASK_DATA_OPTIONS = {"augment": "flip"}


def train_augment(data: str) -> str:
    """The training augmentation a ``--data`` string asks for (``augment=none|flip|strong``; default flip)."""
    value = parse_data_options(resolve_data(data, "train")[0])[1].get("augment", TASK_DATA_OPTIONS["augment"])
    if value not in AUGMENTS:
        raise ValueError(f"augment={value!r}: expected one of {', '.join(AUGMENTS)}")
    return value


def resolve_data(data: str, split: str) -> tuple[str, str]:
    """A protocol spec (``protocol:NAME`` or a ``.yaml`` path) -> the dataset string and split to read.

    Options after the protocol (``protocol:synthetic-intra?online=1&augment=strong``) are appended to the
    protocol's dataset strings (train and test alike; ``online`` and ``augment`` act on the train split only).
    """
    from ..protocols import load_protocol

    base, _, extra = data.partition("?")
    spec = base.removeprefix("protocol:") if base.startswith("protocol:") else (
        base if base.endswith((".yaml", ".yml")) else None)
    if spec is None:
        return data, split
    proto = load_protocol(spec, family="forgery")
    out, out_split = (proto.test_data, proto.test_split) if split == "test" else (proto.train_data, split)
    if extra:
        out = f"{out}{'&' if '?' in out else '?'}{extra}"
    return out, out_split


# ---------------------------------------------------------------------------------------------- recipe
class ForgeryRecipe(TaskModule):
    """Binary cross-entropy on the fake logit + the model's auxiliary loss + :meth:`extra_loss`."""

    def __init__(self, model: torch.nn.Module, train: Any, teacher: torch.nn.Module | None = None) -> None:
        super().__init__(model, train)
        self._teacher = [teacher]  # a plain list: the teacher is not a submodule (not in checkpoints)
        from torchmetrics.aggregation import SumMetric
        from torchmetrics.classification import BinaryAUROC

        # AUC over the whole validation split (gathered across DDP ranks), logged as val_auc: the selection
        # quantity with train.monitor=val_auc. Metric states are not persistent, so checkpoints are unchanged.
        self.val_auroc, self.val_fake, self.val_count = BinaryAUROC(), SumMetric(), SumMetric()
        self._val_logits: torch.Tensor | None = None

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().validation_step(batch, batch_idx)
        if self._val_logits is not None:
            # probabilities, not logits: torchmetrics would apply the sigmoid batch by batch, only to batches
            # with a value outside [0, 1], mixing two scales in one ranking
            y = batch[1].long()
            self.val_auroc.update(torch.sigmoid(self._val_logits), y)
            self.val_fake.update(y.sum().float())
            self.val_count.update(float(len(y)))  # a number: made on the metric's device
        return loss

    def on_validation_epoch_end(self) -> None:
        if self.val_count.update_count == 0:
            return
        n, fake = int(self.val_count.compute()), int(self.val_fake.compute())  # whole split, all ranks
        if 0 < fake < n:
            self.log("val_auc", self.val_auroc.compute(), on_epoch=True, sync_dist=True)  # same on every rank
        elif self.train_cfg.monitor == "val_auc" and not self.trainer.sanity_checking:
            raise ValueError(f"train.monitor=val_auc needs real and fake crops in the validation split; it holds "
                             f"{n - fake} real and {fake} fake: give a validation split with both classes or "
                             f"choose the epoch on val_loss")
        for metric in (self.val_auroc, self.val_fake, self.val_count):
            metric.reset()

    @property
    def teacher(self) -> torch.nn.Module | None:
        return self._teacher[0]

    def extra_loss(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor | None, dict]:
        return None, {}

    def compute_loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        y = y.float()
        logits = self.model(x)  # (B,)
        self._val_logits = None if self.training else logits.detach()
        bce = F.binary_cross_entropy_with_logits(logits, y)
        loss = bce
        logs: dict[str, Any] = {"bce": bce.detach(), "acc": ((logits > 0).float() == y).float().mean()}
        aux = self.model.aux_loss() if hasattr(self.model, "aux_loss") else None
        if aux is not None:
            loss = loss + aux
            logs["aux"] = aux.detach()
        extra, extra_logs = self.extra_loss(x, y, logits)
        if extra is not None:
            loss = loss + extra
        logs.update(extra_logs)
        sim = self.model.attn_similarity() if hasattr(self.model, "attn_similarity") else None
        if sim is not None and math.isfinite(float(sim)):
            logs["attn_sim"] = float(sim)
        return loss, logs


# ------------------------------------------------------------------------------------------------ task
@register_task("forgery")
class ForgeryTask:
    """Train / evaluate / predict / benchmark for face-forgery detectors (label 1 = fake)."""

    recipe_cls = ForgeryRecipe

    # ------------------------------------------------------------------ contract
    def example_batch(self, model: torch.nn.Module, batch_size: int = 2, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(batch_size, 3, model.image_size, model.image_size, generator=g)
        y = (torch.arange(batch_size) % 2).float()  # real, fake, real, ...
        return x, y

    # ------------------------------------------------------------------ data
    def load_data(self, data: str, split: str, image_size: int, progress: bool = True, **kw: Any):
        """``data``: a forgery dataset name, ``NAME:ROOT``, either with ``?k=v&...`` options, or a protocol."""
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"unknown split {split!r}; expected train, val, test or all")
        data, split = resolve_data(data, split)
        data, opts = parse_data_options(data)
        for key in TASK_DATA_OPTIONS:  # the task's own options (train_augment reads them)
            opts.pop(key, None)
        kw.update(opts)
        known = list_datasets("forgery")
        if data in known:
            name, root = data, None
        elif ":" in data and not Path(data).exists() and data.split(":", 1)[0] in known:
            name, root = data.split(":", 1)
        else:
            raise ValueError(f"--data {data!r}: expected a forgery dataset ({', '.join(known)}), NAME:ROOT, "
                             f"or protocol:NAME")
        info = get_dataset(name)
        if not info.builtin:  # real benchmarks crop their faces at the model's size once (cached)
            kw.setdefault("image_size", image_size)
        try:
            return info.factory(root=root, split=split, progress=progress, **kw)
        except TypeError as err:  # an unknown option
            raise ValueError(f"dataset {name!r}: {err}") from err

    # ------------------------------------------------------------------ train
    def train(self, model: torch.nn.Module, cfg: Any, data: str, out_dir: str | Path, *, devices: int | str = 1,
              accelerator: str = "auto", num_nodes: int = 1, resume: bool = False, progress: bool = True,
              stop_after_epochs: int | None = None):
        """Fit on the train split, keeping the best epoch on the validation split by ``train.monitor``. A model with
        ``generations > 1`` (born-again self-distillation) is trained that many times from a fresh
        initialisation, each generation taught by the previous one (``OUT/gen<k>/``; the last is returned)."""
        import copy

        from ..config import config_to_dict
        from ..engine.trainer import fit

        size = model.image_size
        t = cfg.train
        train_set = FaceFrames(self.load_data(data, "train", size, progress=progress), size,
                               augment=train_augment(data))
        val_ds = self.load_data(data, "val", size, progress=progress)
        val_loader = None
        if len(val_ds):
            val_loader = DataLoader(FaceFrames(val_ds, size), batch_size=t.batch_size, num_workers=t.num_workers)
        else:
            warnings.warn("no validation split: the last epoch is kept", stacklevel=2)
        train_loader = DataLoader(train_set, batch_size=t.batch_size, shuffle=True, num_workers=t.num_workers,
                                  drop_last=len(train_set) > t.batch_size)
        recipe_cls = getattr(model, "recipe_cls", None) or self.recipe_cls
        generations = max(1, int(model.generations() if hasattr(model, "generations") else 1))
        teacher, result, total = None, None, 0.0
        for gen in range(generations):
            if gen > 0:  # born-again: a fresh student of the same architecture, taught by the last one
                teacher = copy.deepcopy(model).eval()
                torch.manual_seed(t.seed + gen)
                model.load_state_dict(type(model)(model.cfg).state_dict())
            gen_dir = Path(out_dir) / f"gen{gen}" if generations > 1 else Path(out_dir)
            module = recipe_cls(model, t, teacher=teacher)
            result = fit(module, train_loader, val_loader, gen_dir, t, devices=devices, accelerator=accelerator,
                         num_nodes=num_nodes, resume=resume, progress=progress, stop_after_epochs=stop_after_epochs,
                         run_config={"method": getattr(model, "method_name", type(model).__name__), "data": data,
                                     "config": config_to_dict(cfg), "generation": gen})
            total += result.train_seconds
            if result.best_state is not None:
                model.load_state_dict({k.removeprefix("model."): v for k, v in result.best_state.items()})
        result.train_seconds = total
        return result

    # ------------------------------------------------------------------ evaluate
    @torch.inference_mode()
    def scores(self, model: torch.nn.Module, frames: FaceFrames, batch_size: int = 64) -> tuple[np.ndarray, float]:
        """Fake probabilities ``(N,)`` of every crop and the mean attention similarity (NaN if none)."""
        model.eval()
        probs, sims = [], []
        for i in range(0, len(frames), batch_size):
            x = frames.x[i:i + batch_size].float() / 255.0
            probs.append(torch.sigmoid(model(x)).cpu())
            sim = model.attn_similarity() if hasattr(model, "attn_similarity") else None
            if sim is not None and math.isfinite(float(sim)):
                sims.append(float(sim) * len(x))
        sim_mean = sum(sims) / len(frames) if sims else float("nan")
        return torch.cat(probs).numpy().astype(np.float64), sim_mean

    def evaluate(self, model: torch.nn.Module, dataset: Any, progress: bool = False, batch_size: int = 64,
                 **_: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Frame- and video-level metrics, per-forgery-type AUC and attention similarity; per-crop records."""
        frames = dataset if isinstance(dataset, FaceFrames) else FaceFrames(dataset, model.image_size)
        s, sim = self.scores(model, frames, batch_size)
        y = frames.labels
        if y.min() == y.max():
            raise ValueError("the evaluation split holds only one class; AUC needs real and fake faces")
        metrics = forgery_report(s, y, videos=frames.videos)
        types = np.asarray(frames.types)
        for kind in sorted(set(frames.types) - {"real"}):
            keep = (y == 0) | (types == kind)
            if (types == kind).any():
                metrics[f"AUC_{kind}"] = binary_auc(s[keep], y[keep])
        if math.isfinite(sim):  # a model without attention (a CNN baseline) has no such figure: leave it out
            metrics["attn_similarity"] = sim
        records = [{"video": v, "type": k, "label": int(lab), "fake_prob": float(p)}
                   for v, k, lab, p in zip(frames.videos, frames.types, y, s, strict=True)]
        return metrics, records

    def write_eval(self, out_dir: str | Path, method: str, data: str, split: str, metrics: dict[str, Any],
                   details: list[dict[str, Any]], dataset: Any, **settings: Any) -> Path:
        """``metrics.json`` (metrics + the score of every crop) and ``roc.png`` (frame- and video-level ROC)."""
        from ..metrics.classification import aggregate_by_video
        from .forgery_plots import plot_roc

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps({"method": method, "data": data, "split": split, "metrics": metrics,
                                       "crops": details}, indent=2, default=float))
        s = np.array([r["fake_prob"] for r in details])
        y = np.array([r["label"] for r in details])
        curves = {"frame": (s, y)}
        vs, vy, ids = aggregate_by_video(s, y, [r["video"] for r in details])
        if len(ids) < len(s) and vy.min() != vy.max():
            curves["video"] = (vs, vy)
        plot_roc(out / "roc.png", curves, title=f"{method} on {data} ({split})")
        return out / "metrics.json"

    # ------------------------------------------------------------------ predict on a user's file
    def predict(self, model: torch.nn.Module, input_path: str | Path, out_dir: str | Path, fs: float | None = None,
                name: str | None = None, detector: Any = "auto", n_frames: int = 16, margin: float = 0.3,
                **_: Any) -> dict[str, Any]:
        """Fake probability of every face of an image, or of a video's sampled frames (+ the mean).

        Writes ``NAME_forgery.png`` (faces boxed with their probability; for a video also the per-frame
        curve) and ``NAME_forgery.json``. With no face found, the whole frame is scored (``face_found``
        false in the result).
        """
        from ..data.faces.align import crop_with_margin
        from ..data.faces.detect import as_rgb_uint8, create_detector
        from ..data.forgery_base import even_frame_indices

        path = Path(input_path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such image, video file or frame folder")
        name = name or path.stem
        is_image = path.is_file() and path.suffix.lower() in _IMAGE_SUFFIXES
        if is_image:
            import cv2

            bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if bgr is None:
                raise ValueError(f"{path}: not a readable image")
            if bgr.ndim == 3 and bgr.shape[2] == 4:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
            rgb = bgr[..., ::-1] if bgr.ndim == 3 else bgr
            frames, idx = [as_rgb_uint8(np.ascontiguousarray(rgb))[0]], [0]
        else:
            from ..data.video import read_video

            clip = read_video(path, allow_partial=True)
            idx = even_frame_indices(len(clip.frames), n_frames).tolist()
            frames = [clip.frames[i] for i in idx]
        det = create_detector(detector) if isinstance(detector, str) else detector
        model.eval()
        per_frame = []
        for k, frame in zip(idx, frames, strict=True):
            faces = det.detect(frame)
            boxes = [f.box for f in faces] or [np.array([0, 0, frame.shape[1], frame.shape[0]], float)]
            crops = [crop_with_margin(frame, b, margin if faces else 0.0, model.image_size)[0] for b in boxes]
            x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0  # (F, 3, S, S)
            with torch.inference_mode():
                p = torch.sigmoid(model(x)).tolist()
            per_frame.append({"frame": int(k), "face_found": bool(faces),
                              "faces": [{"box": [round(float(v), 1) for v in b], "fake_prob": round(float(q), 5)}
                                        for b, q in zip(boxes, p, strict=True)]})
        main = [f["faces"][0]["fake_prob"] for f in per_frame]  # the largest face of each frame
        result: dict[str, Any] = {"input": str(input_path), "kind": "image" if is_image else "video",
                                  "fake_prob": float(np.mean(main)), "face_found": any(f["face_found"] for f in per_frame),
                                  "frames": per_frame if not is_image else None,
                                  "faces": per_frame[0]["faces"] if is_image else None}
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / f"{name}_forgery.png"
        _plot_prediction(png, frames[0], per_frame, is_image, title=f"{name}: P(fake) = {result['fake_prob']:.3f}")
        result["plot"] = str(png)
        with atomic_path(out_dir / f"{name}_forgery.json") as tmp:
            tmp.write_text(json.dumps(result, indent=2))
        if not is_image:
            result["n_frames"] = len(per_frame)
        return {k: v for k, v in result.items() if v is not None}

    # ------------------------------------------------------------------ benchmark
    def bench(self, entry: Any, preset: str, data: str, out_dir: Path, quick: bool,
              checkpoint: str | None = None, label: str | None = None,
              overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """One row: train (train split, val split for the epoch) unless ``checkpoint``; test split metrics.

        ``overrides`` are config keys on top of the preset (ablations: ``{"moe": False}``)."""
        from ..bench.runner import file_label
        from ..config import build_config, config_to_dict
        from ..engine.loading import load_model
        from .forgery_plots import plot_roc

        label = label or entry.name
        train_s = 0.0
        if checkpoint:
            model, preset, _ = load_model(entry.name, checkpoint, preset=preset)
            cfg = model.cfg
        else:
            cfg = build_config(entry.config_cls, entry.presets, preset, overrides=overrides)
            torch.manual_seed(getattr(getattr(cfg, "train", None), "seed", 0))
            model = entry.model_cls(cfg)
        if entry.trainable and not checkpoint:
            scratch = Path(out_dir) / "train" / file_label(label)
            shutil.rmtree(scratch, ignore_errors=True)
            train_s = self.train(model, cfg, data, scratch, progress=False).train_seconds
        test = FaceFrames(self.load_data(data, "test", model.image_size, progress=False), model.image_size)
        t0 = time.perf_counter()
        metrics, _ = self.evaluate(model, test)
        infer_s = time.perf_counter() - t0
        s, _sim = self.scores(model, test)
        curves = {"frame": (s, test.labels)}
        plot_roc(Path(out_dir) / f"{file_label(label)}_roc.png", curves, title=f"{label} on {data} (test)")
        return {
            "method": label, "checkpoint": checkpoint, "dataset": data, "split": "test", "preset": preset,
            "metrics": metrics, "params": int(sum(p.numel() for p in model.parameters())),
            "train_s": round(train_s, 3), "infer_items_per_s": round(len(test) / max(infer_s, 1e-9), 1),
            "items": "face crops", "overrides": overrides or {}, "config": config_to_dict(cfg),
        }


def _plot_prediction(path: Path, frame: np.ndarray, per_frame: list[dict], is_image: bool, title: str) -> Path:
    from .plots import _plt, _save

    plt = _plt()
    ncols = 1 if is_image else 2
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 4.2), squeeze=False)
    ax = axes[0][0]
    ax.imshow(frame)
    ax.set_axis_off()
    for face in per_frame[0]["faces"]:
        x, y, w, h = face["box"]
        colour = "red" if face["fake_prob"] >= 0.5 else "lime"
        ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color=colour, lw=2))
        ax.text(x, y - 3, f"{face['fake_prob']:.2f}", color=colour, fontsize=9, weight="bold")
    if not is_image:
        bx = axes[0][1]
        bx.plot([f["frame"] for f in per_frame], [f["faces"][0]["fake_prob"] for f in per_frame], "o-")
        bx.axhline(0.5, color="k", ls="--", lw=0.7)
        bx.set(ylim=(0, 1), xlabel="frame", ylabel="P(fake), largest face")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)

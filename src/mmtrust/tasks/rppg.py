"""The rPPG task: how every rPPG method, classical or neural, is trained, evaluated and run on files.

Evaluation follows rPPG-Toolbox: each test video is cropped and resized once; neural models see
non-overlapping chunks of ``model.chunk_length`` frames whose outputs are concatenated per video, classical
models see the whole raw video. One difference, since 2026-12-03: the frames after the last whole chunk are
covered by one more chunk overlapping the previous one (``tail="cover"``), where the toolbox drops them
(``tail="drop"``, ``mmtrust eval --tail drop``), so a neural model's heart rate is read over the same frames
as a classical one's; the heart rate of the prediction and
of the ground-truth PPG over the same frames is read by the same :func:`estimate_hr` (cumsum first for
DiffNormalized signals), so numbers from all methods are comparable. Metrics are per video.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import parse_data_options
from ..data.cache import atomic_path
from ..data.rppg_datasets import RPPGVideo
from ..data.transforms import diff_normalize_label, diff_normalize_video, standardize_label, standardize_video
from ..engine.module import TaskModule
from ..methods.rppg.postprocess import HRConfig, estimate_hr, power_spectrum, preprocess_pulse, windowed_hr
from ..metrics.rppg import hr_metrics, snr_db
from ..nn.losses import neg_pearson
from ..registry import get_dataset, list_datasets, register_task

__all__ = ["RPPGTask", "RPPGRecipe", "RPPGChunks", "TAILS", "prepare_video", "run_on_video"]

_VIDEO_TRANSFORMS = {
    "raw": lambda frames: frames.astype(np.float32),
    "diffnormalized": diff_normalize_video,
    "standardized": standardize_video,
}
_LABEL_TRANSFORMS = {
    "raw": lambda ppg: np.asarray(ppg, dtype=np.float32),
    "diffnormalized": diff_normalize_label,
    "standardized": standardize_label,
}


def prepare_video(video: RPPGVideo, input_type: str, label_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, S, S, 3) uint8 -> model input (3, T, S, S) float32 and the label (T,) of ``label_type``."""
    if input_type not in _VIDEO_TRANSFORMS:
        raise ValueError(f"unknown input_type {input_type!r}; expected one of {sorted(_VIDEO_TRANSFORMS)}")
    x = _VIDEO_TRANSFORMS[input_type](video.frames)  # (T, S, S, 3)
    y = _LABEL_TRANSFORMS[label_type](video.ppg)  # (T,)
    return np.ascontiguousarray(np.transpose(x, (3, 0, 1, 2)), dtype=np.float32), y.astype(np.float32)


class RPPGChunks(Dataset):
    """Non-overlapping training chunks ``(clip (3, L, S, S), label (L,))`` cut from whole videos."""

    def __init__(self, videos: Any, chunk_length: int, input_type: str, label_type: str) -> None:
        self.clips: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        for v in videos:
            x, y = prepare_video(v, input_type, label_type)
            n = x.shape[1] // chunk_length
            for k in range(n):
                sl = slice(k * chunk_length, (k + 1) * chunk_length)
                self.clips.append(np.ascontiguousarray(x[:, sl]))
                self.labels.append(y[sl])
        if not self.clips:
            raise ValueError(f"no training chunk of {chunk_length} frames could be cut from {len(videos)} videos "
                             f"(are the videos shorter than the chunk length?)")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.clips[i]), torch.from_numpy(self.labels[i])


class RPPGRecipe(TaskModule):
    """Supervised rPPG training: negative Pearson between predicted and label pulse (PhysNet, PhysMamba)."""

    batch_global_target = False

    def compute_loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        pred = self.model(x)  # (B, L)
        return neg_pearson(pred, y, batch_global_target=self.batch_global_target), {}


#: what :func:`run_on_video` does with the frames after a neural model's last whole chunk
TAILS = ("cover", "drop")


@torch.inference_mode()
def run_on_video(model: torch.nn.Module, video: RPPGVideo, batch_size: int = 4,
                 tail: str = "cover") -> tuple[np.ndarray, np.ndarray]:
    """Model pulse and label for one video, both (T',): chunked for neural models, whole for classical.

    A neural model sees non-overlapping chunks of ``model.chunk_length`` frames. The ``T mod L`` frames after
    the last whole chunk are, with ``tail="cover"`` (the default), read from one more chunk that ends on the
    video's last frame (it overlaps the previous chunk; only its last ``T mod L`` outputs are kept), so the
    prediction spans the whole video, as a classical method's does; with ``tail="drop"`` they are dropped,
    as rPPG-Toolbox does (on a 12-s video at 20 fps and chunks of 128 that is 112 of 240 frames).
    """
    if tail not in TAILS:
        raise ValueError(f"tail: expected one of {TAILS}, got {tail!r}")
    x, y = prepare_video(video, model.input_type, model.output_type)
    chunk = model.chunk_length
    if chunk is None:
        pred = model(torch.from_numpy(x)[None], fs=video.fs)[0].cpu().numpy()
        return pred.astype(np.float64), y[: len(pred)].astype(np.float64)
    total = x.shape[1]
    n = total // chunk
    if n == 0:
        raise ValueError(f"video {video.id} has {total} frames, fewer than the model's chunk of {chunk}")
    starts = [k * chunk for k in range(n)]
    rest = total - n * chunk if tail == "cover" else 0
    if rest:
        starts.append(total - chunk)
    clips = torch.from_numpy(np.stack([x[:, s : s + chunk] for s in starts]))  # (n [+1], 3, L, S, S)
    outs = [model(clips[i : i + batch_size].contiguous(), fs=video.fs) for i in range(0, len(starts), batch_size)]
    out = torch.cat(outs).cpu().numpy()  # (n [+1], L)
    pred = out[:n].reshape(-1)
    if rest:
        pred = np.concatenate([pred, out[n, chunk - rest :]])
    return pred.astype(np.float64), y[: len(pred)].astype(np.float64)


def clip_shape(model: torch.nn.Module) -> str:
    """The input of one benchmarked clip: ``3x128x128x128`` (channels x frames x height x width)."""
    return f"3x{model.chunk_length or 128}x{model.image_size}x{model.image_size}"


@torch.inference_mode()
def clip_latency(model: torch.nn.Module, repeats: int = 3, seed: int = 0) -> float:
    """Median wall time (s) of one forward pass on one clip (batch 1, ``chunk_length`` frames, 128 for
    whole-video methods, at ``image_size``), after one warm-up pass."""
    g = torch.Generator().manual_seed(seed)
    t, s = model.chunk_length or 128, model.image_size
    x = torch.randn(1, 3, t, s, s, generator=g)
    if model.input_type == "raw":
        x = (120 + 10 * x).clamp(0, 255)
    model.eval()
    model(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


@dataclass
class VideoResult:
    id: str
    hr_pred: float
    hr_gt: float
    snr_db: float
    pulse: np.ndarray
    label: np.ndarray
    fs: float


@register_task("rppg")
class RPPGTask:
    """Train / evaluate / predict for rPPG methods."""

    recipe_cls = RPPGRecipe
    bench_note = ("HR metrics are per video (bpm), read by the same estimator for every method (toolbox settings: "
                  "0.6-3.3 Hz, order-1 Butterworth, periodogram peak); SNR in dB.")

    # ------------------------------------------------------------------ contract
    def example_batch(self, model: torch.nn.Module, batch_size: int = 2, seed: int = 0):
        """A small valid ``(input, label)`` batch for ``model`` (used by the contract tests)."""
        g = torch.Generator().manual_seed(seed)
        t = model.chunk_length or 96
        s = model.image_size
        fs = 30.0
        time_s = torch.arange(t) / fs
        pulse = torch.sin(2 * torch.pi * 1.3 * time_s)  # 78 bpm
        base = 120 + 40 * torch.rand(batch_size, 3, 1, s, s, generator=g)
        video = base * (1 + 0.01 * pulse.view(1, 1, t, 1, 1)) + torch.randn(batch_size, 3, t, s, s, generator=g)
        if model.input_type != "raw":
            video = (video - video.mean()) / video.std()
        return video.float(), pulse.repeat(batch_size, 1).float()

    # ------------------------------------------------------------------ data
    def load_data(self, data: str, split: str, image_size: int, progress: bool = True, **kw: Any):
        """``data`` is a registered dataset name, ``name:PATH``, or a PATH whose layout is detected.

        Options for the dataset factory may follow a ``?``: ``synthetic-rppg?domain=dim-motion&preset=default``.
        """
        if isinstance(split, str) and split not in ("train", "val", "test", "all"):
            raise ValueError(f"unknown split {split!r}; expected train, val, test or all")
        data, opts = parse_data_options(data)
        kw.update(opts)
        name, _, root = data.partition(":") if ":" in data and not Path(data).exists() else ("", "", data)
        if not name and data in list_datasets("rppg"):
            name, root = data, None
        if name:
            try:
                return get_dataset(name).factory(root=root, split=split, image_size=image_size, progress=progress,
                                                 **kw)
            except TypeError as err:  # an unknown option
                raise ValueError(f"dataset {name!r}: {err}") from err
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(
                f"--data {data!r} is neither a dataset name ({', '.join(list_datasets('rppg'))}) nor an existing folder"
            )
        errors = []
        for cand in list_datasets("rppg"):
            info = get_dataset(cand)
            if info.builtin:
                continue
            try:
                return info.factory(root=str(path), split=split, image_size=image_size, progress=progress, **kw)
            except ValueError as err:  # layout errors say what each loader expected
                errors.append(f"--- as {cand}:\n{err}")
        raise ValueError(f"{path} does not match any known rPPG dataset layout.\n" + "\n".join(errors))

    # ------------------------------------------------------------------ train
    def train(self, model: torch.nn.Module, cfg: Any, data: str, out_dir: str | Path, *, devices: int | str = 1,
              accelerator: str = "auto", num_nodes: int = 1, resume: bool = False, progress: bool = True,
              stop_after_epochs: int | None = None):
        from ..config import config_to_dict
        from ..engine.trainer import fit

        size = model.image_size
        train_ds = self.load_data(data, "train", size, progress=progress)
        val_ds = self.load_data(data, "val", size, progress=progress)
        chunk = model.chunk_length
        kw = dict(chunk_length=chunk, input_type=model.input_type, label_type=model.output_type)
        t = cfg.train
        train_loader = DataLoader(RPPGChunks(train_ds, **kw), batch_size=t.batch_size, shuffle=True,
                                  num_workers=t.num_workers, drop_last=False)
        val_loader = None
        if len(val_ds):
            val_loader = DataLoader(RPPGChunks(val_ds, **kw), batch_size=t.batch_size, num_workers=t.num_workers)
        recipe_cls = getattr(model, "recipe_cls", None) or self.recipe_cls
        module = recipe_cls(model, t)
        result = fit(module, train_loader, val_loader, out_dir, t, devices=devices, accelerator=accelerator,
                     num_nodes=num_nodes, resume=resume, progress=progress, stop_after_epochs=stop_after_epochs,
                     run_config={"method": getattr(model, "method_name", type(model).__name__), "data": data,
                                 "config": config_to_dict(cfg)})
        if result.best_state is not None:
            model.load_state_dict({k.removeprefix("model."): v for k, v in result.best_state.items()})
        return result

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, model: torch.nn.Module, dataset: Any, hr_config: HRConfig | None = None,
                 progress: bool = False, window_s: float | None = None,
                 tail: str = "cover") -> tuple[dict[str, float], list[VideoResult]]:
        """Per-video HR metrics (or, with ``window_s``, over non-overlapping windows as the toolbox's
        ``USE_SMALLER_WINDOW``; the per-video results are returned either way). ``tail``: what a neural
        model does with the frames after its last whole chunk (:func:`run_on_video`; ``"drop"`` = the
        toolbox)."""
        if tail not in TAILS:
            raise ValueError(f"tail: expected one of {TAILS}, got {tail!r}")
        hr_config = hr_config or HRConfig()
        win_pred: list[np.ndarray] = []
        win_gt: list[np.ndarray] = []
        model.eval()
        diff = model.output_type == "diffnormalized"
        results: list[VideoResult] = []
        read: list[float] = []
        for video in dataset:
            pred, label = run_on_video(model, video, tail=tail)
            read.append(len(pred) / len(video.frames))
            hr_p = estimate_hr(pred, video.fs, diff=diff, config=hr_config)
            hr_g = estimate_hr(label, video.fs, diff=diff, config=hr_config)
            filtered = preprocess_pulse(pred, video.fs, diff=diff, config=hr_config)
            snr = snr_db(filtered, hr_g, video.fs, band=hr_config.band)
            results.append(VideoResult(video.id, hr_p, hr_g, snr, filtered,
                                       preprocess_pulse(label, video.fs, diff=diff, config=hr_config), video.fs))
            if window_s:
                win_pred.append(windowed_hr(pred, video.fs, window_s, diff=diff, config=hr_config))
                win_gt.append(windowed_hr(label, video.fs, window_s, diff=diff, config=hr_config))
        if not results:
            raise ValueError("the evaluation split holds no video")
        if window_s:
            metrics = hr_metrics(np.concatenate(win_pred), np.concatenate(win_gt))
            metrics["n_windows"] = int(sum(len(w) for w in win_pred))
        else:
            metrics = hr_metrics(np.array([r.hr_pred for r in results]), np.array([r.hr_gt for r in results]))
        metrics["SNR"] = float(np.mean([r.snr_db for r in results]))
        metrics["n_videos"] = len(results)
        metrics["n_skipped"] = len(getattr(dataset, "skipped", []))  # unreadable videos, warned about
        metrics["frames_read"] = float(np.mean(read))  # share of each video's frames the heart rate is read on
        return metrics, results

    def write_eval(self, out_dir: str | Path, method: str, data: str, split: str, metrics: dict[str, Any],
                   details: list[VideoResult], dataset: Any, **settings: Any) -> Path:
        """``metrics.json`` (metrics, evaluation settings, per-video HRs) and ``hr.png`` (scatter + Bland-Altman)."""
        import json

        from .plots import plot_hr_scatter

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps({"method": method, "data": data, "split": split, **settings, "metrics": metrics,
                                       "per_video": [{"id": r.id, "hr_pred": r.hr_pred, "hr_gt": r.hr_gt}
                                                     for r in details]}, indent=2, default=float))
        plot_hr_scatter(out / "hr.png", [r.hr_gt for r in details], [r.hr_pred for r in details],
                        title=f"{method} on {data} ({split})")
        return out / "metrics.json"

    # ------------------------------------------------------------------ predict on a user's file
    def predict(self, model: torch.nn.Module, input_path: str | Path, out_dir: str | Path, fs: float | None = None,
                hr_config: HRConfig | None = None, name: str | None = None) -> dict[str, Any]:
        """Heart rate of one video file or frame folder; writes ``NAME_pulse.png`` and ``NAME_pulse.csv``.

        Frames are decoded and cropped one at a time (only the face crops are kept in memory).
        """
        from ..data.face import crop_face_stream
        from ..data.video import iter_frames, probe_fps
        from .plots import plot_pulse

        hr_config = hr_config or HRConfig()
        path = Path(input_path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such video file or frame folder")
        if fs:
            fps, fps_source = float(fs), "--fps"
        else:
            declared = probe_fps(path)
            fps, fps_source = (declared, "file") if declared else (30.0, "assumed")
            if not declared:
                warnings.warn(f"{path}: no frame rate known ({'a frame folder' if path.is_dir() else 'none declared'})"
                              f"; assuming 30 fps - pass --fps, the heart rate scales with it", stacklevel=2)
        if fps / 2 <= hr_config.band[1]:
            raise ValueError(f"{path}: {fps:g} fps is too low for the heart-rate band up to {hr_config.band[1]:g} Hz "
                             f"({hr_config.band[1] * 60:.0f} bpm); it needs more than {2 * hr_config.band[1]:g} fps")
        name = name or path.stem
        crops, info = crop_face_stream(iter_frames(path), size=model.image_size, video_id=str(path))
        duration = len(crops) / fps
        resolution = 60.0 * fps / (1 << (len(crops) - 1).bit_length())
        if duration < 10:
            warnings.warn(f"{path}: only {duration:.1f} s of video; the spectrum resolves the heart rate to about "
                          f"{resolution:.1f} bpm (10 s or more is advised)", stacklevel=2)
        video = RPPGVideo(id=name, subject="", frames=crops, ppg=np.zeros(len(crops), np.float32), fs=fps,
                          meta=info)
        pred, _ = run_on_video(model, video)
        diff = model.output_type == "diffnormalized"
        hr = estimate_hr(pred, fps, diff=diff, config=hr_config)
        filtered = preprocess_pulse(pred, fps, diff=diff, config=hr_config)
        freqs, power = power_spectrum(filtered, fps)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / f"{name}_pulse.png"
        plot_pulse(png, filtered, fps, freqs, power, hr, title=f"{name}: {hr:.1f} bpm")
        with atomic_path(out_dir / f"{name}_pulse.csv") as tmp:
            np.savetxt(tmp, filtered, fmt="%.6f")
        return {"input": str(input_path), "hr_bpm": hr, "fps": fps, "fps_source": fps_source,
                "frames": int(len(crops)), "duration_s": round(duration, 2), "hr_resolution_bpm": round(resolution, 2),
                "face_found": bool(info.get("face_found", True)), "plot": str(png)}

    # ------------------------------------------------------------------ benchmark
    def bench(self, entry: Any, preset: str, data: str, out_dir: Path, quick: bool,
              checkpoint: str | None = None, label: str | None = None) -> dict[str, Any]:
        """One benchmark row: train if trainable (train/val splits), then evaluate on the test split.

        With ``checkpoint`` (an mmtrust checkpoint, ``official:NAME`` or a weights file) nothing is trained:
        the loaded model is evaluated as it is.
        """
        from ..bench.runner import file_label
        from ..config import build_config, config_to_dict
        from ..engine.loading import load_model
        from .plots import plot_hr_scatter, plot_pulse

        label = label or entry.name
        train_s = 0.0
        if checkpoint:
            model, preset, _ = load_model(entry.name, checkpoint, preset=preset)
            cfg = model.cfg
        else:
            cfg = build_config(entry.config_cls, entry.presets, preset)
            torch.manual_seed(getattr(getattr(cfg, "train", None), "seed", 0))
            model = entry.model_cls(cfg)
        if entry.trainable and not checkpoint:
            scratch = out_dir / "train" / entry.name  # the benchmark's own scratch run, redone each time
            shutil.rmtree(scratch, ignore_errors=True)
            res = self.train(model, cfg, data, scratch, progress=False)
            train_s = res.train_seconds
        test = self.load_data(data, "test", model.image_size, progress=False)
        t0 = time.perf_counter()
        metrics, per_video = self.evaluate(model, test)
        infer_s = time.perf_counter() - t0
        frames = sum(len(r.label) for r in per_video)
        stem = file_label(label)
        plot_hr_scatter(out_dir / f"{stem}_hr.png", [r.hr_gt for r in per_video],
                        [r.hr_pred for r in per_video], title=f"{label} on {data} (test)")
        first = per_video[0]
        freqs, power = power_spectrum(first.pulse, first.fs)
        plot_pulse(out_dir / f"{stem}_pulse.png", first.pulse, first.fs, freqs, power, first.hr_pred,
                   title=f"{label}, {first.id}: predicted {first.hr_pred:.1f} bpm, reference {first.hr_gt:.1f}")
        latency = clip_latency(model, repeats=3 if quick else 5)
        variants = []
        for vname, overrides in (getattr(model, "latency_variants", None) or {}).items():
            ref = type(model)(dataclasses.replace(cfg, **overrides))
            ref.load_state_dict(model.state_dict(), strict=True)
            ref_s = clip_latency(ref, repeats=3)
            variants.append({"name": vname, "overrides": overrides, "clip_latency_s": round(ref_s, 4),
                             "ratio": round(ref_s / max(latency, 1e-9), 2)})
        return {
            "method": label,
            "checkpoint": checkpoint,
            "clip_latency_s": round(latency, 4),
            "clip_shape": clip_shape(model),
            "latency_variants": variants,
            "dataset": data,
            "split": "test",
            "preset": preset,
            "metrics": metrics,
            "params": int(sum(p.numel() for p in model.parameters())),
            "train_s": round(train_s, 3),
            "infer_items_per_s": round(frames / max(infer_s, 1e-9), 1),
            "items": "frames",
            "hr_setting": "toolbox (0.6-3.3 Hz, order-1 Butterworth, periodogram peak)",
            "config": config_to_dict(cfg),
            "per_video": [{"id": r.id, "hr_pred": r.hr_pred, "hr_gt": r.hr_gt, "snr_db": r.snr_db} for r in per_video],
            "skipped": [list(map(str, s)) for s in getattr(test, "skipped", [])],
        }

"""Binary detection metrics for forgery detection and face anti-spoofing.

Conventions (used by every function here):

* ``scores``: 1-D, shape ``(N,)``: the model's probability / score that a sample is the
  POSITIVE class, i.e. attack / fake / spoof. Higher = more likely an attack.
* ``labels``: 1-D, shape ``(N,)``: ``1`` = attack / fake / spoof, ``0`` = bona fide / real.
* A sample is *predicted* attack when ``score >= threshold`` (the same rule as
  :func:`sklearn.metrics.roc_curve`).
* Inputs may be numpy arrays, Python lists or torch tensors (``(N, 1)`` is flattened).

Error-rate vocabulary (ISO/IEC 30107-3 for anti-spoofing, HTER for the older literature):

* APCER: attacks accepted as bona fide, ``mean(score < thr | label == 1)`` (= FAR = FNR).
* BPCER: bona fide rejected as attacks, ``mean(score >= thr | label == 0)`` (= FRR = FPR).
* ACER = (APCER + BPCER) / 2 and HTER = (FAR + FRR) / 2: numerically equal for a binary
  problem; both names are reported because both literatures use them.

Thresholds for threshold-dependent numbers on a test split should be chosen on a separate
dev split (:func:`threshold_at_eer`); :func:`binary_report` does that and records where its
threshold came from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "accuracy",
    "aggregate_by_video",
    "average_precision",
    "forgery_report",
    "binary_auc",
    "binary_report",
    "eer",
    "error_rates",
    "threshold_at_eer",
    "tpr_at_fpr",
]


def _as_1d(x: Any, name: str) -> np.ndarray:
    """Convert a list / numpy array / torch tensor to a 1-D float64 numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with shape (N,), got shape {arr.shape}")
    return arr


def _check(scores: Any, labels: Any, both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``(scores, labels)`` as numpy arrays (labels as int 0/1)."""
    s = _as_1d(scores, "scores")
    y = _as_1d(labels, "labels")
    if s.shape[0] != y.shape[0]:
        raise ValueError(
            f"scores and labels must have the same length, got {s.shape[0]} scores and {y.shape[0]} labels"
        )
    if s.shape[0] == 0:
        raise ValueError("scores and labels are empty; expected at least one sample")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf; expected finite probabilities/scores")
    bad = np.setdiff1d(np.unique(y), [0.0, 1.0])
    if bad.size:
        raise ValueError(
            f"labels must be binary (1 = attack/fake, 0 = bona fide/real), got other values {bad[:5].tolist()}"
        )
    y = y.astype(np.int64)
    if both_classes and (y.min() == y.max()):
        raise ValueError(
            f"only one class present in labels (all {int(y[0])}): AUC/ROC-based metrics are undefined; "
            "expected both attack (1) and bona fide (0) samples"
        )
    return s, y


def binary_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve. ``scores``/``labels``: ``(N,)``. Ties count 1/2."""
    s, y = _check(scores, labels)
    return float(roc_auc_score(y, s))


def eer(scores: Any, labels: Any) -> tuple[float, float]:
    """Equal error rate and its threshold, ``(eer, threshold)``.

    Walks the ROC (``drop_intermediate=False``) to the first point where FNR <= FPR and
    linearly interpolates between it and the previous point at the crossing of FPR and
    FNR; the threshold is interpolated the same way (or taken from the finite endpoint when
    the previous point is sklearn's ``+inf`` sentinel).
    """
    s, y = _check(scores, labels)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    diff = (1.0 - tpr) - fpr  # FNR - FPR: starts at +1, ends at -1, non-increasing
    i = int(np.argmax(diff <= 0))
    if diff[i] == 0 or i == 0:
        return float(fpr[i]), float(thr[i])
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    rate = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    if np.isfinite(thr[i - 1]):
        threshold = thr[i - 1] + t * (thr[i] - thr[i - 1])
    else:
        threshold = thr[i]
    return float(rate), float(threshold)


def threshold_at_eer(dev_scores: Any, dev_labels: Any) -> float:
    """Score threshold at the EER of a dev split (``(N,)`` each), to be reused on test."""
    return eer(dev_scores, dev_labels)[1]


def accuracy(scores: Any, labels: Any, threshold: float = 0.5) -> float:
    """Fraction of samples with ``(score >= threshold) == label``. Shapes ``(N,)``."""
    s, y = _check(scores, labels, both_classes=False)
    return float(np.mean((s >= threshold).astype(np.int64) == y))


def tpr_at_fpr(scores: Any, labels: Any, fpr: float = 0.01) -> float:
    """TPR at a target FPR, read off the piecewise-linear ROC curve. Shapes ``(N,)``.

    Where the ROC has a vertical segment exactly at ``fpr`` the top of it is returned (the
    best TPR reachable without exceeding ``fpr``); between ROC points it interpolates.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    s, y = _check(scores, labels)
    f, t, _ = roc_curve(y, s, drop_intermediate=False)
    j = int(np.searchsorted(f, fpr, side="right")) - 1  # last ROC point with FPR <= target
    if f[j] == fpr or j == len(f) - 1:
        return float(t[j])
    w = (fpr - f[j]) / (f[j + 1] - f[j])
    return float(t[j] + w * (t[j + 1] - t[j]))


def error_rates(scores: Any, labels: Any, threshold: float) -> dict[str, float]:
    """APCER, BPCER, ACER and HTER at ``threshold``. Shapes ``(N,)``.

    A rate whose class is absent (e.g. APCER with no attacks) is NaN, and so is the mean.
    """
    s, y = _check(scores, labels, both_classes=False)
    att, bona = s[y == 1], s[y == 0]
    apcer = float(np.mean(att < threshold)) if att.size else float("nan")
    bpcer = float(np.mean(bona >= threshold)) if bona.size else float("nan")
    acer = (apcer + bpcer) / 2.0
    return {"APCER": apcer, "BPCER": bpcer, "ACER": acer, "HTER": acer, "threshold": float(threshold)}


def binary_report(
    test_scores: Any,
    test_labels: Any,
    dev_scores: Any | None = None,
    dev_labels: Any | None = None,
) -> dict[str, Any]:
    """All binary metrics of a test split as a flat dict.

    Threshold-free: ``AUC``, ``EER`` (with ``EER_threshold``, the test split's own),
    ``TPR@FPR=1%``, ``TPR@FPR=0.1%``. Threshold-dependent (``ACC``, ``HTER``, ``APCER``,
    ``BPCER``, ``ACER``) use the EER threshold of the dev split when one is given
    (``threshold_source = "dev-eer"``), else 0.5 (``"fixed-0.5"``); ``threshold`` holds the
    value used. ``ACC@0.5`` is always at 0.5, for comparison with papers that fix it.
    """
    s, y = _check(test_scores, test_labels)
    if (dev_scores is None) != (dev_labels is None):
        raise ValueError("give both dev_scores and dev_labels, or neither")
    if dev_scores is not None:
        thr, source = threshold_at_eer(dev_scores, dev_labels), "dev-eer"
    else:
        thr, source = 0.5, "fixed-0.5"
    test_eer, test_eer_thr = eer(s, y)
    out: dict[str, Any] = {
        "AUC": binary_auc(s, y),
        "EER": test_eer,
        "EER_threshold": test_eer_thr,
        "TPR@FPR=1%": tpr_at_fpr(s, y, 1e-2),
        "TPR@FPR=0.1%": tpr_at_fpr(s, y, 1e-3),
        "ACC": accuracy(s, y, thr),
        "ACC@0.5": accuracy(s, y, 0.5),
    }
    out.update(error_rates(s, y, thr))
    out["threshold_source"] = source
    out["n_attack"], out["n_bonafide"] = int(y.sum()), int((1 - y).sum())
    return out


# ---------------------------------------------------------------------------------------------------
# Forgery detection (frame- and video-level), DeepfakeBench conventions: 1 = fake, ACC at 0.5,
# video score = mean of the video's frame scores.


def average_precision(scores: Any, labels: Any) -> float:
    """Average precision (area under the precision-recall curve, sklearn's step definition). ``(N,)``."""
    from sklearn.metrics import average_precision_score

    s, y = _check(scores, labels)
    return float(average_precision_score(y, s))


def aggregate_by_video(scores: Any, labels: Any, videos: Any) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Per-video mean of frame ``scores`` ``(N,)``: ``(video_scores (V,), video_labels (V,), video_ids)``.

    ``videos`` ``(N,)`` names the video of each frame; videos are listed in order of first appearance.
    A video whose frames carry different labels is an error.
    """
    s, y = _check(scores, labels, both_classes=False)
    vids = list(videos.tolist() if hasattr(videos, "tolist") else videos)
    if len(vids) != len(s):
        raise ValueError(f"videos must have one entry per score, got {len(vids)} for {len(s)} scores")
    order: dict[Any, int] = {}
    for v in vids:
        order.setdefault(v, len(order))
    idx = np.array([order[v] for v in vids], np.int64)
    n = len(order)
    sums = np.bincount(idx, weights=s, minlength=n)
    cnt = np.bincount(idx, minlength=n)
    lab_sum = np.bincount(idx, weights=y, minlength=n)
    mixed = (lab_sum != 0) & (lab_sum != cnt)
    if mixed.any():
        bad = [v for v, i in order.items() if mixed[i]][:3]
        raise ValueError(f"video(s) {bad} hold frames with different labels; a video has one label")
    return sums / cnt, (lab_sum > 0).astype(np.int64), list(order)


def forgery_report(scores: Any, labels: Any, videos: Any | None = None, threshold: float = 0.5) -> dict[str, Any]:
    """Frame-level ``AUC``, ``EER``, ``ACC`` (at ``threshold``), ``AP``; with ``videos`` also
    ``video_AUC``, ``video_EER``, ``video_ACC``, ``video_AP`` over per-video mean scores."""
    s, y = _check(scores, labels)
    out: dict[str, Any] = {"AUC": binary_auc(s, y), "EER": eer(s, y)[0], "ACC": accuracy(s, y, threshold),
                           "AP": average_precision(s, y), "n_frames": int(len(s)), "n_fake": int(y.sum()),
                           "n_real": int((1 - y).sum())}
    if videos is not None:
        vs, vy, ids = aggregate_by_video(s, y, videos)
        out["n_videos"] = len(ids)
        if vy.min() != vy.max():
            out.update({"video_AUC": binary_auc(vs, vy), "video_EER": eer(vs, vy)[0],
                        "video_ACC": accuracy(vs, vy, threshold), "video_AP": average_precision(vs, vy)})
    return out

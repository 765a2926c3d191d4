"""Clustering / embedding-quality metrics (e.g. single-cell multimodal integration).

Conventions:

* ``labels_true`` / ``labels_pred``: ``(N,)`` integer or string cluster labels; the label
  values themselves do not matter, only the partition.
* ``embeddings``: ``(N, D)`` float array; ``labels``: ``(N,)`` labels of the same samples.
* ARI (adjusted Rand index, chance = 0, perfect = 1) and NMI (arithmetic-mean
  normalisation, the sklearn and scIB default, in [0, 1]) compare two partitions.
* ASW is the mean silhouette width with Euclidean distance, in [-1, 1]. With
  ``scaled=True`` it is rescaled to [0, 1] as ``(s + 1) / 2``, the scIB *cell-type* ASW
  (scIB's *batch* ASW, ``1 - |s|`` per cell, is a different metric and not provided).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

__all__ = ["ari", "asw", "clustering_report", "embedding_clustering", "leiden_clusters", "nmi"]


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _np(a).reshape(-1), _np(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(
            f"labels_true and labels_pred must have the same length, got {a.shape[0]} and {b.shape[0]}"
        )
    if a.shape[0] == 0:
        raise ValueError("labels are empty; expected at least one sample")
    return a, b


def ari(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index of two ``(N,)`` labelings."""
    return float(adjusted_rand_score(*_pair(labels_true, labels_pred)))


def nmi(labels_true: Any, labels_pred: Any) -> float:
    """Normalised mutual information (arithmetic normalisation) of two ``(N,)`` labelings."""
    return float(normalized_mutual_info_score(*_pair(labels_true, labels_pred), average_method="arithmetic"))


def asw(embeddings: Any, labels: Any, scaled: bool = False) -> float:
    """Average silhouette width of ``embeddings`` ``(N, D)`` grouped by ``labels`` ``(N,)``.

    In [-1, 1]; ``scaled=True`` returns ``(s + 1) / 2`` in [0, 1] (scIB cell-type ASW).
    Needs 2 <= number of distinct labels <= N - 1.
    """
    x, y = _np(embeddings).astype(np.float64), _np(labels).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"embeddings must be (N, D) with N = len(labels) = {y.shape[0]}, got shape {x.shape}"
        )
    k = np.unique(y).shape[0]
    if not 2 <= k <= x.shape[0] - 1:
        raise ValueError(f"silhouette needs between 2 and N-1 = {x.shape[0] - 1} distinct labels, got {k}")
    s = float(silhouette_score(x, y, metric="euclidean"))
    return (s + 1.0) / 2.0 if scaled else s


def clustering_report(labels_true: Any, labels_pred: Any, embeddings: Any | None = None) -> dict[str, float]:
    """ARI and NMI of the two labelings; with ``embeddings`` ``(N, D)`` also ``ASW`` and
    ``ASW_scaled`` of the embedding grouped by ``labels_true``."""
    out = {"ARI": ari(labels_true, labels_pred), "NMI": nmi(labels_true, labels_pred)}
    if embeddings is not None:
        out["ASW"] = asw(embeddings, labels_true)
        out["ASW_scaled"] = (out["ASW"] + 1.0) / 2.0
    return out


def leiden_clusters(embeddings: Any, k: int = 20, resolution: float = 1.0, seed: int = 0) -> np.ndarray:
    """Leiden communities ``(N,)`` of the symmetrised, unweighted kNN graph (k neighbours, Euclidean).

    Uses ``leidenalg`` (RBConfiguration, i.e. modularity with a resolution, as scanpy's default) on an
    ``igraph`` graph; both come with ``pip install "mmtrust[singlecell]"``.
    """
    from sklearn.neighbors import kneighbors_graph

    from .._deps import require

    ig = require("igraph", "singlecell")
    la = require("leidenalg", "singlecell")
    x = _np(embeddings).astype(np.float64)
    k = min(k, x.shape[0] - 1)
    adj = kneighbors_graph(x, k, mode="connectivity", include_self=False)
    adj = ((adj + adj.T) > 0).tocoo()
    keep = adj.row < adj.col
    graph = ig.Graph(n=x.shape[0], edges=list(zip(adj.row[keep].tolist(), adj.col[keep].tolist(), strict=True)))
    part = la.find_partition(graph, la.RBConfigurationVertexPartition, resolution_parameter=resolution, seed=seed)
    return np.asarray(part.membership, dtype=np.int64)


def embedding_clustering(embeddings: Any, labels: Any, k: int = 20, resolution: float = 1.0,
                         seed: int = 0) -> dict[str, float]:
    """kNN + Leiden on ``embeddings`` ``(N, D)``, then ARI / NMI against ``labels`` ``(N,)`` and the ASW
    of the embedding grouped by ``labels`` (scMMAE / scFusionTTT evaluation); also ``n_clusters``."""
    pred = leiden_clusters(embeddings, k=k, resolution=resolution, seed=seed)
    out = clustering_report(labels, pred, embeddings)
    out["n_clusters"] = int(np.unique(pred).shape[0])
    return out

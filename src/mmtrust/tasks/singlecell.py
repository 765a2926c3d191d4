"""The single-cell multi-omics task: three-stage training, clustering evaluation, benchmark with baselines.

Protocol (after scMMAE, the scFusionTTT authors' predecessor): cells are split 60/10/30 (train / val /
test) by a seeded permutation. Stage 1 pre-trains on the RNA + protein of the training cells (masked
reconstruction, epoch chosen on the validation cells); stage 2 fine-tunes with the labels of
``label_fraction`` of the training cells; stage 3 trains the RNA-only transfer (projection + head) on the
RNA of the same labelled cells. Evaluation embeds the **test** cells, builds a kNN graph (k = 20) and
clusters it with Leiden (resolution 1.0), then reports ARI and NMI against the labels and the ASW of the
embedding (:func:`mmtrust.metrics.clustering.embedding_clustering`), plus the cell-type accuracy of the
stage-2 head (multimodal) and of the stage-3 head (RNA only, ``*_rna`` keys).

Baselines in :meth:`SingleCellTask.bench` (same test cells, same clustering): PCA of the RNA (50 PCs),
RNA PCs concatenated with the CLR protein (each block scaled to unit total variance), and on request the
same masked autoencoder with attention instead of TTT and the gene-order ablation (reversed / shuffled
gene order).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ..config import parse_data_options
from ..data.citeseq import CiteSeqData
from ..engine.module import TaskModule
from ..metrics.clustering import embedding_clustering
from ..registry import get_dataset, list_datasets, register_task

__all__ = ["SingleCellTask", "SingleCellRecipe", "CiteSeqModel", "prepare_for_model", "pca_embedding", "ttt_scaling"]


class SingleCellRecipe(TaskModule):
    """Stage 1: masked reconstruction ``(x, x)``; stage 2: CE on ``(x, labels)``; stage 3: CE on ``(rna, labels)``."""

    def compute_loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        inp, target = batch
        stage = getattr(self.model, "stage", 1)
        if stage == 1:
            return self.model.masked_loss(inp)
        logits = self.model.classify(inp) if stage == 2 else self.model.classify_rna(inp)
        loss = F.cross_entropy(logits, target)
        return loss, {"acc": float((logits.argmax(1) == target).float().mean())}


def prepare_for_model(data: CiteSeqData, cfg: Any) -> CiteSeqData:
    """The data as the model needs it: ``cfg.n_genes`` most variable genes, matching protein/class counts."""
    if data.n_proteins != cfg.n_proteins:
        raise ValueError(f"the data has {data.n_proteins} proteins but the model was built for {cfg.n_proteins}: "
                         f"--set n_proteins={data.n_proteins}")
    if len(data.label_names) > cfg.n_classes:
        raise ValueError(f"the data has {len(data.label_names)} cell types but the model has {cfg.n_classes} "
                         f"classes: --set n_classes={len(data.label_names)}")
    return data.select_genes(cfg.n_genes)


def _x(data: CiteSeqData) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([data.rna, data.prot], 1).astype(np.float32))  # (N, G + P)


def _labelled(data: CiteSeqData, fraction: float, seed: int) -> np.ndarray:
    known = np.flatnonzero(data.labels >= 0)
    n = max(1, int(round(fraction * len(known))))
    return np.sort(np.random.default_rng(seed).permutation(known)[:n])


def pca_embedding(train: np.ndarray, test: np.ndarray, n: int = 50) -> np.ndarray:
    """Test cells projected on the top ``n`` principal axes of the (centred) training cells."""
    from sklearn.decomposition import PCA

    n = min(n, train.shape[0] - 1, train.shape[1])
    return PCA(n_components=n, random_state=0).fit(train).transform(test)


def _scaled(block: np.ndarray) -> np.ndarray:
    block = block - block.mean(0)
    return block / np.sqrt((block**2).sum(1).mean() + 1e-12)


@register_task("singlecell")
class SingleCellTask:
    """Train / evaluate / benchmark single-cell multi-omics methods (scFusionTTT)."""

    recipe_cls = SingleCellRecipe
    bench_note = ("clustering of the test cells' embeddings (kNN k=20 + Leiden, resolution 1.0): ARI/NMI against the "
                  "cell-type labels, ASW on the embedding; acc = the fine-tuned head's accuracy; suffixes _rna = "
                  "RNA-only (stage 3), _pca_rna / _concat = PCA and RNA-PCs+protein baselines.")

    # ------------------------------------------------------------------ contract
    def example_batch(self, model: torch.nn.Module, batch_size: int = 4, seed: int = 0):
        """``(x, x)``: RNA log1p values and CLR protein ``(B, G + P)``; the stage-1 target is the input."""
        g = torch.Generator().manual_seed(seed)
        cfg = model.cfg
        rna = torch.log1p(torch.poisson(torch.full((batch_size, cfg.n_genes), 2.0), generator=g))
        prot = torch.randn(batch_size, cfg.n_proteins, generator=g)
        x = torch.cat([rna, prot - prot.mean(1, keepdim=True)], 1)
        return x, x.clone()

    # ------------------------------------------------------------------ data
    def load_data(self, data: str, split: str, image_size: Any = None, progress: bool = True, **kw: Any):
        """``data``: a registered dataset name (``synthetic-citeseq``), ``citeseq:PATH`` or a PATH
        (``.h5mu`` / ``.h5ad`` / ``.h5``); options after ``?``, e.g. ``citeseq:pbmc.h5mu?label_key=celltype``."""
        data, opts = parse_data_options(data)
        kw.update(opts)
        if data in list_datasets("singlecell"):
            name, root = data, None
        elif ":" in data and not Path(data).exists():
            name, _, root = data.partition(":")
        else:
            name, root = "citeseq", data
        try:
            return get_dataset(name).factory(root=root, split=split, **kw)
        except TypeError as err:  # an unknown option
            raise ValueError(f"dataset {name!r}: {err}") from err

    # ------------------------------------------------------------------ train
    def train(self, model: torch.nn.Module, cfg: Any, data: str | CiteSeqData, out_dir: str | Path, *,
              stages: tuple[int, ...] = (1, 2, 3), devices: int | str = 1, accelerator: str = "auto",
              num_nodes: int = 1, resume: bool = False, progress: bool = True,
              stop_after_epochs: int | None = None, train_data: CiteSeqData | None = None,
              val_data: CiteSeqData | None = None):
        """Run the stages in order, each a Lightning ``fit`` in ``out_dir/stage<k>``; returns the last
        stage's :class:`FitResult` with ``train_seconds`` summed over the stages."""
        from ..config import config_to_dict
        from ..engine.trainer import fit

        tr = prepare_for_model(train_data or self.load_data(data, "train", progress=progress), cfg)
        va = prepare_for_model(val_data or self.load_data(data, "val", progress=progress), cfg)
        settings = {1: cfg.train, 2: cfg.finetune, 3: cfg.transfer}
        lab = _labelled(tr, cfg.label_fraction, cfg.train.seed)
        va_lab = np.flatnonzero(va.labels >= 0)
        x_tr, x_va = _x(tr), _x(va)
        y_tr, y_va = torch.from_numpy(tr.labels), torch.from_numpy(va.labels)
        sets = {
            1: (TensorDataset(x_tr, x_tr), TensorDataset(x_va, x_va)),
            2: (TensorDataset(x_tr[lab], y_tr[lab]), TensorDataset(x_va[va_lab], y_va[va_lab])),
            3: (TensorDataset(x_tr[lab, : cfg.n_genes], y_tr[lab]),
                TensorDataset(x_va[va_lab, : cfg.n_genes], y_va[va_lab])),
        }
        total, result = 0.0, None
        recipe_cls = getattr(model, "recipe_cls", None) or self.recipe_cls
        for stage in stages:
            if stage in (2, 3) and len(lab) == 0:
                raise ValueError("stages 2 and 3 need labelled cells; the data has no labels (stage 1 only: "
                                 "stages=(1,))")
            t = settings[stage]
            model.set_stage(stage)
            model.train()
            train_ds, val_ds = sets[stage]
            loader = DataLoader(train_ds, batch_size=t.batch_size, shuffle=True, num_workers=t.num_workers)
            val_loader = DataLoader(val_ds, batch_size=t.batch_size) if len(val_ds) else None
            stage_dir = Path(out_dir) / f"stage{stage}"
            result = fit(recipe_cls(model, t), loader, val_loader, stage_dir, t, devices=devices,
                         accelerator=accelerator, num_nodes=num_nodes,
                         resume=resume and (stage_dir / "checkpoints" / "last.ckpt").is_file(),
                         progress=progress, stop_after_epochs=stop_after_epochs,
                         run_config={"method": getattr(model, "method_name", type(model).__name__),
                                     "data": str(data), "stage": stage, "config": config_to_dict(cfg)})
            if result.best_state is not None:
                model.load_state_dict({k.removeprefix("model."): v for k, v in result.best_state.items()})
            total += result.train_seconds
        model.set_stage(1)
        model.eval()
        return dataclasses.replace(result, train_seconds=total)

    # ------------------------------------------------------------------ evaluate
    @torch.inference_mode()
    def embeddings(self, model: torch.nn.Module, data: CiteSeqData, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Multimodal and RNA-only embeddings and head logits of every cell in ``data``."""
        data = prepare_for_model(data, model.cfg)
        model.eval()
        x = _x(data)
        out: dict[str, list[torch.Tensor]] = {"emb": [], "logits": [], "emb_rna": [], "logits_rna": []}
        for s in range(0, len(x), batch_size):
            xb = x[s : s + batch_size]
            e, er = model.embed(xb), model.embed_rna(xb[:, : model.cfg.n_genes])
            out["emb"].append(e)
            out["logits"].append(model.head(e))
            out["emb_rna"].append(er)
            out["logits_rna"].append(model.rna_head(er))
        return {k: torch.cat(v).cpu().numpy() for k, v in out.items()}

    def evaluate(self, model: torch.nn.Module, dataset: CiteSeqData, k: int = 20, resolution: float = 1.0,
                 **_: Any) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Clustering metrics of the multimodal and RNA-only embeddings of ``dataset`` and head accuracies."""
        emb = self.embeddings(model, dataset)
        y = dataset.labels
        known = y >= 0
        metrics: dict[str, float] = {"n_cells": int(len(y))}
        for key, suffix in (("emb", ""), ("emb_rna", "_rna")):
            rep = embedding_clustering(emb[key][known], y[known], k=k, resolution=resolution)
            metrics.update({f"{m}{suffix}": v for m, v in rep.items() if m in ("ARI", "NMI", "ASW", "n_clusters")})
        if known.any():
            metrics["acc"] = float((emb["logits"].argmax(1)[known] == y[known]).mean())
            metrics["acc_rna"] = float((emb["logits_rna"].argmax(1)[known] == y[known]).mean())
        return metrics, emb

    def write_eval(self, out_dir: str | Path, method: str, data: str, split: str, metrics: dict[str, float],
                   details: dict[str, np.ndarray], dataset: CiteSeqData, **settings: Any) -> Path:
        """``metrics.json`` plus a UMAP PNG of the evaluated cells (for a task-generic ``mmtrust eval``)."""
        import json

        from ..data.cache import atomic_path

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps({"method": method, "data": data, "split": split, "metrics": metrics,
                                       "cells": list(dataset.cell_ids)}, indent=2))
        _plot_embeddings(out / "umap.png", {method: details["emb"], f"{method} RNA-only": details["emb_rna"]},
                         dataset.labels, dataset.label_names, title=f"{method} on {data} ({split})")
        return out / "metrics.json"

    # ------------------------------------------------------------------ benchmark
    def bench(self, entry: Any, preset: str, data: str, out_dir: Path, quick: bool,
              ablations: bool | None = None) -> dict[str, Any]:
        """scFusionTTT and its baselines on ``data``'s test cells; writes a UMAP PNG.

        ``ablations`` (default: on unless ``quick``) adds the attention-MAE and the reversed / shuffled
        gene-order runs (each a further stage 1 + 2 training).
        """
        from ..config import build_config, config_to_dict

        out_dir = Path(out_dir)
        ablations = (not quick) if ablations is None else ablations
        cfg = build_config(entry.config_cls, entry.presets, preset)
        splits = {s: self.load_data(data, s, progress=False) for s in ("train", "val", "test")}
        full = splits["train"]
        notes = []
        if cfg.n_genes > full.n_genes:
            notes.append(f"n_genes {cfg.n_genes} -> {full.n_genes} (all the data has)")
            cfg.n_genes = full.n_genes
        if cfg.n_proteins != full.n_proteins or cfg.n_classes < len(full.label_names):
            notes.append(f"n_proteins {cfg.n_proteins} -> {full.n_proteins}, n_classes -> {len(full.label_names)}")
            cfg.n_proteins, cfg.n_classes = full.n_proteins, max(cfg.n_classes, len(full.label_names))
        splits = {s: prepare_for_model(d, cfg) for s, d in splits.items()}
        tr, te = splits["train"], splits["test"]

        def run(c: Any, order: np.ndarray | None, name: str, stages=(1, 2, 3)):
            """Train a fresh model; returns it, the summed seconds, the stage-1 test metrics, the test data."""
            torch.manual_seed(c.train.seed)
            m = entry.model_cls(c)
            d = {s: (v.reorder_genes(order) if order is not None else v) for s, v in splits.items()}
            scratch = out_dir / "train" / entry.name / name
            shutil.rmtree(scratch, ignore_errors=True)
            kw = dict(progress=False, train_data=d["train"], val_data=d["val"])
            res = self.train(m, c, data, scratch, stages=(1,), **kw)  # self-supervised only
            s1, _ = self.evaluate(m, d["test"])
            seconds = res.train_seconds
            if len(stages) > 1:
                seconds += self.train(m, c, data, scratch, stages=stages[1:], **kw).train_seconds
            return m, seconds, s1, d["test"]

        model, train_s, stage1, _ = run(cfg, None, "main")
        t0 = time.perf_counter()
        metrics, emb = self.evaluate(model, te)
        infer_s = time.perf_counter() - t0
        metrics.update({f"{k}_stage1": stage1[k] for k in ("ARI", "NMI", "ASW")})
        y = te.labels
        # baselines on the same test cells (PCA fitted on the training cells)
        pcs = pca_embedding(tr.rna, te.rna)
        concat = np.concatenate([_scaled(pcs), _scaled(te.prot)], 1)
        views = {"scFusionTTT": emb["emb"], "scFusionTTT RNA-only (stage 3)": emb["emb_rna"],
                 "PCA (RNA)": pcs, "RNA PCs + CLR protein": concat}
        for key, rep in (("pca_rna", pcs), ("concat", concat)):
            r = embedding_clustering(rep, y, k=20, resolution=1.0)
            metrics.update({f"{m}_{key}": r[m] for m in ("ARI", "NMI", "ASW")})
        if ablations:
            rng = np.random.default_rng(0)
            variants = {"attention": (dataclasses.replace(cfg, mixer="attention"), None),
                        "reversed": (cfg, np.arange(cfg.n_genes)[::-1].copy()),
                        "shuffled": (cfg, rng.permutation(cfg.n_genes))}
            for key, (c, order) in variants.items():
                m, _, r1, te_v = run(c, order, key, stages=(1, 2))
                r, _ = self.evaluate(m, te_v)
                metrics.update({f"ARI_{key}": r["ARI"], f"NMI_{key}": r["NMI"], f"ASW_{key}": r["ASW"],
                                f"acc_{key}": r["acc"], f"ARI_{key}_stage1": r1["ARI"]})
        scaling = ttt_scaling() if not quick else ttt_scaling((200, 400, 800), repeats=2)
        metrics["ttt_doubling_ratio_max"] = scaling["ttt_doubling_ratio_max"][0]
        metrics["attention_doubling_ratio_max"] = scaling["attention_doubling_ratio_max"][0]
        scaling_png = _plot_scaling(out_dir / f"{entry.name}_scaling.png", scaling)
        png = _plot_embeddings(out_dir / f"{entry.name}_umap.png", views, y, te.label_names,
                               title=f"{entry.name} on {data} (test cells)")
        return {
            "method": entry.name,
            "dataset": data,
            "split": "test",
            "preset": preset,
            "metrics": metrics,
            "params": int(sum(p.numel() for p in model.parameters())),
            "train_s": round(train_s, 3),
            "infer_items_per_s": round(len(te) / max(infer_s, 1e-9), 1),
            "items": "cells",
            "clustering": "kNN (k=20, Euclidean) + Leiden (resolution 1.0) on the test cells",
            "notes": notes,
            "plots": [png.name, scaling_png.name],
            "scaling": scaling,
            "config": config_to_dict(cfg),
        }


class CiteSeqModel:
    """scverse-style use of a single-cell method on a user's own data::

        model = CiteSeqModel(mdata, label_key="celltype")      # MuData of raw counts ('rna', 'prot')
        model.train("runs/scfusionttt")                         # stages 1-3 (stage 1 only without labels)
        mdata = mdata[model.cell_ids]                           # cells with zero counts were dropped
        mdata.obsm["X_scfusionttt"] = model.get_latent_representation()

    ``data`` may also be a :class:`CiteSeqData` or a file path. The model is sized from the data
    (``n_genes`` = min(preset, genes), ``n_proteins``, ``n_classes``).
    """

    def __init__(self, data: Any, method: str = "scfusionttt", preset: str = "quick", label_key: str | None = None,
                 **overrides: Any) -> None:
        from ..data.citeseq import from_counts, read_citeseq
        from ..registry import get_method

        if isinstance(data, str | Path):
            data = read_citeseq(data, label_key=label_key)
        elif not isinstance(data, CiteSeqData):  # a MuData of raw counts
            mods = dict(data.mod)
            prot = mods.get("prot", mods.get("adt"))
            if "rna" not in mods or prot is None:
                raise ValueError(f"the MuData needs modalities 'rna' and 'prot', it has {sorted(mods)}")
            labels = list(data.obs[label_key].astype(str)) if label_key else None
            data = from_counts(mods["rna"].X, prot[mods["rna"].obs_names].X, list(mods["rna"].var_names),
                               list(prot.var_names), list(mods["rna"].obs_names), labels)
        self.entry = get_method(method)
        from ..config import build_config

        self.cfg = build_config(self.entry.config_cls, self.entry.presets, preset)
        self.cfg.n_genes = min(self.cfg.n_genes, data.n_genes)
        self.cfg.n_proteins = data.n_proteins
        self.cfg.n_classes = max(len(data.label_names), 1)
        for key, value in overrides.items():
            setattr(self.cfg, key, value)
        self.data = prepare_for_model(data, self.cfg)
        self.module = self.entry.model_cls(self.cfg)
        self.cell_ids = list(self.data.cell_ids)

    def train(self, out_dir: str | Path = "runs/citeseq-model", progress: bool = False, seed: int = 0):
        """Stages 1-3 on a 90/10 train/validation split of all cells (stage 1 only when there are no labels)."""
        perm = np.random.default_rng(seed).permutation(len(self.data))
        n_val = max(1, len(perm) // 10)
        val, tr = self.data.subset(np.sort(perm[:n_val])), self.data.subset(np.sort(perm[n_val:]))
        stages = (1, 2, 3) if (self.data.labels >= 0).any() else (1,)
        return SingleCellTask().train(self.module, self.cfg, "user data", out_dir, stages=stages,
                                      progress=progress, train_data=tr, val_data=val)

    def get_latent_representation(self, rna_only: bool = False) -> np.ndarray:
        """``(N, 2 * dim)`` cell embeddings in the order of :attr:`cell_ids`."""
        emb = SingleCellTask().embeddings(self.module, self.data)
        return emb["emb_rna" if rna_only else "emb"]


@torch.inference_mode()
def ttt_scaling(lengths: tuple[int, ...] = (400, 800, 1600, 3200), dim: int = 128, heads: int = 2,
                batch: int = 2, repeats: int = 3) -> dict[str, list[float]]:
    """Forward seconds (best of ``repeats``) of a TTT-Linear layer and of multi-head attention of the same
    width over sequences of ``lengths`` tokens: TTT is linear in the length, attention quadratic."""
    from ..nn.ttt import TTTLayer

    torch.manual_seed(0)
    ttt, att = TTTLayer(dim, heads).eval(), torch.nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    out: dict[str, list[float]] = {"lengths": list(lengths), "ttt_s": [], "attention_s": []}
    for n in lengths:
        x = torch.randn(batch, n, dim)
        ttt(x)  # warm-up
        for key in ("ttt_s", "attention_s"):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                ttt(x) if key == "ttt_s" else att(x, x, x, need_weights=False)
                times.append(time.perf_counter() - t0)
            out[key].append(min(times))
    out["ttt_doubling_ratio_max"] = [max(b / a for a, b in zip(out["ttt_s"], out["ttt_s"][1:], strict=False))]
    out["attention_doubling_ratio_max"] = [max(b / a for a, b in zip(out["attention_s"], out["attention_s"][1:],
                                                                    strict=False))]
    return out


def _plot_scaling(path: Path, sc: dict[str, list[float]]) -> Path:
    from .plots import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.loglog(sc["lengths"], sc["ttt_s"], "o-", label="TTT-Linear (linear)")
    ax.loglog(sc["lengths"], sc["attention_s"], "s-", label="attention (quadratic)")
    ax.set(xlabel="sequence length (tokens)", ylabel="forward time (s)", title="TTT vs attention, width 128")
    ax.legend()
    return _save(fig, path)


def _plot_embeddings(path: Path, views: dict[str, np.ndarray], labels: np.ndarray, names: list[str],
                     title: str = "") -> Path:
    """One UMAP (umap-learn when installed, else the first two principal components) per view."""
    from .plots import _plt, _save

    try:
        import umap

        def reduce(x: np.ndarray) -> np.ndarray:
            return umap.UMAP(n_neighbors=15, random_state=0, n_jobs=1).fit_transform(x)

        how = "UMAP"
    except ImportError:
        def reduce(x: np.ndarray) -> np.ndarray:
            return pca_embedding(x, x, 2)

        how = "PCA"
    plt = _plt()
    fig, axes = plt.subplots(1, len(views), figsize=(4.2 * len(views), 4.4))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for ax, (name, x) in zip(np.atleast_1d(axes), views.items(), strict=True):
        xy = reduce(np.asarray(x, dtype=np.float32))
        for i, lab in enumerate(names):
            m = labels == i
            ax.scatter(xy[m, 0], xy[m, 1], s=6, color=cmap(i % cmap.N), label=lab)
        ax.set(title=name, xticks=[], yticks=[], xlabel=f"{how} 1", ylabel=f"{how} 2")
    np.atleast_1d(axes)[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, markerscale=2)
    fig.suptitle(title)
    return _save(fig, path)

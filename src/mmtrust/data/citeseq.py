"""CITE-seq (RNA + surface protein) data: readers for h5mu / h5ad / 10x h5, normalisation, genomic gene
order, and the built-in ``synthetic-citeseq`` dataset.

Formats read (raw counts in; normalisation happens here):

* ``.h5mu`` (MuData): modalities ``rna`` and ``prot`` (``adt`` / ``protein`` are accepted too), the same
  cell barcodes in both (any order; cells are matched by barcode).
* ``.h5ad`` (AnnData): RNA counts in ``.X``; protein counts in ``.obsm["protein_expression"]`` (scvi-tools
  convention; ``prot`` / ``adt`` accepted), a DataFrame (column names = proteins) or an array with
  names in ``.uns["protein_names"]``.
* 10x ``.h5`` (Cell Ranger): ``Gene Expression`` and ``Antibody Capture`` features of one matrix.

Normalisation: cells with zero RNA or protein counts are dropped (the count is logged); RNA is scaled to
10,000 counts per cell and ``log1p``-transformed; genes are ranked by Seurat-style normalised dispersion
(highly variable genes, :meth:`CiteSeqData.select_genes`); proteins are CLR-transformed per cell
(``log1p(x) - mean_p log1p(x)``). Non-integer "counts" are refused unless ``allow_non_integer=True``.

Genomic order: genes are sorted by (chromosome, start) from a GTF / GFF3 / TSV / Bioconductor OrgDb
``.sqlite`` the user gives (``gene_positions=``; ``"orgdb"`` = Debian's ``r-bioc-org.hs.eg.db``), or from a ``var["interval"]`` column (10x feature intervals, ``chr1:100-200``). When
neither is given the file's own feature order is kept: Cell Ranger writes features in the order of its
reference GTF, which is genomic order. Proteins are ordered by the position of their coding gene
(:data:`PROTEIN_GENES` maps common antibody names to genes); proteins whose gene has no position are
listed in a warning and placed last.

Built-in ``synthetic-citeseq`` (version :data:`SYNTHETIC_VERSION`): the **real RNA** of scanpy's shipped
``pbmc68k_reduced`` (700 10x PBMCs x 765 genes, 10 FACS-sorted ``bulk_labels``) with a **simulated
antibody panel** (:data:`PANEL`, 14 proteins). RNA counts are recovered from the log-normalised ``.raw``:
``expm1(raw.X)`` is ``counts * 10^4 / total`` per cell, so dividing each cell by its smallest non-zero
value (assumed to be one count) gives integers (measured: max deviation from an integer 0.11, recorded
in ``meta["count_recovery_max_residual"]``); the counts are then rounded. Gene order: the file keeps 10x's
reference order (HES4, TNFRSF4, SSU72, PARK7, ... = chr1 ascending; chromosomes in the hg19 reference's
karyotypic order 1-7, X, 8-18, 20, 19, 22, 21), which we use as genomic order. It agrees with the hg38
positions of Debian's ``r-bioc-org.hs.eg.db`` (700 of the 765 genes found; Spearman 0.94 over all genes,
the difference being the chromosome order) — ``synthetic-citeseq?gene_positions=orgdb`` re-sorts by those
positions when that package is installed (it is not a Python dependency: 37 MB, pulls R). Protein model per cell ``c`` of
type ``k`` and protein ``p``::

    mu_cp    = s_c * (ambient_p + specific_p * level_kp * u_cp)      s_c ~ LogNormal(0, 0.25)
    u_cp     ~ LogNormal(0, 0.3)                                      (within-type variation)
    count_cp ~ NegativeBinomial(mean mu_cp, dispersion theta = 5)     (gamma-Poisson)

with ``level`` in {0, 0.15, 0.5, 1} (negative / low / positive / high) from PBMC surface-marker biology
(:data:`MARKER_LEVELS`), ``ambient_p`` 8-30 counts, ``specific_p`` 150-600. Deterministic from ``seed``;
cached as ``.npz`` under ``cache_dir("synthetic-citeseq")`` and rebuilt when the version changes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..registry import register_dataset
from .cache import atomic_path, cache_dir, config_hash

__all__ = ["CiteSeqData", "read_citeseq", "read_gene_positions", "read_orgdb_positions", "genomic_order", "clr", "normalize_rna",
           "check_counts", "load_synthetic_citeseq", "PANEL", "PROTEIN_GENES", "CiteSeqLayoutError"]

log = logging.getLogger(__name__)
SYNTHETIC_VERSION = 1
SPLITS = {"train": (0.0, 0.6), "val": (0.6, 0.7), "test": (0.7, 1.0), "all": (0.0, 1.0)}


class CiteSeqLayoutError(ValueError):
    """A file that is not laid out as CITE-seq data; the message shows the expected layout."""


_LAYOUTS = """expected one of:
  data.h5mu   MuData with modalities 'rna' (cells x genes, raw counts in .X) and 'prot' (cells x proteins,
              raw counts in .X; 'adt' / 'protein' accepted), same cell barcodes
  data.h5ad   AnnData: RNA counts in .X, protein counts in .obsm['protein_expression'] ('prot' / 'adt'
              accepted; a DataFrame, or an array with names in .uns['protein_names'])
  data.h5     10x Cell Ranger matrix with 'Gene Expression' and 'Antibody Capture' features"""

# ------------------------------------------------------------------ protein panel of the built-in data
PANEL = ("CD3", "CD4", "CD8", "CD14", "CD16", "CD19", "CD56", "CD25", "CD34", "CD11c", "HLA-DR", "CD45RA",
         "CD45RO", "CD127")
PROTEIN_GENES = {  # antibody target -> coding gene (HGNC symbol)
    "CD3": "CD3E", "CD4": "CD4", "CD8": "CD8A", "CD8A": "CD8A", "CD14": "CD14", "CD16": "FCGR3A",
    "CD19": "CD19", "CD56": "NCAM1", "CD25": "IL2RA", "CD34": "CD34", "CD11C": "ITGAX", "HLA-DR": "HLA-DRA",
    "CD45RA": "PTPRC", "CD45RO": "PTPRC", "CD45": "PTPRC", "CD127": "IL7R", "CD27": "CD27", "CD20": "MS4A1",
    "CD11B": "ITGAM", "CD2": "CD2", "CD7": "CD7", "CD57": "B3GAT1", "PD-1": "PDCD1", "CD279": "PDCD1",
    "TIGIT": "TIGIT", "CD38": "CD38", "CD69": "CD69", "CD62L": "SELL", "CCR7": "CCR7", "CD197": "CCR7",
}
_N, _L, _P, _H = 0.0, 0.15, 0.5, 1.0  # negative, low, positive, high
MARKER_LEVELS: dict[str, dict[str, float]] = {  # bulk_labels of pbmc68k_reduced -> panel levels
    "CD14+ Monocyte": {"CD4": _L, "CD14": _H, "CD16": _L, "CD11c": _P, "HLA-DR": _H, "CD45RO": _L},
    "CD19+ B": {"CD19": _H, "HLA-DR": _H, "CD45RA": _H},
    "CD34+": {"CD34": _H, "HLA-DR": _P, "CD45RA": _L},
    "CD4+/CD25 T Reg": {"CD3": _H, "CD4": _H, "CD25": _H, "CD45RO": _P, "CD127": _L},
    "CD4+/CD45RA+/CD25- Naive T": {"CD3": _H, "CD4": _H, "CD45RA": _H, "CD127": _H},
    "CD4+/CD45RO+ Memory": {"CD3": _H, "CD4": _H, "CD45RO": _H, "CD127": _P},
    "CD56+ NK": {"CD56": _H, "CD16": _H, "CD45RA": _P, "CD8": _L},
    "CD8+ Cytotoxic T": {"CD3": _H, "CD8": _H, "CD45RO": _P, "CD45RA": _L, "CD127": _L},
    "CD8+/CD45RA+ Naive Cytotoxic": {"CD3": _H, "CD8": _H, "CD45RA": _H, "CD127": _P},
    "Dendritic": {"CD11c": _H, "HLA-DR": _H, "CD4": _L},
}


# ------------------------------------------------------------------ the dataset object
@dataclasses.dataclass
class CiteSeqData:
    """Normalised CITE-seq cells: ``rna (N, G)`` log1p, ``prot (N, P)`` CLR, both float32, genes and
    proteins in genomic order; ``labels (N,)`` int64 (-1 = unknown) indexing ``label_names``."""

    rna: np.ndarray
    prot: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    gene_names: list[str]
    protein_names: list[str]
    cell_ids: list[str]
    hvg_rank: np.ndarray  # (G,) 0 = most variable
    name: str = "citeseq"
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.rna.shape[0])

    @property
    def n_genes(self) -> int:
        return int(self.rna.shape[1])

    @property
    def n_proteins(self) -> int:
        return int(self.prot.shape[1])

    def subset(self, idx: np.ndarray) -> CiteSeqData:
        idx = np.asarray(idx)
        return dataclasses.replace(self, rna=self.rna[idx], prot=self.prot[idx], labels=self.labels[idx],
                                   cell_ids=[self.cell_ids[i] for i in idx])

    def select_genes(self, n: int) -> CiteSeqData:
        """The ``n`` most variable genes, kept in genomic order."""
        if n > self.n_genes:
            raise ValueError(f"{n} genes requested but the data has {self.n_genes} (set n_genes <= {self.n_genes})")
        keep = np.sort(np.argsort(self.hvg_rank, kind="stable")[:n])
        rank = np.argsort(np.argsort(self.hvg_rank[keep], kind="stable"), kind="stable")
        return dataclasses.replace(self, rna=self.rna[:, keep], gene_names=[self.gene_names[i] for i in keep],
                                   hvg_rank=rank)

    def reorder_genes(self, order: np.ndarray) -> CiteSeqData:
        """Genes permuted by ``order`` (the gene-order ablation: reversed / shuffled)."""
        order = np.asarray(order)
        return dataclasses.replace(self, rna=self.rna[:, order], gene_names=[self.gene_names[i] for i in order],
                                   hvg_rank=self.hvg_rank[order])

    def split(self, split: str, seed: int = 0) -> CiteSeqData:
        """Deterministic random cell split: train 60 %, val 10 %, test 30 % (or ``all``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        perm = np.random.default_rng(seed).permutation(len(self))
        lo, hi = SPLITS[split]
        return self.subset(np.sort(perm[int(round(lo * len(self))):int(round(hi * len(self)))]))

    def to_mudata(self) -> Any:
        """A MuData (``rna``, ``prot``) of the normalised values, labels in ``.obs['label']``."""
        ad = require("anndata", "singlecell")
        md = require("mudata", "singlecell")
        import pandas as pd

        obs = pd.DataFrame({"label": [self.label_names[i] if i >= 0 else "unknown" for i in self.labels]},
                           index=self.cell_ids)
        rna = ad.AnnData(self.rna, obs=obs.copy(), var=pd.DataFrame(index=self.gene_names))
        prot = ad.AnnData(self.prot, obs=obs.copy(), var=pd.DataFrame(index=self.protein_names))
        mdata = md.MuData({"rna": rna, "prot": prot})
        mdata.obs["label"] = obs["label"].values
        return mdata


# ------------------------------------------------------------------ normalisation
def _dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def check_counts(x: np.ndarray, what: str, allow_non_integer: bool = False) -> None:
    """Raw counts must be non-negative integers (a log-normalised matrix is a common mistake)."""
    if (x < 0).any():
        raise ValueError(f"{what}: negative values found; raw counts are required (is this already scaled?)")
    frac = np.abs(x - np.round(x))
    if frac.max(initial=0.0) > 1e-6 and not allow_non_integer:
        raise ValueError(f"{what}: non-integer values found (e.g. {x[frac > 1e-6][0]:.4g}); raw counts are "
                         f"required, not normalised values. Pass allow_non_integer=True (data option "
                         f"?allow_non_integer=true) to use them as they are")


def normalize_rna(counts: np.ndarray, target: float = 1e4) -> np.ndarray:
    """Library size to ``target`` per cell, then ``log1p``."""
    total = counts.sum(1, keepdims=True)
    return np.log1p(counts / np.maximum(total, 1e-12) * target)


def clr(counts: np.ndarray) -> np.ndarray:
    """Centred log-ratio per cell: ``log1p(x) - mean over proteins of log1p(x)``."""
    lx = np.log1p(counts)
    return lx - lx.mean(1, keepdims=True)


def hvg_rank(lognorm: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Rank genes by Seurat-style normalised dispersion (z-score of log(var/mean) within mean bins)."""
    x = np.expm1(lognorm)
    mean = x.mean(0)
    var = x.var(0, ddof=1) if x.shape[0] > 1 else np.zeros_like(mean)
    disp = np.log(np.maximum(var, 1e-12) / np.maximum(mean, 1e-12))
    bins = np.digitize(np.log1p(mean), np.linspace(np.log1p(mean).min(), np.log1p(mean).max() + 1e-9, n_bins + 1))
    z = np.zeros_like(disp)
    for b in np.unique(bins):
        m = bins == b
        sd = disp[m].std()
        z[m] = (disp[m] - disp[m].mean()) / sd if m.sum() > 1 and sd > 0 else 0.0
    z[mean == 0] = -np.inf
    order = np.argsort(-z, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank


# ------------------------------------------------------------------ genomic order
def _chrom_key(chrom: str) -> tuple[int, str]:
    c = re.sub(r"^chr", "", str(chrom), flags=re.I)
    if c.isdigit():
        return int(c), ""
    return {"X": 100, "Y": 101, "M": 102, "MT": 102}.get(c.upper(), 200), c


#: Debian's ``r-bioc-org.hs.eg.db`` (Bioconductor org.Hs.eg.db: NCBI Gene symbols, UCSC hg38 positions)
ORGDB_HUMAN = Path("/usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite")


def read_orgdb_positions(path: str | Path = ORGDB_HUMAN) -> dict[str, tuple[tuple[int, str], int]]:
    """Gene symbol -> ((chromosome key), start) from a Bioconductor OrgDb SQLite file.

    ``apt-get install r-bioc-org.hs.eg.db`` installs the human one at :data:`ORGDB_HUMAN` (tables
    ``gene_info(_id, symbol)`` and ``chromosome_locations(_id, seqname, start_location)``; a negative start
    marks the minus strand). Alternative haplotype contigs (``1_GL383520v2_alt``) are ignored; a gene with
    several locations keeps the first.
    """
    import sqlite3

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OrgDb file not found: {path} (Debian: apt-get install r-bioc-org.hs.eg.db)")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT g.symbol, l.seqname, l.start_location FROM gene_info g "
                           "JOIN chromosome_locations l ON g._id = l._id").fetchall()
    out: dict[str, tuple[tuple[int, str], int]] = {}
    for symbol, chrom, start in rows:
        if "_" in str(chrom):
            continue
        key = (_chrom_key(chrom), abs(int(start)))
        if symbol not in out or key < out[symbol]:
            out[symbol] = key
    return out


def read_gene_positions(path: str | Path) -> dict[str, tuple[tuple[int, str], int]]:
    """Gene name -> ((chromosome key), start) from a GTF, GFF3, TSV or OrgDb ``.sqlite`` file.

    GTF/GFF3: rows whose feature is ``gene``; the name is ``gene_name`` (GTF) / ``Name`` or ``gene_name``
    (GFF3), else ``gene_id``. TSV: columns ``gene<TAB>chrom<TAB>start`` (a header line is skipped).
    ``"orgdb"`` reads Debian's human OrgDb (:func:`read_orgdb_positions`).
    """
    if str(path) == "orgdb" or str(path).endswith(".sqlite"):
        return read_orgdb_positions(ORGDB_HUMAN if str(path) == "orgdb" else path)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gene positions file not found: {path}")
    out: dict[str, tuple[tuple[int, str], int]] = {}
    opener: Any = open
    if path.suffix == ".gz":
        import gzip

        opener = gzip.open
    with opener(path, "rt") as fh:
        for line in fh:
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 9:  # GTF / GFF3
                if cols[2] != "gene":
                    continue
                attrs = dict(re.findall(r'(\w+)[ =]"?([^";]+)"?', cols[8]))
                name = attrs.get("gene_name") or attrs.get("Name") or attrs.get("gene_id")
                start = cols[3]
            elif len(cols) >= 3:
                name, chrom_col, start = cols[0], cols[1], cols[2]
                cols = [chrom_col]
            else:
                raise ValueError(f"{path}: cannot read line {line.strip()!r}; expected a GTF/GFF3 row or "
                                 f"'gene<TAB>chrom<TAB>start'")
            if not start.strip().isdigit():
                continue  # a header
            if name and name not in out:
                out[name] = (_chrom_key(cols[0]), int(start))
    if not out:
        raise ValueError(f"{path}: no gene positions found (GTF/GFF3 rows with feature 'gene', or a TSV "
                         f"gene<TAB>chrom<TAB>start)")
    return out


def _parse_interval(s: Any) -> tuple[tuple[int, str], int] | None:
    m = re.match(r"^([^:]+):(\d+)-(\d+)$", str(s))
    return (_chrom_key(m.group(1)), int(m.group(2))) if m else None


def genomic_order(names: list[str], positions: dict[str, tuple[tuple[int, str], int]] | None
                  ) -> tuple[np.ndarray, list[str]]:
    """Indices that sort ``names`` by position; names without a position keep their order, placed last."""
    if positions is None:
        return np.arange(len(names)), []
    known = [i for i, n in enumerate(names) if n in positions]
    missing = [i for i, n in enumerate(names) if n not in positions]
    known.sort(key=lambda i: positions[names[i]])
    return np.array(known + missing, dtype=np.int64), [names[i] for i in missing]


def protein_gene(name: str, mapping: dict[str, str] | None = None) -> str:
    """Coding gene of an antibody: an explicit mapping, the built-in table, else the cleaned name."""
    clean = re.sub(r"(?i)^(adt[_-]|anti[_-])|([_-](totalseq\w*|adt|protein))$", "", name)
    for table in (mapping or {}, PROTEIN_GENES):
        for key in (name, clean, clean.upper()):
            if key in table:
                return table[key]
    return clean


def _order_proteins(names: list[str], gene_names: list[str], positions: Any,
                    mapping: dict[str, str] | None) -> tuple[np.ndarray, list[str]]:
    gene_rank = {g: i for i, g in enumerate(gene_names)}  # genes are already in genomic order
    keyed, missing = [], []
    for i, n in enumerate(names):
        g = protein_gene(n, mapping)
        if positions is not None and g in positions:
            keyed.append((positions[g], i))
        elif positions is None and g in gene_rank:
            keyed.append((gene_rank[g], i))
        else:
            missing.append(i)
    keyed.sort()
    if missing:
        warnings.warn(f"{len(missing)} protein(s) have no position for their coding gene and are placed last: "
                      f"{', '.join(names[i] for i in missing)}", stacklevel=3)
    return np.array([i for _, i in keyed] + missing, dtype=np.int64), [names[i] for i in missing]


# ------------------------------------------------------------------ building a CiteSeqData from counts
def from_counts(rna_counts: Any, prot_counts: Any, gene_names: list[str], protein_names: list[str],
                cell_ids: list[str], labels: list[Any] | None = None, *, gene_positions: Any = None,
                protein_genes: dict[str, str] | None = None, allow_non_integer: bool = False,
                name: str = "citeseq", meta: dict[str, Any] | None = None) -> CiteSeqData:
    """Raw counts -> :class:`CiteSeqData` (checks, zero-count filtering, normalisation, genomic order)."""
    rna, prot = _dense(rna_counts), _dense(prot_counts)
    gene_names, protein_names, cell_ids = ([str(v) for v in a] for a in (gene_names, protein_names, cell_ids))
    check_counts(rna, "RNA", allow_non_integer)
    check_counts(prot, "protein", allow_non_integer)
    keep = (rna.sum(1) > 0) & (prot.sum(1) > 0)
    if not keep.all():
        log.warning("dropped %d of %d cells with zero RNA or protein counts", int((~keep).sum()), len(keep))
    if not keep.any():
        raise ValueError("every cell has zero RNA or protein counts")
    rna, prot = rna[keep], prot[keep]
    cell_ids = [c for c, k in zip(cell_ids, keep, strict=True) if k]
    positions = read_gene_positions(gene_positions) if isinstance(gene_positions, str | Path) else gene_positions
    g_order, g_missing = genomic_order(list(gene_names), positions)
    if g_missing and positions is not None:
        log.warning("%d of %d genes have no genomic position and are placed last", len(g_missing), len(gene_names))
    gene_names = [gene_names[i] for i in g_order]
    rna = rna[:, g_order]
    p_order, p_missing = _order_proteins(list(protein_names), gene_names, positions, protein_genes)
    protein_names = [protein_names[i] for i in p_order]
    prot = prot[:, p_order]
    if labels is None:
        lab, label_names = np.full(len(cell_ids), -1, np.int64), []
    else:
        labels = [lab for lab, k in zip(labels, keep, strict=True) if k]
        label_names = sorted({str(v) for v in labels})
        lab = np.array([label_names.index(str(v)) for v in labels], dtype=np.int64)
    lognorm = normalize_rna(rna)
    meta = dict(meta or {}, n_dropped_cells=int((~keep).sum()), genes_without_position=g_missing,
                proteins_placed_last=p_missing)
    return CiteSeqData(lognorm.astype(np.float32), clr(prot).astype(np.float32), lab, label_names,
                       list(gene_names), list(protein_names), list(cell_ids), hvg_rank(lognorm), name, meta)


# ------------------------------------------------------------------ readers
def _var_positions(var: Any) -> dict[str, tuple[tuple[int, str], int]] | None:
    if "interval" not in getattr(var, "columns", []):
        return None
    pos = {str(n): p for n, p in zip(var.index, map(_parse_interval, var["interval"]), strict=True) if p}
    return pos or None


def _labels_from(obs: Any, label_key: str | None) -> list[Any] | None:
    if label_key is None:
        return None
    if label_key not in obs.columns:
        raise KeyError(f"label column {label_key!r} not in .obs (columns: {', '.join(map(str, obs.columns))})")
    return list(obs[label_key].astype(str))


def read_citeseq(path: str | Path, *, label_key: str | None = None, gene_positions: Any = None,
                 protein_genes: dict[str, str] | None = None, allow_non_integer: bool = False) -> CiteSeqData:
    """Read a ``.h5mu``, ``.h5ad`` or 10x ``.h5`` CITE-seq file of raw counts (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file.\n{_LAYOUTS}")
    kw = dict(protein_genes=protein_genes, allow_non_integer=allow_non_integer, name=path.stem)
    suffix = path.suffix.lower()
    if suffix == ".h5mu":
        md = require("mudata", "singlecell")
        mdata = md.read_h5mu(path)
        mods = dict(mdata.mod)
        prot_key = next((k for k in ("prot", "adt", "protein") if k in mods), None)
        if "rna" not in mods or prot_key is None:
            raise CiteSeqLayoutError(f"{path}: modalities {sorted(mods)} found, need 'rna' and 'prot'.\n{_LAYOUTS}")
        rna, prot = mods["rna"], mods[prot_key]
        rb, pb = list(map(str, rna.obs_names)), list(map(str, prot.obs_names))
        common = set(rb) & set(pb)
        if len(common) != len(rb) or len(common) != len(pb):
            raise CiteSeqLayoutError(f"{path}: cell barcodes differ between modalities: {len(rb) - len(common)} "
                                     f"RNA and {len(pb) - len(common)} protein barcodes have no partner")
        prot = prot[rb]
        obs = mdata.obs.loc[rb] if label_key and label_key in mdata.obs.columns else rna.obs
        return from_counts(rna.X, prot.X, list(map(str, rna.var_names)), list(map(str, prot.var_names)), rb,
                           _labels_from(obs, label_key), gene_positions=gene_positions or _var_positions(rna.var),
                           **kw)
    if suffix == ".h5ad":
        ad = require("anndata", "singlecell")
        adata = ad.read_h5ad(path)
        key = next((k for k in ("protein_expression", "prot", "adt") if k in adata.obsm), None)
        if key is None:
            raise CiteSeqLayoutError(f"{path}: no protein counts in .obsm (keys: {sorted(adata.obsm)}).\n{_LAYOUTS}")
        p = adata.obsm[key]
        if hasattr(p, "columns"):
            pnames, pmat = list(map(str, p.columns)), p.to_numpy()
        else:
            pnames = list(map(str, adata.uns.get("protein_names", [])))
            pmat = p
            if len(pnames) != pmat.shape[1]:
                raise CiteSeqLayoutError(f"{path}: .obsm[{key!r}] is an array of {pmat.shape[1]} columns but "
                                         f".uns['protein_names'] has {len(pnames)} names.\n{_LAYOUTS}")
        return from_counts(adata.X, pmat, list(map(str, adata.var_names)), pnames, list(map(str, adata.obs_names)),
                           _labels_from(adata.obs, label_key),
                           gene_positions=gene_positions or _var_positions(adata.var), **kw)
    if suffix == ".h5":
        x, names, types, barcodes, intervals = _read_10x_h5(path)
        gex, adt = types == "Gene Expression", types == "Antibody Capture"
        if not gex.any() or not adt.any():
            raise CiteSeqLayoutError(f"{path}: a 10x matrix needs both 'Gene Expression' and 'Antibody Capture' "
                                     f"features, found {sorted(set(types.tolist()))}.\n{_LAYOUTS}")
        pos = None
        if intervals is not None:
            pos = {str(n): p for n, p in zip(names[gex], map(_parse_interval, intervals[gex]), strict=True) if p}
        return from_counts(x[:, gex], x[:, adt], list(names[gex]), list(names[adt]), list(barcodes), None,
                           gene_positions=gene_positions or pos or None, **kw)
    raise CiteSeqLayoutError(f"{path}: unknown file type {path.suffix!r}.\n{_LAYOUTS}")


def _read_10x_h5(path: Path) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Cell Ranger (v3+) ``/matrix``: CSC counts (features x barcodes) -> cells x features CSR, feature
    names, feature types, barcodes and (when present) feature intervals."""
    h5py = require("h5py", "singlecell")
    import scipy.sparse as sp

    def text(ds: Any) -> np.ndarray:
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]])

    with h5py.File(path, "r") as f:
        if "matrix" not in f or "features" not in f["matrix"]:
            raise CiteSeqLayoutError(f"{path}: no /matrix/features group (Cell Ranger v3+ layout).\n{_LAYOUTS}")
        m = f["matrix"]
        n_feat, n_cells = (int(v) for v in m["shape"][()])
        x = sp.csc_matrix((m["data"][()], m["indices"][()], m["indptr"][()]), shape=(n_feat, n_cells)).T.tocsr()
        feats = m["features"]
        intervals = text(feats["interval"]) if "interval" in feats else None
        return x, text(feats["name"]), text(feats["feature_type"]), text(m["barcodes"]), intervals


# ------------------------------------------------------------------ the built-in data
def _pbmc68k_path() -> Path:
    spec = importlib.util.find_spec("scanpy")
    if spec is None or spec.origin is None:
        require("scanpy", "singlecell")  # raises the install hint
    path = Path(spec.origin).parent / "datasets" / "10x_pbmc68k_reduced.h5ad"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scanpy's shipped pbmc68k_reduced is missing (reinstall scanpy)")
    return path


def _protein_counts(labels: list[str], rng: np.random.Generator) -> np.ndarray:
    """The antibody model of the module docstring: ``(N, len(PANEL))`` integer counts."""
    n, p = len(labels), len(PANEL)
    ambient = rng.uniform(8, 30, p)
    specific = rng.uniform(150, 600, p)
    level = np.array([[MARKER_LEVELS[lab].get(m, _N) for m in PANEL] for lab in labels])  # (N, P)
    size = rng.lognormal(0.0, 0.25, (n, 1))
    u = rng.lognormal(0.0, 0.3, (n, p))
    mu = size * (ambient + specific * level * u)
    theta = 5.0
    return rng.poisson(rng.gamma(theta, mu / theta))


def _generate(seed: int) -> dict[str, Any]:
    ad = require("anndata", "singlecell")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ad.read_h5ad(_pbmc68k_path())
    raw = _dense(adata.raw.X)
    e = np.expm1(raw)
    unit = np.where(e > 0, e, np.inf).min(1, keepdims=True)  # one count, per cell
    c = e / unit
    residual = float(np.abs(c - np.round(c)).max())
    counts = np.round(c)
    labels = list(adata.obs["bulk_labels"].astype(str))
    prot = _protein_counts(labels, np.random.default_rng(seed))
    return {"rna": counts.astype(np.int32), "prot": prot.astype(np.int32), "labels": np.array(labels),
            "genes": np.array(list(map(str, adata.raw.var_names))), "proteins": np.array(PANEL),
            "cells": np.array(list(map(str, adata.obs_names))), "residual": np.array(residual)}


def _synthetic_path(seed: int) -> Path:
    """The cached arrays of the built-in data for ``seed`` (generated on first use)."""
    key = config_hash({"version": SYNTHETIC_VERSION, "seed": seed})
    path = cache_dir("synthetic-citeseq") / f"pbmc68k-adt-{key}.npz"
    if not path.is_file():
        arrays = _generate(seed)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
    return path


def load_synthetic_citeseq(seed: int = 0, gene_positions: str | None = None) -> CiteSeqData:
    """The full (all cells) built-in dataset, generated once per (version, seed) and cached.

    Genes keep pbmc68k_reduced's 10x reference order unless ``gene_positions`` (a file or ``"orgdb"``)
    is given.
    """
    path = _synthetic_path(seed)
    if gene_positions is not None:
        z = np.load(path, allow_pickle=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return from_counts(z["rna"], z["prot"], list(z["genes"]), list(z["proteins"]), list(z["cells"]),
                               list(z["labels"]), gene_positions=read_gene_positions(gene_positions),
                               name="synthetic-citeseq", meta={"seed": seed, "version": SYNTHETIC_VERSION,
                                                               "gene_positions": str(gene_positions)})
    if str(path) in _LOADED:  # one normalisation per process (the object is never modified in place)
        return _LOADED[str(path)]
    z = np.load(path, allow_pickle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # proteins without a gene in the 765-gene panel are placed last
        data = from_counts(z["rna"], z["prot"], list(z["genes"]), list(z["proteins"]), list(z["cells"]),
                           list(z["labels"]), name="synthetic-citeseq",
                           meta={"count_recovery_max_residual": float(z["residual"]), "seed": seed,
                                 "version": SYNTHETIC_VERSION})
    _LOADED[str(path)] = data
    return data


_LOADED: dict[str, CiteSeqData] = {}


@register_dataset("synthetic-citeseq", task="singlecell", builtin=True, splits=("train", "val", "test", "all"))
def synthetic_citeseq(root: str | None = None, split: str = "all", seed: int = 0, n_cells: int | None = None,
                      gene_positions: str | None = None, image_size: Any = None,
                      progress: bool = True) -> CiteSeqData:
    """Real pbmc68k_reduced RNA (700 PBMCs, 10 sorted types) + a simulated 14-antibody panel."""
    data = load_synthetic_citeseq(seed, gene_positions)
    if n_cells is not None and n_cells < len(data):  # a stratified-ish subsample for tests
        data = data.subset(np.sort(np.random.default_rng(seed).permutation(len(data))[:n_cells]))
    return data.split(split, seed)


def simulate_citeseq(n_cells: int = 5000, seed: int = 0) -> CiteSeqData:
    """A larger, fully simulated CITE-seq set (for scaling), grounded in the built-in data.

    Cell types are drawn with pbmc68k_reduced's type proportions; each type's RNA mean profile is the mean
    of its real recovered counts (plus a pseudo-count of 0.01); a cell's RNA counts are negative binomial
    (dispersion 2) around its type profile times a LogNormal(0, 0.3) library size; proteins follow the
    same marker model as ``synthetic-citeseq``.
    """
    base = np.load(_synthetic_path(0))
    labels = base["labels"]
    names = sorted(set(labels.tolist()))
    rna = base["rna"].astype(np.float64)
    profile = np.stack([rna[labels == n].mean(0) + 0.01 for n in names])  # (K, G)
    rng = np.random.default_rng(seed + 1_000_003)
    freq = np.array([(labels == n).mean() for n in names])
    types = rng.choice(len(names), size=n_cells, p=freq)
    lib = rng.lognormal(0.0, 0.3, (n_cells, 1))
    mu = profile[types] * lib
    counts = rng.poisson(rng.gamma(2.0, mu / 2.0))
    lab = [names[t] for t in types]
    prot = _protein_counts(lab, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return from_counts(counts, prot, list(base["genes"]), list(PANEL), [f"sim{i}" for i in range(n_cells)],
                           lab, name="simulated-citeseq", meta={"seed": seed, "version": SYNTHETIC_VERSION})


@register_dataset("simulated-citeseq", task="singlecell", builtin=True, splits=("train", "val", "test", "all"))
def simulated_citeseq(root: str | None = None, split: str = "all", seed: int = 0, n_cells: int = 5000,
                      image_size: Any = None, progress: bool = True) -> CiteSeqData:
    """Fully simulated CITE-seq (default 5,000 cells) with pbmc68k_reduced's type profiles, for scaling."""
    return simulate_citeseq(n_cells, seed).split(split, seed)


@register_dataset("citeseq", task="singlecell", splits=("train", "val", "test", "all"))
def citeseq_file(root: str | None = None, split: str = "all", label_key: str | None = None,
                 gene_positions: str | None = None, allow_non_integer: bool = False, seed: int = 0,
                 image_size: Any = None, progress: bool = True) -> CiteSeqData:
    """A CITE-seq file of raw counts (.h5mu / .h5ad / 10x .h5), split 60/10/30 by a seeded permutation."""
    if root is None:
        raise ValueError(f"the citeseq dataset needs a file path.\n{_LAYOUTS}")
    data = read_citeseq(root, label_key=label_key, gene_positions=gene_positions,
                        allow_non_integer=allow_non_integer)
    return data.split(split, seed)

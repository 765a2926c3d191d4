"""CITE-seq readers on tiny fake files, normalisation, genomic order, and the built-in synthetic-citeseq."""

import logging

import numpy as np
import pytest

from mmtrust.data.citeseq import (
    PANEL,
    CiteSeqLayoutError,
    clr,
    genomic_order,
    load_synthetic_citeseq,
    read_citeseq,
    read_gene_positions,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # mudata 0.3 announces 0.4 changes

ad = pytest.importorskip("anndata", reason='needs the singlecell extra: pip install "mmtrust[singlecell]"')
md = pytest.importorskip("mudata", reason='needs the singlecell extra: pip install "mmtrust[singlecell]"')
pd = pytest.importorskip("pandas")

GENES = ["GZMB", "CD3E", "MS4A1", "ACTB", "NOPOS"]  # deliberately not in genomic order
GTF_ROWS = [  # chrom, start, name (GRCh38-like; only the order matters)
    ("chr14", 24630954, "GZMB"), ("chr11", 118304730, "CD3E"), ("chr11", 60455809, "MS4A1"),
    ("chr7", 5526409, "ACTB"), ("chr16", 28931965, "CD19"),
]


def _write_gtf(path):
    lines = ["#!genome-build GRCh38"]
    for chrom, start, name in GTF_ROWS:
        lines.append(f'{chrom}\tENSEMBL\tgene\t{start}\t{start + 1000}\t.\t+\t.\tgene_id "ENSG_{name}"; '
                     f'gene_name "{name}"; gene_biotype "protein_coding";')
        lines.append(f'{chrom}\tENSEMBL\texon\t{start}\t{start + 100}\t.\t+\t.\tgene_id "ENSG_{name}"; '
                     f'gene_name "{name}";')
    path.write_text("\n".join(lines) + "\n")
    return path


def _counts(n=6, seed=0):
    rng = np.random.default_rng(seed)
    rna = rng.poisson(3.0, (n, len(GENES))).astype(np.float32)
    prot = rng.poisson(20.0, (n, 3)).astype(np.float32)
    return rna, prot


def _mudata(rna, prot, cells_rna=None, cells_prot=None, prot_key="prot"):
    cells = [f"cell{i}" for i in range(rna.shape[0])]
    a = ad.AnnData(rna, obs=pd.DataFrame({"celltype": ["T", "B"] * (len(cells) // 2)}, index=cells_rna or cells),
                   var=pd.DataFrame(index=GENES))
    p = ad.AnnData(prot, obs=pd.DataFrame(index=cells_prot or cells), var=pd.DataFrame(index=["CD19", "CD3", "XYZ1"]))
    return md.MuData({"rna": a, prot_key: p})


def test_gtf_and_tsv_positions_order_genes(tmp_path):
    pos = read_gene_positions(_write_gtf(tmp_path / "genes.gtf"))
    order, missing = genomic_order(GENES, pos)
    assert [GENES[i] for i in order] == ["ACTB", "MS4A1", "CD3E", "GZMB", "NOPOS"]  # chr7, chr11 x2, chr14, none
    assert missing == ["NOPOS"]
    tsv = tmp_path / "pos.tsv"
    tsv.write_text("gene\tchrom\tstart\nB\tchrX\t5\nA\tchr2\t10\nC\tchr10\t1\n")
    order, _ = genomic_order(["A", "B", "C"], read_gene_positions(tsv))
    assert order.tolist() == [0, 2, 1]  # chr2 < chr10 < chrX (natural chromosome order)
    with pytest.raises(ValueError, match="no gene positions"):
        (tmp_path / "empty.gtf").write_text("#nothing\n")
        read_gene_positions(tmp_path / "empty.gtf")


def test_h5mu_reader_normalises_and_orders(tmp_path, caplog):
    rna, prot = _counts(6)
    rna[2] = 0  # a cell without RNA counts: dropped and logged
    path = tmp_path / "d.h5mu"
    _mudata(rna, prot).write(path)
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="placed last: XYZ1"):
        data = read_citeseq(path, label_key="celltype", gene_positions=_write_gtf(tmp_path / "g.gtf"))
    assert "dropped 1 of 6 cells" in caplog.text and data.meta["n_dropped_cells"] == 1
    assert len(data) == 5 and "cell2" not in data.cell_ids
    assert data.gene_names == ["ACTB", "MS4A1", "CD3E", "GZMB", "NOPOS"]
    # CD19 (chr16) comes after CD3 (CD3E, chr11); XYZ1 has no gene position: last
    assert data.protein_names == ["CD3", "CD19", "XYZ1"]
    keep = [0, 1, 3, 4, 5]
    expect = np.log1p(rna[keep] / rna[keep].sum(1, keepdims=True) * 1e4)[:, [3, 2, 1, 0, 4]]
    assert np.allclose(data.rna, expect, atol=1e-5)
    assert np.allclose(data.prot.mean(1), 0, atol=1e-5)
    assert np.allclose(data.prot[:, 0], clr(prot[keep][:, [1, 0, 2]])[:, 0], atol=1e-5)
    assert data.label_names == ["B", "T"] and data.labels.tolist() == [1, 0, 0, 1, 0]


def test_h5mu_without_positions_keeps_file_order_and_orders_proteins_by_gene_rank(tmp_path):
    rna, prot = _counts(4)
    _mudata(rna, prot, prot_key="adt").write(tmp_path / "d.h5mu")
    with pytest.warns(UserWarning, match="placed last"):
        data = read_citeseq(tmp_path / "d.h5mu")
    assert data.gene_names == GENES
    assert data.protein_names == ["CD3", "CD19", "XYZ1"]  # CD3E is gene 1, CD19 has no gene here
    assert data.protein_names[:1] == ["CD3"] and (data.labels == -1).all()


def test_bad_inputs_get_clear_errors(tmp_path):
    rna, prot = _counts(4)
    _mudata(rna + 0.5, prot).write(tmp_path / "lognorm.h5mu")
    with pytest.raises(ValueError, match="non-integer values.*allow_non_integer"):
        read_citeseq(tmp_path / "lognorm.h5mu")
    with pytest.warns(UserWarning):
        assert len(read_citeseq(tmp_path / "lognorm.h5mu", allow_non_integer=True)) == 4
    cells = [f"cell{i}" for i in range(4)]
    _mudata(rna, prot, cells_prot=cells[:2] + ["x1", "x2"]).write(tmp_path / "mismatch.h5mu")
    with pytest.raises(CiteSeqLayoutError, match="2 RNA and 2 protein barcodes have no partner"):
        read_citeseq(tmp_path / "mismatch.h5mu")
    md.MuData({"rna": ad.AnnData(rna, var=pd.DataFrame(index=GENES))}).write(tmp_path / "rnaonly.h5mu")
    with pytest.raises(CiteSeqLayoutError, match="(?s)need 'rna' and 'prot'.*expected one of"):
        read_citeseq(tmp_path / "rnaonly.h5mu")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(CiteSeqLayoutError, match="unknown file type"):
        read_citeseq(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="data.h5mu"):
        read_citeseq(tmp_path / "missing.h5mu")


def test_h5ad_with_proteins_in_obsm(tmp_path):
    rna, prot = _counts(4)
    cells = [f"c{i}" for i in range(4)]
    a = ad.AnnData(rna, obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=GENES))
    a.obsm["protein_expression"] = pd.DataFrame(prot, index=cells, columns=["CD3", "CD19", "XYZ1"])
    a.write_h5ad(tmp_path / "d.h5ad")
    with pytest.warns(UserWarning):
        data = read_citeseq(tmp_path / "d.h5ad")
    assert data.n_genes == 5 and data.n_proteins == 3 and len(data) == 4
    b = ad.AnnData(rna, obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=GENES))
    b.write_h5ad(tmp_path / "noprot.h5ad")
    with pytest.raises(CiteSeqLayoutError, match="no protein counts in .obsm"):
        read_citeseq(tmp_path / "noprot.h5ad")


def test_synthetic_citeseq_is_real_rna_plus_marker_driven_protein():
    pytest.importorskip("scanpy", reason="pbmc68k_reduced ships inside scanpy")
    data = load_synthetic_citeseq(seed=0)
    assert (len(data), data.n_genes, data.n_proteins) == (700, 765, len(PANEL))
    assert len(data.label_names) == 10
    assert data.meta["count_recovery_max_residual"] < 0.2  # expm1(raw) / per-cell unit is near-integer
    assert data.gene_names[:3] == ["HES4", "TNFRSF4", "SSU72"]  # 10x reference (genomic) order
    from mmtrust.data.cache import cache_dir
    from mmtrust.data.citeseq import _generate

    cached = np.load(next(cache_dir("synthetic-citeseq").glob("pbmc68k-adt-*.npz")))
    fresh = _generate(0)  # deterministic: a second generation equals the cached file
    assert np.array_equal(fresh["prot"], cached["prot"]) and np.array_equal(fresh["rna"], cached["rna"])
    p = {n: data.prot[:, i] for i, n in enumerate(data.protein_names)}
    lab = np.array(data.label_names)[data.labels]
    b_cells, t_cells = lab == "CD19+ B", np.char.startswith(lab.astype(str), "CD4+")
    assert p["CD19"][b_cells].mean() > p["CD19"][t_cells].mean() + 1.5
    assert p["CD3"][t_cells].mean() > p["CD3"][b_cells].mean() + 1.5
    assert p["CD14"][lab == "CD14+ Monocyte"].mean() > p["CD14"][~(lab == "CD14+ Monocyte")].mean() + 1.0
    # splits are disjoint and cover every cell
    from mmtrust.data.citeseq import synthetic_citeseq

    ids = [set(synthetic_citeseq(split=s).cell_ids) for s in ("train", "val", "test")]
    assert sum(map(len, ids)) == 700 and not (ids[0] & ids[1]) and not (ids[0] & ids[2])
    sub = data.select_genes(50)
    assert sub.n_genes == 50 and [g for g in data.gene_names if g in set(sub.gene_names)] == sub.gene_names


def test_simulated_citeseq_scales_and_is_deterministic():
    pytest.importorskip("scanpy", reason="the type profiles come from pbmc68k_reduced (ships inside scanpy)")
    from mmtrust.data.citeseq import simulate_citeseq

    a, b = simulate_citeseq(400, seed=3), simulate_citeseq(400, seed=3)
    assert (len(a), a.n_genes, a.n_proteins) == (400, 765, len(PANEL))
    assert np.array_equal(a.rna, b.rna) and np.array_equal(a.prot, b.prot)
    assert len(np.unique(a.labels)) >= 8  # rare types may be missing from 400 cells
    dend = a.label_names.index("Dendritic")
    assert 0.2 < (a.labels == dend).mean() < 0.5  # pbmc68k_reduced: 240 / 700


def test_orgdb_sqlite_positions(tmp_path):
    import sqlite3

    from mmtrust.data.citeseq import read_orgdb_positions

    path = tmp_path / "org.Xx.eg.sqlite"
    with sqlite3.connect(path) as con:  # the OrgDb schema (Bioconductor AnnotationDbi HUMAN_DB)
        con.execute("CREATE TABLE gene_info (_id INTEGER, gene_name TEXT, symbol TEXT)")
        con.execute("CREATE TABLE chromosome_locations (_id INTEGER, seqname TEXT, start_location INTEGER, "
                    "end_location INTEGER)")
        con.executemany("INSERT INTO gene_info VALUES (?, ?, ?)", [(1, "a", "HES4"), (2, "b", "PTPRC"), (3, "c", "CD3E")])
        con.executemany("INSERT INTO chromosome_locations VALUES (?, ?, ?, ?)", [
            (1, "1", -998963, -1000172), (2, "1_GL383520v2_alt", 280444, 1), (2, "1", 198639039, 1),
            (3, "11", 118304729, 1)])
    pos = read_gene_positions(path)
    assert pos == read_orgdb_positions(path)
    assert pos["HES4"][1] == 998963 and pos["PTPRC"][1] == 198639039  # minus strand; alt contig ignored
    order, missing = genomic_order(["CD3E", "NOPE", "PTPRC", "HES4"], pos)
    assert order.tolist() == [3, 2, 0, 1] and missing == ["NOPE"]


def test_real_orgdb_if_installed():
    from mmtrust.data.citeseq import ORGDB_HUMAN, read_orgdb_positions

    if not ORGDB_HUMAN.is_file():
        pytest.skip("Debian r-bioc-org.hs.eg.db is not installed")
    real = read_orgdb_positions()
    assert real["CD3E"][0][0] == 11 and real["HES4"][0][0] == 1


def test_10x_h5_with_antibody_capture(tmp_path):
    h5py = pytest.importorskip("h5py")
    import scipy.sparse as sp

    rna, prot = _counts(5)
    x = np.concatenate([rna, prot], 1)  # cells x features
    csc = sp.csc_matrix(x.T)  # Cell Ranger stores features x barcodes, CSC
    names = GENES + ["CD3", "CD19", "XYZ1"]
    types = ["Gene Expression"] * len(GENES) + ["Antibody Capture"] * 3
    intervals = ["chr14:24630954-24634000", "chr11:118304730-118316000", "chr11:60455809-60470000",
                 "chr7:5526409-5563902", "NA", "", "", ""]
    with h5py.File(tmp_path / "filtered_feature_bc_matrix.h5", "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array([f"AAAC-{i}".encode() for i in range(5)])
        m["data"], m["indices"], m["indptr"] = csc.data, csc.indices, csc.indptr
        m["shape"] = np.array(csc.shape)
        feats = m.create_group("features")
        feats["name"] = np.array([n.encode() for n in names])
        feats["id"] = feats["name"][()]
        feats["feature_type"] = np.array([t.encode() for t in types])
        feats["interval"] = np.array([i.encode() for i in intervals])
    with pytest.warns(UserWarning, match="placed last"):
        data = read_citeseq(tmp_path / "filtered_feature_bc_matrix.h5")
    assert data.gene_names == ["ACTB", "MS4A1", "CD3E", "GZMB", "NOPOS"]  # from the feature intervals
    assert data.protein_names[0] == "CD3" and data.cell_ids[0] == "AAAC-0" and data.n_proteins == 3
    with h5py.File(tmp_path / "rna_only.h5", "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array([b"A"])
        m["data"], m["indices"], m["indptr"] = np.array([1.0]), np.array([0]), np.array([0, 1])
        m["shape"] = np.array([1, 1])
        m.create_group("features")["name"] = np.array([b"G"])
        m["features"]["feature_type"] = np.array([b"Gene Expression"])
    with pytest.raises(CiteSeqLayoutError, match="Antibody Capture"):
        read_citeseq(tmp_path / "rna_only.h5")

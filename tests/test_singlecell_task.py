"""scFusionTTT: masking keeps genomic order, stage freezing, all three stages on tiny data, clustering."""

import numpy as np
import pytest
import torch

import mmtrust
from mmtrust.metrics.clustering import embedding_clustering
from mmtrust.registry import get_task


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP spin-waits on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # mudata 0.3 announces 0.4 changes


def _tiny(**kw):
    torch.manual_seed(0)
    return mmtrust.create_method("scfusionttt", preset="tiny", **kw)


def test_visible_tokens_stay_in_genomic_order():
    model = _tiny()
    ids = model._visible(8, 20, 0.15, torch.device("cpu"))
    assert ids.shape == (8, 17)  # round(0.15 * 20) = 3 masked
    assert (ids[:, 1:] > ids[:, :-1]).all()  # sorted, unique
    assert len({tuple(r) for r in ids.tolist()}) > 1  # random per cell


def test_masked_loss_only_scores_masked_positions():
    model = _tiny(mask_ratio=0.5)
    task = get_task("singlecell")
    x, _ = task.example_batch(model)
    torch.manual_seed(3)
    loss, logs = model.masked_loss(x)
    assert torch.isfinite(loss) and logs["mse_rna"] > 0 and logs["mse_prot"] > 0
    # the loss is the MSE over the masked genes only, recomputed by hand from the same (seeded) masks
    torch.manual_seed(3)
    with torch.no_grad():
        f_rna, f_prot, ids_r, ids_p = model.encode(x, 0.5)
        rec_r, rec_p = model.decode(f_rna, f_prot, ids_r, ids_p)
    g = model.cfg.genes_per_token
    masked_tok = torch.ones(x.shape[0], model.n_rna_tokens).scatter(1, ids_r, 0.0)
    m_r = masked_tok.repeat_interleave(g, 1)[:, : model.cfg.n_genes].bool()
    rna = x[:, : model.cfg.n_genes]
    assert logs["mse_rna"] == pytest.approx(float(((rec_r - rna)[m_r] ** 2).mean()), rel=1e-5)


def test_stage_freezing():
    model = _tiny()
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert "head" not in trainable and "projection" not in trainable and "rna_decoder" in trainable
    model.set_stage(2)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert "head" in trainable and "rna_decoder" not in trainable and "rna_encoder" in trainable
    model.set_stage(3)
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"projection", "rna_head"}
    with pytest.raises(ValueError, match="stage must be"):
        model.set_stage(4)
    with pytest.raises(ValueError, match="expected x of shape"):
        model(torch.zeros(2, 7))


def test_three_stages_on_tiny_data(tmp_path):
    pytest.importorskip("scanpy", reason='the built-in data needs the singlecell extra: pip install "mmtrust[singlecell]"')
    pytest.importorskip("leidenalg", reason='Leiden clustering needs the singlecell extra')
    task = get_task("singlecell")
    model = _tiny(n_proteins=14, n_classes=10, label_fraction=0.5)
    data = "synthetic-citeseq?n_cells=120"
    tr = task.load_data(data, "train")
    assert len(tr) == 72 and tr.n_proteins == 14
    snap = {}

    class Spy(task.recipe_cls):
        def on_train_start(self):
            snap[self.model.stage] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    model.recipe_cls = Spy
    res = task.train(model, model.cfg, data, tmp_path, progress=False)
    assert res.train_seconds > 0 and set(snap) == {1, 2, 3}
    for stage in (1, 2, 3):
        assert (tmp_path / f"stage{stage}" / "checkpoints" / "last.ckpt").is_file()
    final = model.state_dict()
    # stage 3 leaves the RNA encoder, the fusion and the stage-2 head alone, and trains projection + rna_head
    for k in final:
        if k.startswith(("rna_encoder", "fusion_rna", "fusion_prot", "head.")):
            assert torch.equal(final[k], snap[3][k]), k
    assert not torch.equal(final["projection.weight"], snap[3]["projection.weight"])
    assert not torch.equal(final["rna_head.weight"], snap[3]["rna_head.weight"])
    assert not torch.equal(snap[3]["head.weight"], snap[2]["head.weight"])  # stage 2 trained the head
    test = task.load_data(data, "test")
    metrics, emb = task.evaluate(model, test)
    assert emb["emb"].shape == (len(test), 2 * model.cfg.dim) and emb["emb_rna"].shape == emb["emb"].shape
    for key in ("ARI", "NMI", "ASW", "acc", "ARI_rna", "acc_rna"):
        assert np.isfinite(metrics[key]), key
    with pytest.raises(ValueError, match="--set n_proteins=14"):
        task.train(_tiny(), _tiny().cfg, data, tmp_path / "again", progress=False)


def test_leiden_clustering_recovers_separated_groups():
    pytest.importorskip("leidenalg", reason='Leiden clustering needs the singlecell extra')
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.3, (40, 5)) for c in (0.0, 5.0, 10.0)])
    y = np.repeat([0, 1, 2], 40)
    rep = embedding_clustering(x, y, k=10, resolution=0.5)
    assert rep["ARI"] == pytest.approx(1.0) and rep["n_clusters"] == 3 and rep["ASW"] > 0.8
    noise = embedding_clustering(rng.normal(size=(120, 5)), y, k=10)
    assert noise["ARI"] < 0.2


def test_scverse_style_api_on_a_mudata(tmp_path):
    ad = pytest.importorskip("anndata", reason='needs the singlecell extra')
    md = pytest.importorskip("mudata", reason='needs the singlecell extra')
    import pandas as pd

    from mmtrust.tasks.singlecell import CiteSeqModel

    rng = np.random.default_rng(0)
    cells = [f"c{i}" for i in range(30)]
    rna = ad.AnnData(rng.poisson(2.0, (30, 40)).astype(np.float32), obs=pd.DataFrame(index=cells),
                     var=pd.DataFrame(index=[f"g{i}" for i in range(40)]))
    prot = ad.AnnData(rng.poisson(20.0, (30, 5)).astype(np.float32), obs=pd.DataFrame(index=cells),
                      var=pd.DataFrame(index=[f"P{i}" for i in range(5)]))
    mdata = md.MuData({"rna": rna, "prot": prot})
    with pytest.warns(UserWarning, match="placed last"):
        model = CiteSeqModel(mdata, preset="tiny")
    assert (model.cfg.n_genes, model.cfg.n_proteins) == (24, 5)  # the tiny preset's 24 HVGs of 40 genes
    res = model.train(tmp_path, progress=False)  # no labels: stage 1 only
    assert (tmp_path / "stage1").is_dir() and not (tmp_path / "stage2").exists() and res.train_seconds > 0
    z = model.get_latent_representation()
    assert z.shape == (30, 2 * model.cfg.dim) and np.isfinite(z).all() and model.cell_ids == cells


def test_write_eval_writes_metrics_and_a_plot(tmp_path, monkeypatch):
    import json
    import sys

    from mmtrust.data.citeseq import CiteSeqData

    monkeypatch.setitem(sys.modules, "umap", None)  # the PCA fallback: no numba compile in the tests
    rng = np.random.default_rng(0)
    ds = CiteSeqData(rna=np.zeros((12, 3), np.float32), prot=np.zeros((12, 2), np.float32),
                     labels=np.repeat([0, 1, 2], 4), label_names=["a", "b", "c"], gene_names=["x", "y", "z"],
                     protein_names=["p", "q"], cell_ids=[f"c{i}" for i in range(12)], hvg_rank=np.arange(3))
    details = {"emb": rng.normal(size=(12, 4)), "emb_rna": rng.normal(size=(12, 4))}
    path = get_task("singlecell").write_eval(tmp_path, "m", "d", "test", {"ARI": 0.5}, details, ds)
    assert json.loads(path.read_text())["metrics"] == {"ARI": 0.5}
    png = (tmp_path / "umap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

"""SFDA-rPPG: spectra and FWD against scipy, branch shapes, the structural source-free stage 2, CLI and bench."""

import inspect
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import energy_distance, wasserstein_distance

from mmtrust.cli import main
from mmtrust.methods.rppg.sfda import (
    LabelAccessError,
    SFDAAdaptRecipe,
    SFDAConfig,
    TargetClips,
    UnlabeledVideos,
    adapt,
    spatial_augment,
    spectrum,
    temporal_resample,
)
from mmtrust.nn.spectral import (
    band_psd,
    bpm_grid,
    fwd_loss,
    rescale_frequency,
    spectral_sparsity,
    wasserstein_1d,
)

SRC = "synthetic-rppg?domain=clean&preset=tiny&n_subjects=3&duration_s=6"  # = domain_data("clean", "tiny")
TGT = "synthetic-rppg?domain=dim-motion&preset=tiny&n_subjects=3&duration_s=6"


def _random_spectra(n, k=140, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, k, generator=g, dtype=torch.float64) ** 4
    return p / p.sum(-1, keepdim=True)


# ------------------------------------------------------------------------------------------ spectral
def test_w1_and_cramer_match_scipy_on_random_spectra():
    p, q = _random_spectra(6, seed=0), _random_spectra(6, seed=1)
    hz = bpm_grid(dtype=torch.float64).numpy() / 60.0
    w1 = wasserstein_1d(p, q, dx=1 / 60)
    w1q = wasserstein_1d(p, q, dx=1 / 60, distance="w2")  # just runs batched
    cr = wasserstein_1d(p, q, dx=1 / 60, distance="cramer")
    assert w1q.shape == (6,)
    for i in range(6):
        assert w1[i].item() == pytest.approx(wasserstein_distance(hz, hz, p[i], q[i]), rel=1e-9)
        # scipy's energy distance is sqrt(2) times the L2 CDF distance
        assert math.sqrt(2) * cr[i].item() == pytest.approx(energy_distance(hz, hz, p[i], q[i]), rel=1e-6)
    assert fwd_loss(p, q, dx=1 / 60).item() == pytest.approx(w1.mean().item())
    assert wasserstein_1d(p, p, 1 / 60).abs().max() < 1e-12


def test_w2_matches_the_quantile_integral():
    p, q = _random_spectra(3, k=40, seed=2), _random_spectra(3, k=40, seed=3)
    x = np.arange(40, dtype=np.float64)
    u = np.linspace(0, 1, 400_001)[1:-1]
    w2 = wasserstein_1d(p, q, dx=1.0, distance="w2")
    for i in range(3):
        qp = x[np.minimum(np.searchsorted(np.cumsum(p[i].numpy()), u), 39)]
        qq = x[np.minimum(np.searchsorted(np.cumsum(q[i].numpy()), u), 39)]
        assert w2[i].item() == pytest.approx(np.sqrt(np.mean((qp - qq) ** 2)), rel=1e-3)
    # two point masses 7 bins apart: every order gives 7
    a, b = torch.zeros(1, 40, dtype=torch.float64), torch.zeros(1, 40, dtype=torch.float64)
    a[0, 10], b[0, 17] = 1, 1
    for d in ("w1", "w2"):
        assert wasserstein_1d(a, b, 1.0, d).item() == pytest.approx(7.0, abs=1e-5)


def test_spectral_sparsity_prefers_a_pure_pulse_over_noise():
    fs, t = 30.0, torch.arange(256) / 30.0
    g = torch.Generator().manual_seed(5)
    tone = torch.sin(2 * math.pi * 1.3 * t)[None]  # 78 bpm
    noise = torch.randn(1, 256, generator=g)
    sp_tone = spectral_sparsity(band_psd(tone, fs), 6).item()
    sp_noise = spectral_sparsity(band_psd(noise, fs), 6).item()
    assert sp_tone < 0.2 < 0.6 < sp_noise  # 8.5 s Hann window: the main lobe leaks past +-6 bpm
    # a tone plus noise lies in between; a flat spectrum gives 1 - 13 / K; one spike gives 0
    sp_mix = spectral_sparsity(band_psd(tone + 0.5 * noise, fs), 6).item()
    assert sp_tone < sp_mix < sp_noise
    flat = torch.full((2, 140), 1 / 140)
    flat[:, 70] += 1e-6  # the peak in the middle: 13 bins within +-6
    assert spectral_sparsity(flat, 6).tolist() == pytest.approx([1 - 13 / 140] * 2, abs=1e-5)
    spike = torch.zeros(1, 140)
    spike[0, 3] = 1.0
    assert spectral_sparsity(spike, 6).item() == pytest.approx(0.0, abs=1e-6)
    # differentiable: gradient descent on it concentrates a spectrum
    logits = torch.randn(1, 140, generator=g).requires_grad_(True)
    opt = torch.optim.SGD([logits], lr=50.0)
    start = spectral_sparsity(torch.softmax(logits, -1), 6).item()
    for _ in range(50):
        opt.zero_grad()
        spectral_sparsity(torch.softmax(logits, -1), 6).sum().backward()
        opt.step()
    assert spectral_sparsity(torch.softmax(logits, -1), 6).item() < 0.5 * start
    with pytest.raises(ValueError):
        spectral_sparsity(flat, -1)


def test_gradients():
    # distributions parameterised by a softmax (the total mass stays 1, as for normalised spectra)
    logits = torch.randn(2, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    q = _random_spectra(2, k=12, seed=5)
    for d in ("w1", "w2", "cramer"):
        assert torch.autograd.gradcheck(lambda a, d=d: wasserstein_1d(a.softmax(-1), q, 0.5, d), (logits,))
    x = torch.randn(2, 48, dtype=torch.float64, requires_grad=True)
    for method in ("dft", "rfft"):
        assert torch.autograd.gradcheck(lambda s, m=method: band_psd(s, 30.0, (40, 60), 4.0, method=m), (x,))
    # W1 (|.| of CDF gaps) has a gradient almost everywhere; it moves mass toward the other peak
    s = torch.sin(2 * math.pi * 1.0 * torch.arange(128) / 30).repeat(2, 1).requires_grad_(True)
    target = band_psd(torch.sin(2 * math.pi * 1.5 * torch.arange(128) / 30)[None], 30.0)
    loss = fwd_loss(band_psd(s, 30.0), target.expand(2, -1))
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["dft", "rfft"])
def test_psd_peak_and_frequency_rescaling(method):
    fs, hr = 30.0, 75.0
    t = torch.arange(256) / fs
    x = torch.sin(2 * math.pi * hr / 60 * t)
    grid = bpm_grid()
    assert len(grid) == 140 and grid[0] == 40 and grid[-1] == 179
    p = band_psd(x, fs, method=method)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-5) and grid[p.argmax()].item() == hr
    # the same pulse played 1.25x faster shows 93.75 bpm at fs; read at fs / 1.25 it is back at 75
    speed = 1.25
    fast = torch.sin(2 * math.pi * hr / 60 * speed * t)
    assert abs(grid[band_psd(fast, fs, method=method).argmax()].item() - hr * speed) <= 1
    back = band_psd(fast, fs / speed, method=method)
    assert grid[back.argmax()].item() == hr
    assert wasserstein_1d(back, p, 1 / 60).item() < 0.02  # Hz
    # per-sample rates, and the interpolating rescaler agrees with the exact read-out
    both = band_psd(torch.stack([x, fast]), torch.tensor([fs, fs / speed]), method=method)
    assert torch.allclose(both[1], back, atol=1e-5)
    moved = rescale_frequency(band_psd(fast, fs, method=method), grid, speed)
    assert abs(grid[moved.argmax()].item() - hr) <= 1


def test_derivative_spectrum_equals_signal_spectrum():
    cfg = SFDAConfig()
    t = torch.arange(257) / 30.0
    sig = torch.sin(2 * math.pi * 1.1 * t) + 0.5 * torch.sin(2 * math.pi * 2.3 * t)
    d = (sig[1:] - sig[:-1])[None]  # a frame difference, as DiffNormalized outputs
    p_sig = spectrum(sig[None, :-1], 30.0, cfg, derivative=False)
    p_der = spectrum(d, 30.0, cfg, derivative=True)
    assert wasserstein_1d(p_sig, p_der, 1 / 60).item() < 0.01


# ------------------------------------------------------------------------------------------ branches
def test_augmentations():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 16, 16, generator=g)
    same = spatial_augment(x, rotate_deg=0.0, flip=False, zoom=(1.0, 1.0))
    assert torch.allclose(same, x, atol=1e-5)
    aug = spatial_augment(x, 15.0, True, (0.8, 1.0), generator=g)
    assert aug.shape == x.shape and not torch.allclose(aug, x)
    ramp = torch.arange(20.0).view(1, 1, 20, 1, 1).expand(2, 3, 20, 4, 4)  # value = frame index
    speed = torch.tensor([1.5, 0.75])
    out = temporal_resample(ramp, 12, speed)
    assert out.shape == (2, 3, 12, 4, 4)
    assert torch.allclose(out[:, 0, :, 0, 0], torch.arange(12.0)[None] * speed[:, None], atol=1e-5)
    assert torch.allclose(temporal_resample(ramp, 12, speed, derivative=True)[:, 0, 1, 0, 0], speed * speed)
    with pytest.raises(ValueError, match="needs"):
        temporal_resample(ramp, 16, torch.tensor([1.5, 1.5]))


@pytest.mark.parametrize("backbone", ["physnet", "physmamba"])
def test_branch_shapes_and_inference_branch(backbone):
    import mmtrust

    torch.manual_seed(0)
    model = mmtrust.create_method("sfda-rppg", preset="tiny", backbone=backbone)
    assert type(model.backbone).__name__.lower() == backbone
    t, s = model.chunk_length, model.image_size
    assert model.clip_span == math.ceil((t - 1) * 1.25) + 1
    clips = torch.randn(2, 3, model.clip_span, s, s)
    model.train()
    out = model.branches(clips, torch.tensor([30.0, 25.0]))
    for k in ("center", "spatial", "temporal"):
        assert out[k].shape == (2, t)
    assert out["speed"].shape == (2,) and ((out["speed"] >= 0.8) & (out["speed"] <= 1.25)).all()
    model.eval()
    with torch.no_grad():  # inference = the original branch through the shared backbone
        assert torch.allclose(model(clips[:, :, :t]), model.backbone(clips[:, :, :t]))
    assert "source_prior" in model.state_dict() and "prior_set" in model.state_dict()
    recipe = SFDAAdaptRecipe(model, model.cfg.adapt)
    model.train()
    loss, logs = recipe.compute_loss((clips, torch.tensor([30.0, 25.0])))
    loss.backward()
    assert {"fwd_spatial", "fwd_temporal"} <= set(logs) and torch.isfinite(loss)


# ------------------------------------------------------------------------------------------ protocol
class _Spy:
    """A labeled dataset whose labels must not be read (reading one fails the test)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        v = self.ds[i]

        class _Video:
            id, frames, fs = v.id, v.frames, v.fs

            @property
            def ppg(self):
                raise AssertionError("a target label was read during adaptation")

        return _Video()


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """Stage 1 through the CLI on tiny data, then stage 2 from the saved source checkpoint."""
    out = tmp_path_factory.mktemp("sfda") / "run"
    rc = main(["train", "sfda-rppg", "--preset", "tiny", "--source", SRC, "--target", TGT, "--out", str(out),
               "--no-progress", "--accelerator", "cpu"])
    assert rc == 0
    return out


def test_cli_both_stages(source_run, capsys):
    res = json.loads((source_run / "sfda_results.json").read_text())
    assert res["source"] == SRC and res["target"] == TGT and res["test_split"] == "test"
    for k in ("source_only", "adapted"):
        assert res[k]["n_videos"] >= 1 and math.isfinite(res[k]["MAE"])
    assert (source_run / "source" / "checkpoint" / "model.safetensors").is_file()
    info = json.loads((source_run / "adapted" / "checkpoint" / "config.json").read_text())
    assert info["method"] == "sfda-rppg" and info["stage"] == "adapted"
    # the adapted checkpoint is an ordinary sfda-rppg checkpoint: eval works on it unchanged
    assert main(["eval", "sfda-rppg", "--checkpoint", str(source_run / "adapted" / "checkpoint"), "--data", TGT,
                 "--out", str(source_run / "eval"), "--no-progress"]) == 0


def test_cli_source_checkpoint_protocol_and_bad_combos(source_run, tmp_path, capsys):
    ck = str(source_run / "source" / "checkpoint")
    out = tmp_path / "again"
    assert main(["train", "sfda-rppg", "--preset", "tiny", "--source-checkpoint", ck, "--target", TGT,
                 "--out", str(out), "--no-progress", "--set", "adapt.epochs=1"]) == 0
    res = json.loads((out / "sfda_results.json").read_text())
    assert res["source"] is None and res["source_checkpoint"] == ck
    before = json.loads((source_run / "sfda_results.json").read_text())["source_only"]["MAE"]
    assert res["source_only"]["MAE"] == pytest.approx(before)  # the same stage-1 model
    proto = tmp_path / "p.yaml"
    proto.write_text(f"name: tiny-shift\ntrain_data: '{SRC}'\ntest_data: '{TGT}'\n")
    capsys.readouterr()
    assert main(["train", "sfda-rppg", "--preset", "tiny", "--protocol", str(proto), "--source-checkpoint", ck,
                 "--out", str(tmp_path / "proto"), "--no-progress", "--set", "adapt.epochs=1"]) == 0
    assert "source" in capsys.readouterr().out
    bad = [
        (["--source", SRC], "--target"),
        (["--source", SRC, "--target", TGT, "--data", SRC], "--data does not combine"),
        (["--source", SRC, "--source-checkpoint", ck, "--target", TGT], "not both"),
        (["--protocol", str(proto), "--source", SRC], "drop --source"),
        (["--source-checkpoint", str(tmp_path / "nope"), "--target", TGT], "not a checkpoint folder"),
    ]
    for extra, msg in bad:
        capsys.readouterr()
        assert main(["train", "sfda-rppg", "--preset", "tiny", "--out", str(tmp_path / "x"), *extra]) == 2
        assert msg in capsys.readouterr().err
    assert main(["train", "physnet", "--preset", "tiny", "--source", SRC, "--target", TGT]) == 2
    assert "no source-free adaptation protocol" in capsys.readouterr().err


def test_adaptation_is_source_free_by_construction(source_run, tmp_path, monkeypatch):
    from mmtrust.tasks.rppg import RPPGTask

    # the entry point takes a checkpoint and unlabeled target videos, nothing else
    params = list(inspect.signature(adapt).parameters)
    assert params[:3] == ["source_checkpoint", "target", "out_dir"]
    assert not [p for p in params if "source" in p and p != "source_checkpoint"]
    target_ds = RPPGTask().load_data(TGT, "train", 32, progress=False)
    unlabeled = UnlabeledVideos(target_ds)
    with pytest.raises(LabelAccessError):
        unlabeled[0].ppg  # noqa: B018
    with pytest.raises(TypeError, match="UnlabeledVideos"):
        adapt(source_run / "source" / "checkpoint", target_ds, tmp_path / "a")
    with pytest.raises(TypeError):
        TargetClips(target_ds, 40, 20, "diffnormalized")
    clip, fs = TargetClips(unlabeled, 40, 20, "diffnormalized")[0]
    assert clip.shape[:2] == (3, 40) and fs.dim() == 0  # a clip and its frame rate: no label

    # no dataset is loaded inside adapt (so no source path can reach it), and no target label is read
    def no_loading(*a, **k):
        raise AssertionError("adapt() loaded a dataset")

    monkeypatch.setattr(RPPGTask, "load_data", no_loading)
    model, info = adapt(source_run / "source" / "checkpoint", UnlabeledVideos(_Spy(target_ds)), tmp_path / "b",
                        overrides={"adapt.epochs": 1})
    assert info["clips"] >= 1 and not model.training
    assert float(model.prior_set) == 1.0  # the source prior travels inside the checkpoint


def test_domain_shift_bench_tiny(source_run, tmp_path):
    from mmtrust.bench.domain_shift import run_domain_shift

    out = tmp_path / "bench"
    res = run_domain_shift(out, pairs=[("clean", "dim-motion"), ("clean", "still")], size="tiny", seeds=2,
                           source_seeds=2, progress=False)
    pair = res["pairs"][0]
    names = [r["method"] for r in pair["rows"]]
    assert names[:2] == ["source-only", "sfda-rppg"] and "pos (no training)" in names
    assert not [n for n in names if "seed" in n]  # the extra seeds are folded into the adapted row
    assert res["source_seeds"] == [100, 101] and res["adapt_seeds"] == [100, 101]
    source_only, adapted = pair["rows"][:2]
    assert [r["source_seed"] for r in source_only["runs"]] == [100, 101]
    assert [(r["source_seed"], r["adapt_seed"]) for r in adapted["runs"]] == [(100, 100), (100, 101), (101, 100),
                                                                            (101, 101)]
    assert adapted["MAE"] == pytest.approx(sum(r["MAE"] for r in adapted["runs"]) / 4)
    assert adapted["tail_dropped"]["MAE"] == pytest.approx(sum(r["tail_dropped"]["MAE"] for r in adapted["runs"]) / 4)
    assert source_only["MAE"] == pytest.approx(sum(q["source_only"] for q in pair["per_source_model"]) / 2)
    assert {"sfda-rppg: no spatial branch", "sfda-rppg: no temporal branch"} <= set(names)
    assert any("no-FWD" in n for n in names)
    for r in pair["rows"]:
        assert math.isfinite(r["MAE"]) and math.isfinite(r["tail_dropped"]["MAE"])
    # one source model per stage-1 seed, trained once and reused by the second pair with the same source
    ck = {s: out / "clean-to-dim-motion" / f"source-seed-{s}" / "source" / "checkpoint" for s in (100, 101)}
    assert json.loads((ck[101] / "config.json").read_text())["config"]["train"]["seed"] == 101
    assert (ck[100] / "model.safetensors").read_bytes() != (ck[101] / "model.safetensors").read_bytes()
    reused = json.loads((out / "clean-to-still" / "source-seed-101" / "sfda_results.json").read_text())
    assert reused["source_checkpoint"] == str(ck[101])
    assert not (out / "clean-to-still" / "source-seed-101" / "source").exists()
    assert json.loads((out / "results.json").read_text())["pairs"][0]["target"] == "dim-motion"
    report = (out / "report.md").read_text()
    assert "source-only" in report and "rPPG-Toolbox's chunking" in report and "Per source model" in report
    assert (out / "domain_shift_MAE.png").stat().st_size > 5000


def test_adaptation_moves_batchnorm_statistics_to_the_target(source_run, tmp_path):
    """The source checkpoint loads in eval mode; stage 2 must still train in train mode, so BatchNorm's running
    statistics move to the target (with and without overrides, which rebuild the model)."""
    from mmtrust.engine.checkpoint import load_method
    from mmtrust.tasks.rppg import RPPGTask

    ck = source_run / "source" / "checkpoint"
    src, _ = load_method(ck, expected_method="sfda-rppg")
    stats = {k: v.clone() for k, v in src.state_dict().items() if k.endswith("running_mean")}
    assert stats
    target = UnlabeledVideos(RPPGTask().load_data(TGT, "train", 32, progress=False))
    for name, overrides in (("plain", None), ("bn-only", {"spatial_weight": 0.0, "temporal_weight": 0.0,
                                                          "prior_weight": 0.0, "adapt.epochs": 1})):
        model, _ = adapt(ck, target, tmp_path / name, overrides=overrides)
        moved = [k for k, v in stats.items() if not torch.allclose(model.state_dict()[k], v)]
        assert len(moved) == len(stats), f"{name}: BatchNorm statistics left at the source's: {set(stats) - set(moved)}"

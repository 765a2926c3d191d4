"""Cross-checks of mmtrust.metrics against independent computations."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim
from torchmetrics.functional.classification import binary_auroc

from mmtrust.metrics import (
    accuracy,
    ari,
    asw,
    attack_report,
    attack_success_rate,
    binary_auc,
    binary_report,
    clustering_report,
    eer,
    error_rates,
    hr_metrics,
    lp_norms,
    macc,
    nmi,
    psnr,
    snr_db,
    ssim,
    threshold_at_eer,
    tpr_at_fpr,
)

# ----------------------------------------------------------------------------- helpers


def _scores(rng, n_neg, n_pos, mu_neg=0.3, mu_pos=0.6, sd=0.15, decimals=None):
    s = np.concatenate([rng.normal(mu_neg, sd, n_neg), rng.normal(mu_pos, sd, n_pos)])
    if decimals is not None:
        s = np.round(s, decimals)
    y = np.concatenate([np.zeros(n_neg, int), np.ones(n_pos, int)])
    return s, y


def _rates(s, y, thr):
    """Brute-force (FPR, FNR) with "attack iff score >= thr"."""
    return np.mean(s[y == 0] >= thr), np.mean(s[y == 1] < thr)


# ----------------------------------------------------------------------- classification


def test_auc_matches_torchmetrics_and_pairwise_count():
    rng = np.random.default_rng(0)
    s, y = _scores(rng, 60, 40, decimals=1)  # rounding creates cross-class ties
    pos, neg = s[y == 1], s[y == 0]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    tm = float(binary_auroc(torch.tensor(s), torch.tensor(y)))
    assert binary_auc(s, y) == pytest.approx(pairwise, abs=1e-12)
    assert binary_auc(torch.tensor(s), torch.tensor(y)) == pytest.approx(tm, abs=1e-6)
    assert binary_auc(list(s), list(y)) == pytest.approx(pairwise, abs=1e-12)


def test_eer_hand_cases():
    # threshold 0.6: 1/4 bona fide >= 0.6 and 1/4 attacks < 0.6 -> exact crossing
    s = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    assert eer(s, y) == pytest.approx((0.25, 0.6))
    # a cross-class tie at 0.5 makes a diagonal ROC segment (0,.5)->(.5,1); FPR = FNR at its middle
    rate, thr = eer([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1])
    assert rate == pytest.approx(0.25) and thr == pytest.approx(0.7)
    # crossing on a vertical segment at FPR = 1/3
    rate, thr = eer([0.1, 0.2, 0.3, 0.25, 0.4], [0, 0, 0, 1, 1])
    assert rate == pytest.approx(1 / 3) and 0.25 <= thr <= 0.3
    # perfectly separated
    assert eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])[0] == 0.0


def test_eer_against_threshold_sweep():
    rng = np.random.default_rng(1)
    s, y = _scores(rng, 300, 200)
    rate, thr = eer(s, y)
    fr = np.array([_rates(s, y, t) for t in np.append(np.unique(s), np.inf)])
    lower, upper = fr.min(axis=1).max(), fr.max(axis=1).min()
    # at every threshold min(FPR, FNR) <= EER <= max(FPR, FNR)
    assert lower - 1e-12 <= rate <= upper + 1e-12
    assert upper - lower < 0.02
    fpr, fnr = _rates(s, y, thr)
    assert abs(fpr - rate) < 0.02 and abs(fnr - rate) < 0.02
    assert threshold_at_eer(s, y) == thr


def test_tpr_at_fpr_against_bruteforce():
    rng = np.random.default_rng(2)
    s, y = _scores(rng, 1000, 500)  # continuous: no ties
    neg_desc = np.sort(s[y == 0])[::-1]
    pos = s[y == 1]
    for target in [0.0, 0.001, 0.01, 0.0105, 0.05, 0.3]:
        k = int(math.floor(target * 1000 + 1e-9))  # at most k bona fide may be rejected
        expected = np.mean(pos > neg_desc[k])
        assert tpr_at_fpr(s, y, target) == pytest.approx(expected), target
    # interpolation along a diagonal ROC segment (0, .5) -> (.5, 1)
    assert tpr_at_fpr([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1], 0.25) == pytest.approx(0.75)
    assert tpr_at_fpr(s, y, 1.0) == 1.0
    with pytest.raises(ValueError, match=r"fpr must be in \[0, 1\]"):
        tpr_at_fpr(s, y, 1.5)


def test_error_rates_and_accuracy_hand_counted():
    attacks = [0.9, 0.4, 0.6, 0.2]  # 0.4 and 0.2 accepted as bona fide -> APCER 2/4
    bona = [0.1, 0.5, 0.3]  # 0.5 rejected (>= threshold) -> BPCER 1/3
    s, y = attacks + bona, [1] * 4 + [0] * 3
    r = error_rates(s, y, 0.5)
    assert r["APCER"] == pytest.approx(0.5)
    assert r["BPCER"] == pytest.approx(1 / 3)
    assert r["ACER"] == pytest.approx((0.5 + 1 / 3) / 2) == r["HTER"]
    assert accuracy(s, y, 0.5) == pytest.approx(4 / 7)
    assert accuracy(s, y, 0.05) == pytest.approx(4 / 7)  # everything called attack
    assert math.isnan(error_rates([0.2, 0.7], [0, 0], 0.5)["APCER"])  # no attacks present


def test_report_threshold_comes_from_dev_split():
    rng = np.random.default_rng(3)
    dev_s, dev_y = _scores(rng, 400, 400, 0.2, 0.5, 0.05)  # dev EER threshold ~0.35
    test_s, test_y = _scores(rng, 400, 400, 0.5, 0.8, 0.05)  # same model, shifted scores
    thr_dev = threshold_at_eer(dev_s, dev_y)
    rep = binary_report(test_s, test_y, dev_s, dev_y)
    assert rep["threshold_source"] == "dev-eer"
    assert rep["threshold"] == thr_dev and 0.3 < thr_dev < 0.4
    assert rep["threshold"] != pytest.approx(rep["EER_threshold"], abs=0.05)
    # at the dev threshold nearly all test bona fide are rejected; the test's own EER is ~0
    assert rep["BPCER"] > 0.9 and rep["APCER"] < 0.05 and rep["EER"] < 0.05
    for k, v in error_rates(test_s, test_y, thr_dev).items():
        assert rep[k] == v
    assert rep["ACC"] == accuracy(test_s, test_y, thr_dev)
    assert rep["ACC@0.5"] == accuracy(test_s, test_y, 0.5)
    fixed = binary_report(test_s, test_y)
    assert fixed["threshold_source"] == "fixed-0.5" and fixed["threshold"] == 0.5
    assert fixed["BPCER"] == pytest.approx(np.mean(test_s[test_y == 0] >= 0.5))
    expected_keys = {"AUC", "EER", "ACC", "TPR@FPR=1%", "TPR@FPR=0.1%", "HTER", "APCER", "BPCER", "ACER"}
    assert expected_keys <= set(rep)
    # torch inputs give the same report
    rep_t = binary_report(
        torch.tensor(test_s), torch.tensor(test_y), torch.tensor(dev_s), torch.tensor(dev_y)
    )
    assert rep_t == rep


def test_classification_input_errors():
    with pytest.raises(ValueError, match="labels must be binary"):
        binary_auc([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match="only one class present.*AUC.*undefined"):
        binary_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="only one class present"):
        eer([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="same length.*3 scores and 2 labels"):
        binary_report([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match=r"1-D with shape \(N,\)"):
        binary_auc(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="NaN or inf"):
        binary_auc([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="both dev_scores and dev_labels"):
        binary_report([0.1, 0.9], [0, 1], dev_scores=[0.1, 0.9])


# ---------------------------------------------------------------------------------- rPPG


def test_hr_metrics_hand_example():
    pred, gt = np.array([70.0, 80.0, 90.0, 100.0]), np.array([72.0, 78.0, 95.0, 100.0])
    d = pred - gt  # [-2, 2, -5, 0]
    n = 4
    m = hr_metrics(torch.tensor(pred), gt)
    assert m["MAE"] == pytest.approx(9 / 4)
    assert m["RMSE"] == pytest.approx(math.sqrt(33 / 4))
    assert m["MAE_SE"] == pytest.approx(np.std(np.abs(d)) / math.sqrt(n))
    assert m["RMSE_SE"] == pytest.approx(math.sqrt(np.std(d**2) / math.sqrt(n)))
    assert m["MAPE"] == pytest.approx(100 * np.mean(np.abs(d) / gt))
    assert m["MAPE_SE"] == pytest.approx(100 * np.std(np.abs(d) / gt) / math.sqrt(n))
    r = np.corrcoef(pred, gt)[0, 1]
    assert m["Pearson"] == pytest.approx(r)
    assert m["Pearson_SE"] == pytest.approx(math.sqrt((1 - r**2) / (n - 2)))


def test_hr_metrics_degenerate_pearson_is_nan_with_reason():
    with pytest.warns(RuntimeWarning, match="constant"):
        m = hr_metrics([70.0, 70.0, 70.0], [60.0, 75.0, 80.0])
    assert math.isnan(m["Pearson"]) and math.isnan(m["Pearson_SE"]) and m["MAE"] == pytest.approx(25 / 3)
    with pytest.warns(RuntimeWarning, match="at least 2"):
        assert math.isnan(hr_metrics([70.0], [72.0])["Pearson"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m2 = hr_metrics([70.0, 80.0], [72.0, 81.0])
    assert m2["Pearson"] == pytest.approx(1.0) and math.isnan(m2["Pearson_SE"])
    with pytest.raises(ValueError, match="same length"):
        hr_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        hr_metrics([1.0, 2.0], [0.0, 60.0])


def _snr_reference(x, hr, fs, band=(0.6, 3.3), tol=6.0):
    """Independent SNR from a zero-padded rFFT (scaling constants cancel in the ratio)."""
    x = np.asarray(x, float) - np.mean(x)
    nfft = 1 << int(math.ceil(math.log2(len(x))))
    p = np.abs(np.fft.rfft(x, nfft)) ** 2
    f = np.arange(len(p)) * fs / nfft
    f0, dv = hr / 60, tol / 60
    sig = ((f >= f0 - dv) & (f <= f0 + dv)) | ((f >= 2 * f0 - dv) & (f <= 2 * f0 + dv))
    noise = (f >= band[0]) & (f <= band[1]) & ~sig
    return 10 * math.log10(p[sig].sum() / p[noise].sum())


def test_snr_db():
    fs, t = 30.0, np.arange(0, 20, 1 / 30.0)
    rng = np.random.default_rng(4)
    clean = np.sin(2 * np.pi * 1.2 * t) + 3.0  # 72 bpm, offset removed by the mean
    noisy = clean - 3.0 + 0.3 * rng.standard_normal(t.size)
    noise = rng.standard_normal(t.size)
    assert snr_db(clean, 72, fs) > 10  # ~13 dB: zero-padding leakage beyond +-6 bpm counts as noise
    assert snr_db(torch.tensor(clean), 72, fs) == snr_db(clean, 72, fs)
    assert 0 < snr_db(noisy, 72, fs) < snr_db(clean, 72, fs)
    assert snr_db(clean, 120, fs) < 0  # pulse at the wrong heart rate
    assert snr_db(noise, 72, fs) < 0
    for x, hr in [(clean, 72), (noisy, 72), (noise, 72), (clean, 120), (noise[:451], 90)]:
        assert snr_db(x, hr, fs) == pytest.approx(_snr_reference(x, hr, fs), abs=1e-9)


def test_macc():
    rng = np.random.default_rng(5)
    gt = np.convolve(rng.standard_normal(300), np.ones(5) / 5, mode="same")
    shifted = np.roll(gt, 7)
    assert macc(shifted, gt) == pytest.approx(1.0, abs=1e-9)
    assert macc(-np.roll(gt, -11), torch.tensor(gt)) == pytest.approx(1.0, abs=1e-9)
    noisy = shifted + 0.2 * rng.standard_normal(300)
    brute = max(abs(np.corrcoef(noisy, np.roll(gt, k))[0, 1]) for k in range(300))
    assert macc(noisy, gt) == pytest.approx(brute, abs=1e-9)
    assert 0.7 < brute < 0.99
    # lag 7 is outside max_lag=3, so the correlation drops
    assert macc(shifted, gt, max_lag=3) < 0.9
    # unequal lengths: truncated to the shorter
    assert macc(shifted[:250], gt) == pytest.approx(
        max(abs(np.corrcoef(shifted[:250], np.roll(gt[:250], k))[0, 1]) for k in range(250)), abs=1e-9
    )
    assert math.isnan(macc(np.ones(10), gt[:10]))


# ------------------------------------------------------------------------------- attacks


def test_attack_success_rate():
    labels = torch.tensor([0, 1, 2, 1, 0])
    clean = torch.tensor([0, 1, 2, 0, 0])  # sample 3 wrong before the attack
    adv = torch.tensor([1, 1, 0, 2, 0])  # samples 0, 2 flipped; 3 still wrong
    assert attack_success_rate(clean, adv, labels) == pytest.approx(2 / 4)
    assert attack_success_rate(clean, adv, labels, only_clean_correct=False) == pytest.approx(3 / 5)
    logits = torch.nn.functional.one_hot(adv, 3).float()
    assert attack_success_rate(clean, logits, labels) == pytest.approx(2 / 4)
    # targeted to class 0: eligible = label != 0 and clean correct -> samples 1, 2; sample 2 hit
    assert attack_success_rate(clean, adv, labels, targeted=True, target=0) == pytest.approx(1 / 2)
    assert attack_success_rate(clean, adv, labels, targeted=True, target=0, only_clean_correct=False) == (
        pytest.approx(1 / 3)  # eligible = label != 0 -> samples 1, 2, 3; only 2 hit
    )
    with pytest.raises(ValueError, match="needs target"):
        attack_success_rate(clean, adv, labels, targeted=True)
    with pytest.raises(ValueError, match="same length"):
        attack_success_rate(clean, adv[:3], labels)


def _ssim_full_map_ref(x, y, sigma=1.5, c1=0.01**2, c2=0.03**2):
    """Mean over images of the SSIM map averaged over all pixels and channels."""

    def blur(a):
        return gaussian_filter(a, sigma, mode="mirror", truncate=3.5)  # radius 5 -> 11 taps

    vals = []
    for xi, yi in zip(x, y, strict=True):
        maps = []
        for a, b in zip(xi, yi, strict=True):
            ma, mb = blur(a), blur(b)
            va, vb, cov = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
            maps.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
        vals.append(np.mean(maps))
    return float(np.mean(vals))


def test_lp_norms_psnr_ssim_against_numpy_and_skimage():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(3, 3, 32, 32, generator=g)
    x_adv = (x + 0.05 * torch.randn(3, 3, 32, 32, generator=g)).clamp(0, 1)
    l2, linf = lp_norms(x, x_adv)
    d = (x_adv - x).numpy().reshape(3, -1).astype(np.float64)
    assert l2.shape == (3,) and linf.shape == (3,)
    np.testing.assert_allclose(l2.numpy(), np.sqrt((d**2).sum(1)), rtol=1e-6)
    np.testing.assert_allclose(linf.numpy(), np.abs(d).max(1), rtol=1e-6)
    xn, an = x.double().numpy(), x_adv.double().numpy()
    ref_psnr = np.mean([sk_psnr(xn[i], an[i], data_range=1.0) for i in range(3)])
    ref_ssim = np.mean(
        [
            sk_ssim(
                xn[i],
                an[i],
                data_range=1.0,
                channel_axis=0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for i in range(3)
        ]
    )
    # torchmetrics converts ln -> dB with a float32 constant: agreement to ~1e-7 relative
    assert psnr(x, x_adv) == pytest.approx(ref_psnr, rel=1e-6)
    # skimage averages the SSIM map after cropping a 5-pixel border; torchmetrics averages the
    # whole map computed with mirror padding, so they agree only to ~1e-4 here ...
    assert ssim(x, x_adv) == pytest.approx(ref_ssim, abs=1e-3)
    # ... and an explicit full-map reference (mirror padding, 11-tap Gaussian) matches exactly
    assert ssim(x, x_adv) == pytest.approx(_ssim_full_map_ref(xn, an), abs=1e-9)
    assert ssim(x, x) == pytest.approx(1.0) and psnr(x, x) == math.inf
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        psnr(x[0], x_adv[0])


def test_attack_report():
    x = torch.zeros(2, 1, 16, 16)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 0.03
    x_adv[1] += 0.01
    labels = torch.tensor([0, 1])
    rep = attack_report(x, x_adv, torch.tensor([0, 1]), torch.tensor([1, 1]), labels)
    assert rep["clean_acc"] == 1.0 and rep["adv_acc"] == 0.5 and rep["ASR"] == 0.5 == rep["ASR_all"]
    assert rep["linf_max"] == pytest.approx(0.03) and rep["linf_mean"] == pytest.approx(0.02)
    assert rep["l2_mean"] == pytest.approx((0.03 + 0.01 * 16) / 2)
    assert rep["PSNR"] == pytest.approx(psnr(x, x_adv)) and 0 < rep["SSIM"] <= 1


# ---------------------------------------------------------------------------- clustering


def _comb2(n):
    return n * (n - 1) / 2


def _contingency(a, b):
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    c = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(c, (ai, bi), 1)
    return c


def _ari_ref(a, b):
    c = _contingency(a, b)
    n = c.sum()
    s_ij = sum(_comb2(v) for v in c.ravel())
    s_a = sum(_comb2(v) for v in c.sum(1))
    s_b = sum(_comb2(v) for v in c.sum(0))
    exp = s_a * s_b / _comb2(n)
    return (s_ij - exp) / (0.5 * (s_a + s_b) - exp)


def _nmi_ref(a, b):
    p = _contingency(a, b) / len(a)
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = np.sum(p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz]))
    h = lambda q: -np.sum(q[q > 0] * np.log(q[q > 0]))  # noqa: E731
    return mi / ((h(pa) + h(pb)) / 2)


def _silhouette_ref(x, y):
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    s = []
    for i in range(len(x)):
        same = (y == y[i]) & (np.arange(len(x)) != i)
        if same.sum() == 0:
            s.append(0.0)
            continue
        a = dist[i, same].mean()
        b = min(dist[i, y == k].mean() for k in np.unique(y) if k != y[i])
        s.append((b - a) / max(a, b))
    return float(np.mean(s))


def test_ari_nmi_against_pair_counting():
    true = [0, 0, 0, 1, 1, 1, 2, 2]
    pred = [0, 0, 1, 1, 2, 2, 2, 2]
    assert ari([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)  # classic hand example
    assert ari(true, pred) == pytest.approx(_ari_ref(np.array(true), np.array(pred)))
    assert nmi(true, pred) == pytest.approx(_nmi_ref(np.array(true), np.array(pred)))
    perfect = ["b", "b", "b", "c", "c", "c", "a", "a"]  # relabelled copy of `true`
    assert ari(true, perfect) == pytest.approx(1.0) and nmi(true, perfect) == pytest.approx(1.0)
    assert ari(torch.tensor(true), torch.tensor(pred)) == ari(true, pred)
    with pytest.raises(ValueError, match="same length"):
        ari([0, 1], [0, 1, 1])


def test_asw_against_bruteforce_and_report():
    rng = np.random.default_rng(7)
    y = np.repeat([0, 1, 2], 10)
    x = rng.normal(size=(30, 4)) + 2.0 * y[:, None]
    s = asw(x, y)
    assert s == pytest.approx(_silhouette_ref(x, y))
    assert asw(torch.tensor(x), y, scaled=True) == pytest.approx((s + 1) / 2)
    tight = np.repeat(np.eye(3) * 100, 10, axis=0) + 1e-3 * rng.normal(size=(30, 3))
    assert asw(tight, y) == pytest.approx(1.0, abs=1e-3)
    rep = clustering_report(y, y, embeddings=x)
    assert rep["ARI"] == 1.0 and rep["NMI"] == pytest.approx(1.0)
    assert rep["ASW"] == pytest.approx(s) and rep["ASW_scaled"] == pytest.approx((s + 1) / 2)
    with pytest.raises(ValueError, match="between 2 and N-1"):
        asw(x, np.zeros(30))

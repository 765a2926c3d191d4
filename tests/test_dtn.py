"""DTN and its layers: MAS reduces to vanilla attention, DSD with alpha=0 is plain BCE, MoE gating, LeFF
locality, attention-collapse measure, preset shapes and equal-size baselines."""

import copy

import pytest
import torch
import torch.nn.functional as F

import mmtrust
from mmtrust.config import build_config
from mmtrust.methods.forgery.dtn import DSDRecipe, distillation_kl
from mmtrust.nn.moe import MoE2d, load_balance_loss, topk_gates
from mmtrust.nn.vit import Attention, LeFF, attention_similarity
from mmtrust.registry import get_method, get_task
from mmtrust.tasks.forgery import ForgeryRecipe


def test_mas_attention_is_exactly_vanilla_at_init():
    torch.manual_seed(0)
    vanilla = Attention(16, 4)
    for scale, mix in ((True, False), (False, True), (True, True)):
        mas = Attention(16, 4, head_scale=scale, head_mix=mix)
        mas.load_state_dict(vanilla.state_dict(), strict=False)  # same q, k, v, proj
        x = torch.randn(2, 7, 16)
        (out_v, a_v), (out_m, a_m) = vanilla(x), mas(x)
        assert torch.equal(out_v, out_m) and torch.equal(a_v, a_m)
        with torch.no_grad():  # and MAS is not a no-op once its parameters move
            if scale:
                mas.log_scale[0] = 0.7
            if mix:
                mas.mix[0, 1] = 0.3
        assert not torch.allclose(mas(x)[0], out_v)


def test_dtn_with_mas_equals_dtn_without_at_init():
    torch.manual_seed(0)
    with_mas = mmtrust.create_method("dtn", preset="tiny").eval()
    without = mmtrust.create_method("dtn", preset="tiny", mas_head_scale=False, mas_head_mix=False).eval()
    missing, unexpected = without.load_state_dict(with_mas.state_dict(), strict=False)
    assert not missing and all("log_scale" in k or ".mix" in k for k in unexpected) and unexpected
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(with_mas(x), without(x))


def test_distillation_kl_matches_two_class_softmax_kd():
    zs, zt, t = torch.randn(6), torch.randn(6), 3.0
    two = lambda z: torch.stack([torch.zeros_like(z), z], -1)  # noqa: E731 - fixed zero logit for "real"
    ref = F.kl_div(F.log_softmax(two(zs) / t, -1), F.softmax(two(zt) / t, -1), reduction="batchmean") * t * t
    assert distillation_kl(zs, zt, t) == pytest.approx(float(ref), rel=1e-5)
    assert float(distillation_kl(zt, zt, t)) == pytest.approx(0.0, abs=1e-6)


def _batch(model):
    return get_task("forgery").example_batch(model, batch_size=4)


def test_dsd_alpha_zero_is_plain_bce_and_alpha_positive_is_not():
    torch.manual_seed(0)
    model = mmtrust.create_method("dtn", preset="tiny", **{"dsd.alpha": 0.0}).eval()
    x, y = _batch(model)
    plain, _ = ForgeryRecipe(model, model.cfg.train).compute_loss((x, y))
    teacher = copy.deepcopy(model)
    with torch.no_grad():
        teacher.head.bias += 3.0  # a teacher that disagrees
    dsd0, logs0 = DSDRecipe(model, model.cfg.train, teacher=teacher).compute_loss((x, y))
    assert torch.equal(plain, dsd0) and "kd" not in logs0
    model.cfg.dsd.alpha = 0.5
    dsd, logs = DSDRecipe(model, model.cfg.train, teacher=teacher).compute_loss((x, y))
    assert float(logs["kd"]) > 0
    assert float(dsd.detach()) == pytest.approx(float(plain.detach()) + 0.5 * float(logs["kd"]), rel=1e-5)


def test_one_training_step_with_ema_distillation():
    torch.manual_seed(0)
    model = mmtrust.create_method("dtn", preset="tiny")
    recipe = DSDRecipe(model, model.cfg.train)
    assert recipe.teacher is not None and recipe.teacher is not model
    assert not any(k.startswith("teacher") or "_teacher" in k for k in recipe.state_dict())  # not checkpointed
    x, y = _batch(model)
    with torch.no_grad():
        recipe.teacher.head.bias += 2.0
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, logs = recipe.compute_loss((x, y))
    assert float(logs["kd"]) > 0 and "aux" in logs and 0 <= logs["attn_sim"] <= 1
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(p.grad is None for p in recipe.teacher.parameters())
    opt.step()
    before = recipe.teacher.head.bias.clone()
    recipe.on_train_batch_end(None, (x, y), 0)
    d = model.cfg.dsd.ema_decay
    assert torch.allclose(recipe.teacher.head.bias, d * before + (1 - d) * model.head.bias.detach())


def test_moe_gating_and_balance_loss():
    probs = torch.tensor([[0.1, 0.6, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]])
    g = topk_gates(probs, 2)
    assert ((g > 0).sum(-1) == 2).all() and torch.allclose(g.sum(-1), torch.ones(2))
    assert torch.allclose(g[0], torch.tensor([0.0, 0.75, 0.25, 0.0]))
    assert torch.equal(topk_gates(probs, 0), probs)
    assert float(load_balance_loss(torch.full((8, 4), 0.25))) == pytest.approx(1.0)
    collapsed = torch.tensor([[1.0, 0, 0, 0]]).repeat(8, 1)
    assert float(load_balance_loss(collapsed)) == pytest.approx(4.0)
    moe = MoE2d(8, num_experts=3, top_k=1)
    out = moe(torch.randn(2, 8, 5, 5))
    assert out.shape == (2, 8, 5, 5) and ((moe.last_gates > 0).sum(-1) == 1).all()


def test_leff_is_local_and_cls_bypasses_the_conv():
    torch.manual_seed(0)
    ffn = LeFF(8, 16, kernel_size=3).eval()
    x = torch.randn(1, 1 + 25, 8)  # cls + 5x5 grid
    y = x.clone()
    y[0, 1 + 0] += 1.0  # grid token (0, 0)
    a, b = ffn(x, (5, 5), 1), ffn(y, (5, 5), 1)
    changed = (a - b).abs().sum(-1)[0] > 1e-6  # (26,)
    assert not changed[0]  # cls
    assert changed[1 + 0] and changed[1 + 1] and changed[1 + 5] and changed[1 + 6]  # its 3x3 neighbourhood
    assert not changed[1 + 2] and not changed[1 + 24]  # far tokens


def test_attention_similarity_measure():
    a = torch.softmax(torch.randn(2, 3, 4, 4), -1)
    assert float(attention_similarity([a, a, a])) == pytest.approx(1.0, abs=1e-6)
    e0 = torch.eye(4).expand(2, 3, 4, 4)
    e1 = torch.roll(torch.eye(4), 1, dims=-1).expand(2, 3, 4, 4)
    assert float(attention_similarity([e0, e1])) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("preset", ["tiny", "quick", "bench", "paper"])
def test_preset_shapes_and_equal_size_vit(preset):
    counts = {}
    for name in ("dtn", "vit", "effnet-lite0"):
        entry = get_method(name)
        cfg = build_config(entry.config_cls, entry.presets, preset)
        if hasattr(cfg, "pretrained"):
            cfg.pretrained = False  # shapes only
        with torch.device("meta"):  # no memory, no compute: the paper preset is ViT-B sized
            model = entry.model_cls(cfg)
            out = model(torch.rand(2, 3, cfg.image_size, cfg.image_size))
        assert out.shape == (2,)
        counts[name] = sum(p.numel() for p in model.parameters())
    assert abs(counts["vit"] / counts["dtn"] - 1) < 0.05, counts
    if preset == "paper":
        assert 80e6 < counts["dtn"] < 95e6  # ViT-B-like


def test_pretrained_efficientnet_stem_holds_the_released_weights():
    from mmtrust.methods.forgery.base import EfficientNetLiteStem, lite0_pretrained

    full = lite0_pretrained()
    stem = EfficientNetLiteStem(stride=16, pretrained=True).eval()
    assert torch.equal(stem._conv_stem.weight, full._conv_stem.weight)
    assert torch.equal(stem._blocks[10]._project_conv.weight, full._blocks[10]._project_conv.weight)
    assert stem(torch.rand(1, 3, 64, 64)).shape == (1, 112, 4, 4)
    with pytest.raises(ValueError, match="stride"):
        EfficientNetLiteStem(stride=4, pretrained=False)

"""TTT layers: the mini-batch dual form equals a token-by-token primal reference (autograd gradients)."""

import pytest
import torch

from mmtrust.nn.ttt import BiTTT, TTTBlock, TTTLayer, _ln, ln_l2_grad, ttt_primal_reference


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP spin-waits on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _layer(inner, k, dtype=torch.float64, dim=8):
    torch.manual_seed(0)
    layer = TTTLayer(dim, num_heads=2, inner=inner, mini_batch_size=k).to(dtype)
    with torch.no_grad():  # make the inner updates matter: larger initial weights, non-trivial offsets
        layer.W1.mul_(20)
        layer.token_offset.normal_(0, 0.2)
        layer.ln_weight.uniform_(0.5, 1.5)
        layer.ln_bias.normal_(0, 0.1)
    return layer


@pytest.mark.parametrize("inner", ["linear", "mlp"])
@pytest.mark.parametrize("k", [1, 4, 16])  # 16 > T: one short mini-batch
def test_dual_form_equals_primal_reference(inner, k):
    layer = _layer(inner, k)
    x = torch.randn(2, 11, 8, dtype=torch.float64)  # 11 tokens: the last mini-batch is shorter
    with torch.no_grad():
        dual, primal = layer(x), ttt_primal_reference(layer, x)
    assert dual.shape == (2, 11, 8)
    assert torch.allclose(dual, primal, atol=1e-10, rtol=0)
    # the inner loop matters: a layer whose state is never updated gives a different output
    frozen = _layer(inner, k)
    with torch.no_grad():
        frozen.lr_bias.fill_(-1e4)  # inner learning rate ~ 0
        assert (frozen(x) - dual).abs().max() > 1e-3


def test_dual_form_float32_within_1e4():
    layer = _layer("mlp", 4, torch.float32, dim=16)
    x = torch.randn(1, 9, 16)
    with torch.no_grad():
        assert torch.allclose(layer(x), ttt_primal_reference(layer, x), atol=1e-4)


def test_ln_l2_grad_matches_autograd():
    torch.manual_seed(1)
    z = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    t, w, b = torch.randn(5, 8, dtype=torch.float64), torch.rand(8, dtype=torch.float64) + 0.5, torch.randn(8, dtype=torch.float64)
    loss = 0.5 * ((_ln(z, w, b, 1e-6) - t) ** 2).sum()
    (g,) = torch.autograd.grad(loss, z)
    assert torch.allclose(g, ln_l2_grad(z, t, w, b, 1e-6), atol=1e-10)


def test_causal_and_bidirectional():
    torch.manual_seed(2)
    x = torch.randn(1, 12, 16)
    y = x.clone()
    y[:, 8] += 1.0
    layer, bi = TTTLayer(16, 2, mini_batch_size=4), BiTTT(16, num_heads=2, mini_batch_size=4)
    with torch.no_grad():
        a, b = layer(x), layer(y)
        assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6) and not torch.allclose(a[:, 8:], b[:, 8:])
        c, d = bi(x), bi(y)
        assert not torch.allclose(c[:, :8], d[:, :8])  # the reversed pass carries token 8 backwards


@pytest.mark.parametrize("mixer", ["ttt", "attention"])
def test_block_backward_reaches_the_initial_state(mixer):
    block = TTTBlock(16, num_heads=2, mini_batch_size=4, mixer=mixer)
    x = torch.randn(2, 10, 16)
    block(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())
    if mixer == "ttt":
        assert block.mixer.fwd.W1.grad.abs().sum() > 0 and block.mixer.fwd.token_offset.grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        TTTLayer(10, num_heads=3)
    with pytest.raises(ValueError, match="inner"):
        TTTLayer(8, inner="rnn")

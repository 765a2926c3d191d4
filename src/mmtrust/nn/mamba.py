"""Selective scan (Mamba S6) and the bidirectional Mamba mixer used by PhysMamba, in pure PyTorch.

What it implements
------------------
* :func:`selective_scan_ref`: the sequential definition of the selective scan (a Python loop over
  tokens), kept as the test oracle.
* :func:`selective_scan`: the same function computed exactly (fp32) but fast on CPU and without
  materialising a ``(B, D, N, L)`` state tensor for the whole sequence. It runs a *chunked* linear
  scan (see "Algorithm" below) with a hand-written backward pass, so memory in training stays at the
  size of the inputs plus one block of states. On CUDA it dispatches to
  ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` when that optional package imports.
* :class:`BiMamba`: ``Mamba(d_model, d_state=16, d_conv=4, expand=2, bimamba=True)`` of the vendored
  ``mamba_ssm`` 1.0.1 fork in https://github.com/Chaoqi31/PhysMamba (``mamba/mamba_ssm/modules/
  mamba_simple.py``; the same fork ships in ubicomplab/rPPG-Toolbox under ``tools/mamba``), with the
  official parameter names and shapes, so rPPG-Toolbox PhysMamba checkpoints load with
  ``strict=True`` (after the ``Block*.3.mamba.`` prefix is stripped).

Facts used (from the official code; the fast path is the one that runs)
-----------------------------------------------------------------------
* ``d_inner = expand * d_model``, ``dt_rank = ceil(d_model / 16)`` when ``"auto"``.
* ``in_proj`` (d_model -> 2 d_inner, no bias) and ``out_proj`` (d_inner -> d_model, no bias) are
  *shared* by both directions. Each direction has its own depthwise causal ``conv1d`` /
  ``conv1d_b`` (kernel ``d_conv``, padding ``d_conv - 1``, bias), ``x_proj`` / ``x_proj_b``
  (d_inner -> dt_rank + 2 d_state, no bias), ``dt_proj`` / ``dt_proj_b`` (dt_rank -> d_inner, bias),
  ``A_log`` / ``A_b_log`` (d_inner x d_state, init ``log(1..N)``) and ``D`` / ``D_b`` (ones).
* With ``bimamba=True`` and no inference cache the official forward takes the fused ("fast") path::

      xz  = in_proj(h)  as (B, 2 d_inner, L)
      y_f = inner(xz,        conv1d,   x_proj,   dt_proj,   A=-exp(A_log),   D)
      y_b = inner(flip_L(xz), conv1d_b, x_proj_b, dt_proj_b, A=-exp(A_b_log), D_b)
      out = out_proj(y_f + flip_L(y_b))          # no division by 2

  where ``inner`` splits ``x, z = xz.chunk(2)``, runs ``u = silu(causal_conv1d(x))``,
  ``dt, B, C = split(x_proj(u), [dt_rank, N, N])``, ``delta = softplus(dt_proj.W dt + dt_proj.b)``
  and returns ``selective_scan(u, delta, A, B, C, D, z)``:
  ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``, ``y_t = <h_t, C_t> + D u_t``, ``y *= silu(z)``.
  (The official slow path, ``use_fast_path=False``, ignores the backward direction; it is not what
  PhysMamba runs and is not reproduced.)
* dt initialisation: ``dt_proj.weight ~ U(-dt_rank^-0.5, dt_rank^-0.5)``; ``dt_proj.bias`` is the
  inverse softplus of ``dt = exp(U(log dt_min, log dt_max))`` clamped below at ``dt_init_floor``.
* The scan runs in fp32: fp16/bf16 inputs are cast up and the result cast back (as the official
  reference does); float64 stays float64.

Algorithm of the fast scan
--------------------------
The sequence is cut into chunks of ``chunk`` tokens (64 for PhysMamba's shapes; shorter sequences get
a smaller power of two, see ``_plan``) and the chunks into blocks of about 2^22 state values (~16 MB of
fp32 whatever ``B, D, N``), processed one after the other. A block that size makes each per-token op of
the two sweeps 2^22 / 64 = 65,536 values, above ATen's 32,768-element grain, so every sweep op runs on
all intra-op threads (with 2^20 they ran on one core). A block lives in two reused workspaces laid
out token-major ``(Tc, B, n_chunks, N, D)``, so each per-token slice is contiguous and nothing is
allocated per block. Per block (forward):

1. ``dec = exp2(delta_t * A log2 e)`` (``exp2`` is much cheaper than ``exp`` on CPU: 1.8 ms against 13.7 ms for 4M values here) and
   ``st = B_t (outer) x_t`` for every token;
2. sweep 1: the recurrence inside all chunks at once from a zero state (``Tc`` fused multiply-adds
   into a small running state) gives each chunk's local end state;
3. carry: ``entry_{c+1} = exp2(A log2 e * sum_{t in c} delta_t) entry_c + local_end_c``, one fused
   op per chunk; the chunk decay is a log-space sum, so it can underflow to 0 but never overflow;
4. sweep 2: the recurrence again, in place in ``st``, from the true entry states;
5. ``y_t = <C_t, h_t>`` as one batched matmul.

Only products and sums of the exact per-token decays are used (no division by a cumulative decay, no
``exp`` of a positive number), so it is stable whatever ``delta * A``; it is O(L D N) work with
``2 Tc + n_chunks`` Python-level ops per block. (An SSD-style intra-chunk matmul form does not apply:
Mamba-1's decay ``exp(delta_t[d] A[d, n])`` differs per channel and state, so the quadratic form would
need ``Tc / 2`` times more ``exp``s.) Without autograd (``torch.no_grad`` / ``inference_mode``) the
autograd.Function is skipped. The backward pass recomputes each block's states from the block-start
states saved in the forward, runs the adjoint recurrence as a chunked scan on the time-flipped block,
and contracts.

Measured on the 12 scans of one PhysMamba paper forward (L = 2048 .. 65536 tokens, D*N = 1024 /
2048), on the 2-core CPU, medians of 6 interleaved runs: the six scan shapes took 671 ms in all with
2^20-value blocks and chunks of 32 (the previous setting), 507 ms with 2^22 and 64 (0.76x). Rejected
on the same measurement: 2^21 blocks (551-658 ms); running the two directions' scans in two Python
threads (slower than one thread at a time once the sweep ops use both cores: oversubscription); and a
variant that computes each token's decay inside the sweeps instead of storing the block's decays
(fewer bytes moved, three times the ops: 246-273 ms against 209-213 ms for the big shapes; the scan is
bound by per-op cost, not memory bandwidth). Forward figures for the whole network are in
:mod:`mmtrust.methods.rppg.physmamba`.

Shape:
    selective_scan / selective_scan_ref:
        u, delta, z: (B, D, L); A: (D, N); B, C: (B, N, L) (input-dependent, one group);
        D, delta_bias: (D,); returns (B, D, L) in ``u.dtype``.
    BiMamba:
        input (B, L, d_model) -> output (B, L, d_model).

Deviations from the official code
---------------------------------
* Pure PyTorch (no ``causal_conv1d`` / ``selective_scan_cuda`` kernels needed); the causal conv is
  ``F.conv1d`` with padding ``d_conv - 1`` truncated to L, which is the package's own reference.
* Only real ``A`` and input-dependent ``B``/``C`` of shape ``(B, N, L)`` are supported (all that
  PhysMamba uses); no ``return_last_state``, no inference cache / ``step`` decoding.
* Not exposed: ``dt_init="constant"``, ``dt_scale``, ``conv_bias=False``, ``bias=True`` and
  ``bimamba=False``; ``BiMamba`` is always bidirectional.
* Half-precision inputs to :class:`BiMamba` are cast to the parameter dtype and the result cast back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BiMamba", "selective_scan", "selective_scan_ref"]

#: largest (default) number of tokens per chunk of the fast scan (the inner sequential loop length)
CHUNK = 64
#: smallest chunk the automatic choice uses (short sequences)
MIN_CHUNK = 4
#: state values (B * D * N * tokens) processed per block on CPU; bounds the scan's working memory
BLOCK_ELEMS = 1 << 22
#: the same on CUDA, where bigger blocks amortise kernel launches
BLOCK_ELEMS_CUDA = 1 << 24
_LOG2E = 1.0 / math.log(2.0)


# --------------------------------------------------------------------------------------------------
# input handling shared by both scans


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus):
    if A.is_complex():
        raise NotImplementedError("complex A is not supported")
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError("B and C must be input-dependent, shaped (batch, d_state, L)")
    if u.shape != delta.shape or u.dim() != 3:
        raise ValueError(
            f"u and delta must both be (batch, d_inner, L); got {tuple(u.shape)}, {tuple(delta.shape)}"
        )
    if A.shape[0] != u.shape[1] or B.shape[1] != A.shape[1] or C.shape[1] != A.shape[1]:
        raise ValueError(
            f"shape mismatch: u {tuple(u.shape)}, A {tuple(A.shape)}, B {tuple(B.shape)}, C {tuple(C.shape)}"
        )
    ct = torch.float64 if u.dtype == torch.float64 else torch.float32
    u = u.to(ct)
    delta = delta.to(ct)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)  # threshold 20, as the official kernels
    return ct, u, delta, A.to(ct), B.to(ct), C.to(ct)


def _finish(y, u, D, z, dtype_in):
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(dtype_in)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Sequential selective scan: ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``, ``y_t = <C_t, h_t>``.

    Then ``y += D * u`` and ``y *= silu(z)`` when given. A Python loop over L; for tests only.
    Shapes: u, delta, z (B, D, L); A (D, N); B, C (B, N, L); D, delta_bias (D,) -> (B, D, L).
    """
    dtype_in = u.dtype
    _, u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    decay = torch.exp(delta.unsqueeze(-1) * A.unsqueeze(1))  # (B, D, L, N)
    drive = (delta * u).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1)  # (B, D, L, N)
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        h = decay[:, :, t] * h + drive[:, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    return _finish(y, u, D, z, dtype_in)


# --------------------------------------------------------------------------------------------------
# the chunked scan (token-major: sequences are (B, L, K), K innermost)


def _chunks(x: Tensor, l0: int, l1: int, chunk: int) -> Tensor:
    """Tokens [l0, l1) of a contiguous (B, L, K) tensor as a (B, n_chunks, chunk, K) view."""
    return x[:, l0:l1].view(x.shape[0], (l1 - l0) // chunk, chunk, x.shape[-1])


def _block_states(
    dl: Tensor | None,
    xl: Tensor,
    bl: Tensor,
    a_t: Tensor,
    h0: Tensor,
    reverse: bool = False,
    decay: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """All states of one block of the linear recurrence, exactly.

    Forward: ``h_t = exp(dl_t A) h_{t-1} + bl_t (outer) xl_t`` from ``h0`` entering the first token;
    reverse: ``h_t = exp(dl_t A) h_{t+1} + bl_t (outer) xl_t`` from ``h0`` entering after the last.
    dl, xl: (B, nc, Tc, D); bl: (B, nc, Tc, N); a_t = A^T: (N, D); h0: (B, N, D).
    Returns the states (B, nc, Tc, N, D) and the state leaving the block (B, N, D). The state is
    kept as (N, D), D innermost, so every broadcast and contraction vectorises along D.
    ``decay`` may hold ``exp(dl A)`` already (B, nc, Tc, N, D); it is overwritten.
    """
    n_chunks, chunk = xl.shape[1], xl.shape[2]
    if decay is None:
        decay = torch.exp(dl.unsqueeze(-2) * a_t)
    # decay becomes the running product of the decays inside each chunk
    states = bl.unsqueeze(-1) * xl.unsqueeze(-2)  # becomes the chunk-local states (zero entry state)
    for t in range(chunk - 2, -1, -1) if reverse else range(1, chunk):
        prev = t + 1 if reverse else t - 1
        states[:, :, t].addcmul_(decay[:, :, t], states[:, :, prev])
        decay[:, :, t].mul_(decay[:, :, prev])
    edge = 0 if reverse else chunk - 1
    local_out, decay_out = states[:, :, edge], decay[:, :, edge]
    entry = torch.empty_like(local_out)  # (B, nc, N, D): the true state entering each chunk
    cur = h0
    for c in range(n_chunks - 1, -1, -1) if reverse else range(n_chunks):
        entry[:, c] = cur
        cur = torch.addcmul(local_out[:, c], decay_out[:, c], cur)
    states.addcmul_(decay, entry.unsqueeze(2))
    return states, cur


def _plan(
    batch: int, length: int, dim: int, n_state: int, is_cuda: bool, chunk: int | None, block_elems: int | None
) -> tuple[int, int, int]:
    """(chunk, block, padded length) in tokens.

    A block costs about ``2 chunk + n_chunks`` Python-level ops for ``chunk * n_chunks`` tokens, so by
    default the chunk is the power of two nearest ``sqrt(2 * tokens per block)``, within
    [:data:`MIN_CHUNK`, :data:`CHUNK`] (64 for PhysMamba's shapes, less for short sequences).
    """
    if block_elems is None:
        block_elems = BLOCK_ELEMS_CUDA if is_cuda else BLOCK_ELEMS
    if chunk is None:
        tokens = min(max(1, block_elems // max(1, batch * dim * n_state)), max(1, length))
        chunk = 1 << max(0, round(math.log2(math.sqrt(2.0 * tokens))))
        chunk = min(CHUNK, max(MIN_CHUNK, chunk))
    chunk = max(1, int(chunk))
    block = max(1, block_elems // max(1, batch * dim * n_state * chunk)) * chunk
    padded = -(-length // chunk) * chunk
    return chunk, block, padded


def _pad(x: Tensor, padded: int) -> Tensor:
    return x if x.shape[1] == padded else F.pad(x, (0, 0, 0, padded - x.shape[1]))


def _flat_view(buf: Tensor, *shape: int) -> Tensor:
    """A contiguous view of the first prod(shape) elements of a flat workspace buffer."""
    return buf[: math.prod(shape)].view(shape)


def _scan_forward(u, delta, A, B, C, chunk, block, padded):
    """y (B, padded, D) and the states entering each block, (n_blocks, B, N, D).

    Per block (``nc`` chunks of ``chunk`` tokens, laid out token-major ``(Tc, B, nc, N, D)`` in two
    reused workspaces, so every per-token slice is contiguous and nothing is allocated per block):

    1. ``dec = exp(delta_t A)`` and ``st = B_t (outer) x_t`` for every token of the block;
    2. sweep 1: the recurrence inside every chunk at once from a zero state, keeping only a running
       ``(B, nc, N, D)`` state, gives each chunk's local end state;
    3. carry: ``entry_{c+1} = exp(A * sum_{t in c} delta_t) entry_c + local_end_c`` (one fused op per
       chunk; the chunk decay is taken in log space, so it can only underflow, never overflow);
    4. sweep 2: the recurrence again, in place in ``st``, now from the true entry states;
    5. ``y_t = <C_t, h_t>`` as one batched matmul.
    """
    batch, _, dim = u.shape
    n_state = A.shape[1]
    u, delta, B, C = (_pad(t, padded) for t in (u, delta, B, C))
    x = delta * u
    a2 = (A.t() * _LOG2E).contiguous()  # (N, D); exp(delta A) = exp2(delta A log2 e), exp2 is ~2x cheaper
    n_blocks = -(-padded // block)
    nc_max = min(block, padded) // chunk
    full = chunk * batch * nc_max * n_state * dim
    ws_dec, ws_st = u.new_empty(full), u.new_empty(full)
    ws_run = u.new_empty(2, batch * nc_max * n_state * dim)
    ws_entry = u.new_empty(batch * (nc_max + 1) * n_state * dim)
    ws_y = u.new_empty(chunk * batch * nc_max * dim)
    entries = u.new_empty(n_blocks, batch, n_state, dim)
    entries[0].zero_()
    y = u.new_empty(batch, padded, dim)
    for k, l0 in enumerate(range(0, padded, block)):
        l1 = min(l0 + block, padded)
        nc = (l1 - l0) // chunk
        # (Tc, B, nc, K) views of the block's tokens
        dl, xl, bl, cl = (_chunks(t, l0, l1, chunk).permute(2, 0, 1, 3) for t in (delta, x, B, C))
        dec = _flat_view(ws_dec, chunk, batch, nc, n_state, dim)
        st = _flat_view(ws_st, chunk, batch, nc, n_state, dim)
        torch.mul(dl.unsqueeze(-2), a2, out=dec)
        dec.exp2_()
        torch.mul(bl.unsqueeze(-1), xl.unsqueeze(-2), out=st)
        dec_t, st_t = dec.unbind(0), st.unbind(0)
        run = [_flat_view(ws_run[i], batch, nc, n_state, dim) for i in range(2)]
        local = st_t[0]
        for t in range(1, chunk):
            local = torch.addcmul(st_t[t], dec_t[t], local, out=run[t & 1])
        chunk_decay = torch.exp2(dl.sum(0).unsqueeze(-2) * a2)  # (B, nc, N, D)
        entry = _flat_view(ws_entry, batch, nc + 1, n_state, dim)
        entry[:, 0] = entries[k]
        for c in range(nc):
            torch.addcmul(local[:, c], chunk_decay[:, c], entry[:, c], out=entry[:, c + 1])
        if k + 1 < n_blocks:
            entries[k + 1] = entry[:, nc]
        st_t[0].addcmul_(dec_t[0], entry[:, :nc])
        for t in range(1, chunk):
            st_t[t].addcmul_(dec_t[t], st_t[t - 1])
        yl = torch.matmul(cl.unsqueeze(-2), st, out=_flat_view(ws_y, chunk, batch, nc, 1, dim))
        y[:, l0:l1].view(batch, nc, chunk, dim).copy_(yl.squeeze(-2).permute(1, 2, 0, 3))
    return y, entries


def _scan_backward(gy, u, delta, A, B, C, entries, chunk, block, padded):
    batch, length, dim = u.shape
    n_state = A.shape[1]
    u, delta, B, C, gy = (_pad(t, padded) for t in (u, delta, B, C, gy))
    x = delta * u
    delta_next = F.pad(delta[:, 1:], (0, 0, 0, 1))
    a_t = A.t().contiguous()
    gu, gdelta = torch.empty_like(u), torch.empty_like(u)
    gB, gC = torch.empty_like(B), torch.empty_like(C)
    gA_t = torch.zeros_like(a_t)
    lam = torch.zeros_like(entries[0])  # adjoint state entering (from the right) the current block
    bounds = [(l0, min(l0 + block, padded)) for l0 in range(0, padded, block)]
    for k in range(len(bounds) - 1, -1, -1):
        l0, l1 = bounds[k]
        n = l1 - l0
        dl, ul, xl, bl, cl, gl = (_chunks(t, l0, l1, chunk) for t in (delta, u, x, B, C, gy))
        decay = torch.exp(dl.unsqueeze(-2) * a_t)  # (B, nc, Tc, N, D)
        # the adjoint decays by exp(delta_{t+1} A): the same values shifted by one token
        decay_next = torch.empty_like(decay)
        flat, flat_next = decay.view(batch, n, n_state, dim), decay_next.view(batch, n, n_state, dim)
        flat_next[:, :-1] = flat[:, 1:]
        flat_next[:, -1] = torch.exp(delta_next[:, l1 - 1].unsqueeze(-2) * a_t)
        states, _ = _block_states(None, xl, bl, a_t, entries[k], decay=decay)
        # adjoint: lam_t = C_t (outer) gy_t + exp(delta_{t+1} A) lam_{t+1}
        adj, lam = _block_states(None, gl, cl, a_t, lam, reverse=True, decay=decay_next)
        gC[:, l0:l1] = torch.matmul(states, gl.unsqueeze(-1)).view(batch, n, n_state)
        gB[:, l0:l1] = torch.matmul(adj, xl.unsqueeze(-1)).view(batch, n, n_state)
        lam_b = torch.matmul(bl.unsqueeze(-2), adj).squeeze(-2)  # sum_n lam B: (B, nc, Tc, D)
        # q = lam * exp(delta_t A) h_{t-1} = lam * (h_t - B_t x_t)
        q = states.addcmul_(bl.unsqueeze(-1), xl.unsqueeze(-2), value=-1.0).mul_(adj)
        gdelta[:, l0:l1] = (ul * lam_b + (q * a_t).sum(-2)).view(batch, n, dim)
        gu[:, l0:l1] = (dl * lam_b).view(batch, n, dim)
        gA_t += (q * dl.unsqueeze(-2)).sum((0, 1, 2))
    return gu[:, :length], gdelta[:, :length], gA_t.t(), gB[:, :length], gC[:, :length]


class _ChunkedScan(torch.autograd.Function):
    """Token-major core: u, delta (B, L, D); A (D, N); B, C (B, L, N) -> sum_n C h: (B, L, D)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk, block_elems):
        u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
        batch, length, dim = u.shape
        plan = _plan(batch, length, dim, A.shape[1], u.is_cuda, chunk, block_elems)
        y, entries = _scan_forward(u, delta, A, B, C, *plan)
        ctx.plan = plan
        ctx.save_for_backward(u, delta, A, B, C, entries)
        return y[:, :length]

    @staticmethod
    def backward(ctx, gy):
        u, delta, A, B, C, entries = ctx.saved_tensors
        grads = _scan_backward(gy.contiguous(), u, delta, A, B, C, entries, *ctx.plan)
        return (
            *(g if need else None for g, need in zip(grads, ctx.needs_input_grad[:5], strict=True)),
            None,
            None,
        )


def _scan_tokens(u, delta, A, B, C, chunk=None, block_elems=None):
    if u.shape[1] == 0:
        return u.new_zeros(u.shape)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C)):
        return _ChunkedScan.apply(u, delta, A, B, C, chunk, block_elems)
    # no autograd needed (inference / no_grad): skip the Function and the saved tensors
    u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
    batch, length, dim = u.shape
    plan = _plan(batch, length, dim, A.shape[1], u.is_cuda, chunk, block_elems)
    return _scan_forward(u, delta, A, B, C, *plan)[0][:, :length]


_CUDA_SCAN: list = []


def _cuda_scan_fn():
    """``mamba_ssm``'s CUDA ``selective_scan_fn`` if that optional package imports, else None."""
    if not _CUDA_SCAN:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        except Exception:  # not installed, or built without CUDA
            selective_scan_fn = None
        _CUDA_SCAN.append(selective_scan_fn)
    return _CUDA_SCAN[0]


def _kernel_for(x: Tensor):
    """The fused CUDA scan to use for tensors like ``x`` (on a GPU with ``mamba_ssm`` installed), else None."""
    return _cuda_scan_fn() if x.is_cuda else None


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    *,
    chunk: int | None = None,
    block_elems: int | None = None,
    use_cuda_kernel: bool = True,
):
    """Exact fast selective scan; same maths, arguments and shapes as :func:`selective_scan_ref`.

    Differentiable (hand-written backward that recomputes states block by block). On CUDA, when
    ``mamba_ssm`` imports and ``use_cuda_kernel`` is true, its fused kernel is used instead.
    ``chunk`` / ``block_elems`` tune the chunked scan (defaults :data:`CHUNK`, :data:`BLOCK_ELEMS`).
    """
    if use_cuda_kernel and u.is_cuda and _cuda_scan_fn() is not None:
        return _cuda_scan_fn()(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    dtype_in = u.dtype
    _, u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    y = _scan_tokens(
        *(t.transpose(1, 2) for t in (u, delta)),
        A,
        *(t.transpose(1, 2) for t in (B, C)),
        chunk=chunk,
        block_elems=block_elems,
    )
    return _finish(y.transpose(1, 2), u, D, z, dtype_in)


# --------------------------------------------------------------------------------------------------
# the bidirectional Mamba mixer


def _causal_depthwise_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Token-major causal depthwise conv: x (B, L, D), weight (D, 1, K) -> (B, L, D).

    Equals ``F.conv1d(x^T, weight, bias, padding=K-1, groups=D)[..., :L]^T`` (cross-correlation with
    K-1 zeros on the left). The sequence is handed to a depthwise ``conv2d`` as a channels-last
    (B, D, L, 1) image, which is the token-major layout itself, so no transpose is copied (about 9x
    faster on CPU than K shifted multiply-adds for PhysMamba's shapes). The result is a (B, L, D) view
    whose rows are contiguous.
    """
    k = weight.shape[-1]
    length = x.shape[1]
    img = x.transpose(1, 2).unsqueeze(-1).contiguous(memory_format=torch.channels_last)  # (B, D, L, 1)
    out = F.conv2d(img, weight.unsqueeze(-1), bias, padding=(k - 1, 0), groups=weight.shape[0])
    return out[:, :, :length, 0].transpose(1, 2)


class BiMamba(nn.Module):
    """Bidirectional Mamba mixer (``mamba_ssm`` 1.0.1 PhysMamba fork, ``bimamba=True``, fast path).

    Args:
        d_model: channels C of the token sequence.
        d_state: SSM state size N. d_conv: causal depthwise conv width. expand: d_inner = expand*C.
        dt_rank: rank of the dt projection, ``"auto"`` = ceil(C / 16).
        dt_min, dt_max, dt_init_floor: range of the initial step sizes (dt_proj bias init).
        scan: ``"fast"`` (:func:`selective_scan`) or ``"ref"`` (:func:`selective_scan_ref`).

    Shape:
        (B, L, d_model) -> (B, L, d_model)
    """

    def __init__(
        self,
        d_model,
        d_state=16,
        d_conv=4,
        expand=2,
        dt_rank="auto",
        dt_min=1e-3,
        dt_max=0.1,
        dt_init_floor=1e-4,
        scan="fast",
    ):
        super().__init__()
        if scan not in ("fast", "ref"):
            raise ValueError(f"scan must be 'fast' or 'ref', got {scan!r}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan = scan
        #: on a GPU with ``mamba_ssm`` installed, run the fast path's scan in its fused CUDA kernel
        self.use_cuda_kernel = True
        d_inner, rank = self.d_inner, self.dt_rank

        # registration order follows the official module, so state_dict keys come in the same order
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = self._conv()
        self.x_proj = nn.Linear(d_inner, rank + 2 * d_state, bias=False)
        self.dt_proj = self._dt_proj(dt_min, dt_max, dt_init_floor)
        self.A_log = self._a_log()
        self.D = self._ones()
        self.A_b_log = self._a_log()
        self.conv1d_b = self._conv()
        self.x_proj_b = nn.Linear(d_inner, rank + 2 * d_state, bias=False)
        self.dt_proj_b = self._dt_proj(dt_min, dt_max, dt_init_floor)
        self.D_b = self._ones()
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def _conv(self) -> nn.Conv1d:
        return nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=self.d_conv,
            groups=self.d_inner,
            padding=self.d_conv - 1,
            bias=True,
        )

    def _dt_proj(self, dt_min, dt_max, dt_init_floor) -> nn.Linear:
        proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        bound = self.dt_rank**-0.5
        nn.init.uniform_(proj.weight, -bound, bound)
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=dt_init_floor)
        with torch.no_grad():
            proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(bias) == dt
        proj.bias._no_reinit = True
        return proj

    def _a_log(self) -> nn.Parameter:
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        p = nn.Parameter(torch.log(a))
        p._no_weight_decay = True
        return p

    def _ones(self) -> nn.Parameter:
        p = nn.Parameter(torch.ones(self.d_inner))
        p._no_weight_decay = True
        return p

    def _direction(self, xz: Tensor, backward: bool) -> Tensor:
        """One direction's ``inner`` on token-major xz (B, L, 2 d_inner), tokens in that direction's order.

        Returns (B, L, d_inner), i.e. ``selective_scan(...)`` before ``out_proj``.
        """
        conv, x_proj, dt_proj, a_log, d = (
            (self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b)
            if backward
            else (self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        )
        length = xz.shape[1]
        A = -torch.exp(a_log.float())
        if self.scan == "ref":  # the official layout and op order, with the sequential scan
            x, z = xz.transpose(1, 2).chunk(2, dim=1)
            u = F.silu(
                F.conv1d(x, conv.weight, conv.bias, padding=self.d_conv - 1, groups=self.d_inner)[
                    ..., :length
                ]
            )
            x_dbl = F.linear(u.transpose(1, 2), x_proj.weight)  # (B, L, dt_rank + 2N)
            dt, b, c = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
            delta = F.linear(dt, dt_proj.weight).transpose(1, 2)
            y = selective_scan_ref(
                u,
                delta,
                A,
                b.transpose(1, 2),
                c.transpose(1, 2),
                d.float(),
                z=z,
                delta_bias=dt_proj.bias.float(),
                delta_softplus=True,
            )
            return y.transpose(1, 2)
        x, z = xz.chunk(2, dim=-1)
        kernel = _kernel_for(x) if self.use_cuda_kernel else None
        if kernel is not None:  # mamba_ssm's fused CUDA scan: (B, D, L) layout, D-skip and z-gate inside
            u = F.silu(_causal_depthwise_conv(x, conv.weight, conv.bias))
            x_dbl = F.linear(u, x_proj.weight)  # (B, L, dt_rank + 2N)
            dt, b, c = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
            delta = F.linear(dt, dt_proj.weight)  # (B, L, D), softplus(delta + bias) inside the kernel
            y = kernel(*(t.transpose(1, 2).contiguous() for t in (u, delta)), A,
                       *(t.transpose(1, 2).contiguous() for t in (b, c)), d.float(),
                       z.transpose(1, 2).contiguous(), dt_proj.bias.float(), True)
            return y.transpose(1, 2)  # (B, L, D)
        # fast: everything token-major, no (B, D, L) transposes
        ct = torch.float64 if x.dtype == torch.float64 else torch.float32
        u = F.silu(_causal_depthwise_conv(x, conv.weight, conv.bias))
        x_dbl = F.linear(u, x_proj.weight)  # (B, L, dt_rank + 2N)
        dt, b, c = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        u = u.to(ct)
        if dt.dtype == ct:  # the bias add fused into the projection
            delta = F.softplus(F.linear(dt, dt_proj.weight, dt_proj.bias.to(ct)))
        else:
            delta = F.softplus(F.linear(dt, dt_proj.weight).to(ct) + dt_proj.bias.to(ct))
        y = _scan_tokens(u, delta, A.to(ct), b.to(ct), c.to(ct))
        return torch.addcmul(y, u, d.to(ct)) * F.silu(z.to(ct))

    def forward(self, hidden_states: Tensor) -> Tensor:
        dtype_in = hidden_states.dtype
        h = hidden_states.to(self.in_proj.weight.dtype)
        xz = F.linear(h, self.in_proj.weight)  # (B, L, 2 d_inner), shared by both directions
        y = self._direction(xz, backward=False) + self._direction(xz.flip(1), backward=True).flip(1)
        return F.linear(y.to(h.dtype), self.out_proj.weight, self.out_proj.bias).to(dtype_in)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, d_conv={self.d_conv}, expand={self.expand}, "
            f"dt_rank={self.dt_rank}, scan={self.scan!r}"
        )

"""Edge cases of the Triton kernels of `papercode.core.ot.triton`: non-finite inputs, offsets past 2**31 elements,
argument checks. The kernels run in a subprocess under Triton's interpreter (`TRITON_INTERPRET=1`), as in
`test_triton.py`; the argument checks run in this process (they fail before any kernel is launched)."""
import inspect
import os
import re
import subprocess
import sys
import tempfile

import pytest
import torch

NONFINITE = r"""
import sys, torch
from papercode.core.ot.triton import lse_rows_factored, lse_rows_sqeuclid
g = torch.Generator().manual_seed(0)
res = {}
for d in (3, 20):  # rank-one updates and tl.dot
    x, y, h = torch.randn(2, 5, d, generator=g), torch.randn(2, 20, d, generator=g), torch.randn(2, 20, generator=g)
    x[0, 1, 0] = float("nan")  # one NaN point
    hi = h.clone(); hi[1, 7] = float("inf")  # one +inf entry of h
    for splits in (1, 2):
        res[f"nan-x-d{d}-s{splits}"] = (x, y, h, lse_rows_sqeuclid(x, y, h, 0.5, splits=splits))
        res[f"inf-h-d{d}-s{splits}"] = (x[:, 2:], y, hi, lse_rows_sqeuclid(x[:, 2:], y, hi, 0.5, splits=splits))
U, V, h = torch.randn(1, 4, 3, generator=g), torch.randn(1, 6, 3, generator=g), torch.randn(1, 6, generator=g)
row, col = torch.randn(1, 4, generator=g), torch.randn(1, 6, generator=g)
col[0, 2] = float("-inf")  # a cost of -inf: an entry +inf of the exponent
res["fac-neg-inf-col"] = (U, V, row, col, h, lse_rows_factored(U, V, row, col, h, 0.5))
torch.save(res, sys.argv[1])
"""

BIG_OFFSETS = r"""
import sys, torch
from papercode.core.ot.triton import lse_rows_sqeuclid
S = 2 ** 30
try:
    storage = torch.empty(2 * S + 8, dtype=torch.float16)  # 4 GiB of address space; only 3 pages get written
except RuntimeError:
    print("SKIP: cannot reserve 4 GiB of address space"); sys.exit(0)
vals = torch.tensor([[[0.5, -1.0], [2.0, 0.25], [-1.5, 1.0]]], dtype=torch.float16)
x = storage.as_strided((1, 3, 2), (0, S, 1))  # point i at offset i * 2**30: the third one past 2**31
x.copy_(vals)
y = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]], dtype=torch.float16)
w = torch.tensor([[1.0, -2.0, 0.5]])
outs = []
for xs in (x.detach(), vals.clone()):  # the strided view, then the same values stored compactly
    xs, ys, h = xs.requires_grad_(), y.clone().requires_grad_(), torch.tensor([[0.3, -0.2]], requires_grad=True)
    out = lse_rows_sqeuclid(xs, ys, h, 1.0)
    outs.append((out.detach(), *torch.autograd.grad((out * w).sum(), (xs, ys, h))))
ok = all(torch.equal(a, b) for a, b in zip(*outs))
print("EQUAL" if ok else f"DIFFERENT {outs}")
"""


def _interpret(code, *args):
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def nonfinite():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "res.pt")
        proc = _interpret(NONFINITE, path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return torch.load(path)


def _lse_sq(x, y, h, eps):
    "The torch path's formula: squared distances expanded and clamped at 0 (clamp_min keeps NaN), then eq. (1)."
    C = (x.square().sum(-1)[:, :, None] + y.square().sum(-1)[:, None, :] - 2 * x @ y.transpose(1, 2)).clamp_min(0.0)
    return torch.logsumexp(h[:, None, :] - C / eps, -1)


@pytest.mark.parametrize("d", [3, 20])
@pytest.mark.parametrize("splits", [1, 2])
def test_nan_point_gives_nan_row(nonfinite, d, splits):
    "A NaN point makes its row NaN, as in the torch path; the clamp of the cost at 0 used to turn it into a finite value."
    x, y, h, out = nonfinite[f"nan-x-d{d}-s{splits}"]
    ref = _lse_sq(x, y, h, 0.5)
    assert torch.isnan(out[0, 1]).item() and torch.isnan(ref[0, 1]).item()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4, equal_nan=True)


@pytest.mark.parametrize("d", [3, 20])
@pytest.mark.parametrize("splits", [1, 2])
def test_plus_inf_in_h_gives_inf(nonfinite, d, splits):
    "An entry +inf of h gives +inf, as torch.logsumexp does (it used to give NaN, from exp(inf - inf))."
    x, y, h, out = nonfinite[f"inf-h-d{d}-s{splits}"]
    ref = _lse_sq(x, y, h, 0.5)
    assert torch.isinf(ref[1]).all() and not torch.isnan(ref).any()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)


def test_minus_inf_cost_gives_inf(nonfinite):
    "A cost entry of -inf (factored, through col) makes every row +inf, not NaN."
    U, V, row, col, h, out = nonfinite["fac-neg-inf-col"]
    C = U @ V.transpose(1, 2) + row[:, :, None] + col[:, None, :]
    ref = torch.logsumexp(h[:, None, :] - C / 0.5, -1)
    assert torch.isinf(ref).all()
    torch.testing.assert_close(out, ref)


def test_offsets_past_2_31_elements():
    "A view whose offsets pass 2**31 elements: int64 offsets give the compact copy's results bit for bit (int32 wrapped)."
    proc = _interpret(BIG_OFFSETS)
    if "SKIP" in proc.stdout: pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, f"returncode {proc.returncode}: {proc.stderr[-3000:]}"
    assert proc.stdout.strip().endswith("EQUAL"), proc.stdout[-2000:]


def _needs_plain_triton():
    pytest.importorskip("triton")
    import papercode.core.ot.triton as T
    if T._interpreted(): pytest.skip("TRITON_INTERPRET=1 in this process: the kernels are interpreted")
    return T


@pytest.mark.parametrize("kw, match", [(dict(block_n=16.0), "block_n: expected a power of two"),
                                       (dict(splits=True), "splits: expected a positive integer"),
                                       (dict(eps=True), "eps: expected a positive finite float"),
                                       (dict(eps="0.5"), "eps: expected a positive finite float")])
def test_argument_checks(kw, match):
    "Floats, bools and strings where integers or numbers are expected get the arguments' own ValueError."
    T = _needs_plain_triton()
    x, y, h = torch.randn(1, 5, 3), torch.randn(1, 4, 3), torch.zeros(1, 4)
    eps = kw.pop("eps", 0.5)
    with pytest.raises(ValueError, match=match):
        T.lse_rows_sqeuclid(x, y, h, eps, **kw)
    with pytest.raises(ValueError, match=match):
        T.lse_rows_factored(x, y, None, None, h, eps, **kw)


_PTRS = {"_fwd_kernel": "U V R Cc H OUT PMU PL", "_bwd_rows_kernel": "U V R Cc H O GO GU GR",
         "_bwd_cols_kernel": "U V R Cc H O GO GV GC GH"}


@pytest.mark.parametrize("name", list(_PTRS))
def test_idx64_variant_compiles_with_int64_offsets(name):
    "Each kernel compiles for sm_90 (no GPU needed) with IDX64 on, and then every tensor of addresses is int64."
    T = _needs_plain_triton()
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    fn = getattr(T, name)
    cfg = T._config(torch.empty(1, 1000, 3, device="meta"), 1000, 777, 1, None, None, None, None)
    consts = {k: v for k, v in cfg["fwd" if name == "_fwd_kernel" else "bwd"].items()
              if k not in ("num_warps", "enable_fp_fusion")}
    consts.update(SCALE=-2.0, CLAMP=True, IDX64=True, **({"SPLIT": True} if name == "_fwd_kernel" else {}))
    sig = {p: "constexpr" if p in consts else "*fp32" if p in _PTRS[name].split() else "fp32" if p == "inv_eps" else "i32"
           for p in inspect.signature(fn.fn).parameters}
    ttir = triton.compile(ASTSource(fn, sig, constexprs=consts), target=GPUTarget("cuda", 90, 32)).asm["ttir"]
    offsets = re.findall(r"tt\.addptr [^\n]*tensor<[0-9x]+x(i\d+)>", ttir)
    assert offsets and set(offsets) == {"i64"}, offsets

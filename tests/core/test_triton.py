"""Triton kernels of `papercode.core.ot.triton` against the torch path of `papercode.core.ot.costs`.

* On CPU the kernels run through Triton's interpreter, which must be switched on (`TRITON_INTERPRET=1`) before
  triton is imported. So one subprocess runs every case of `CASES` through the kernels (this file, run as a
  script) and saves inputs, outputs and gradients; the tests here recompute them with the torch path, the
  specification, and compare.
* `test_compiles_for_sm90` compiles every kernel variant for an H100 (sm_90) with the ptxas that ships with
  triton, no GPU needed, and checks that the default launch configuration does not spill registers.
* `test_cuda` (marker `gpu`) compares on a real GPU, in float32 and bfloat16.

Tolerances. Both paths compute C_ij = r_i + c_j + s<U_i, V_j> in float32 (the squared distance expanded and
clamped at 0 in both), summing the same products in different orders, so C differs by a few ulps of max|C|
(we allow 16 float32 ulps: TOL_ULPS). An error dC in the exponent moves the log-sum-exp by at most dC/eps: the
outputs must agree within atol = 16 u max|C| / eps. The gradients are sums of the softmax weights
W_ij = exp(h_j - C_ij/eps - o_i) times bounded factors, and W moves relatively by the same amount, so the
gradients must agree within that bound relative to their largest entry. 16-bit results are further rounded
once to their dtype (relative 2^-8 for bfloat16, 2^-11 for float16), added as rtol.
"""
import inspect
import os
import subprocess
import sys
import tempfile
import zlib

import pytest
import torch

from papercode.core.ot.costs import FactoredCost, PointCloudCost
from papercode.core.testing import assert_close

N, M = 37, 29  # ragged: not multiples of the interpreter's 16 x 16 tiles
TOL_ULPS = 16
ROUNDING = {torch.float32: 0.0, torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}


def _case(name, kind, d, batches, eps=0.5, dtype=torch.float32, hdtype=torch.float32, n=N, m=M, kw=None,
          via_cost=False, noncontig=False, neginf=False, wrt="all", plain_sum=False):
    return dict(name=name, kind=kind, d=d, batches=batches, eps=eps, dtype=dtype, hdtype=hdtype, n=n, m=m,
                kw=kw or {}, via_cost=via_cost, noncontig=noncontig, neginf=neginf, wrt=wrt, plain_sum=plain_sum)


# batches: batch sizes of (x, y, h) for "sq" and of (U, V, row, col, h) for "fac"
CASES = []
for kind, shapes in (("sq", {"B1": (1, 1, 1), "B3": (3, 3, 3), "B3-shared-x": (1, 3, 3), "B3-shared-y": (3, 1, 3)}),
                     ("fac", {"B1": (1, 1, 1, 1, 1), "B3": (3, 3, 3, 3, 3), "B3-shared-U-row": (1, 3, 1, 3, 3),
                              "B3-shared-V-col": (3, 1, 3, 1, 3)})):
    for bname, batches in shapes.items():
        CASES.append(_case(f"{kind}-d3-{bname}", kind, 3, batches))  # k <= 4: unrolled rank-one updates
        CASES.append(_case(f"{kind}-d20-{bname}", kind, 20, batches, kw=dict(block_k=16)))  # tl.dot, 2 k-chunks
    CASES.append(_case(f"{kind}-d7-B3", kind, 7, shapes["B3"]))  # 4 < k < 16: rank-one updates in a loop
    CASES.append(_case(f"{kind}-d70-B3", kind, 70, shapes["B3"]))  # tl.dot, default chunk of 64: 2 chunks
    CASES.append(_case(f"{kind}-d3-splits3", kind, 3, shapes["B3-shared-x" if kind == "sq" else "B3-shared-U-row"],
                       kw=dict(splits=3)))  # flash-decoding column split
    CASES.append(_case(f"{kind}-d20-splits2-blocks32", kind, 20, shapes["B3"], kw=dict(splits=2, block_n=32, block_m=32)))
    CASES.append(_case(f"{kind}-d3-via-cost", kind, 3, shapes["B3-shared-y" if kind == "sq" else "B3-shared-V-col"],
                       via_cost=True))  # through Cost.lse_rows(h, eps, "triton")
    CASES.append(_case(f"{kind}-d5-tiny", kind, 5, shapes["B3"], n=5, m=1))  # one partial tile, a single column
    CASES.append(_case(f"{kind}-d20-noncontig", kind, 20, shapes["B3"], noncontig=True))
    CASES.append(_case(f"{kind}-d3-neginf-h", kind, 3, shapes["B3"], neginf=True, eps=0.05))  # zero weights
    CASES.append(_case(f"{kind}-d20-bf16", kind, 20, shapes["B3-shared-x" if kind == "sq" else "B3-shared-U-row"],
                       dtype=torch.bfloat16))
    CASES.append(_case(f"{kind}-d3-bf16-out", kind, 3, shapes["B3"], dtype=torch.bfloat16, hdtype=torch.bfloat16))
    CASES.append(_case(f"{kind}-d20-fp16", kind, 20, shapes["B3"], dtype=torch.float16, hdtype=torch.float16))
    CASES.append(_case(f"{kind}-d3-grad-h-only", kind, 3, shapes["B3"], wrt="h"))
    CASES.append(_case(f"{kind}-d3-grad-factors-only", kind, 3, shapes["B3"], wrt="factors"))
    CASES.append(_case(f"{kind}-d3-shared-h", kind, 3, shapes["B3"][:-1] + (1,)))  # h of batch 1 (beyond the torch path)
    CASES.append(_case(f"{kind}-d20-sum-loss", kind, 20, shapes["B3"], plain_sum=True))  # incoming gradient of strides 0


def make_inputs(case, device="cpu"):
    "The case's tensors (x, y, h) or (U, V, row, col, h), seeded, in the case's dtypes."
    g = torch.Generator().manual_seed(zlib.crc32(case["name"].encode()))
    n, m, d, dt = case["n"], case["m"], case["d"], case["dtype"]
    if case["kind"] == "sq":
        bx, by, bh = case["batches"]
        shapes = [(bx, n, d), (by, m, d), (bh, m)]
        dtypes = [dt, dt, case["hdtype"]]
    else:
        bu, bv, br, bc, bh = case["batches"]
        shapes = [(bu, n, d), (bv, m, d), (br, n), (bc, m), (bh, m)]
        dtypes = [dt, dt, dt, dt, case["hdtype"]]
    ts = []
    for shape, dtype in zip(shapes, dtypes):
        t = torch.randn(*shape, generator=g)
        if case["noncontig"]:  # same values, transposed storage
            t = t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.ndim == 3 else t.t().contiguous().t()
        ts.append(t.to(dtype).to(device))
    if case["neginf"]:
        ts[-1][..., ::3] = float("-inf")
    return ts


def _grad_mask(case, ts):
    "Which inputs the case differentiates."
    if case["wrt"] == "h": return [False] * (len(ts) - 1) + [True]
    if case["wrt"] == "factors": return [True] * (len(ts) - 1) + [False]
    return [True] * len(ts)


def _cost(case, ts):
    return PointCloudCost(ts[0], ts[1]) if case["kind"] == "sq" else FactoredCost(*ts[:4])


def run_case(case, ts, backend):
    "Output and gradients of sum(out * w) for the case, through the Triton functions or the torch path."
    mask = _grad_mask(case, ts)
    ts = [t.detach().clone().requires_grad_(need) for t, need in zip(ts, mask)]
    if backend == "triton" and not case["via_cost"]:
        from papercode.core.ot.triton import lse_rows_factored, lse_rows_sqeuclid
        fn = lse_rows_sqeuclid if case["kind"] == "sq" else lse_rows_factored
        out = fn(*ts, case["eps"], **case["kw"])
    else:  # the torch path needs h with the full batch: expand a shared h (its gradient is then summed)
        B = max(t.shape[0] for t in ts)
        out = _cost(case, ts).lse_rows(ts[-1].expand(B, -1), case["eps"], backend)
    # the output in the case's dtype: the float32 reference is rounded like the kernel's output, and so is the
    # gradient that flows back into it (w cast to 16 bits), so both backward passes start from the same values
    out = out.to(case["hdtype"])
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device)
    wrt = [t for t, need in zip(ts, mask) if need]
    loss = out.float().sum() if case["plain_sum"] else (out.float() * w).sum()
    grads = torch.autograd.grad(loss, wrt)
    return out.detach(), [g.detach() for g in grads]


def _interpreter_main(path):
    "Run every case through the kernels (under TRITON_INTERPRET=1) and save inputs, outputs and gradients."
    from papercode.core.ot.triton import triton_available
    assert triton_available("cpu"), "run with TRITON_INTERPRET=1 set"
    import time
    res = {}
    for case in CASES:
        ts = make_inputs(case)
        t0 = time.perf_counter()
        try:
            out, grads = run_case(case, ts, "triton")
            res[case["name"]] = dict(inputs=ts, out=out, grads=grads, seconds=time.perf_counter() - t0)
        except Exception as e:  # reported by the case's test
            res[case["name"]] = dict(error=f"{type(e).__name__}: {e}")
    torch.save(res, path)


@pytest.fixture(scope="module")
def interpreted():
    "Results of all CASES through Triton's interpreter (one subprocess for all of them)."
    pytest.importorskip("triton")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "res.pt")
        env = dict(os.environ, TRITON_INTERPRET="1")
        proc = subprocess.run([sys.executable, __file__, path], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"interpreter run failed:\n{proc.stderr[-4000:]}"
        return torch.load(path)


def _tolerance(case, ts):
    "atol for outputs and relative (to max |grad|) tolerance for gradients: see the module docstring."
    ts32 = [t.float() for t in ts]
    cmax = _cost(case, ts32).dense().abs().max().item()
    return TOL_ULPS * torch.finfo(torch.float32).eps * cmax / case["eps"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_interpreter_matches_torch(interpreted, case):
    r = interpreted[case["name"]]
    assert "error" not in r, r.get("error")
    ts = r["inputs"]
    # the reference: the torch path in float32 on the same values (for 16-bit inputs torch's own 16-bit path
    # rounds every C_ij to 16 bits and is the less accurate one; the kernel accumulates in float32)
    ref_out, ref_grads = run_case(case, [t.float() for t in ts], "torch")
    tol = _tolerance(case, ts)
    assert r["out"].dtype == case["hdtype"] and r["out"].shape == ref_out.shape
    assert_close(r["out"].float(), ref_out.float(), rtol=ROUNDING[r["out"].dtype], atol=tol, msg="value")
    assert len(r["grads"]) == len(ref_grads)
    for k, (g, e) in enumerate(zip(r["grads"], ref_grads)):
        assert g.shape == e.shape
        assert_close(g.float(), e, rtol=ROUNDING[g.dtype], atol=tol * e.abs().max().item(), msg=f"grad {k}")


def test_interpreter_runtime(interpreted):
    "Not a threshold test: reports the slowest cases (seconds under the interpreter)."
    times = sorted((r.get("seconds", 0.0), name) for name, r in interpreted.items())
    print("slowest interpreter cases:", ", ".join(f"{n} {t:.2f}s" for t, n in times[-3:]))


def test_import_hygiene():
    "`import papercode` and the costs module, torch path included, never import triton."
    code = ("import sys, torch, papercode, papercode.core.ot.costs as c\n"
            "c.PointCloudCost(torch.randn(4, 2), torch.randn(3, 2)).lse_rows(torch.zeros(1, 3), 1.0)\n"
            "assert 'triton' not in sys.modules, 'triton was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_without_triton():
    "Without triton the module still imports, says it cannot run, and backend='triton' fails clearly."
    code = ("import sys; sys.modules['triton'] = None; sys.modules['triton.language'] = None\n"
            "import torch\n"
            "from papercode.core.ot.triton import triton_available, lse_rows_sqeuclid\n"
            "from papercode.core.ot.costs import PointCloudCost\n"
            "assert not triton_available('cuda')\n"
            "for f in (lambda: lse_rows_sqeuclid(torch.randn(1, 4, 2), torch.randn(1, 3, 2), torch.zeros(1, 3), 1.0),\n"
            "          lambda: PointCloudCost(torch.randn(4, 2), torch.randn(3, 2)).lse_rows(torch.zeros(1, 3), 1.0, 'triton')):\n"
            "    try: f()\n"
            "    except ImportError as e: assert 'needs the `triton` package' in str(e), e\n"
            "    else: raise AssertionError('no ImportError')\n"
            "import papercode.lora_compression.triton as L, papercode.sliced_mi.triton as S\n"  # the chapters' kernels too
            "from papercode.sliced_mi.projections import fwht\n"
            "assert not L.triton_available('cuda') and not S.fwht_triton_available(torch.zeros(4))\n"
            "assert torch.equal(fwht(torch.tensor([1., 2.])), torch.tensor([3., -1.]))  # auto falls back to torch\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# -- compile for an H100 without a GPU ------------------------------------------------------------------------------

_PTRS = {"_fwd_kernel": "U V R Cc H OUT PMU PL", "_bwd_rows_kernel": "U V R Cc H O GO GU GR",
         "_bwd_cols_kernel": "U V R Cc H O GO GV GC GH"}
_LAUNCH = ("num_warps", "enable_fp_fusion")


def _compile(T, name, dtype, K, scale, clamp, split):
    "Compile one kernel variant with the default GPU configuration for sm_90; return (registers, spill bytes)."
    import shutil
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    fn = getattr(T, name)
    cfg = T._config(torch.empty(1, 1000, K, dtype=dtype, device="meta"), 1000, 777, 1, None, None, None, None)
    part = cfg["fwd" if name == "_fwd_kernel" else "bwd"]
    consts = {k: v for k, v in part.items() if k not in _LAUNCH}
    consts.update(SCALE=scale, CLAMP=clamp)
    if name == "_fwd_kernel": consts["SPLIT"] = split
    tdt = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    sig = {}
    for p in inspect.signature(fn.fn).parameters:
        if p in consts: sig[p] = "constexpr"
        elif p in _PTRS[name].split(): sig[p] = "*" + (tdt if p in ("U", "V") else "fp32")
        elif p == "inv_eps": sig[p] = "fp32"
        else: sig[p] = "i32"
    k = triton.compile(ASTSource(fn, sig, constexprs=consts), target=GPUTarget("cuda", 90, 32),
                       options={o: part[o] for o in _LAUNCH})
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool): tool = shutil.which("cuobjdump")
    if tool is None: return None, None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(k.asm["cubin"]); f.flush()
        usage = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True).stdout
    line = next(l for l in usage.splitlines() if "REG:" in l)  # "  REG:128 STACK:0 SHARED:1024 ..."
    fields = dict(tok.split(":", 1) for tok in line.split())
    return int(fields["REG"]), int(fields["STACK"])


_VARIANTS = [("_fwd_kernel", torch.float32, 3, False), ("_fwd_kernel", torch.float32, 8, True),
             ("_fwd_kernel", torch.float32, 64, False), ("_fwd_kernel", torch.float32, 100, True),
             ("_fwd_kernel", torch.bfloat16, 64, False), ("_fwd_kernel", torch.bfloat16, 100, True),
             ("_bwd_rows_kernel", torch.float32, 3, False), ("_bwd_cols_kernel", torch.float32, 3, False),
             ("_bwd_rows_kernel", torch.float32, 64, False), ("_bwd_cols_kernel", torch.float32, 64, False),
             ("_bwd_rows_kernel", torch.bfloat16, 64, False), ("_bwd_cols_kernel", torch.bfloat16, 64, False)]


@pytest.mark.parametrize("name,dtype,K,split", _VARIANTS,
                         ids=[f"{n[1:-7]}-{str(dt)[6:]}-k{K}{'-split' if s else ''}" for n, dt, K, s in _VARIANTS])
def test_compiles_for_sm90(name, dtype, K, split):
    pytest.importorskip("triton")
    import papercode.core.ot.triton as T
    if T._interpreted():
        pytest.skip("TRITON_INTERPRET=1 in this process: the kernels are not compilable JIT functions")
    regs, spill = _compile(T, name, dtype, K, -2.0, True, split)
    if regs is None: pytest.skip("cuobjdump not found: compiled, resource usage not checked")
    assert spill == 0, f"{name} {dtype} k={K}: {regs} registers, {spill} bytes spilled with the default configuration"


# -- on a GPU ------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kind,d", [("sq", 3), ("sq", 64), ("fac", 7), ("fac", 100)])
def test_cuda(kind, d, dtype):
    "Default blocks and column splits on CUDA, ragged sizes, shared clouds, values and gradients vs torch (float32)."
    for batches in ((1, 1, 1), (1, 3, 3)) if kind == "sq" else ((1, 1, 1, 1, 1), (3, 1, 3, 1, 3)):
        case = _case(f"cuda-{kind}-{d}", kind, d, batches, eps=0.1, dtype=dtype, n=1000, m=777)
        ts = make_inputs(case, "cuda")
        out, grads = run_case(case, ts, "triton")
        ref_out, ref_grads = run_case(case, [t.float() for t in ts], "torch")
        tol = _tolerance(case, ts)
        assert_close(out.float(), ref_out.float(), rtol=ROUNDING[out.dtype], atol=tol, msg="value")
        # 16-bit inputs: the backward's dots round the float32 dL/dC to TF32 (2^-11 relative per product); the
        # sums they feed are at most a few times their largest entry for these data, so 2^-9 of the largest entry
        gtol = max(tol, 2.0 ** -9 if dtype != torch.float32 else 0.0)
        for k, (g, e) in enumerate(zip(grads, ref_grads)):
            assert_close(g.float(), e, rtol=ROUNDING[g.dtype], atol=gtol * e.abs().max().item(), msg=f"grad {k}")


if __name__ == "__main__":
    _interpreter_main(sys.argv[1])

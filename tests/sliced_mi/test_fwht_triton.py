"""The Triton FWHT kernel (Triton's interpreter on CPU) equals the torch butterfly, forward and backward."""
import json
import os
import subprocess
import sys

import pytest
import torch

from papercode.sliced_mi.projections import fwht, make_projection
from papercode.sliced_mi.triton import fwht_triton_available

CHILD = r"""
import json, torch
from papercode.sliced_mi.projections import fwht, make_projection
from papercode.sliced_mi.triton import fwht_triton_available, _fwht_interpreted
assert _fwht_interpreted()
out = {"auto_cpu": fwht_triton_available(torch.zeros(2))}
g = torch.Generator().manual_seed(0)
for L in (1, 2, 8, 1024, 4096):
    for dtype in (torch.float64, torch.float32):
        x = torch.randn(3, 2, L, generator=g, dtype=dtype)
        out[f"{L}-{dtype}"] = dict(x=x.tolist(), y=fwht(x, backend="triton").tolist(),
                                   yn=fwht(x, normalized=True, backend="triton").tolist())
x = torch.randn(16, 6, generator=g, dtype=torch.float64).T  # (6, 16), non-contiguous
out["strided"] = dict(x=x.tolist(), y=fwht(x, backend="triton").tolist())
x = torch.randn(4, 64, generator=g, dtype=torch.float64, requires_grad=True)
w = torch.randn(4, 64, generator=g, dtype=torch.float64)
(fwht(x, backend="triton") * w).sum().backward()
out["grad"] = dict(x=x.detach().tolist(), w=w.tolist(), g=x.grad.tolist())
P = make_projection(1000, 16, "fastfood", seed=3, dtype=torch.float64)
v = torch.randn(2, 16, generator=g, dtype=torch.float64)
out["fastfood"] = dict(v=v.tolist(), y=P.apply(v).tolist())  # backend "auto": the kernel under the interpreter
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def child():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_triton_kernel_equals_the_torch_butterfly(child):
    assert child["auto_cpu"]  # with the interpreter on, "auto" takes the kernel even on a CPU
    for L in (1, 2, 8, 1024, 4096):
        for dtype in (torch.float64, torch.float32):
            c = child[f"{L}-{dtype}"]
            x = torch.tensor(c["x"], dtype=dtype)
            ref = fwht(x, backend="torch")
            tol = 1e-12 if dtype == torch.float64 else 1e-5
            torch.testing.assert_close(torch.tensor(c["y"], dtype=dtype), ref, rtol=tol, atol=tol * L ** 0.5)
            torch.testing.assert_close(torch.tensor(c["yn"], dtype=dtype), ref / L ** 0.5, rtol=tol, atol=tol)
    x = torch.tensor(child["strided"]["x"], dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(child["strided"]["y"], dtype=torch.float64), fwht(x, backend="torch"))


def test_triton_kernel_gradient_is_the_transform_of_the_incoming_gradient(child):
    c = child["grad"]
    x = torch.tensor(c["x"], dtype=torch.float64, requires_grad=True)
    (fwht(x, backend="torch") * torch.tensor(c["w"], dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(torch.tensor(c["g"], dtype=torch.float64), x.grad)


def test_fastfood_projection_through_the_kernel_equals_the_torch_path(child):
    P = make_projection(1000, 16, "fastfood", seed=3, dtype=torch.float64)
    v = torch.tensor(child["fastfood"]["v"], dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(child["fastfood"]["y"], dtype=torch.float64), P.apply(v))


def test_backend_argument_and_cpu_without_interpreter():
    x = torch.randn(2, 8)
    assert not fwht_triton_available(x)  # no CUDA, no interpreter in this process: "auto" is the torch butterfly
    torch.testing.assert_close(fwht(x), fwht(x, backend="torch"))
    with pytest.raises(RuntimeError, match="CUDA tensor, or Triton.s interpreter|not installed"):
        fwht(x, backend="triton")
    with pytest.raises(ValueError, match="backend"):
        fwht(x, backend="cuda")

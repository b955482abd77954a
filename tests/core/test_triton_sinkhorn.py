"""The whole Sinkhorn loop through the Triton backend (Triton's interpreter on CPU) equals the torch backend."""
import json
import os
import subprocess
import sys

import pytest
import torch

from papercode.core.ot import FactoredCost, PointCloudCost, sinkhorn
from papercode.core.testing import assert_close

CHILD = r"""
import json, torch
from papercode.core.ot import FactoredCost, PointCloudCost, sinkhorn
g = torch.Generator().manual_seed(0)
x, y = torch.randn(2, 21, 3, generator=g), torch.randn(2, 13, 3, generator=g) + 0.5
U, V = torch.randn(1, 21, 2, generator=g), torch.randn(2, 13, 2, generator=g)
out = {}
for name, cost in (("pointcloud", PointCloudCost(x, y)), ("factored", FactoredCost(U, V))):
    r = sinkhorn(None, None, cost, 1.0, tol=1e-5, backend="triton")
    out[name] = dict(value=r.value.tolist(), f=r.f.tolist(), n_iter=r.n_iter, backend=r.backend, converged=r.converged)
print(json.dumps(out))
"""


def test_sinkhorn_triton_backend_matches_torch_backend_under_the_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 21, 3, generator=g), torch.randn(2, 13, 3, generator=g) + 0.5
    U, V = torch.randn(1, 21, 2, generator=g), torch.randn(2, 13, 2, generator=g)
    for name, cost in (("pointcloud", PointCloudCost(x, y)), ("factored", FactoredCost(U, V))):
        ref = sinkhorn(None, None, cost, 1.0, tol=1e-5, backend="torch")
        assert got[name]["backend"] == "triton" and got[name]["converged"]
        assert got[name]["n_iter"] == ref.n_iter
        # float32 both ways, different summation order: agreement to a few float32 ulps of the cost scale
        assert_close(torch.tensor(got[name]["value"]), ref.value, rtol=1e-5, atol=1e-5)
        f = torch.tensor(got[name]["f"])
        assert_close(f - f.mean(-1, keepdim=True), ref.f - ref.f.mean(-1, keepdim=True), atol=1e-4)


def test_auto_backend_on_cpu_is_torch_and_triton_request_without_cuda_is_refused():
    x, y = torch.randn(5, 2), torch.randn(4, 2)
    assert sinkhorn(None, None, PointCloudCost(x, y), 1.0).backend == "torch"
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        with pytest.raises(ValueError, match="backend: 'triton' cannot run on cpu"):
            sinkhorn(None, None, PointCloudCost(x, y), 1.0, backend="triton")

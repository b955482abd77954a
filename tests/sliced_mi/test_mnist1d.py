"""MNIST-1D is generated offline (never downloaded), balanced, seeded, and leaves numpy's global generator alone."""
import math
from importlib.util import find_spec

import numpy as np
import pytest
import torch

from papercode.core.testing import require
from papercode.sliced_mi import mnist1d_task, train_subspace


@pytest.fixture
def no_network(monkeypatch):
    require(find_spec("mnist1d") is not None, "mnist1d is not installed (the sliced_mi extra)")
    import mnist1d.data

    def refuse(*a, **k): raise AssertionError("mnist1d tried to download")
    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    monkeypatch.setattr(mnist1d.data.requests, "get", refuse)


def test_mnist1d_is_generated_offline_balanced_and_seeded(no_network):
    np.random.seed(123); expected = np.random.rand(); np.random.seed(123)
    t = mnist1d_task(1000, seed=0)
    assert np.random.rand() == expected  # the caller's global numpy stream is untouched
    assert t.X.shape == (1000, 40) and t.X.dtype == torch.float32 and t.C == 10 and t.name == "mnist1d"
    assert torch.bincount(t.y, minlength=10).tolist() == [100] * 10
    assert abs(float(t.X.mean())) < 1e-5 and abs(float(t.X.std()) - 1) < 1e-3
    assert torch.equal(mnist1d_task(1000, seed=0).X, t.X) and not torch.equal(mnist1d_task(1000, seed=1).X, t.X)
    run = train_subspace(t.X, t.y, n=200, d=10, K=4, epochs=20, qat_epochs=5, seed=0)  # the pipeline accepts it
    assert 0 <= run.train_err <= 1 and run.bound.constants["extra_bits"] == 0
    assert abs(run.bound.value - math.sqrt(2 * 0.25 * run.d * math.log(run.K) / run.n)) < 1e-12  # √(d log K/(2n))


@pytest.mark.parametrize("n", [0, 15, 10.0, True])
def test_mnist1d_refuses_sizes_that_are_not_a_multiple_of_ten(n):
    with pytest.raises(ValueError, match="multiple of 10"):
        mnist1d_task(n)

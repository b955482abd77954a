"Property-based versions of the invariance tests (run when hypothesis is installed; fixed cases run in any case)."
import pytest
import torch

hyp = pytest.importorskip("hypothesis", reason="hypothesis not installed (the fixed-case versions still run)")
from hypothesis import given, settings, strategies as st  # noqa: E402

from papercode.thermometer.metrics import probs_from_logits  # noqa: E402
from papercode.thermometer.model import Thermometer, predict_temperature  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 50), st.integers(0, 1000))
def test_thermometer_positive_and_order_invariant(n, seed):
    torch.manual_seed(seed)
    m = Thermometer(12, 5).eval()
    x = 3 * torch.randn(n, 12)
    assert (m(x) > 0).all()
    t = predict_temperature(m, x)
    assert t > 0 and abs(predict_temperature(m, x[torch.randperm(n)]) - t) <= 1e-6 * t


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(2, 6), st.floats(0.01, 100.0), st.integers(0, 10_000))
def test_temperature_preserves_argmax(n, C, tau, seed):
    "arg max softmax(z / tau) = arg max z for every tau > 0 (TS 'preserves the accuracy', Shen et al. 2024, abstract)."
    z = torch.randn(n, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert torch.equal(probs_from_logits(z, tau).argmax(1), z.argmax(1))

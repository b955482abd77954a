"""One torch thread for this chapter's tests: they are many small solves, and on a loaded 2-core machine a second
intra-op thread made each small kernel orders of magnitude slower (measured: 3 ms instead of 2 µs for an exp of
2 100 numbers). The previous setting is restored after each test."""
import pytest

from papercode.core.utils import torch_threads


@pytest.fixture(autouse=True)
def _one_torch_thread():
    "Each test with one torch thread (small problems; see papercode.core.utils.torch_threads), restored afterwards."
    with torch_threads(1):
        yield

"""One torch thread for this chapter's tests: they are many small solves, and on a loaded 2-core machine a second
intra-op thread made each small kernel orders of magnitude slower (measured: 3 ms instead of 2 µs for an exp of
2 100 numbers). The previous setting is restored after each test."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

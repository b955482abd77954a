"""The chapter's tests solve many tiny problems: one torch thread avoids thread contention on a shared 2-core machine."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

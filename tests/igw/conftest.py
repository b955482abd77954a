"""The chapter's tests solve many tiny problems: one torch thread avoids thread contention on a shared 2-core machine."""
import pytest

from papercode.core.utils import torch_threads


@pytest.fixture(autouse=True)
def _one_torch_thread():
    "Each test with one torch thread (small problems; see papercode.core.utils.torch_threads), restored afterwards."
    with torch_threads(1):
        yield

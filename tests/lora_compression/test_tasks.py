"""The trained-adapter suite on scikit-learn's digits: the split, the standardisation, the error without scikit-learn,
the stacked multi-task training against per-task merged forwards."""
import sys

import pytest
import torch
import torch.nn.functional as F

from papercode.core.models.lora import LoraCollection
from papercode.core.testing import assert_close
from papercode.lora_compression.compress import jd_full
from papercode.lora_compression.tasks import load_digits_split, make_task_suite, task_accuracy, train_task_loras

sklearn = pytest.importorskip("sklearn")


def test_digits_split_against_sklearn():
    "A stratified 75/25 partition of the 1797 digits, standardised like StandardScaler fitted on the training part."
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    X, y = load_digits(return_X_y=True)
    xtr, ytr, xte, yte = load_digits_split(0.25, seed=3)
    assert xtr.shape == (1347, 64) and xte.shape == (450, 64) and xtr.dtype == torch.float32
    counts = torch.bincount(torch.as_tensor(y))
    assert torch.equal(torch.bincount(ytr) + torch.bincount(yte), counts)
    assert (torch.bincount(yte) - 0.25 * counts).abs().max() <= 1
    Xtr, Xte, ytr2, yte2 = train_test_split(X, y, test_size=0.25, stratify=y, random_state=3)
    sc = StandardScaler().fit(Xtr)
    assert_close(xtr, torch.as_tensor(sc.transform(Xtr), dtype=torch.float32), rtol=1e-4, atol=1e-4)
    assert_close(xte, torch.as_tensor(sc.transform(Xte), dtype=torch.float32), rtol=1e-4, atol=1e-4)
    assert ytr.tolist() == ytr2.tolist() and yte.tolist() == yte2.tolist()


def test_split_is_seeded():
    a, b, c = (load_digits_split(seed=s)[1] for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_test_size():
    for ts in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="test_size"): load_digits_split(ts)


def test_missing_sklearn_names_the_install(monkeypatch):
    for m in ("sklearn", "sklearn.datasets", "sklearn.model_selection"): monkeypatch.setitem(sys.modules, m, None)
    with pytest.raises(ImportError, match="pip install scikit-learn"): load_digits_split()
    with pytest.raises(ImportError, match=r"papercode\[lora_compression\]"): make_task_suite(1, 1)


def _merged_forward(suite, lora, k):
    "Per-task forward with the adapter merged into the weights, written with F.linear (independent of the stacked code)."
    h = suite.x_test
    for s in ("fc1", "fc2", "head"):
        h = F.linear(h, suite.W[s] + lora[s].delta().float(), suite.b[s])
        if s != "head": h = torch.relu(h)
    return h


@pytest.fixture(scope="module")
def small_suite():
    suite = make_task_suite(2, 2, pretrain_steps=100, seed=0)
    return suite, train_task_loras(suite, steps=60, seed=0)


def test_suite_and_training(small_suite):
    suite, loras = small_suite
    assert suite.base_accuracy > 0.9  # a pretrained digit classifier
    assert suite.maps.shape == (4, 10) and suite.family.tolist() == [0, 0, 1, 1]
    assert all(sorted(m.tolist()) == list(range(10)) for m in suite.maps)  # relabellings are permutations
    # tasks of one family are the family's permutation with one transposition each: they differ in at most 4 labels
    assert int((suite.maps[0] != suite.maps[1]).sum()) <= 4 and int((suite.maps[2] != suite.maps[3]).sum()) <= 4
    acc = task_accuracy(suite, loras)
    for t, nm in enumerate(loras.names):
        pred = _merged_forward(suite, loras[nm], t).argmax(-1)
        assert float((pred == suite.maps[t, suite.y_test]).float().mean()) == pytest.approx(float(acc[t]), abs=1 / 450)
    base = task_accuracy(suite, None)
    fixed = (suite.maps == torch.arange(10)).float()  # the base model is right only on labels the map leaves fixed
    assert (base <= fixed.mean(1) + 0.1).all() and (acc > base + 0.3).all()


def test_full_rank_compression_keeps_accuracy(small_suite):
    suite, loras = small_suite
    sub = LoraCollection({n: loras[n] for n in loras.names[:2]})
    exact = jd_full(sub, 8, dtype=torch.float64)  # rank 8 = 2 adapters × rank 4: the joint span
    assert exact.errors().max() < 1e-10
    from dataclasses import replace
    s2 = replace(suite, maps=suite.maps[:2], family=suite.family[:2])
    assert task_accuracy(s2, exact).tolist() == task_accuracy(s2, sub).tolist()

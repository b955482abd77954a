"""The bundled breast-cancer population: what it contains, and that the subspace bound runs on it."""
import numpy as np
import torch

from papercode.sliced_mi import breast_cancer_task, train_subspace


def test_breast_cancer_task_is_the_scaled_sklearn_data():
    from sklearn.datasets import load_breast_cancer
    X, y = load_breast_cancer(return_X_y=True)
    t = breast_cancer_task()
    assert t.X.shape == (569, 30) and t.C == 2 and t.name == "breast_cancer"
    assert t.y.bincount().tolist() == [212, 357]  # malignant, benign
    assert float(t.X.min()) == 0.0 and float(t.X.max()) == 1.0
    assert np.allclose(t.X[:, 0].numpy(), (X[:, 0] - X[:, 0].min()) / np.ptp(X[:, 0]), atol=1e-6)
    assert (t.y.numpy() == y).all()


def test_a_subspace_bound_on_breast_cancer():
    t = breast_cancer_task()
    r = train_subspace(t.X, t.y, n=200, d=4, epochs=60, qat_epochs=20, seed=1)
    assert 0 <= r.train_err <= 1 and 0 <= r.pop_err <= 1
    assert np.isfinite(r.risk_bound) and r.risk_bound >= r.train_err

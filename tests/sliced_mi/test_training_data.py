"""The bundled breast-cancer population: what it contains, and that the subspace bound runs on it."""
import math

import numpy as np
import torch

from papercode.sliced_mi import breast_cancer_task, train_regularized, train_subspace


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
    r = train_subspace(t.X, t.y, n=200, d=4, epochs=60, qat_epochs=20, extra_bits=3.0, seed=1)
    assert 0 <= r.train_err <= 1 and 0 <= r.pop_err <= 1
    b = r.bound
    assert r.risk_bound == r.train_err + b.value
    assert b.constants["extra_bits"] == 3.0 and b.n == r.n == 200  # the run's own settings reach the bound
    closed = math.sqrt(2 * 0.25 * (r.d * math.log(r.K) + b.constants["extra_bits"] * math.log(2)) / r.n)
    assert abs(b.value - closed) < 1e-12


def test_converged_is_false_with_too_few_epochs_to_judge():
    t = breast_cancer_task()
    kw = dict(n=50, d=2, K=17, lr=0.0, seed=0)  # lr = 0 and a level at 0: every loss is equal, only the epoch count can say no
    for qat in (0, 3):
        assert not train_subspace(t.X, t.y, epochs=1, qat_epochs=qat, **kw).converged
    assert train_subspace(t.X, t.y, epochs=20, qat_epochs=3, **kw).converged  # enough epochs, flat loss: converged


def test_regularized_run_counts_clipped_coordinates():
    t = breast_cancer_task()
    kw = dict(n=200, d=4, lam=1.0, epochs=30, seed=0)
    tiny, huge = train_regularized(t.X, t.y, radius=1e-4, **kw), train_regularized(t.X, t.y, radius=1e6, **kw)
    assert 0 < tiny.clipped <= 4 and huge.clipped == 0
    assert tiny.off_subspace == huge.off_subspace  # the same training; only the grid differs


def test_bound_explorer_slides_over_d_K_and_n():
    from papercode.sliced_mi.experiments import bound_explorer
    s = lambda v: dict(train=v, pop=v + 0.01, risk_bound=v + 0.2)
    r = dict(sweep_d={10: s(0.2), 20: s(0.1)}, sweep_K={4: s(0.15)}, sweep_n={250: s(0.13), 1000: s(0.12)})
    f = bound_explorer(r)
    assert [st.label for st in f.layout.sliders[0].steps] == ["d (K = 16)", "K (d = 20)", "n (d = 20, K = 16)"]
    n_traces = [tr for tr in f.data[8:] if tr.name == "bound on population error"]
    assert list(n_traces[0].x) == ["250", "1000"] and list(n_traces[0].y) == [0.33, 0.32]
    old = bound_explorer({k: v for k, v in r.items() if k != "sweep_n"})  # runs stored before the n sweep
    assert len(old.layout.sliders[0].steps) == 2

"""Independent checks of svd_compress / jd_full / jd_diag / cluster_jd: closed forms, dense computations and brute force on small cases."""
import itertools

import pytest
import torch

from papercode.core.models.lora import LoraCollection, LoraFactors
from papercode.core.testing import assert_close
from papercode.lora_compression.cluster import adjusted_rand_index, cluster_jd
from papercode.lora_compression.compress import (adapter_weights, factored_svd, jd_diag, jd_diag_slot, jd_full,
                                                 svd_compress)
from papercode.lora_compression.data import make_lora_collection, stack_slot

S0 = "layers.0.q_proj"


def _coll(n=10, d_out=30, d_in=26, r0=4, **kw):
    return make_lora_collection(n, d_out, d_in, r0, **kw)


def _regauge(coll, seed=0):
    "The same adapters with (B R, R^-1 A) and a different alpha: identical ΔW."
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n in coll.names:
        out[n] = {}
        for s, f in coll[n].items():
            R = torch.randn(f.r, f.r, generator=g, dtype=f.A.dtype) + 3 * torch.eye(f.r, dtype=f.A.dtype)
            out[n][s] = LoraFactors(torch.linalg.solve(R, f.A), f.B @ R * 2.0, alpha=f.alpha / 2)
    return LoraCollection(out)


def test_factored_svd_equals_dense():
    st = stack_slot(_coll(r0=6).collection, S0)
    U, S, V = factored_svd(st.A, st.B)
    for i in range(st.n):
        D = st.delta(i)
        Ud, Sd, Vdh = torch.linalg.svd(D)
        assert_close(S[i], Sd[:6], rtol=1e-10, atol=1e-12)
        for r in (1, 3, 6):  # subspaces through projectors (gauge-free)
            assert_close(U[i][:, :r] @ U[i][:, :r].T, Ud[:, :r] @ Ud[:, :r].T, rtol=0, atol=1e-8)
        assert_close(U[i] @ torch.diag(S[i]) @ V[i].T, D, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", ["full", "diag", "svd"])
def test_errors_factored_equal_dense(variant):
    c = _coll(n=8, noise=0.2, n_slots=2).collection
    comp = {"full": lambda: jd_full(c, 5), "diag": lambda: jd_diag(c, 5, max_iter=30), "svd": lambda: svd_compress(c, 2)}[variant]()
    E = comp.errors()
    for j, s in enumerate(comp.slots):
        st = comp.originals[s]
        for i, n in enumerate(comp.names):
            D = st.delta(i)
            assert_close(E[i, j], ((D - comp.delta(n, s)) ** 2).sum() / (D ** 2).sum(), rtol=1e-7, atol=1e-12)
    assert_close(comp.errors(squared=False), E.sqrt(), rtol=1e-12, atol=0)


def test_jd_full_core_is_lstsq_for_random_bases():
    c = _coll(n=3).collection
    comp = jd_full(c, 4, init="random", max_iter=1)
    st = comp.originals[S0]
    U, V = comp.U[S0][0], comp.V[S0][0]
    for i in range(3):
        sol = torch.linalg.lstsq(torch.kron(V, U), st.delta(i).T.reshape(-1, 1)).solution.reshape(4, 4).T
        assert_close(comp.core[S0][i], sol, rtol=1e-9, atol=1e-11)


def test_jd_diag_core_is_lstsq_over_diagonals():
    c = _coll(n=4).collection
    comp = jd_diag(c, 6, init="random", max_iter=3)
    st = comp.originals[S0]
    U, V = comp.U[S0][0], comp.V[S0][0]
    K = torch.stack([torch.outer(U[:, k], V[:, k]).reshape(-1) for k in range(6)], 1)
    for i in range(4):
        sol = torch.linalg.lstsq(K, st.delta(i).reshape(-1, 1)).solution[:, 0]
        assert_close(comp.core[S0][i], sol, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", ["identical", "shared_subspace"])
def test_shared_subspace_is_exact_at_r0(mode):
    c = _coll(n=12, mode=mode).collection
    assert jd_full(c, 4).errors().max() < 1e-12


def test_exact_at_sum_of_ranks_from_random_init_one_sweep():
    c = _coll(n=5, r0=3).collection
    for seed in range(3):
        assert jd_full(c, 15, init="random", seed=seed, max_iter=1).errors().max() < 1e-12


def test_jd_diag_block_solution_is_a_fixed_point():
    "Block bases: U = [U_1..U_n], V = [V_1..V_n], s_i = own singular values: zero error; ALS from it stays at zero."
    c = _coll(n=4, r0=3, d_out=20, d_in=18).collection
    st = stack_slot(c, S0)
    Ui, S, Vi = factored_svd(st.A, st.B)
    U = torch.cat(list(Ui), 1); V = torch.cat(list(Vi), 1)
    out = jd_diag_slot(st, adapter_weights(st, "normalized"), 12, 20, 1e-15, "svd", torch.Generator(), 1e-12, warm=(U, V))
    assert max(out[5]) < 1e-12
    s = out[2]
    recon = torch.stack([out[0] @ torch.diag(s[i]) @ out[1].T for i in range(4)])
    assert_close(recon, torch.stack([st.delta(i) for i in range(4)]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_orthogonal_flat_bound(seed):
    c = make_lora_collection(5, 30, 28, 4, mode="orthogonal_flat", seed=seed).collection
    for r in (2, 4, 7, 12, 20):
        bound = 1 - r / 20
        e_rand = jd_full(c, r, init="random", seed=seed).errors().mean().item()
        e_svd = jd_full(c, r).errors().mean().item()
        assert e_rand >= bound - 1e-10 and e_svd >= bound - 1e-10
        assert abs(e_svd - bound) < 1e-8


@pytest.mark.parametrize("fit", ["full", "diag", "cluster"])
def test_lower_bound_eckart_young(fit):
    c = _coll(n=12, r0=6, noise=0.3, n_clusters=2).collection
    for r in (2, 4):
        tail = svd_compress(c, r).errors()
        comp = {"full": lambda: jd_full(c, r), "diag": lambda: jd_diag(c, r, max_iter=50),
                "cluster": lambda: cluster_jd(c, r, 2)}[fit]()
        assert bool((comp.errors() >= tail - 1e-10).all())


def test_gauge_invariance_of_the_adapters():
    c = _coll(n=8, noise=0.2, n_slots=2).collection
    c2 = _regauge(c)
    for f in (lambda x: jd_full(x, 5), lambda x: jd_diag(x, 5, max_iter=20), lambda x: svd_compress(x, 3),
              lambda x: cluster_jd(x, 4, 2)):
        a, b = f(c), f(c2)
        for n in c.names:
            for s in c.slots:
                assert_close(a.delta(n, s), b.delta(n, s), rtol=1e-7, atol=1e-9)


def test_permutation_equivariance():
    syn = _coll(n=10, noise=0.2, n_clusters=2)
    c = syn.collection
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    cp = c.subset([c.names[i] for i in perm])
    for f in (lambda x: jd_full(x, 5), lambda x: svd_compress(x, 3), lambda x: jd_diag(x, 5, max_iter=20)):
        a, b = f(c), f(cp)
        assert_close(b.errors(), a.errors()[perm], rtol=1e-7, atol=1e-10)
        for n in c.names:
            assert_close(a.delta(n, S0), b.delta(n, S0), rtol=1e-7, atol=1e-9)


def test_scale_equivariance_with_normalisation():
    c = _coll(n=6, noise=0.2).collection
    names = list(c.names)
    scaled = {n: dict(c[n]) for n in names}
    f = scaled[names[2]][S0]
    scaled[names[2]][S0] = LoraFactors(f.A, 7.0 * f.B, f.alpha)
    a, b = jd_full(c, 4), jd_full(LoraCollection(scaled), 4)
    assert_close(b.delta(names[2], S0), 7.0 * a.delta(names[2], S0), rtol=1e-8, atol=1e-10)
    assert_close(b.errors(), a.errors(), rtol=1e-8, atol=1e-12)
    # without normalisation the big adapter pulls the basis towards itself
    u = jd_full(LoraCollection(scaled), 4, weighting="none")
    assert u.errors()[2, 0] < b.errors()[2, 0]


def test_basis_gauge_rotations():
    c = _coll(n=6).collection
    a = jd_full(c, 4)
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))[0]
    P = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))[0]
    U, V, C = a.U[S0][0], a.V[S0][0], a.core[S0]
    for i in range(6):
        assert_close((U @ Q) @ (Q.T @ C[i] @ P) @ (V @ P).T, a.delta(c.names[i], S0), rtol=1e-10, atol=1e-12)


def test_error_non_increasing_in_rank():
    c = make_lora_collection(4, 16, 14, 3, mode="orthogonal_flat", seed=2).collection
    errs = [jd_full(c, r).errors().mean().item() for r in range(1, 13)]
    assert all(b <= a + 1e-10 for a, b in zip(errs, errs[1:])), errs


def test_memory_formulas():
    c = _coll(n=7, d_out=30, d_in=26, r0=4, n_slots=3).collection
    din_dout = 56
    assert svd_compress(c, 2).memory().compressed == 3 * 7 * 2 * (din_dout + 1)
    assert jd_full(c, 5).memory().compressed == 3 * (5 * din_dout + 7 * 25)
    assert jd_diag(c, 5, max_iter=2).memory().compressed == 3 * (5 * din_dout + 7 * 5)
    m = cluster_jd(c, 5, 2).memory()
    assert m.compressed == 3 * (2 * 5 * din_dout + 7 * 25) and m.original == 3 * 7 * 4 * din_dout


def test_mixed_ranks_pad_exactly():
    mixed = make_lora_collection(9, 24, 20, 8, ranks=(2, 4, 8), seed=1).collection
    comp = jd_full(mixed, 20)  # >= sum of ranks? no: 42 > 20, but the joint span is smaller (shared dims)
    assert comp.memory().original == 3 * (2 + 4 + 8) * 44
    assert_close(svd_compress(mixed, 2).errors()[0::3], torch.zeros(3, 1, dtype=torch.float64), rtol=0, atol=1e-12)


def test_adjusted_rand_index_brute_force():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        a, b = torch.randint(3, (15,), generator=g), torch.randint(4, (15,), generator=g)
        pairs = list(itertools.combinations(range(15), 2))
        same_a = torch.tensor([bool(a[i] == a[j]) for i, j in pairs]); same_b = torch.tensor([bool(b[i] == b[j]) for i, j in pairs])
        n11 = float((same_a & same_b).sum()); na, nb, N = float(same_a.sum()), float(same_b.sum()), len(pairs)
        exp = na * nb / N
        ari = (n11 - exp) / ((na + nb) / 2 - exp)
        assert abs(adjusted_rand_index(a, b) - ari) < 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_clusters_recovered(seed):
    syn = make_lora_collection(30, 24, 24, 3, n_slots=2, mode="planted_clusters", n_clusters=3, noise=0.02, seed=seed)
    cj = cluster_jd(syn.collection, 3, 3, seed=seed)
    assert adjusted_rand_index(cj.assign, syn.labels) == 1.0
    assert cj.errors().max() < 0.05  # noise 0.02 on both factors leaves ~1-2 % of the energy outside the planted spaces


def test_cluster_permutation_equivariance():
    syn = make_lora_collection(24, 24, 24, 3, mode="planted_clusters", n_clusters=3, noise=0.05, seed=4)
    c = syn.collection
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(1)).tolist()
    a = cluster_jd(c, 3, 3)
    b = cluster_jd(c.subset([c.names[i] for i in perm]), 3, 3)
    assert adjusted_rand_index(a.assign[perm], b.assign) == 1.0
    assert_close(b.errors(), a.errors()[perm], rtol=1e-6, atol=1e-10)


def test_bad_input():
    c = _coll(n=4).collection
    with pytest.raises(ValueError, match="exceeds min"): jd_full(c, 27)
    with pytest.raises(ValueError, match="cannot increase the rank"): svd_compress(c, 5)
    with pytest.raises(ValueError, match="only 4 adapters"): cluster_jd(c, 2, 5)
    with pytest.raises(ValueError, match="n_clusters"): cluster_jd(c, 2, 0)
    with pytest.raises(ValueError, match="max_iter"): jd_diag(c, 2, max_iter=0)
    with pytest.raises(ValueError, match="tol"): jd_full(c, 2, tol=-1.0)
    with pytest.raises(ValueError, match="is empty"): jd_full(LoraCollection(), 2)
    with pytest.raises(ValueError, match="non-finite"):
        LoraFactors(torch.full((2, 3), float("inf")), torch.zeros(4, 2), 1.0)

"Independent checks of the FWHT, the projections and the subspace wrapper (scipy's Hadamard matrix, closed forms)."
import math

import pytest
import torch
from scipy.linalg import hadamard
from torch import nn

from papercode.sliced_mi import SubspaceModel, fwht, make_projection


@pytest.mark.parametrize("L", [1, 2, 8, 64, 1024])
def test_fwht_matches_scipy_hadamard(L):
    x = torch.randn(3, L, dtype=torch.float64, generator=torch.Generator().manual_seed(L))
    H = torch.tensor(hadamard(L), dtype=torch.float64)
    torch.testing.assert_close(fwht(x), x @ H.T)


def test_fwht_standard_vector_and_involution():
    x = torch.tensor([1., 0, 1, 0, 0, 1, 1, 0], dtype=torch.float64)
    assert fwht(x).tolist() == [4, 2, 0, -2, 0, 2, 0, 2]
    H = fwht(torch.eye(16, dtype=torch.float64))
    torch.testing.assert_close(H @ H, 16 * torch.eye(16, dtype=torch.float64))
    torch.testing.assert_close(fwht(fwht(x, normalized=True), normalized=True), x)


def test_fwht_bad_input():
    with pytest.raises(ValueError, match="power of two"):
        fwht(torch.zeros(12))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fwht([1.0, 2.0])


def test_fastfood_column_norms_and_isotropy():
    D, d = 700, 6  # D not a power of two: the truncated case
    Ms = [make_projection(D, d, "fastfood", seed=s, dtype=torch.float64).dense() for s in range(300)]
    norms = torch.stack([M.norm(dim=0) for M in Ms])
    assert (norms - 1).abs().max() < 0.2, norms.min().item()  # near-unit columns for every seed
    G = torch.stack([M.T @ M for M in Ms]).mean(0)
    torch.testing.assert_close(G, torch.eye(d, dtype=torch.float64), atol=0.02, rtol=0)  # E[ΘᵀΘ] ≈ I
    M = make_projection(1024, 8, "fastfood", seed=0, dtype=torch.float64).dense()  # D = L: exactly unit columns
    torch.testing.assert_close(M.norm(dim=0), torch.ones(8, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["qr", "gaussian", "sparse", "fastfood"])
def test_transpose_is_adjoint_and_dense_agrees(kind):
    P = make_projection(513, 9, kind, seed=3, dtype=torch.float64)
    M = P.dense()
    v = torch.randn(4, 513, dtype=torch.float64)
    torch.testing.assert_close(P.transpose(v), v @ M)
    w = torch.randn(9, dtype=torch.float64)
    torch.testing.assert_close(P.apply(w), M @ w)


def test_memory_orders():
    D, d = 2 ** 14, 64
    dense, ff, sp = (make_projection(D, d, k, 0) for k in ("gaussian", "fastfood", "sparse"))
    assert dense.nbytes == 4 * D * d
    assert ff.nbytes < 40 * D  # O(L)
    assert sp.nbytes < dense.nbytes / 10


def test_subspace_gradcheck_float64():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    sm = SubspaceModel(net, d=4, projection="fastfood", seed=1)
    x = torch.randn(6, 3, dtype=torch.float64)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: sm(x, w=w), (w,))
    # gradient in w′ is Θᵀ ∇θ
    th = sm.theta(w.detach()).clone().requires_grad_(True)
    out = torch.func.functional_call(net, dict(zip(sm.names, _split(th, sm.shapes))), (x,)).square().sum()
    gth, = torch.autograd.grad(out, th)
    gw, = torch.autograd.grad(sm(x, w=w).square().sum(), w)
    torch.testing.assert_close(gw, sm.projection.transpose(gth))


def _split(th, shapes):
    out, i = [], 0
    for s in shapes:
        n = math.prod(s); out.append(th[i:i + n].reshape(s)); i += n
    return out


def test_identity_subspace_equals_plain_training():
    torch.manual_seed(1)
    X, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    a = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    b = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)); b.load_state_dict(a.state_dict())
    D = sum(p.numel() for p in b.parameters())
    sm = SubspaceModel(b, d=D, projection="identity")
    torch.testing.assert_close(sm(X), a(X))  # w′ = 0 gives θ₀
    oa, ob = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD([sm.w], lr=0.1)
    for _ in range(20):
        for m, o in ((a, oa), (sm, ob)):
            loss = nn.functional.cross_entropy(m(X), y); o.zero_grad(); loss.backward(); o.step()
    torch.testing.assert_close(sm(X), a(X), atol=1e-5, rtol=1e-5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="0 < d <= D"):
        make_projection(5, 6)
    with pytest.raises(ValueError, match="no trainable parameters"):
        SubspaceModel(nn.Sequential(nn.ReLU()), d=1)
    net = nn.Linear(2, 2)
    with torch.no_grad(): net.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        SubspaceModel(net, d=2)
    with pytest.raises(ValueError, match="module has D = 6"):
        SubspaceModel(nn.Linear(2, 2), d=2, projection=make_projection(7, 2))


def test_subspace_model_copies_the_module_and_moves_theta():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    net[2].bias.requires_grad_(False)  # a frozen parameter stays out of θ₀
    flags = [p.requires_grad for p in net.parameters()]
    a = SubspaceModel(net, d=2, seed=0)
    b = SubspaceModel(net, d=2, seed=1)  # wrapping the same module twice works
    assert [p.requires_grad for p in net.parameters()] == flags  # the caller's flags are untouched
    assert a.D == b.D == 3 * 4 + 4 + 4 * 2
    assert [k for k, p in a.named_parameters() if p.requires_grad] == ["w"]
    x = torch.randn(5, 3)
    torch.testing.assert_close(a(x), net(x))
    for kind in ("qr", "sparse", "fastfood"):
        m = SubspaceModel(net, d=2, projection=kind, seed=3)
        ref = m(x).double()
        m = m.to(torch.float64)
        assert m.theta0.dtype == m.w.dtype == m.projection.dtype == torch.float64
        assert all(t.dtype == torch.float64 for t in m.projection.tensors.values() if t.is_floating_point())
        assert all(not t.is_floating_point() for k, t in m.projection.tensors.items() if k in ("rows", "cols", "perm", "iperm"))
        torch.testing.assert_close(m(x.double()), ref, atol=1e-5, rtol=1e-5)
    assert all(p.dtype == torch.float32 for p in net.parameters())  # .to() on the wrapper leaves the caller's module
    if torch.cuda.is_available():
        m = SubspaceModel(net, d=2, projection="fastfood").to("cuda")
        assert all(t.is_cuda for t in m.projection.tensors.values())
        m(x.cuda())

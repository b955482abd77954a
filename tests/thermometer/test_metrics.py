"Calibration metrics against torchmetrics, brute-force loops and closed forms."
import pytest
import torch

from papercode.thermometer.metrics import (accuracy, brier, calibration_metrics, classwise_ece, ece, mce, nll,
                                           probs_from_logits, reliability_diagram, top_label_ece)

try:
    import torchmetrics.functional.classification as tm
except ImportError:  # the brute-force and closed-form tests below still run
    tm = None
needs_tm = pytest.mark.skipif(tm is None, reason="torchmetrics not installed")


def random_preds(n, C, scale, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(scale * torch.randn(n, C, generator=g), 1)
    y = torch.randint(0, C, (n,), generator=g)
    return p, y


@needs_tm
@pytest.mark.parametrize("C", [2, 3, 5, 10])
@pytest.mark.parametrize("n_bins", [1, 10, 15])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_matches_torchmetrics(C, n_bins, norm):
    for seed in range(3):
        p, y = random_preds(500, C, 2.0, seed + 100 * C)
        ref = tm.multiclass_calibration_error(p, y, num_classes=C, n_bins=n_bins, norm=norm)
        torch.testing.assert_close(ece(p, y, n_bins, norm), ref, rtol=1e-5, atol=1e-6)


@needs_tm
def test_mce_is_max_norm_and_matches_torchmetrics():
    p, y = random_preds(300, 4, 3.0, 7)
    torch.testing.assert_close(mce(p, y), tm.multiclass_calibration_error(p, y, num_classes=4, n_bins=10, norm="max"))


def brute_ece(p, y, M, by_class=False):
    "Literal transcription of the definitions: loops over bins (lo, hi] (and predicted classes)."
    conf, pred = p.max(1)
    N = len(y); tot = 0.0; gaps = []
    classes = sorted(set(pred.tolist())) if by_class else [None]
    for b in range(M):
        lo, hi = b / M, (b + 1) / M
        for c in classes:
            sel = [i for i in range(N) if lo < conf[i].item() <= hi and (c is None or pred[i].item() == c)]
            if not sel: continue
            acc = sum(float(pred[i] == y[i]) for i in sel) / len(sel)
            cf = sum(conf[i].item() for i in sel) / len(sel)
            tot += len(sel) / N * abs(acc - cf); gaps.append(abs(acc - cf))
    return tot, max(gaps)


def test_ece_tl_ece_brute_force():
    for seed in range(4):
        p, y = random_preds(120, 3, 2.5, seed)
        e, m = brute_ece(p.double(), y, 10)
        assert abs(ece(p.double(), y).item() - e) < 1e-12 and abs(mce(p.double(), y).item() - m) < 1e-12
        tl, _ = brute_ece(p.double(), y, 10, by_class=True)
        assert abs(top_label_ece(p.double(), y).item() - tl) < 1e-12
        assert top_label_ece(p, y) >= ece(p, y) - 1e-6


def test_classwise_brute_force():
    p, y = random_preds(150, 3, 2.0, 3)
    p = p.double(); N, C, M = 150, 3, 10
    tot = 0.0
    for c in range(C):
        for b in range(M):
            lo, hi = b / M, (b + 1) / M
            sel = [i for i in range(N) if (lo < p[i, c] <= hi) or (b == 0 and p[i, c] == 0)]
            if not sel: continue
            freq = sum(float(y[i] == c) for i in sel) / len(sel); cf = sum(p[i, c].item() for i in sel) / len(sel)
            tot += len(sel) / N * abs(freq - cf)
    assert abs(classwise_ece(p, y).item() - tot / C) < 1e-12


def test_calibrated_predictor_ece_vanishes():
    "Labels sampled from the predicted distribution: ECE is sampling noise, shrinking with N (the definition of calibration, Guo et al. 2017, eq. 1)."
    means = {}
    for n in [2_000, 20_000]:
        vals = []
        for seed in range(5):
            g = torch.Generator().manual_seed(seed)
            p = torch.softmax(2 * torch.randn(n, 4, generator=g), 1)
            y = torch.multinomial(p, 1, generator=g)[:, 0]
            vals.append(ece(p, y).item())
        means[n] = sum(vals) / len(vals)
    assert means[20_000] < 0.01
    assert means[20_000] < means[2_000] / 2  # ~ 1/sqrt(N): a factor ~3 expected


def test_miscalibrated_predictor_has_large_ece():
    g = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(20_000, 4, generator=g); y = torch.multinomial(torch.softmax(z, 1), 1, generator=g)[:, 0]
    assert ece(probs_from_logits(3 * z), y) > 0.1


def test_closed_forms():
    p = torch.tensor([[0.9, 0.1]] * 10); y = torch.tensor([0] * 6 + [1] * 4)
    assert abs(ece(p, y).item() - 0.3) < 1e-6 and abs(mce(p, y).item() - 0.3) < 1e-6
    pb = torch.tensor([[0.8, 0.2], [0.4, 0.6]]); yb = torch.tensor([0, 0])
    assert abs(brier(pb, yb).item() - 0.2) < 1e-7 and abs(brier(pb, yb, "sum_classes").item() - 0.4) < 1e-7


def test_nll_brier_against_torch():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, 5, generator=g, dtype=torch.float64); y = torch.randint(0, 5, (64,), generator=g)
    p = torch.softmax(z, 1)
    torch.testing.assert_close(nll(p, y), torch.nn.functional.cross_entropy(z, y))
    oh = torch.nn.functional.one_hot(y, 5).double()
    torch.testing.assert_close(brier(p, y, "sum_classes"), ((p - oh) ** 2).sum(1).mean())
    assert accuracy(p, y).item() == (z.argmax(1) == y).double().mean().item()


def test_reliability_and_report_consistent():
    p, y = random_preds(400, 4, 2.0, 11)
    r = reliability_diagram(p, y)
    assert int(r.count.sum()) == 400 and r.edges.shape == (11,)
    ne = r.count > 0
    assert torch.isnan(r.accuracy[~ne]).all()
    m = calibration_metrics(p, y)
    assert abs(m.ece - r.ece) < 1e-7 and abs(m.mce - r.mce) < 1e-7 and m.n == 400


@pytest.mark.parametrize("bad, msg", [
    (lambda: ece(torch.tensor([[0.5, 0.6]]), torch.tensor([0])), "rows must sum to one"),
    (lambda: ece(torch.tensor([[0.5, 0.5]]), torch.tensor([3])), "labels: out of range"),
    (lambda: ece(torch.tensor([[0.5, 0.5]]), torch.tensor([-1])), "labels: out of range"),
    (lambda: ece(torch.tensor([[1.5, -0.5]]), torch.tensor([0])), "negative"),
    (lambda: ece(torch.tensor([[float("nan"), 0.5]]), torch.tensor([0])), "NaN"),
    (lambda: ece(torch.tensor([0.5, 0.5]), torch.tensor([0])), "2-d"),
    (lambda: ece(torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1])), "labels: expected shape"),
    (lambda: ece(torch.tensor([[0.5, 0.5]]), torch.tensor([0]), n_bins=0), "n_bins"),
    (lambda: brier(torch.tensor([[0.5, 0.5]]), torch.tensor([0]), "bogus"), "reduction"),
    (lambda: probs_from_logits(torch.zeros(2, 2), -1.0), "temperature"),
])
def test_bad_input(bad, msg):
    with pytest.raises(ValueError, match=msg):
        bad()

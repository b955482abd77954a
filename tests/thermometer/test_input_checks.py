"Bad input that used to pass silently (NaN results, training on nothing) or fail deep inside torch is named."
import math

import numpy as np
import pytest
import torch

from papercode.thermometer.benchmark import evaluate_transfer, leave_one_out, simulate_tasks, summarize_seeds
from papercode.thermometer.metrics import accuracy, brier, ece, nll, probs_from_logits
from papercode.thermometer.model import CalibTask, Thermometer, fit_thermometer, gamma_nll, predict_temperature
from papercode.thermometer.tasks import load_benchmark, make_task, number_word, project_features, roman
from papercode.thermometer.temperature import pooled_temperature, temperature_scale, temperature_scale_cv

INF = float("inf")
P = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
Y = torch.tensor([0, 1])


def small_task(n=6, C=3, F=4, seed=0, name="t"):
    g = torch.Generator().manual_seed(seed)
    z = 2 * torch.randn(n, C, generator=g)
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g)[:, 0]
    return CalibTask(name, z, torch.randn(n, F, generator=g), y)


@pytest.mark.parametrize("logits, msg", [
    (torch.tensor([[float("nan"), 1.0]]), "logits: contains NaN"),  # softmax gave a NaN row
    (torch.tensor([[INF, 1.0]]), r"\+inf"),
    (torch.tensor([[-INF, -INF], [0.0, 1.0]]), "at least one finite option"),
    (torch.tensor([1.0, 2.0]), r"logits: expected a floating-point tensor \(N, C\)"),
])
def test_probs_from_logits_rejects_logits_that_give_nan(logits, msg):
    with pytest.raises(ValueError, match=msg):
        probs_from_logits(logits)


def test_probs_from_logits_temperature_checked():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="temperature: shape"):
        probs_from_logits(z, torch.ones(3, 1))  # was a RuntimeError from broadcasting
    with pytest.raises(ValueError, match="temperature:"):
        probs_from_logits(z, "2")
    per_row = probs_from_logits(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), torch.tensor([[1.0], [2.0]]))
    torch.testing.assert_close(per_row[1], torch.softmax(torch.tensor([0.0, 0.5]), 0))


@pytest.mark.parametrize("probs, labels, msg", [
    (P, torch.tensor([0.0, 1.0]), "labels: expected integers"),  # was a silent 1.0
    (P, torch.tensor([5, 7]), r"labels: out of range"),  # was a silent 0.0
    (P, torch.tensor([0, 1, 1]), r"labels: expected shape \(2,\)"),
    (torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]), "probs: contains NaN"),  # NaN was the arg-max
    (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), "probs: is empty"),  # was NaN
])
def test_accuracy_checks_its_input(probs, labels, msg):
    with pytest.raises(ValueError, match=msg):
        accuracy(probs, labels)


def test_labels_that_are_not_a_tensor_are_named():
    with pytest.raises(ValueError, match="labels: expected an integer torch.Tensor .* got ndarray"):
        ece(P, np.array([0, 1]))  # said "expected shape (2,), got (2,)"


def test_numpy_counts_and_narrow_integer_labels_work():
    assert ece(P, Y, n_bins=np.int64(10)).item() == ece(P, Y).item()  # np.int64 n_bins was refused
    assert brier(P, Y.int()).item() == brier(P, Y).item()  # int32 labels crashed in one_hot
    assert nll(P, Y.to(torch.int8)).item() == nll(P, Y).item()  # int8 labels crashed in gather
    with pytest.raises(ValueError, match="n_bins"):
        ece(P, Y, n_bins=True)


def test_temperature_scale_settings_checked():
    z, y = small_task(40).logits, small_task(40).labels
    with pytest.raises(ValueError, match="max_iter"):
        temperature_scale(z, y, max_iter=0)  # returned tau = 1 unfitted
    with pytest.raises(ValueError, match="tol"):
        temperature_scale(z, y, tol=float("nan"))
    with pytest.raises(ValueError, match="labels: expected an integer tensor"):
        temperature_scale(z, y == 0)  # bool labels: RuntimeError from gather


def test_cv_folds_too_small_to_fit_are_named():
    t = small_task(3)
    with pytest.raises(ValueError, match="n_folds: with N = 3 examples and 2 folds"):
        temperature_scale_cv(t.logits, t.labels, n_folds=2)  # said "logits: need at least 2 examples, got 1"
    with pytest.raises(ValueError, match="n_folds: need an integer"):
        temperature_scale_cv(t.logits, t.labels, n_folds=2.5)
    t = small_task(8)
    cv = temperature_scale_cv(t.logits, t.labels, n_folds=np.int64(2), seed=np.int64(3))  # np seed: TypeError
    assert cv.seed == 3 and isinstance(cv.seed, int)


def test_pooled_temperature_entries_checked():
    t = small_task(6)
    with pytest.raises(ValueError, match="tasks: entry 1"):
        pooled_temperature([(t.logits, t.labels), (t.logits,)])


def test_thermometer_forward_checks_feature_width():
    with pytest.raises(ValueError, match=r"features: expected a tensor of shape \(N, 8\), got \(5, 7\)"):
        Thermometer(8)(torch.randn(5, 7))
    with pytest.raises(ValueError, match="in_features"):
        Thermometer(8.5)


def test_gamma_nll_outside_support_and_dtype():
    assert gamma_nll(torch.tensor([-1.0, 0.0])).tolist() == [INF, INF]  # -1 gave NaN
    tau = torch.tensor([0.5, 2.0], dtype=torch.float64)
    ref = -torch.distributions.Gamma(torch.tensor(1.25, dtype=torch.float64),
                                     torch.tensor(0.25, dtype=torch.float64)).log_prob(tau)
    torch.testing.assert_close(gamma_nll(tau), ref)  # was computed in float32
    with pytest.raises(ValueError, match="scale"):
        gamma_nll(torch.tensor(1.0), scale=0.0)


@pytest.mark.parametrize("kw, msg", [
    (dict(val_fraction=0.9), "leaves no training prompt"),  # trained on an empty split: NaN losses
    (dict(eval_every=0), "eval_every"),  # ZeroDivisionError
    (dict(lam=float("nan")), "lam"),  # NaN loss, trained silently
    (dict(prior=(0.0, 4.0)), "prior shape k"),  # infinite loss
    (dict(seed=1.5), "seed"),
])
def test_fit_thermometer_settings_checked(kw, msg):
    with pytest.raises(ValueError, match=msg):
        fit_thermometer([small_task(2), small_task(2, seed=1, name="u")], steps=2, **kw)


def test_fit_thermometer_numpy_seed_and_one_option_task():
    fit = fit_thermometer([small_task(6)], steps=2, seed=np.int64(4))  # was a TypeError
    assert fit.seed == 4
    t = small_task(6)
    with pytest.raises(ValueError, match="need at least 2"):
        fit_thermometer([(t.logits[:, :1], t.features, t.labels * 0)], steps=2)


def test_predict_temperature_messages():
    m = Thermometer(4, 2)
    with pytest.raises(ValueError, match=r"features: expected a tensor of shape \(N, 4\), got ndarray"):
        predict_temperature(m, np.zeros((3, 4)))  # said "got (3, 4)"
    with pytest.raises(ValueError, match="model:"):
        predict_temperature(torch.nn.Linear(4, 1), torch.zeros(3, 4))


def test_leave_one_out_held_out_checked():
    tasks = [small_task(8, seed=s, name=f"s{s}") for s in range(3)]
    for held, msg in [(["nope"], "held_out: no task named 'nope'"), ([3], "held_out: 3 is neither"),
                      ([1, 1], "names a task twice")]:
        with pytest.raises(ValueError, match=msg):
            leave_one_out(tasks, held_out=held, methods=["vanilla"])
    with pytest.raises(ValueError, match="methods: expected a sequence"):
        leave_one_out(tasks, methods="vanilla")
    assert leave_one_out(tasks, held_out=[-1], methods=["vanilla"]).rows[0]["task"] == "s2"


def test_transfer_rejects_test_tasks_seen_in_training():
    tasks = [small_task(8, seed=s, name=f"s{s}") for s in range(3)]
    with pytest.raises(ValueError, match=r"test: tasks also in train .*\['s1'\]"):
        evaluate_transfer(tasks[:2], tasks[1:], methods=["vanilla"])


def test_summarize_seeds_needs_the_same_methods():
    tasks = [small_task(8, seed=s, name=f"s{s}") for s in range(3)]
    runs = [leave_one_out(tasks, held_out=[0], methods=m) for m in (["vanilla"], ["vanilla", "ts_oracle"])]
    with pytest.raises(ValueError, match="results: the runs compare different methods"):
        summarize_seeds(runs)


def test_simulate_tasks_sizes_checked():
    with pytest.raises(ValueError, match="n_classes"):
        simulate_tasks(n_tasks=2, n_prompts=4, n_classes=1)
    assert simulate_tasks(n_tasks=2, n_prompts=4, seed=np.int64(1)).seed == 1


def test_task_generators_check_their_range():
    with pytest.raises(ValueError, match=r"n: expected an integer in \[0, 100\)"):
        number_word(-1)  # was "nineteen"
    with pytest.raises(ValueError, match=r"n: expected an integer in \[1, 4000\)"):
        roman(0)  # was ""
    with pytest.raises(ValueError, match="seed: expected an integer"):
        make_task("capital", 3, seed=1.5)
    assert make_task("capital", np.int64(3)).prompts == make_task("capital", 3).prompts


def test_benchmark_helpers_check_their_arguments():
    with pytest.raises(ValueError, match="families: expected a sequence"):
        load_benchmark("capital")  # read as seven one-letter family names
    with pytest.raises(ValueError, match=r"features: expected a tensor of shape \(N, 576\)"):
        project_features(torch.zeros(3, 10))


def test_thermometer_temperature_of_no_prompts():
    with pytest.raises(ValueError, match="features: no prompts"):
        Thermometer(4, 2).temperature(torch.zeros(0, 4))  # was NaN

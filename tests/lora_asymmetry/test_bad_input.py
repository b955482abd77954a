"""Bad input named, not silently turned into a number: mismatched task tensors (a length-1 label vector broadcasts into
an accuracy), labels outside the head, non-finite Δ, spectra or bound constants, integer factors, NaN biases, empty
init names."""
import dataclasses
import importlib.util

import pytest
import torch
from torch import nn

from papercode.core.testing import require
from papercode.lora_asymmetry.adapters import AsymLoRALinear, init_factors
from papercode.lora_asymmetry.theory import asymmetry_mc, info_bound, orthonormal

HAVE_PEFT = importlib.util.find_spec("peft") is not None


@pytest.fixture(scope="module")
def digits():
    require(HAVE_PEFT, 'peft is not installed (pip install -e ".[lora_asymmetry]")')
    from papercode.lora_asymmetry.finetune import digits_task, pretrain_digits
    return pretrain_digits(hidden=16, steps=20), digits_task("rotate", n_train=64, ood=("none",))


def _ft(task, base, **kw):
    from papercode.lora_asymmetry.finetune import finetune
    return finetune(task, mode="B", r=2, steps=2, base=base, **kw)


def test_finetune_refuses_mismatched_labels_instead_of_broadcasting(digits):
    base, task = digits
    one = task.y_test[:1]  # (1,) against 597 predictions: would broadcast into a plausible accuracy
    with pytest.raises(ValueError, match=r"task: test labels must be \(597,\), one per input, got \(1,\)"):
        _ft(dataclasses.replace(task, y_test=one), base)
    X, y = task.ood["none"]
    with pytest.raises(ValueError, match=r"task: ood 'none' labels must be \(597,\)"):
        _ft(dataclasses.replace(task, ood={"none": (X, y[:1])}), base)
    with pytest.raises(ValueError, match=r"task: test inputs are \(63,\) each, the training inputs \(64,\)"):
        _ft(dataclasses.replace(task, X_test=task.X_test[:, :63]), base)
    with pytest.raises(ValueError, match="task: train labels must be integer class indices"):
        _ft(dataclasses.replace(task, y_train=task.y_train.float()), base)


def test_finetune_refuses_labels_outside_the_head(digits):
    base, task = digits
    # test labels beyond the 10 classes would only ever score 0, silently; training labels gave a raw IndexError
    with pytest.raises(ValueError, match=r"task: test labels must lie in \[0, 10\) for the model's 10 outputs, got \[10, 19\]"):
        _ft(dataclasses.replace(task, y_test=task.y_test + 10), base)
    with pytest.raises(ValueError, match=r"task: train labels must lie in \[0, 10\).*got \[-1, "):
        _ft(dataclasses.replace(task, y_train=task.y_train - 1), base)


def test_finetune_and_digits_task_name_bad_arguments(digits):
    base, task = digits
    from papercode.lora_asymmetry.finetune import digits_task
    with pytest.raises(ValueError, match="eval_every: must be a positive integer, got 0"): _ft(task, base, eval_every=0)
    with pytest.raises(ValueError, match=r"ood: unknown shifts \['sepia'\]"): digits_task(ood=("blur", "sepia"))


def test_asymmetry_mc_refuses_non_finite_delta_and_power():
    d = torch.randn(4, 4, dtype=torch.float64); d[1, 2] = float("nan")
    with pytest.raises(ValueError, match="delta: contains NaN or inf"): asymmetry_mc(4, 2, n_draws=5, delta=d)
    with pytest.raises(ValueError, match=r"delta: must be a \(4, 4\) tensor, got list"): asymmetry_mc(4, 2, n_draws=5, delta=[[1.0] * 4] * 4)
    with pytest.raises(ValueError, match="power: must be a finite number, got nan"): asymmetry_mc(4, 2, n_draws=5, power=float("nan"))


def test_info_bound_refuses_non_finite_constants():
    with pytest.raises(ValueError, match="bits: must be a finite number >= 1, got nan"): info_bound([(4, 4)], 2, 10, bits=float("nan"))
    with pytest.raises(ValueError, match="sigma: must be a finite number > 0, got inf"): info_bound([(4, 4)], 2, 10, sigma=float("inf"))


def test_factors_refuse_integer_dtypes_one_d_weights_nan_biases_and_empty_init():
    with pytest.raises(ValueError, match="dtype: must be a floating-point dtype"): orthonormal(2, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"W0: expected a 2-d \(d_out, d_in\) weight, got \(5,\)"): init_factors(torch.randn(5), 2)
    lin = nn.Linear(6, 5)
    with torch.no_grad(): lin.bias[0] = float("nan")
    with pytest.raises(ValueError, match="base: bias contains NaN or inf"): AsymLoRALinear(lin, 2)
    with pytest.raises(ValueError, match="frozen_init: unknown ''"): AsymLoRALinear(nn.Linear(6, 5), 2, frozen_init="")


def test_similarity_refuses_a_cut_off_outside_0_1():
    from papercode.lora_asymmetry.theory import subspace_similarity
    x = torch.randn(50, 1, dtype=torch.float64); X = torch.cat([x, 2 * x], 1)  # rank 1: a negative cut-off kept the noise direction
    with pytest.raises(ValueError, match=r"tol: must be a relative cut-off in \[0, 1\), got -1"): subspace_similarity(X, torch.randn(50, 2), tol=-1)
    with pytest.raises(ValueError, match="tol: must be"): subspace_similarity(X, X, tol=1.0)


def test_booleans_are_not_sizes():
    with pytest.raises(ValueError, match="d, r: must be positive integers, got True, True"): asymmetry_mc(True, True, n_draws=5)
    with pytest.raises(ValueError, match="r: must be a positive integer, got True"): info_bound([(4, 4)], True, 10)
    with pytest.raises(ValueError, match="n: must be a positive integer, got True"): info_bound([(4, 4)], 2, True)

"""Edge cases of the offline LLM loader, PEFT adapter writing and the slider figure's fixed axis ranges."""
import json
import os

import numpy as np
import pytest
import torch

import papercode.core.models.llm as llm_mod
from papercode.core.models.llm import llm_missing, load_llm, score_choices, sequence_logps
from papercode.core.models.lora import LoraFactors, read_peft_adapter, write_peft_adapter
from papercode.core.plotting import slider_figure
from papercode.core.testing import assert_close, require

go = pytest.importorskip("plotly.graph_objects")


# ---- slider_figure: the fixed range is in the axis' units and keeps every drawn mark in view

def test_log_axis_range_is_in_decades():
    "plotly reads a log axis' range as log10 values; a range in data units squeezed 1..64 into a corner."
    fig = slider_figure([[go.Scatter(x=[1, 4, 16, 64], y=[1, 0.9, 0.7, 0.5])]], ["a"], xaxis=dict(type="log"))
    lo, hi = fig.layout.xaxis.range
    span = np.log10(64)
    assert_close(torch.tensor([lo, hi], dtype=torch.float64), torch.tensor([-0.05 * span, 1.05 * span], dtype=torch.float64),
                 rtol=1e-12, atol=1e-12)


def test_category_axis_gets_no_numeric_range():
    "Numeric-looking category labels used to set a range in their values, while categories sit at 0, 1, 2, ..."
    tr = dict(type="scatter", x=["5", "10", "50", "200"], y=[0.1, 0.2, 0.3, 0.4])
    fig = slider_figure([[tr]], ["a"], xaxis=dict(type="category"))
    assert fig.layout.xaxis.range is None


def test_the_callers_range_wins():
    "The docments offer `range` in `xaxis`; passing it raised TypeError (range given twice)."
    fig = slider_figure([[go.Scatter(x=[0, 1], y=[0, 1])]], ["a"], xaxis=dict(title="t", range=[0, 2]),
                        yaxis=dict(autorange="reversed"))
    assert fig.layout.xaxis.range == (0, 2)
    assert fig.layout.yaxis.range is None and fig.layout.yaxis.autorange == "reversed"


def test_whole_bars_and_error_bars_stay_in_view():
    fig = slider_figure([[go.Bar(x=[0, 1, 2], y=[5, 6, 7], error_y=dict(array=[1, 1, 2]))]], ["a"])
    (x0, x1), (y0, y1) = fig.layout.xaxis.range, fig.layout.yaxis.range
    assert y0 <= 0 and y1 >= 9  # bars start at 0; the last error bar reaches 9
    assert x0 <= -0.4 and x1 >= 2.4  # the edge bars are whole (default width 0.8)
    fig = slider_figure([[go.Scatter(x=[0, 1], y=[1, 2], error_y=dict(array=[1, 1]))]], ["a"])
    assert fig.layout.yaxis.range[0] <= 0 and fig.layout.yaxis.range[1] >= 3
    fig = slider_figure([[go.Bar(y=["a", "b"], x=[3, 4], orientation="h", base=[1, 2])]], ["a"])
    assert fig.layout.xaxis.range[0] <= 1 and fig.layout.xaxis.range[1] >= 6  # bars span base .. base + x


def test_traces_on_other_axes_do_not_set_the_main_range():
    "A histogram with a bar chart on x2/y2 (lora_compression's explorer): the bars' 0.3..1 hid the counts."
    errs = np.random.default_rng(0).uniform(0, 0.5, 60).tolist()
    fig = slider_figure([[go.Histogram(x=errs), go.Bar(x=["orig", "comp"], y=[1.0, 0.3], xaxis="x2", yaxis="y2")]],
                        ["k=2"])
    assert fig.layout.yaxis.range is None  # histogram counts: plotly's autorange
    fig = slider_figure([[go.Scatter(x=[0, 1], y=[10, 20]), go.Bar(x=["a", "b"], y=[1, 0.3], xaxis="x2", yaxis="y2")]],
                        ["a"])
    assert fig.layout.yaxis.range[0] > 9


def test_plain_scatter_frames_keep_their_range():
    "Unchanged behaviour: the range of all frames' points with a 5% margin; 0.5 around a single value."
    X = np.random.default_rng(0).normal(size=(50, 2))
    fig = slider_figure([[go.Scatter(x=X[:, 0] + t * X[:, 1], y=X[:, 1], mode="markers")] for t in (0, 1)], [0, 1])
    xs = np.concatenate([X[:, 0], X[:, 0] + X[:, 1]])
    pad = 0.05 * (xs.max() - xs.min())
    assert_close(torch.tensor(fig.layout.xaxis.range, dtype=torch.float64), torch.tensor([xs.min() - pad, xs.max() + pad]),
                 rtol=1e-12, atol=1e-12)
    one = slider_figure([[go.Scatter(x=[1], y=[2])]], ["a"]).layout
    assert one.xaxis.range == (0.5, 1.5) and one.yaxis.range == (1.5, 2.5)


# ---- write_peft_adapter: any factors a LoraFactors accepts can be written

def test_numpy_and_tensor_alpha_write_as_json_numbers(tmp_path):
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(2, 5, generator=g), torch.randn(3, 2, generator=g)
    for k, alpha in enumerate((np.float32(16), np.int64(16), torch.tensor(16.0))):
        f = LoraFactors(A, B, alpha)
        d = write_peft_adapter(tmp_path / str(k), {"m.q": f, "m.v": LoraFactors(A, B, 4)})
        cfg = json.loads((d / "adapter_config.json").read_text())
        assert cfg["lora_alpha"] == 16 and list(cfg["alpha_pattern"].values()) == [4]
        back, _ = read_peft_adapter(d)
        assert back["m.q"].scaling == f.scaling == 8.0 and back["m.v"].scaling == 2.0


def test_factors_that_share_memory(tmp_path):
    "One B on two slots, or A's that are slices of one stack: safetensors refused them, torch.save stored the stack."
    g = torch.Generator().manual_seed(1)
    stack, B = torch.randn(500, 2, 5, generator=g), torch.randn(3, 2, generator=g)
    tied = {f"layers.{k}.q": LoraFactors(stack[k], B, 8.0) for k in range(2)}
    free = {s: LoraFactors(f.A.clone(), f.B.clone(), 8.0) for s, f in tied.items()}
    back, _ = read_peft_adapter(write_peft_adapter(tmp_path / "st", tied))
    for s in tied:
        assert torch.equal(back[s].A, tied[s].A) and torch.equal(back[s].B, tied[s].B)
    write_peft_adapter(tmp_path / "bin", tied, safe_serialization=False)
    write_peft_adapter(tmp_path / "bin_free", free, safe_serialization=False)
    size = lambda n: os.path.getsize(tmp_path / n / "adapter_model.bin")
    assert size("bin") == size("bin_free")  # not the 500-slice stack behind the views
    back, _ = read_peft_adapter(tmp_path / "bin")
    for s in tied: assert torch.equal(back[s].A, tied[s].A)


# ---- load_llm and score_choices (need the offline model)

@pytest.fixture(scope="module")
def have_llm():
    why = llm_missing()
    require(why is None, f"the offline LLM is not installed: {why}")


def test_one_quiet_load_however_the_arguments_are_spelled(have_llm, capfd):
    "The de-quantisation bar leaked (a widget in notebooks); 'cpu' vs torch.device('cpu') loaded the model twice."
    getattr(llm_mod, "_load_llm", load_llm).cache_clear()
    llm = load_llm()
    assert "de-quantizing" not in capfd.readouterr().err
    assert load_llm("smollm2", torch.device("cpu"), torch.float32) is llm
    assert load_llm("smollm2", "cpu", "float32") is llm and load_llm(dtype="torch.float32") is llm
    assert llm.dtype is torch.float32 and llm.device == torch.device("cpu")


def test_bad_device_and_dtype_fail_before_loading(have_llm):
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device: cannot use 'cuda'"):
            load_llm(device="cuda")
    with pytest.raises(ValueError, match="device: cannot use"):
        load_llm(device="nonsense")
    for dt in (torch.int8, "int8", "float33", torch.bool):
        with pytest.raises(ValueError, match="dtype: expected a floating torch dtype"):
            load_llm(dtype=dt)


def test_score_choices_refuses_prompts_beyond_the_context(have_llm, monkeypatch):
    "sequence_logps refused them; score_choices scored past the trained positions without a word."
    llm = load_llm()
    monkeypatch.setattr(llm.model.config, "max_position_embeddings", 8)  # an 8-token context stands in for 8192
    long = "Question: what is the colour of fresh grass in spring?\nAnswer:"
    with pytest.raises(ValueError, match="more than the model's context"):
        sequence_logps(llm, [long], [" green"])
    with pytest.raises(ValueError, match="prompts: entry 1 has .* more than the model's context of 8"):
        score_choices(llm, ["Hi", long], [[" a", " b"], [" green", " red"]], batch_size=1, progress=False)


def test_use_rslora_must_be_a_boolean():
    "A string such as 'no' used to count as true and silently rescale ΔW by √r."
    from papercode.core.models.lora import LoraFactors, lora_scaling
    A, B = torch.randn(4, 6, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="use_rslora: must be True or False, got 'no'"):
        LoraFactors(A, B, 8.0, use_rslora="no")
    with pytest.raises(ValueError, match="use_rslora"):
        lora_scaling(8.0, 4, use_rslora="false")
    assert lora_scaling(8.0, 4, use_rslora=np.bool_(True)) == 4.0 and lora_scaling(8.0, 4, use_rslora=False) == 2.0

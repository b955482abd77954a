"""The digits slider stores each frame as a PNG: decoding it gives back the frame's pixels."""
import base64
import io

import numpy as np
from matplotlib.image import imread

from papercode.score_distillation.experiments import digits_slider_figure, png_uri


def _decode(uri):
    assert uri.startswith("data:image/png;base64,")
    return imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")


def test_png_uri_round_trip():
    z = np.linspace(-1, 1, 24).reshape(4, 6)
    img = _decode(png_uri(z, scale=3))
    assert img.shape[:2] == (12, 18)
    grey = img[..., :3].mean(-1)  # Greys: -1 white (1.0), +1 black (0.0)
    assert np.allclose(grey[::3, ::3], grey[1::3, 1::3])  # blocks of 3x3 equal pixels
    assert np.all(np.diff(grey[0, ::3]) <= 1e-6) and grey[0, 0] > 0.99 and grey[-1, -1] < 0.01
    assert np.allclose(_decode(png_uri(np.full((2, 2), 5.0)))[..., :3], _decode(png_uri(np.ones((2, 2))))[..., :3])  # clipped


def test_digits_slider_frames_are_images_in_order():
    rng = np.random.default_rng(0)
    names = ["A", "B"]
    stored = {m: (list(range(6)), [np.where(rng.random((10, 64)) < 0.5, -1.0, 1.0) for _ in range(6)]) for m in names}
    fig = digits_slider_figure(stored)
    assert len(fig.data) == 3 and all(t.type == "image" for t in fig.data)  # every other stored frame
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0", "2", "4"]
    img = _decode(fig.data[1].source)[..., :3].mean(-1)  # frame of iteration 2
    ink = img[::4, ::4] < 0.5
    # row block 0 is method A: its first digit sits at columns 1..8 after a one-pixel pad
    assert np.array_equal(ink[1:9, 1:9], stored["A"][1][2][0].reshape(8, 8) > 0)
    assert np.array_equal(ink[11:19, 1:9], stored["B"][1][2][0].reshape(8, 8) > 0)


def test_image_metrics_report_a_diverged_run_as_nan_instead_of_raising():
    import math
    import torch
    from papercode.score_distillation.experiments import image_metrics
    x = torch.zeros(4, 64); x[1, 3] = float("nan")
    m = image_metrics(x, torch.arange(4), torch.zeros(4, 64))
    assert set(m) == {"confidence", "sharpness", "w2", "frechet", "diversity"} and all(math.isnan(v) for v in m.values())


def test_digits_slider_keeps_the_last_frame_of_a_run_that_stopped_early():
    import numpy as np
    from papercode.score_distillation.experiments import digits_slider_figure
    frames = {"full": ([0, 10, 20, 30], [np.zeros((10, 64))] * 4),
              "diverged": ([0, 10], [np.zeros((10, 64)), np.full((10, 64), np.nan)])}
    fig = digits_slider_figure(frames)  # raised IndexError when one run had fewer frames
    assert len(fig.layout.sliders[0].steps) == 2  # every other frame of the longest run: iterations 0 and 20


def test_error_curve_plotly_carries_every_curve_on_a_log_axis():
    import numpy as np
    from papercode.score_distillation.experiments import error_curve_plotly
    curves = dict(t=[999, 599, 80], errors={"random κ": [3.0, 2.0, 1.0], "κ*": [1e-40, 1e-20, 0.0]})
    f = error_curve_plotly(curves)
    assert [tr.name for tr in f.data] == ["random κ", "κ*"] and f.layout.yaxis.type == "log"
    assert list(f.data[0].x) == [999, 599, 80] and list(f.data[0].y) == [3.0, 2.0, 1.0]
    assert min(f.data[1].y) == 1e-32  # exact zeros floored so that the log axis can show them

"""Thermometer (Shen et al., ICML 2024, arXiv:2403.08819): calibrating a language model on new tasks from unlabelled prompts."""
from papercode.thermometer.metrics import (CalibrationMetrics, Reliability, accuracy, brier, calibration_metrics,
                                           classwise_ece, ece, mce, nll, probs_from_logits, reliability_diagram,
                                           top_label_ece)
from papercode.thermometer.temperature import (TemperatureFit, pooled_temperature, temperature_scale,
                                               temperature_scale_cv)
from papercode.thermometer.model import CalibTask, Thermometer, ThermometerFit, fit_thermometer, predict_temperature
from papercode.thermometer.benchmark import leave_one_out, simulate_tasks
from papercode.thermometer.tasks import FAMILIES, load_benchmark, make_task

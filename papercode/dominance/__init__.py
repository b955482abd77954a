"""Multivariate stochastic dominance via entropic OT (Rioux et al. 2024, arXiv:2406.06425): violation ratios, bootstrap tests, relative ranking of models on many metrics."""
from papercode.dominance.univariate import almost_dominance_ratio, first_order_dominance, quantile_pairs
from papercode.dominance.violation import (COSTS, SharedKernelCost, ViolationResult, cost_matrix, violation_h,
                                           violation_ratio)
from papercode.dominance.inference import DominanceTest, bootstrap_weights, dominance_test, plugin_se
from papercode.dominance.ranking import (AlpacaEval, RankingResult, ScoreArray, as_score_array, kendall_tau,
                                         load_alpacaeval, relative_ranking)

"""Optimal transport engine: costs, log-domain Sinkhorn, exact and 1-D OT (notebooks nbs/00_core/6x_*)."""
from papercode.core.ot.costs import Cost, DenseCost, FactoredCost, PointCloudCost, as_cost
from papercode.core.ot.exact import EMDResult, OT1DResult, emd, ot_1d
from papercode.core.ot.sinkhorn import SinkhornResult, SinkhornWarning, check_ot_inputs, sinkhorn

__all__ = ["Cost", "DenseCost", "FactoredCost", "PointCloudCost", "as_cost", "EMDResult", "OT1DResult", "emd",
           "ot_1d", "SinkhornResult", "SinkhornWarning", "check_ot_inputs", "sinkhorn"]

"""Inner-product Gromov–Wasserstein: distance, mobility operator, gradient flows and interpolations (Zhang et al. 2024, arXiv:2407.11800)."""
from papercode.igw.distance import IGWResult, igw, igw_cost, igw_lower_bound, linear_image_igw, second_moment
from papercode.igw.mobility import Mobility, angular_momentum, igw_velocity, lyapunov, mobility
from papercode.igw.functionals import IGWToTarget, MMD, Functional, QuadraticPotential, SecondMomentMatching
from papercode.igw.flow import FlowResult, igw_flow, linear_image, shape_cloud, tearing, w2_flow
from papercode.igw.jko import JKOResult, igw_jko_step
from papercode.igw.interpolation import InterpolationResult, igw_interpolate, metric_action

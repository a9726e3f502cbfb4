"""Priors over code grids: the spatial prior (one frame's codes, every level) and the motion prior (the next
frame's codes given the last few), built from the same grid-aware blocks."""

from vqart.prior.grid import GridConfig, GridModel
from vqart.prior.spatial import (METRICS_FILE, PRIOR_FILE, SpatialPrior, as_grids, as_tokens, load_prior,
                                 spatial_steps, train_prior)

__all__ = ["GridConfig", "GridModel", "METRICS_FILE", "PRIOR_FILE", "SpatialPrior", "as_grids", "as_tokens",
           "load_prior", "spatial_steps", "train_prior"]

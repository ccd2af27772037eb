"""lintraj: trajectories of gradient descent on deep linear networks, in JAX.

Weights are a plain tuple ``(W_1, ..., W_N)``, ``W_j`` of shape ``(d_j, d_{j-1})``.
"""

from lintraj import (
  init,
  labeled,
  landscape,
  losses,
  metrics,
  nuclear,
  progress,
  second_order,
  singular_values,
  sweep,
  theory,
)
from lintraj.checkpoint import resume
from lintraj.dynamics import gradient_descent, train
from lintraj.flow import gradient_flow
from lintraj.io import load, save
from lintraj.network import end_to_end, layer_dims
from lintraj.recording import Trajectory
from lintraj.sweep import batch_gradient_descent, batch_train
from lintraj.whitening import Whitening, fit_whitening, whiten

__version__ = "0.1.0"

__all__ = [
  "init",
  "losses",
  "metrics",
  "singular_values",
  "end_to_end",
  "layer_dims",
  "gradient_descent",
  "train",
  "theory",
  "landscape",
  "gradient_flow",
  "Trajectory",
  "whiten",
  "fit_whitening",
  "Whitening",
  "save",
  "load",
  "resume",
  "sweep",
  "batch_gradient_descent",
  "batch_train",
  "progress",
  "labeled",
  "nuclear",
  "second_order",
]

"""Deprecated: the landscape studies are reproductions now, in
:mod:`lintraj.reproductions.landscape_studies` (``lintraj reproduce critical-points`` and
``saddles`` are unchanged). This module will be removed in the next release."""

import warnings

from lintraj.reproductions.landscape_studies import (
  critical_points_data,
  critical_points_figure,
  run_critical_points,
  run_saddles,
  saddles_data,
  saddles_figure,
)

__all__ = [
  "run_critical_points",
  "run_saddles",
  "critical_points_data",
  "critical_points_figure",
  "saddles_data",
  "saddles_figure",
]

warnings.warn(
  "lintraj.landscape_studies is deprecated: use lintraj.reproductions.landscape_studies.",
  DeprecationWarning,
  stacklevel=2,
)

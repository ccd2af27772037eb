"""Deprecated: the record of a run lives in :mod:`lintraj.recording` (``lt.Trajectory`` is
unchanged). This module will be removed in the next release."""

import warnings

from lintraj.recording import RECORDED_FIELDS, TRACKABLE, Trajectory, record

__all__ = ["Trajectory", "record", "RECORDED_FIELDS", "TRACKABLE"]

warnings.warn(
  "lintraj.trajectory is deprecated: use lintraj.recording (Trajectory, record) or lt.Trajectory.",
  DeprecationWarning,
  stacklevel=2,
)

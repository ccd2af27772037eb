"""Checks of scalar arguments, shared by every entry point: a ValueError naming the argument."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_int", "check_positive"]


def check_int(name: str, value, least: int, most: int | None = None) -> int:
  """``value`` as an int, or ValueError unless it is an integer (not a bool) in ``[least, most]``.

  Example:
    >>> check_int("steps", 5, 0)
    5
  """
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least or (
      most is not None and value > most):
    bound = f"in [{least}, {most}]" if most is not None else f">= {least}"
    raise ValueError(f"{name} must be an integer {bound}; got {value!r}.")
  return int(value)


def check_positive(name: str, value, hint: str = "", *, allow_zero: bool = False) -> float:
  """``value`` as a float, or ValueError naming ``name`` unless it is finite and > 0 (>= 0 with
  ``allow_zero``); ``hint`` is appended to the message.

  Example:
    >>> check_positive("lr", "0.5")
    0.5
  """
  bound = "a finite number >= 0" if allow_zero else "a positive finite number"
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be {bound}; got {value!r}.{hint}") from None
  if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
    raise ValueError(f"{name} must be {bound}; got {value}.{hint}")
  return value

"""Checks of the arguments every entry point shares: a ValueError naming the argument and the fix,
raised before anything is traced or compiled."""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
  "check_int",
  "check_key",
  "check_positive",
  "check_lr",
  "check_stop_at_loss",
  "check_checkpoint",
  "check_concrete",
]


def check_int(name: str, value, least: int, most: int | None = None) -> int:
  """``value`` as an int, or ValueError unless it is an integer (not a bool) in ``[least, most]``.

  Example:
    >>> check_int("steps", 5, 0)
    5
  """
  if (
    isinstance(value, bool)
    or not isinstance(value, (int, np.integer))
    or value < least
    or (most is not None and value > most)
  ):
    bound = f"in [{least}, {most}]" if most is not None else f">= {least}"
    raise ValueError(f"{name} must be an integer {bound}; got {value!r}.")
  return int(value)


def check_positive(name: str, value, hint: str = "", *, allow_zero: bool = False) -> float:
  """``value`` as a float, or ValueError naming ``name`` unless it is a finite number > 0 (>= 0
  with ``allow_zero``); ``hint`` is appended to the message. Strings are refused (``"0.01"`` is
  a typo for ``0.01`` more often than a wish).

  Example:
    >>> check_positive("lr", 0.5)
    0.5
  """
  bound = "a finite number >= 0" if allow_zero else "a positive finite number"
  if isinstance(value, (str, bytes, bool)):
    raise ValueError(f"{name} must be {bound}, not a {type(value).__name__}; got {value!r}.{hint}")
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be {bound}; got {value!r}.{hint}") from None
  if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
    raise ValueError(f"{name} must be {bound}; got {value}.{hint}")
  return value


def check_key(key):
  """``key`` if it is one PRNG key (a typed key of ``jax.random.key`` or a legacy uint32 array of
  ``jax.random.PRNGKey``), else ValueError.

  Example:
    >>> import jax
    >>> check_key(jax.random.PRNGKey(0)).shape
    (2,)
  """
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and np.ndim(key) == 0:
    return key
  if dtype == jnp.uint32 and np.shape(key) == (2,):
    return key
  got = f"an array of shape {np.shape(key)} and dtype {dtype}" if dtype is not None else repr(key)
  raise ValueError(
    f"key must be one PRNG key, e.g. jax.random.PRNGKey(0) or jax.random.key(0); "
    f"got {got}. Split a key per call with jax.random.split."
  )


def check_lr(lr) -> float:
  """A learning rate as a float, or ValueError if it is not a finite positive number.

  Example:
    >>> check_lr(1e-2)
    0.01
  """
  return check_positive("lr", lr, " Typical values: 1e-4 .. 1.")


def check_stop_at_loss(stop_at_loss) -> np.ndarray:
  """The stopping threshold(s) as a float64 array (``-inf``: never stop; None means ``-inf``), or
  ValueError for NaN, ``+inf``, strings and non-numbers.

  Example:
    >>> check_stop_at_loss(None), check_stop_at_loss(1e-3)
    (array(-inf), array(0.001))
  """
  if stop_at_loss is None:
    return np.asarray(-np.inf)
  if isinstance(stop_at_loss, (str, bytes, bool)) or (
    isinstance(stop_at_loss, np.ndarray) and not np.issubdtype(stop_at_loss.dtype, np.number)
  ):
    raise ValueError(
      f"stop_at_loss must be a number (or one per lane) or None; got {stop_at_loss!r}."
    )
  try:
    value = np.asarray(stop_at_loss, np.float64)
  except (TypeError, ValueError):
    raise ValueError(f"stop_at_loss must be a number or None; got {stop_at_loss!r}.") from None
  if np.any(np.isnan(value) | (value == np.inf)):
    raise ValueError(
      f"stop_at_loss must be finite, or -inf (or None) to never stop; got {stop_at_loss!r}."
    )
  return value


def check_checkpoint(checkpoint, checkpoint_every):
  """``(path, checkpoint_every)`` as ``(str, int)``, ``(None, None)`` for no checkpoints, or
  ValueError on a half-given or bad pair.

  Example:
    >>> check_checkpoint("run.npz", 100), check_checkpoint(None, None)
    (('run.npz', 100), (None, None))
  """
  if checkpoint is None and checkpoint_every is None:
    return None, None
  if checkpoint is None or checkpoint_every is None:
    raise ValueError(
      "give both checkpoint=path and checkpoint_every=K (steps between checkpoints), "
      f"or neither; got checkpoint={checkpoint!r}, "
      f"checkpoint_every={checkpoint_every!r}."
    )
  return os.fspath(checkpoint), check_int("checkpoint_every", checkpoint_every, 1)


def check_concrete(run: str, **arguments):
  """ValueError if any argument holds a JAX tracer: a run compiles and drives its own loop, so it
  cannot itself run under ``jax.jit``, ``jax.vmap`` or ``jax.grad``.

  Example:
    >>> check_concrete("gradient_descent", lr=0.1)
  """
  for name, value in arguments.items():
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(value)):
      raise ValueError(
        f"{run} got a traced {name} (it was called inside jax.jit, jax.vmap or jax.grad). Run "
        f"functions compile their own loop and cannot be traced: call {run} outside the "
        "transformation; for many runs at once use lt.batch_gradient_descent or lt.batch_train "
        "(one compiled loop over a batch of networks, learning rates or losses)."
      )

"""The record of a run: metrics of the weights every ``record_every`` steps, as a pytree."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lintraj import metrics
from lintraj import singular_values as sv
from lintraj.network import end_to_end
from lintraj.validation import check_int

__all__ = ["Trajectory", "record", "RECORDED_FIELDS", "TRACKABLE", "Tracking", "check_tracking"]

RECORDED_FIELDS = ("loss", "balancedness", "deficiency_margin", "grad_norm", "layer_singular_values",
                   "end_to_end_singular_values")
TRACKABLE = ("sharpness", "min_hessian_eigenvalue")


class Trajectory(NamedTuple):
  r"""What a run recorded, at steps ``0, k, 2k, ...`` (``k = record_every``).

  Attributes:
    step: ``(T,)`` the step of each record, ``T = steps // k + 1``.
    loss: ``(T,)`` :math:`L^1(W_{1:N})`.
    balancedness: ``(T,)`` :math:`\max_j \|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F`.
    deficiency_margin: ``(T,)`` :math:`\sigma_{\min}(\Phi) - \|W_{1:N} - \Phi\|_F` (NaN when the
      loss has no target).
    grad_norm: ``(T,)`` :math:`(\sum_j \|\partial L^N / \partial W_j\|_F^2)^{1/2}`.
    layer_singular_values: tuple, entry ``j`` of shape ``(T, min(d_j, d_{j-1}))``, descending.
    end_to_end_singular_values: ``(T, min(d_0, d_N))``, descending.
    final: the weights after the last step.
    diverged_step: None, or the first step whose loss was not finite (records from it on are NaN).
    stopped_step: None, or the first step whose loss was <= ``stop_at_loss`` (records from it on repeat).
    sharpness: None unless the run was asked to ``track=("sharpness",)``; then ``(T,)``, the top
      eigenvalue of the Hessian of the network loss (:func:`lintraj.landscape.sharpness`) at every
      ``track_every``-th record (records ``0, k', 2k', ...``) and NaN at the others.
    min_hessian_eigenvalue: likewise with ``track=("min_hessian_eigenvalue",)``: the smallest
      Hessian eigenvalue (negative near a saddle; :func:`lintraj.landscape.hessian_extremes`).

  Batched runs (``lintraj.batch_gradient_descent``) add a leading batch axis to every field.
  """

  step: Any
  loss: Any
  balancedness: Any
  deficiency_margin: Any
  grad_norm: Any
  layer_singular_values: tuple
  end_to_end_singular_values: Any
  final: tuple
  diverged_step: Any = None
  stopped_step: Any = None
  sharpness: Any = None
  min_hessian_eigenvalue: Any = None


class Tracking(NamedTuple):
  """How a run records (hashable: part of the compiled program). Build it with :func:`check_tracking`.

  Attributes:
    singular_values: ``"batched"`` or ``"exact"`` (see :mod:`lintraj.singular_values`).
    track: the extra metrics recorded, names from :data:`TRACKABLE` in that order.
    track_every: they are recorded at every this many records (NaN at the others).
  """

  singular_values: str = "batched"
  track: tuple = ()
  track_every: int = 1


def check_tracking(track=(), track_every=1, singular_values="batched") -> Tracking:
  """The :class:`Tracking` of a run's ``track``, ``track_every`` and ``singular_values`` arguments,
  or ValueError (before any tracing) naming what is wrong.

  Example:
    >>> check_tracking(("min_hessian_eigenvalue", "sharpness"), track_every=10)
    Tracking(singular_values='batched', track=('sharpness', 'min_hessian_eigenvalue'), track_every=10)
  """
  names = (track,) if isinstance(track, str) else track
  try:
    names = tuple(names)
  except TypeError:
    raise ValueError(f"track must be a tuple of metric names from {TRACKABLE}, e.g. "
                     f"track=('sharpness',); got {track!r}.") from None
  unknown = [name for name in names if name not in TRACKABLE]
  if unknown:
    raise ValueError(f"track names metrics to record besides the default ones ({', '.join(RECORDED_FIELDS)}); "
                     f"{unknown} is not among {TRACKABLE}. Use e.g. track=('sharpness',).")
  return Tracking(sv.check_method(singular_values), tuple(name for name in TRACKABLE if name in names),
                  check_int("track_every", track_every, 1))


def record(weights, loss_value, grads, target, *, singular_values: str = "batched") -> dict:
  r"""The recorded metrics of one point: a dict keyed by :data:`RECORDED_FIELDS`.

  The singular values of the layers and of :math:`W_{1:N}` are computed together, so that
  matrices of equal shape share one batched SVD call (``singular_values="batched"``, the
  default); ``singular_values="exact"`` makes one call per matrix. Both give the same values,
  within :math:`O(\varepsilon)\,\sigma_{\max}` of the exact ones (see
  :mod:`lintraj.singular_values`).

  Example:
    >>> import jax.numpy as jnp
    >>> ws = (jnp.eye(2), 2 * jnp.eye(2))
    >>> rec = record(ws, jnp.array(0.0), ws, None)
    >>> [s.tolist() for s in rec["layer_singular_values"]], rec["end_to_end_singular_values"].tolist()
    ([[1.0, 1.0], [2.0, 2.0]], [2.0, 2.0])
  """
  dtype = weights[0].dtype
  w = end_to_end(weights)
  margin = (jnp.full((), jnp.nan, dtype) if target is None
            else metrics.end_to_end_deficiency_margin(w, target).astype(dtype))
  *layer_sv, end_to_end_sv = sv.singular_values(tuple(weights) + (w,), singular_values)
  return dict(
      loss=loss_value,
      balancedness=metrics.balancedness(weights),
      deficiency_margin=margin,
      grad_norm=jnp.sqrt(sum(jnp.sum(g ** 2) for g in grads)),
      layer_singular_values=tuple(layer_sv),
      end_to_end_singular_values=end_to_end_sv,
  )


def mask_record(rec: dict, invalid) -> dict:
  """``rec`` with every entry replaced by NaN where ``invalid`` is true."""
  return jax.tree_util.tree_map(lambda x: jnp.where(invalid, jnp.nan, x), rec)

r"""What a run records: the :class:`Trajectory`, the record spec (built-in metrics, tracked
curvature, user metrics, singular-value method), the :class:`Schedule` of a run, and the memory
its records take.

Every run function (:func:`lintraj.gradient_descent`, :func:`lintraj.train`, the batched ones and
:func:`lintraj.gradient_flow`) records through :func:`record_point`, so every run records the same
fields the same way.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lintraj import _runtime, metrics
from lintraj import singular_values as sv
from lintraj._curvature import hessian_extremes
from lintraj.network import end_to_end
from lintraj.validation import check_int

__all__ = ["Trajectory", "Schedule", "record", "RECORDED_FIELDS", "TRACKABLE"]

RECORDED_FIELDS = (
  "loss",
  "balancedness",
  "deficiency_margin",
  "grad_norm",
  "layer_singular_values",
  "end_to_end_singular_values",
)
TRACKABLE = ("sharpness", "min_hessian_eigenvalue")
MAX_STEPS = 2**31 - 1


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
    stopped_step: None, or the first step whose loss was <= ``stop_at_loss`` (records from it on
      repeat).
    sharpness: None unless the run was asked to ``track=("sharpness",)``; then ``(T,)``, the top
      eigenvalue of the Hessian of the network loss (:func:`lintraj.landscape.sharpness`) at every
      ``track_every``-th record (records ``0, k', 2k', ...``) and NaN at the others.
    min_hessian_eigenvalue: likewise with ``track=("min_hessian_eigenvalue",)``: the smallest
      Hessian eigenvalue (negative near a saddle; :func:`lintraj.landscape.hessian_extremes`).
    metrics: None, or a dict ``name -> (T, ...)`` of the user metrics given as ``metrics=``.
    validation_loss: None, or ``(T,)`` the loss on the held-out data given as ``validation=``.
    best_step: with ``validation=``, the step of the record with the lowest validation loss (a
      batch: ``(B,)``, ``-1`` for none).
    best: with ``validation=``, the weights at that record.
    minibatch_loss: None, or with ``batch_size=`` (minibatch SGD) ``(T,)`` the minibatch loss of
      the step taken from each record (the noisy curve; NaN at the last record, which takes no
      step). ``loss`` is always on the full data.

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
  metrics: Any = None
  validation_loss: Any = None
  best_step: Any = None
  best: Any = None
  minibatch_loss: Any = None

  def __repr__(self):
    shape = lambda x: "x".join(map(str, np.shape(x))) or "()"
    parts = [
      f"steps {int(np.max(self.step)) if np.size(self.step) else 0:g}"
      if np.issubdtype(np.asarray(self.step).dtype, np.integer)
      else f"time {float(np.max(self.step)):g}",
      f"records {shape(self.step)}",
    ]
    loss = np.asarray(self.loss)
    if loss.size:
      last = loss[..., -1]
      parts.append(
        f"final loss {float(last):.4g}"
        if last.ndim == 0
        else f"final loss {np.nanmin(last):.4g}..{np.nanmax(last):.4g}"
        if np.isfinite(last).any()
        else "final loss nan"
      )
    for name in ("diverged_step", "stopped_step"):
      value = getattr(self, name)
      if value is not None and np.ndim(value) == 0:
        parts.append(f"{name} {value}")
      elif value is not None:
        parts.append(f"{name} {int(np.sum(np.asarray(value) >= 0))}/{np.size(value)} lanes")
    optional = TRACKABLE + ("validation_loss", "minibatch_loss")
    tracked = [name for name in optional if getattr(self, name) is not None]
    parts.append("fields " + ", ".join(RECORDED_FIELDS + tuple(tracked)))
    if self.metrics:
      parts.append("metrics " + ", ".join(self.metrics))
    if self.validation_loss is not None and np.ndim(self.best_step) == 0:
      parts.append(f"best_step {self.best_step}")
    parts.append("final weights " + ", ".join(shape(w) for w in self.final))
    return f"Trajectory({'; '.join(parts)})"


class Schedule(NamedTuple):
  """When a run of ``steps`` steps records, tracks and checkpoints (build with :func:`schedule`).

  Attributes:
    steps: steps of the run.
    record_every: a record at steps ``0, k, 2k, ...``.
    track_every: the tracked metrics at every this many records.
    checkpoint_every: steps between checkpoints (rounded up to whole records), or None.

  Example:
    >>> s = Schedule(steps=100, record_every=10)
    >>> s.records, s.record_steps()[-1].item()
    (11, 100)
  """

  steps: int
  record_every: int = 1
  track_every: int = 1
  checkpoint_every: int | None = None

  @property
  def records(self) -> int:
    """``T = steps // record_every + 1``."""
    return self.steps // self.record_every + 1

  @property
  def checkpoint_records(self) -> int | None:
    """Records between checkpoints (None without checkpoints)."""
    return None if self.checkpoint_every is None else -(-self.checkpoint_every // self.record_every)

  def record_steps(self) -> np.ndarray:
    """The step of every record, ``(T,)`` int32."""
    return np.arange(self.records, dtype=np.int32) * self.record_every

  def compiled(self) -> Schedule:
    """What the compiled loop depends on (changing the checkpoint interval does not recompile)."""
    return self._replace(checkpoint_every=None)


def schedule(steps, record_every, track_every=1, checkpoint_every=None) -> Schedule:
  """A validated :class:`Schedule`, or ValueError (``record_every > steps`` would record step 0
  only, so it is refused).

  Example:
    >>> schedule(100, 1000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: record_every=1000 is larger than steps=100, so only step 0 would be recorded; ...
  """
  steps = check_int("steps", steps, 0, MAX_STEPS)
  record_every = check_int("record_every", record_every, 1, MAX_STEPS)
  if steps and record_every > steps:
    raise ValueError(
      f"record_every={record_every} is larger than steps={steps}, so only step 0 "
      f"would be recorded; use record_every <= steps (e.g. record_every={steps})."
    )
  checkpoint_every = (
    None if checkpoint_every is None else check_int("checkpoint_every", checkpoint_every, 1)
  )
  return Schedule(steps, record_every, check_int("track_every", track_every, 1), checkpoint_every)


class Recorder(NamedTuple):
  """What a run records besides the built-in fields (hashable: part of the compiled program).

  Attributes:
    singular_values: ``"batched"`` or ``"exact"`` (see :mod:`lintraj.singular_values`).
    track: the extra metrics recorded, names from :data:`TRACKABLE` in that order.
    metrics: ``((name, function), ...)`` user metrics, in the order given.
  """

  singular_values: str = "batched"
  track: tuple = ()
  metrics: tuple = ()


def recorder(track=(), singular_values="batched", metrics=None) -> Recorder:
  """The :class:`Recorder` of a run's ``track``, ``singular_values`` and ``metrics`` arguments,
  or ValueError naming what is wrong (user metrics are checked when the weights are known, by
  :func:`check_metrics`).

  Example:
    >>> recorder(("min_hessian_eigenvalue", "sharpness"))
    Recorder(singular_values='batched', track=('sharpness', 'min_hessian_eigenvalue'), metrics=())
  """
  names = (track,) if isinstance(track, str) else track
  try:
    names = tuple(names)
  except TypeError:
    raise ValueError(
      f"track must be a tuple of metric names from {TRACKABLE}, e.g. "
      f"track=('sharpness',); got {track!r}."
    ) from None
  unknown = [name for name in names if name not in TRACKABLE]
  if unknown:
    raise ValueError(
      f"track names metrics to record besides the default ones "
      f"({', '.join(RECORDED_FIELDS)}); {unknown} is not among {TRACKABLE}. Use "
      "e.g. track=('sharpness',), or metrics={'name': function} for your own."
    )
  if metrics is None:
    metrics = {}
  if not isinstance(metrics, dict):
    raise ValueError(
      "metrics must be a dict name -> function(weights) -> array, e.g. "
      "metrics={'nuclear_norm': lt.metrics.nuclear_norm}; got "
      f"{type(metrics).__name__}."
    )
  for name, fn in metrics.items():
    if not isinstance(name, str) or not name.isidentifier():
      raise ValueError(
        f"metric names must be Python identifiers (they name fields and files); got {name!r}."
      )
    if not callable(fn):
      raise ValueError(
        f"metrics[{name!r}] must be a function of the weights tuple; got {type(fn).__name__}."
      )
  return Recorder(
    sv.check_method(singular_values),
    tuple(name for name in TRACKABLE if name in names),
    tuple(metrics.items()),
  )


def check_metrics(rec: Recorder, weights):
  """ValueError naming the metric unless each user metric is a jittable function of the weights
  tuple returning one real array (checked with ``jax.eval_shape``, nothing is run)."""
  specs = tuple(jax.ShapeDtypeStruct(np.shape(w), w.dtype) for w in weights)
  for name, fn in rec.metrics:
    try:
      out = jax.eval_shape(fn, specs)
    except Exception as err:  # noqa: BLE001 -- any failure of the user's function is reported
      raise ValueError(
        f"metrics[{name!r}] failed on the weights (shapes "
        f"{[s.shape for s in specs]}): {type(err).__name__}: {err}. A metric is a "
        "jittable function of the weights tuple (W_1, ..., W_N)."
      ) from None
    if not isinstance(out, jax.ShapeDtypeStruct) or jnp.issubdtype(out.dtype, jnp.complexfloating):
      raise ValueError(
        f"metrics[{name!r}] must return one real array (a number or an array of "
        f"fixed shape); got {out!r}."
      )


def record(weights, loss_value, grads, target, *, singular_values: str = "batched") -> dict:
  r"""The built-in recorded metrics of one point: a dict keyed by :data:`RECORDED_FIELDS`.

  The singular values of the layers and of :math:`W_{1:N}` are computed together, so that
  matrices of equal shape share one batched SVD call (``singular_values="batched"``, the
  default); ``singular_values="exact"`` makes one call per matrix. Both give the same values,
  within :math:`O(\varepsilon)\,\sigma_{\max}` of the exact ones (see
  :mod:`lintraj.singular_values`).

  Example:
    >>> import jax.numpy as jnp
    >>> ws = (jnp.eye(2), 2 * jnp.eye(2))
    >>> rec = record(ws, jnp.array(0.0), ws, None)
    >>> layers, end_to_end = rec["layer_singular_values"], rec["end_to_end_singular_values"]
    >>> [s.tolist() for s in layers], end_to_end.tolist()
    ([[1.0, 1.0], [2.0, 2.0]], [2.0, 2.0])
  """
  dtype = weights[0].dtype
  w = end_to_end(weights)
  margin = (
    jnp.full((), jnp.nan, dtype)
    if target is None
    else metrics.end_to_end_deficiency_margin(w, target).astype(dtype)
  )
  *layer_sv, end_to_end_sv = sv.singular_values(tuple(weights) + (w,), singular_values)
  return dict(
    loss=loss_value,
    balancedness=metrics.balancedness(weights),
    deficiency_margin=margin,
    grad_norm=jnp.sqrt(sum(jnp.sum(g**2) for g in grads)),
    layer_singular_values=tuple(layer_sv),
    end_to_end_singular_values=end_to_end_sv,
  )


def record_point(
  weights, value, grads, loss, invalid, block, validation=None, *, rec: Recorder, track_every: int
):
  """Everything one record holds (built-in fields, tracked curvature, user metrics), all NaN
  where ``invalid``: there the metrics of zeros are computed instead of the weights, which may
  be infinite, so no SVD sees a non-finite matrix. The tracked Hessian extremes only at every
  ``track_every``-th record (``block`` counts records; NaN at the others, not computed): one
  Lanczos run gives both. With a ``validation`` loss, its value as ``validation_loss``."""
  weights = jax.tree_util.tree_map(lambda w: jnp.where(invalid, jnp.zeros_like(w), w), weights)
  out = record(weights, value, grads, loss.target, singular_values=rec.singular_values)
  if rec.track:

    def curvature():
      lowest, highest = hessian_extremes(weights, loss).astype(value.dtype)
      both = {"sharpness": highest, "min_hessian_eigenvalue": lowest}
      return {name: both[name] for name in rec.track}

    nan = lambda: {name: jnp.full_like(value, jnp.nan) for name in rec.track}
    out.update(lax.cond(block % track_every == 0, curvature, nan))
  if rec.metrics:
    out["metrics"] = {name: jnp.asarray(fn(weights)) for name, fn in rec.metrics}
  if validation is not None:
    out["validation_loss"] = validation(end_to_end(weights)).astype(value.dtype)
  return jax.tree_util.tree_map(lambda x: jnp.where(invalid, jnp.nan, x), out)


def value_and_grad(weights, loss):
  """The network loss :math:`L^1(W_{1:N})` and its gradients with respect to each layer."""
  return jax.value_and_grad(lambda ws: loss(end_to_end(ws)))(weights)


def spec(x):
  """``(shape, dtype)`` of an array or number, the dtype canonical (float32 outside x64)."""
  dtype = x.dtype if hasattr(x, "dtype") else np.result_type(x)
  return np.shape(x), jax.dtypes.canonicalize_dtype(dtype)


def record_shapes(weights, loss, rec: Recorder, validation=None) -> dict:
  """Shapes and dtypes of one network's record (traced once per shapes, dtypes, loss kind,
  recorder, validation loss kind and x64 mode: a user metric's dtype can depend on the mode)."""
  leaves, treedef = jax.tree_util.tree_flatten((loss, validation))
  return _traced_record_shapes(
    tuple(spec(w) for w in weights),
    treedef,
    tuple(spec(x) for x in leaves),
    rec,
    bool(jax.config.jax_enable_x64),
  )


@functools.lru_cache(maxsize=256)
def _traced_record_shapes(weight_specs, losses_treedef, loss_specs, rec, x64: bool) -> dict:
  del x64  # a key only: eval_shape below traces in the current mode
  losses = jax.tree_util.tree_unflatten(
    losses_treedef, [jax.ShapeDtypeStruct(*s) for s in loss_specs]
  )

  def point(weights, losses):
    loss, validation = losses
    value, grads = value_and_grad(weights, loss)
    return record_point(weights, value, grads, loss, False, 0, validation, rec=rec, track_every=1)

  return jax.eval_shape(point, tuple(jax.ShapeDtypeStruct(*s) for s in weight_specs), losses)


def record_bytes(
  weights, loss, sched: Schedule, rec: Recorder = Recorder(), validation=None
) -> int:
  """Bytes one network's records take: ``T`` records of every field.

  Example (3 records of 4 scalars and 2 + 1 + 1 singular values, float32):
    >>> import jax.numpy as jnp, lintraj as lt
    >>> ws = (jnp.ones((3, 2)), jnp.ones((1, 3)))
    >>> record_bytes(ws, lt.losses.target(jnp.ones((1, 2))), Schedule(10, 5))
    96
  """
  shapes = record_shapes(weights, loss, rec, validation)
  per_record = sum(math.prod(s.shape) * s.dtype.itemsize for s in jax.tree_util.tree_leaves(shapes))
  return per_record * sched.records


def check_memory(
  weights,
  loss,
  sched: Schedule,
  rec: Recorder = Recorder(),
  validation=None,
  *,
  device_lanes=1,
  host_lanes=0,
  devices=None,
  fraction=0.8,
):
  """ValueError, before running, if the records would not fit in memory.

  ``device_lanes`` networks' records are on each of ``devices`` (default: the first device) at
  once; on CPU this process's devices share the host's memory. ``host_lanes`` networks' records
  are gathered on the host. A run may use at most ``fraction`` of the free memory.
  """
  per_lane = record_bytes(weights, loss, sched, rec, validation)
  local = [d for d in (devices or jax.devices()[:1]) if d.process_index == jax.process_index()]
  device = local[0]
  if device.platform == "cpu":
    checks = [
      (per_lane * (device_lanes * len(local) + host_lanes), *_runtime.available_bytes(device))
    ]
  else:
    checks = [
      (per_lane * device_lanes, *_runtime.available_bytes(device)),
      (per_lane * host_lanes, *_runtime.available_bytes(jax.local_devices(backend="cpu")[0])),
    ]
  total = sched.records
  for needed, free, where in checks:
    if free is not None and needed > fraction * free:
      raise ValueError(
        f"the records would take {needed / 2**30:.3g} GiB ({total} records x "
        f"{per_lane // total} bytes per network) but only {free / 2**30:.3g} GiB of {where} is "
        "free. Record less often (a larger record_every; each doubling halves it), run fewer "
        "steps, or for a batch pass a smaller lanes_per_device= (chunks run one after another; "
        "only device memory shrinks)."
      )


def trajectory(
  records: dict, sched: Schedule, final, diverged, stopped, *, batched: bool, watch=None
) -> Trajectory:
  """The :class:`Trajectory` of a finished run from its record buffers and lane counters (int
  or None for a single run; ``(B,)`` int arrays, ``-1`` for never, for a batch), and the best
  record on held-out data (``watch``: best weights and step) of a run with ``validation=``."""
  steps = sched.record_steps()
  if batched:
    steps = np.tile(steps, (np.shape(diverged)[0], 1))
  else:
    as_step = lambda x: None if int(x) < 0 else int(x)
    diverged, stopped = as_step(diverged), as_step(stopped)
    steps = jnp.asarray(steps)
  best = (
    {}
    if watch is None
    else dict(best=watch.best, best_step=np.asarray(watch.step) if batched else as_step(watch.step))
  )
  return Trajectory(
    step=steps, final=final, diverged_step=diverged, stopped_step=stopped, **records, **best
  )

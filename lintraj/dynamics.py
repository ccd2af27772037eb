r"""Gradient descent and optax training of deep linear networks, recording the theory's metrics.

A run is one compiled ``lax.while_loop`` over records: iteration ``i`` records the metrics at
step ``i k`` (``k = record_every``) and takes the next ``min(k, steps - i k)`` steps, reusing the
recorded gradient for the first of them. The per-network body (:func:`lane_point`, the record,
:func:`lane_steps`) is shared by single runs and, vmapped, by batched runs
(:func:`lintraj.batch_gradient_descent`), whose loop ends as soon as every network has stopped or
diverged.

The loop's end is a traced argument, so a run can be cut into segments (to advance a progress bar
or write checkpoints) that all execute the same compiled program: the records do not depend on
where, or whether, the run was cut. A second call with the same shapes, steps and record_every
(but other data, target, learning rate or threshold) reuses the compiled program.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec

from lintraj.landscape import hessian_extremes
from lintraj.losses import as_loss
from lintraj.network import check_weights, end_to_end, layer_dims
from lintraj.progress import Progress
from lintraj.singular_values import lapack_single_thread
from lintraj.trajectory import Trajectory, Tracking, check_tracking, mask_record, record
from lintraj.validation import check_int, check_positive

__all__ = ["gradient_descent", "train", "check_run", "check_lr", "check_stop_at_loss",
           "check_checkpoint", "checkpoint_blocks", "check_memory", "record_bytes", "LaneState",
           "RunState", "lane_point", "lane_steps", "state_shapes", "initial_state", "drive", "to_host",
           "records_written", "progress_bar", "restore", "call_tracking", "put_sharded",
           "resume_gradient_descent"]

_MAX_STEPS = 2**31 - 1


def check_run(weights, loss, steps, record_every):
  """Validate the common arguments of a run (before tracing); returns (weights, loss, steps, record_every)."""
  weights = check_weights(weights)
  loss = as_loss(loss)
  dims = layer_dims(weights)
  if loss.target is not None and tuple(np.shape(loss.target)) != (dims[-1], dims[0]):
    raise ValueError(
        f"the loss's target has shape {tuple(np.shape(loss.target))} but the end-to-end matrix of "
        f"these weights has shape {(dims[-1], dims[0])} (d_N, d_0); build the weights with "
        f"dims = ({np.shape(loss.target)[1]}, ..., {np.shape(loss.target)[0]}).")
  return (weights, loss, check_int("steps", steps, 0, _MAX_STEPS),
          check_int("record_every", record_every, 1, _MAX_STEPS))


def check_lr(lr) -> float:
  """A learning rate as a float, or ValueError if it is not finite and positive."""
  return check_positive("lr", lr, " Typical values: 1e-4 .. 1.")


def check_stop_at_loss(stop_at_loss) -> np.ndarray:
  """The stopping threshold as a float64 array (``-inf``: never stop; None means ``-inf``), or ValueError."""
  if stop_at_loss is None:
    return np.asarray(-np.inf)
  try:
    value = np.asarray(stop_at_loss, np.float64)
  except (TypeError, ValueError):
    raise ValueError(f"stop_at_loss must be a number or None; got {stop_at_loss!r}.") from None
  if np.any(np.isnan(value) | (value == np.inf)):
    raise ValueError(f"stop_at_loss must be finite, or -inf (or None) to never stop; got {stop_at_loss!r}.")
  return value


def check_checkpoint(checkpoint, checkpoint_every):
  """``(path, checkpoint_every)`` as ``(str, int)``, ``(None, None)`` for no checkpoints, or
  ValueError on a half-given or bad pair."""
  if checkpoint is None and checkpoint_every is None:
    return None, None
  if checkpoint is None or checkpoint_every is None:
    raise ValueError("give both checkpoint=path and checkpoint_every=K (steps between checkpoints), "
                     f"or neither; got checkpoint={checkpoint!r}, checkpoint_every={checkpoint_every!r}.")
  return os.fspath(checkpoint), check_int("checkpoint_every", checkpoint_every, 1)


def checkpoint_blocks(checkpoint_every, record_every):
  """Records between checkpoints: they fall on record boundaries, ``checkpoint_every`` steps
  rounded up to a multiple of ``record_every`` (None without checkpoints)."""
  return None if checkpoint_every is None else -(-int(checkpoint_every) // record_every)


def _available_bytes(device) -> tuple[int | None, str]:
  """Free memory of ``device`` (accelerators) or of the host (CPU), with a name for messages."""
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "bytes_limit" in stats:
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"{device.platform} device memory"
  try:
    with open("/proc/meminfo") as f:
      info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024, "available host memory"
  except (OSError, KeyError, ValueError):
    try:
      return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available host memory"
    except (ValueError, OSError, AttributeError):
      return None, "memory"


def record_bytes(weights, loss, steps: int, record_every: int, tracking: Tracking = Tracking()) -> int:
  """Bytes one network's records take: ``T = steps // record_every + 1`` records of every metric."""
  shapes = _record_shapes(weights, loss, tracking)
  per_record = sum(math.prod(s.shape) * s.dtype.itemsize for s in jax.tree_util.tree_leaves(shapes))
  return per_record * (steps // record_every + 1)


def check_memory(weights, loss, steps, record_every, *, tracking: Tracking = Tracking(), device_lanes=1,
                 host_lanes=0, devices=None, fraction=0.8):
  """ValueError, before running, if the records would not fit in memory.

  ``device_lanes`` networks' records are on each of ``devices`` (default: the first device) at
  once; on CPU this process's devices share the host's memory. ``host_lanes`` networks' records
  are gathered on the host. A run may use at most ``fraction`` of the free memory.
  """
  per_lane = record_bytes(weights, loss, steps, record_every, tracking)
  local = [d for d in (devices or jax.devices()[:1]) if d.process_index == jax.process_index()]
  device = local[0]
  if device.platform == "cpu":
    checks = [(per_lane * (device_lanes * len(local) + host_lanes), *_available_bytes(device))]
  else:
    checks = [(per_lane * device_lanes, *_available_bytes(device)),
              (per_lane * host_lanes, *_available_bytes(jax.local_devices(backend="cpu")[0]))]
  total = steps // record_every + 1
  for needed, free, where in checks:
    if free is not None and needed > fraction * free:
      raise ValueError(
          f"the records would take {needed / 2**30:.3g} GiB ({total} records x {per_lane // total} "
          f"bytes per network) but only {free / 2**30:.3g} GiB of {where} is free. Record less often "
          f"(a larger record_every; each doubling halves it), run fewer steps, or for a batch pass a "
          f"smaller batch_size= (chunks run one after another; only device memory shrinks).")


class LaneState(NamedTuple):
  """The state of one network (or of a batch, with a leading lane axis on every leaf)."""

  weights: tuple
  opt_state: Any
  diverged: Any  # int32: first step with a non-finite loss, or -1
  stopped: Any   # int32: first step with loss <= stop_at_loss, or -1


class RunState(NamedTuple):
  """The carry of the compiled loop: lanes, the record buffers (``T`` records) and records written."""

  lanes: LaneState
  records: dict
  block: Any  # int32 scalar: records written so far


def _value_and_grad(weights, loss):
  return jax.value_and_grad(lambda ws: loss(end_to_end(ws)))(weights)


def _record(weights, value, grads, loss, invalid, block, tracking: Tracking) -> dict:
  """The recorded metrics at one point (record number ``block``), all NaN where ``invalid``
  (metrics of zeros are computed there instead of the weights, which may be infinite, so no SVD
  sees a non-finite matrix). The Hessian's extreme eigenvalues, when tracked, only at every
  ``tracking.track_every``-th record (NaN at the others, not computed): one Lanczos run gives both."""
  weights = jax.tree_util.tree_map(lambda w: jnp.where(invalid, jnp.zeros_like(w), w), weights)
  rec = record(weights, value, grads, loss.target, singular_values=tracking.singular_values)
  if tracking.track:
    def curvature():
      lowest, highest = hessian_extremes(weights, loss).astype(value.dtype)
      both = {"sharpness": highest, "min_hessian_eigenvalue": lowest}
      return {name: both[name] for name in tracking.track}

    nan = lambda: {name: jnp.full_like(value, jnp.nan) for name in tracking.track}  # typed like value
    rec.update(lax.cond(block % tracking.track_every == 0, curvature, nan))
  return mask_record(rec, invalid)


def _spec(x):
  return np.shape(x), jax.dtypes.canonicalize_dtype(x.dtype if hasattr(x, "dtype") else np.result_type(x))


def _record_shapes(weights, loss, tracking: Tracking) -> dict:
  """Shapes and dtypes of one network's record (traced once per shapes, dtypes, loss kind and tracking)."""
  leaves, treedef = jax.tree_util.tree_flatten(loss)
  return _traced_record_shapes(tuple(_spec(w) for w in weights), treedef, tuple(_spec(x) for x in leaves),
                               tracking)


@functools.lru_cache(maxsize=256)
def _traced_record_shapes(weight_specs, loss_treedef, loss_specs, tracking) -> dict:
  loss = jax.tree_util.tree_unflatten(loss_treedef, [jax.ShapeDtypeStruct(*s) for s in loss_specs])

  def point(weights, loss):
    value, grads = _value_and_grad(weights, loss)
    return _record(weights, value, grads, loss, False, 0, tracking)

  return jax.eval_shape(point, tuple(jax.ShapeDtypeStruct(*s) for s in weight_specs), loss)


def _advance(update, lane: LaneState, value, grads, t, stop_at_loss, active) -> LaneState:
  """One update at step ``t`` unless the lane is inactive, diverged or stopped (then it is frozen).
  Divergence is checked even when inactive (the last record, at ``t = steps``, takes no step)."""
  alive = (lane.diverged < 0) & (lane.stopped < 0)
  diverged = jnp.where(alive & ~jnp.isfinite(value), t, lane.diverged)
  running = active & alive
  stopped = jnp.where(running & (value <= stop_at_loss), t, lane.stopped)
  moving = running & (diverged < 0) & (stopped < 0)
  # A cond, not a select of both: a single run skips the update when frozen (vmapped, it is a select).
  weights, opt_state = lax.cond(moving, lambda: update(lane.weights, lane.opt_state, grads, value),
                                lambda: (lane.weights, lane.opt_state))
  return LaneState(weights, opt_state, diverged, stopped)


def lane_point(lane: LaneState, loss):
  """Loss and gradients of one network at its current step, and whether its record is invalid
  (the lane diverged earlier, or its loss is not finite now)."""
  value, grads = _value_and_grad(lane.weights, loss)
  return value, grads, (lane.diverged >= 0) | ~jnp.isfinite(value)


def lane_steps(update, lane: LaneState, value, grads, loss, stop_at_loss, t0, n) -> LaneState:
  r"""Take ``n`` steps (``n`` traced) of one network from step ``t0``, the first with the given
  loss ``value`` and ``grads`` (those of its record).

  A lane whose loss at step ``t`` is not finite is marked ``diverged = t`` and frozen (its
  records are NaN from then on); one whose loss is :math:`\le` ``stop_at_loss`` is marked
  ``stopped = t`` and frozen (its records repeat).

  Args:
    update: ``update(weights, opt_state, grads, value) -> (weights, opt_state)``.
    lane: a :class:`LaneState` of one network.
    value, grads: the loss and its gradients at step ``t0``.
    loss: a :class:`lintraj.losses.Loss`.
    stop_at_loss: the threshold (``-inf`` never stops).
    t0: the current step.
    n: steps to take.
  """
  lane = _advance(update, lane, value, grads, t0, stop_at_loss, n > 0)

  def going(carry):  # a frozen lane takes no more steps (vmapped: until every lane is frozen)
    j, lane = carry
    return (j < n) & (lane.diverged < 0) & (lane.stopped < 0)

  def step(carry):
    j, lane = carry
    value, grads = _value_and_grad(lane.weights, loss)
    return j + 1, _advance(update, lane, value, grads, t0 + j, stop_at_loss, True)

  return lax.while_loop(going, step, (jnp.ones_like(n), lane))[1]


def _settled(state: RunState, record_every, track_every):
  """True once every lane stopped or diverged no later than the last written record's step, and
  that record is one where the tracked metrics were computed (so it can stand for every later one)."""
  done = jnp.maximum(state.lanes.diverged, state.lanes.stopped)
  return ((state.block > 0) & ((state.block - 1) % track_every == 0)
          & jnp.all((done >= 0) & (done <= (state.block - 1) * record_every)))


def _run_records(update, state: RunState, loss, stop_at_loss, until, *, steps, record_every,
                 batched, loss_batched, tracking):
  """Write records ``state.block .. until - 1``; once every lane has settled, stop stepping and
  fill the remaining records with the last one (the lanes are frozen, so the loop would write
  the same record again; tracked metrics only at their records, NaN between) and set the counter
  to ``T``. A batch runs the single-network functions vmapped.
  """
  point, take_steps = lane_point, functools.partial(lane_steps, update)
  record_point = functools.partial(_record, tracking=tracking)
  if batched:
    loss_axis = 0 if loss_batched else None
    point = jax.vmap(point, in_axes=(0, loss_axis))
    take_steps = jax.vmap(take_steps, in_axes=(0, 0, 0, loss_axis, 0, None, None))
    record_point = jax.vmap(record_point, in_axes=(0, 0, 0, loss_axis, 0, None))
  axis = 1 if batched else 0
  total = steps // record_every + 1
  track_every = tracking.track_every if tracking.track else 1

  def body(state):
    t0 = state.block * record_every
    value, grads, invalid = point(state.lanes, loss)
    rec = record_point(state.lanes.weights, value, grads, loss, invalid, state.block)
    lanes = take_steps(state.lanes, value, grads, loss, stop_at_loss, t0,
                       jnp.minimum(record_every, steps - t0))
    records = jax.tree_util.tree_map(
        lambda buf, r: lax.dynamic_update_index_in_dim(buf, r.astype(buf.dtype), state.block, axis),
        state.records, rec)
    return RunState(lanes, records, state.block + 1)

  def cond(state):
    return (state.block < until) & ~_settled(state, record_every, track_every)

  def fill(state):
    index = jnp.arange(total)

    def fill_buffer(buf, written):  # written: which later records this metric has (not NaN)
      shape = [-1 if a == axis else 1 for a in range(buf.ndim)]
      last = lax.dynamic_index_in_dim(buf, state.block - 1, axis, keepdims=True)
      later = (index >= state.block).reshape(shape)
      return jnp.where(later & written.reshape(shape), last, jnp.where(later, jnp.nan, buf))

    tracked = index % track_every == 0
    records = {name: jax.tree_util.tree_map(
        functools.partial(fill_buffer, written=tracked if name in tracking.track else index >= 0), buf)
        for name, buf in state.records.items()}
    return RunState(state.lanes, records, jnp.full_like(state.block, total))

  state = lax.while_loop(cond, body, state)
  return lax.cond(state.block < until, fill, lambda state: state, state)


def _per_device(run, mesh, loss_batched):
  """``run`` on each device's own lanes (``shard_map`` over the mesh axis ``"lanes"``): every device
  runs its own loop, ending when its lanes settle, with no communication between devices. The
  record counter has one entry per device."""
  lanes = PartitionSpec("lanes")

  def local(state, loss, stop_at_loss, until):
    state = run(state._replace(block=state.block[0]), loss, stop_at_loss, until)
    return state._replace(block=state.block[None])

  return jax.shard_map(local, mesh=mesh, in_specs=(lanes, lanes if loss_batched else PartitionSpec(),
                                                  lanes, PartitionSpec()), out_specs=lanes)


def _sgd_update(weights, lr, grads, value):
  return jax.tree_util.tree_map(lambda w, g: w - lr * g, weights, grads), lr


def _optax_update(optimizer, loss, weights, opt_state, grads, value):
  """One optax step, with optax's extra arguments (``value``, ``grad``, ``value_fn``: the network
  loss as a function of the weights) for optimizers that need the loss (line searches, L-BFGS)."""
  value_fn = lambda ws: loss(end_to_end(ws))
  updates, opt_state = optax.with_extra_args_support(optimizer).update(
      grads, opt_state, weights, value=value, grad=grads, value_fn=value_fn)
  return optax.apply_updates(weights, updates), opt_state


@functools.partial(jax.jit, static_argnames=("steps", "record_every", "tracking", "batched", "loss_batched",
                                             "mesh"), donate_argnums=0)
def _gradient_descent_run(state, loss, stop_at_loss, until, *, steps, record_every, tracking, batched=False,
                          loss_batched=False, mesh=None):
  run = functools.partial(_run_records, _sgd_update, steps=steps, record_every=record_every,
                          batched=batched, loss_batched=loss_batched, tracking=tracking)
  if mesh is not None:
    run = _per_device(run, mesh, loss_batched)
  return run(state, loss, stop_at_loss, until)


@functools.partial(jax.jit, static_argnames=("optimizer", "steps", "record_every", "tracking"),
                   donate_argnums=0)
def _train_run(state, loss, until, *, optimizer, steps, record_every, tracking):
  return _run_records(functools.partial(_optax_update, optimizer, loss), state, loss, -jnp.inf, until,
                      steps=steps, record_every=record_every, batched=False, loss_batched=False,
                      tracking=tracking)


def to_host(x) -> np.ndarray:
  """A (possibly sharded, possibly multi-process) array as a NumPy array on this host."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(x)


def records_written(state: RunState) -> int:
  """Records written so far (the least over devices; settled devices count as finished)."""
  return int(np.min(to_host(state.block)))


def state_shapes(lanes: LaneState, loss, steps, record_every, *, tracking: Tracking = Tracking(),
                 batched=False) -> RunState:
  """The shapes and dtypes (``jax.ShapeDtypeStruct``) of a run's :class:`RunState` (one record
  counter, as a checkpoint stores it)."""
  lane_weights = jax.tree_util.tree_map(lambda w: w[0], lanes.weights) if batched else lanes.weights
  rec = _record_shapes(lane_weights, loss, tracking)
  lead = (np.shape(lanes.diverged)[0],) if batched else ()
  lead += (steps // record_every + 1,)
  as_struct = lambda x: jax.ShapeDtypeStruct(*_spec(x))
  return RunState(jax.tree_util.tree_map(as_struct, lanes),
                  jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(lead + s.shape, s.dtype), rec),
                  jax.ShapeDtypeStruct((), jnp.int32))


def put_sharded(x, sharding) -> jax.Array:
  """A host array placed on the devices of ``sharding``, each process giving its own pieces."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def initial_state(lanes: LaneState, loss, steps, record_every, *, tracking: Tracking = Tracking(),
                  batched=False, saved=None, mesh=None) -> RunState:
  """The loop's starting carry: fresh copies of ``lanes`` and NaN buffers for ``T`` records, or
  the ``saved`` state (host arrays, e.g. from :func:`restore`) put on the devices.

  The carry owns its buffers (the compiled loop reuses them in place), so the caller's arrays are
  copied. With a ``mesh`` (1-D, axis ``"lanes"``) the lanes and records are split across its
  devices, each with its own record counter.
  """
  lane_sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec("lanes"))
  block = np.zeros((), np.int32) if saved is None else np.asarray(saved.block, np.int32)
  if mesh is not None:
    block = np.full(mesh.size, block, np.int32)

  def place(x, sharding=lane_sharding):
    return jnp.array(x, copy=True) if sharding is None else put_sharded(x, sharding)

  if saved is not None:
    return RunState(jax.tree_util.tree_map(place, saved.lanes), jax.tree_util.tree_map(place, saved.records),
                    place(block))
  shapes = state_shapes(lanes, loss, steps, record_every, tracking=tracking, batched=batched)
  if mesh is None:
    leaves, treedef = jax.tree_util.tree_flatten(shapes.records)
    return _fresh_state(lanes, block, tuple((x.shape, x.dtype) for x in leaves), treedef)
  records = jax.tree_util.tree_map(
      lambda s: jnp.full(s.shape, jnp.nan, s.dtype, device=lane_sharding), shapes.records)
  return RunState(jax.tree_util.tree_map(place, lanes), records, place(block))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _fresh_state(lanes, block, record_specs, records_treedef) -> RunState:
  """A new carry on the default device in one dispatch: copies of ``lanes`` and NaN records."""
  records = [jnp.full(shape, jnp.nan, dtype) for shape, dtype in record_specs]
  return RunState(jax.tree_util.tree_map(jnp.copy, lanes),
                  jax.tree_util.tree_unflatten(records_treedef, records), jnp.copy(block))


def drive(run_segment, state: RunState, *, steps, record_every, progress=None, checkpoint=None,
          checkpoint_blocks=None, count=None) -> RunState:
  """Run the compiled loop to the end, in segments when a progress bar or checkpoints need them.

  Args:
    run_segment: ``run_segment(state, until) -> state`` (the jitted loop with its other arguments bound).
    state: a :class:`RunState`.
    progress: a :class:`lintraj.progress.Progress` or None.
    checkpoint: ``checkpoint(state)`` writes a checkpoint, or None.
    checkpoint_blocks: records between checkpoints.
    count: ``count(state) -> (stopped, diverged)`` lanes so far, for the progress bar.

  The loop runs inside :func:`lintraj.singular_values.lapack_single_thread`.
  """
  total = steps // record_every + 1
  with lapack_single_thread():  # OpenBLAS threads only contend with XLA's (see singular_values)
    block = records_written(state)
    while block < total:
      until = total
      if checkpoint is not None:
        until = min(until, (block // checkpoint_blocks + 1) * checkpoint_blocks)
      if progress is not None:
        until = progress.until(block, until)
      state = run_segment(state, until)
      block = records_written(state)
      if progress is not None:
        progress.update(min(block * record_every, steps), *(count(state) if count else ()))
      if checkpoint is not None and (block % checkpoint_blocks == 0 or block == total):
        checkpoint(state)
  return state


def _trajectory(state: RunState, steps, record_every) -> Trajectory:
  diverged, stopped = int(state.lanes.diverged), int(state.lanes.stopped)
  return Trajectory(step=jnp.arange(steps // record_every + 1, dtype=jnp.int32) * record_every,
                    final=state.lanes.weights, diverged_step=None if diverged < 0 else diverged,
                    stopped_step=None if stopped < 0 else stopped, **state.records)


def progress_bar(progress, steps, desc, **kwargs):
  """A :class:`lintraj.progress.Progress` for ``progress=True``, None for False, else ValueError."""
  if progress is True:
    return Progress(steps, desc=desc, **kwargs)
  if progress is False or progress is None:
    return None
  raise ValueError(f"progress must be True or False; got {progress!r}.")


def restore(template, leaves: dict):
  """The pytree of ``template`` (e.g. :func:`state_shapes`) with the saved ``leaves`` (named "0", "1", ...)."""
  flat, treedef = jax.tree_util.tree_flatten(template)
  if len(leaves) != len(flat) or any(np.shape(leaves[str(i)]) != x.shape or leaves[str(i)].dtype != x.dtype
                                     for i, x in enumerate(flat)):
    raise ValueError("the checkpoint's state does not fit its run's arguments (written by another "
                     "version of lintraj?).")
  return jax.tree_util.tree_unflatten(treedef, [leaves[str(i)] for i in range(len(flat))])


def gradient_descent(weights, loss, *, lr, steps: int, record_every: int = 1, stop_at_loss=None,
                     track=(), track_every: int = 1, singular_values: str = "batched",
                     progress: bool = False, checkpoint=None, checkpoint_every: int | None = None
                     ) -> Trajectory:
  r"""Full-batch gradient descent on the network loss :math:`L^N(W_1..W_N) = L^1(W_{1:N})`,
  recording the theory's metrics every ``record_every`` steps.

  .. math::
     W_j(t+1) = W_j(t) - \eta\, \frac{\partial L^N}{\partial W_j}
              = W_j(t) - \eta\, W_{j+1:N}^\top \nabla L^1(W_{1:N})\, W_{1:j-1}^\top .

  Numerically equal to :func:`train` with ``optax.sgd(lr)``, but the learning rate is a traced
  argument: changing it does not recompile. The dtype follows the weights (float64 under
  ``jax.enable_x64(True)`` with float64 weights).

  Divergence: from the first step whose loss is not finite the weights stop changing, the
  records from that step on are NaN, and ``diverged_step`` names the step; earlier records
  are intact. Early stopping: from the first step ``t < steps`` whose loss is
  :math:`\le` ``stop_at_loss`` the weights stop changing (later records repeat) and
  ``stopped_step = t``.

  Args:
    weights: ``(W_1, ..., W_N)``, ``W_j`` of shape ``(d_j, d_{j-1})``.
    loss: a :class:`lintraj.losses.Loss` (e.g. ``lintraj.losses.target(phi)``) or a jittable
      function of the end-to-end matrix.
    lr: learning rate :math:`\eta > 0`.
    steps: number of GD steps.
    record_every: record at steps ``0, k, 2k, ...``; ``T = steps // k + 1`` records.
    stop_at_loss: stop once the loss is at most this (None: never).
    track: metrics to record besides the default ones, from
      :data:`lintraj.trajectory.TRACKABLE`: ``"sharpness"``, the top Hessian eigenvalue
      (:func:`lintraj.landscape.sharpness`, Lanczos, matrix-free) to compare with :math:`2/\eta`;
      ``"min_hessian_eigenvalue"``, the bottom one (negative near a saddle). Both come from one
      Lanczos run (:func:`lintraj.landscape.hessian_extremes`).
    track_every: record the tracked metrics at every ``track_every``-th record only (NaN at the
      others). Each tracked record is one Lanczos run of :math:`\min(P, 60)` Hessian-vector
      products with full reorthogonalisation against a :math:`61 \times P` basis (:math:`P` the
      number of weights): measured on a 2-core CPU, 14 ms at depth 4 width 16 and 1.1 s at depth
      8 width 128 (:math:`P = 131072`, where the basis no longer fits in cache), against 0.2 and
      12 ms for the rest of a record.
    singular_values: ``"batched"`` (default: equal-shaped matrices share one LAPACK call) or
      ``"exact"`` (one call per matrix); the same values either way (:mod:`lintraj.singular_values`).
    progress: show a tqdm progress bar (advanced between segments of the compiled loop; the
      records are identical with and without it).
    checkpoint: a path; with ``checkpoint_every=K`` the run's state is written there (atomically)
      every ``K`` steps (rounded up to a multiple of ``record_every``) and at the end;
      :func:`lintraj.resume` continues an interrupted run from it.
    checkpoint_every: steps between checkpoints.

  Returns:
    A :class:`lintraj.Trajectory`.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> phi = jnp.array([[1.0, 0.5]])
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 3, 1), std=0.5)
    >>> traj = lt.gradient_descent(ws, lt.losses.target(phi), lr=0.1, steps=500, record_every=100)
    >>> traj.loss.shape, bool(traj.loss[-1] < 1e-6)
    ((6,), True)
    >>> lt.gradient_descent(ws, lt.losses.target(phi), lr=0.1, steps=500, stop_at_loss=1.1e-4).stopped_step
    30
    >>> traj = lt.gradient_descent(ws, lt.losses.target(phi), lr=0.1, steps=500, record_every=100,
    ...                            track=("sharpness",))
    >>> bool(traj.sharpness[-1] < 2 / 0.1)   # GD settled where it is stable: sharpness < 2 / lr
    True

  References:
    Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019 (arXiv 1810.02281), Eq. (4).
  """
  weights, loss, steps, record_every = check_run(weights, loss, steps, record_every)
  lr = check_lr(lr)
  stop = check_stop_at_loss(stop_at_loss)
  if stop.ndim:
    raise ValueError(f"stop_at_loss must be a number for a single run; got shape {stop.shape}.")
  tracking = check_tracking(track, track_every, singular_values)
  path, checkpoint_every = check_checkpoint(checkpoint, checkpoint_every)
  check_memory(weights, loss, steps, record_every, tracking=tracking)
  bar = progress_bar(progress, steps, "gradient descent")
  call = dict(steps=steps, record_every=record_every, stop_at_loss=float(stop), lr=lr,
              checkpoint_every=checkpoint_every, tracking=tracking._asdict())
  return _run_gradient_descent(weights, loss, call, bar, path)


def _run_gradient_descent(weights, loss, call, bar, path, saved=None) -> Trajectory:
  """Run (or, from ``saved`` state leaves, continue) a validated single-network GD call."""
  steps, record_every, checkpoint_every = call["steps"], call["record_every"], call["checkpoint_every"]
  tracking = call_tracking(call)
  dtype = weights[0].dtype
  lanes = LaneState(weights, jnp.asarray(call["lr"], dtype), jnp.int32(-1), jnp.int32(-1))
  if saved is not None:
    saved = restore(state_shapes(lanes, loss, steps, record_every, tracking=tracking), saved)
  state = initial_state(lanes, loss, steps, record_every, tracking=tracking, saved=saved)
  writer = None
  if path is not None:
    from lintraj import io
    weight_arrays = {f"weights/{j}": np.asarray(w) for j, w in enumerate(weights)}
    writer = lambda state: io.write_checkpoint(
        path, "gradient_descent", call=call, arrays=weight_arrays, loss=loss,
        state_arrays={str(i): x for i, x in enumerate(jax.tree_util.tree_leaves(jax.device_get(state)))})
  stop = jnp.asarray(call["stop_at_loss"], dtype)
  segment = lambda s, until: _gradient_descent_run(s, loss, stop, until, steps=steps,
                                                   record_every=record_every, tracking=tracking)
  try:
    state = drive(segment, state, steps=steps, record_every=record_every, progress=bar, checkpoint=writer,
                  checkpoint_blocks=checkpoint_blocks(checkpoint_every, record_every))
  finally:
    if bar is not None:
      bar.close()
  return _trajectory(state, steps, record_every)


def call_tracking(call: dict) -> Tracking:
  """The :class:`Tracking` stored in a run's call (a checkpoint's); the defaults for older ones."""
  stored = call.get("tracking", {})
  return Tracking(**dict(stored, track=tuple(stored.get("track", ()))))  # JSON stores the tuple as a list


def resume_gradient_descent(path, call, arrays, loss, saved, progress) -> Trajectory:
  """Continue a :func:`gradient_descent` run from a checkpoint's contents (see :func:`lintraj.resume`)."""
  weights = check_weights([arrays[f"weights/{j}"] for j in range(len(arrays))])
  check_memory(weights, loss, call["steps"], call["record_every"], tracking=call_tracking(call))
  return _run_gradient_descent(weights, loss, call, progress_bar(progress, call["steps"], "gradient descent"),
                               path, saved)


def train(weights, loss, optimizer: optax.GradientTransformation, *, steps: int,
          record_every: int = 1, track=(), track_every: int = 1, singular_values: str = "batched",
          progress: bool = False) -> Trajectory:
  r"""Train the network with any optax optimizer, recording like :func:`gradient_descent`
  (``track``, ``track_every`` and ``singular_values`` as there).

  The optimizer is a compile-time constant: reuse the same object to avoid recompiling.

  Example:
    >>> import jax, jax.numpy as jnp, optax, lintraj as lt
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 3, 1), std=0.5)
    >>> traj = lt.train(ws, lt.losses.target(jnp.array([[1.0, 0.5]])), optax.adam(1e-2), steps=100)
    >>> traj.step.shape
    (101,)

  References:
    Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration by
    Overparameterization. ICML 2018 (arXiv 1802.06509), Section 6 (GD vs adaptive methods).
  """
  weights, loss, steps, record_every = check_run(weights, loss, steps, record_every)
  if not isinstance(optimizer, optax.GradientTransformation):
    raise ValueError(f"optimizer must be an optax.GradientTransformation (e.g. optax.sgd(1e-2)); got "
                     f"{type(optimizer).__name__}.")
  tracking = check_tracking(track, track_every, singular_values)
  check_memory(weights, loss, steps, record_every, tracking=tracking)
  bar = progress_bar(progress, steps, "train")
  lanes = LaneState(weights, optimizer.init(weights), jnp.int32(-1), jnp.int32(-1))
  state = initial_state(lanes, loss, steps, record_every, tracking=tracking)
  segment = lambda s, until: _train_run(s, loss, until, optimizer=optimizer, steps=steps,
                                        record_every=record_every, tracking=tracking)
  try:
    state = drive(segment, state, steps=steps, record_every=record_every, progress=bar)
  finally:
    if bar is not None:
      bar.close()
  return _trajectory(state, steps, record_every)

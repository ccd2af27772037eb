r"""The one engine every discrete-time run goes through: state, the compiled loop over records,
one loop per device, running in segments, chunks of a batch and checkpoints.

A run is one compiled ``lax.while_loop`` over records: iteration ``i`` records the metrics at
step ``i k`` (``k = record_every``) and takes the next ``min(k, steps - i k)`` steps, reusing the
recorded gradient for the first of them. The per-network body (:func:`lane_point`, the record,
:func:`lane_steps`) is shared by single runs and, vmapped, by batches, whose loop ends as soon as
every network has stopped or diverged. What a step does is the run's *update*
(:func:`gd_update`, or :class:`OptaxUpdate` for any optax optimizer); everything else is common.

The loop's end is a traced argument, so a run is cut into segments of about
:data:`SEGMENT_SECONDS` of work that all execute the same compiled program: the records do not
depend on where the run was cut, and between segments the run reports progress, writes
checkpoints and lets Python handle an interrupt.
"""

from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec

from lintraj import _distributed, io, minibatch
from lintraj._runtime import put_sharded, to_host
from lintraj.losses import as_loss, check_loss, stack_losses
from lintraj.minibatch import Sampling
from lintraj.network import check_weights, end_to_end, layer_dims
from lintraj.recording import (
  Recorder,
  Schedule,
  check_memory,
  check_metrics,
  record_point,
  record_shapes,
  recorder,
  schedule,
  spec,
  trajectory,
  value_and_grad,
)
from lintraj.singular_values import lapack_single_thread
from lintraj.validation import check_checkpoint, check_concrete, check_int, check_positive

__all__ = []

SEGMENT_SECONDS = 0.5  # wall time of one segment of the compiled loop (bounds interrupt latency)


class Watch(NamedTuple):
  """The best record on held-out data so far (runs with ``validation=``)."""

  best: tuple  # the weights at the best record
  value: Any  # its validation loss (+inf before the first record)
  step: Any  # int32: its step, or -1
  wait: Any  # int32: records since it


class EarlyStopping(NamedTuple):
  """Stop after ``patience`` records without a validation loss below the best by more than
  ``min_delta`` (hashable: part of the compiled program)."""

  patience: int | None = None  # None: never stop, only keep the best record
  min_delta: float = 0.0


class LaneState(NamedTuple):
  """The state of one network (or of a batch, with a leading lane axis on every leaf)."""

  weights: tuple
  opt_state: Any
  diverged: Any  # int32: first step with a non-finite loss, or -1
  stopped: Any  # int32: first step with loss <= stop_at_loss (or out of patience), or -1
  watch: Any = None  # a Watch with validation=, else None
  sampler: Any = None  # a minibatch.SamplerState with batch_size=, else None


class RunState(NamedTuple):
  """The carry of the compiled loop: lanes, the record buffers (``T`` records), records written."""

  lanes: LaneState
  records: dict
  block: Any  # int32 scalar (one per device when sharded): records written so far


def gd_update(weights, lr, grads, value, loss):
  r"""Gradient descent, :math:`W_j \leftarrow W_j - \eta\, \partial L^N / \partial W_j`; the
  learning rate is the optimizer state (traced: changing it does not recompile)."""
  return jax.tree_util.tree_map(lambda w, g: w - lr * g, weights, grads), lr


class OptaxUpdate(NamedTuple):
  """One step of an optax optimizer, given optax's extra arguments (``value``, ``grad`` and
  ``value_fn``, the network loss as a function of the weights) for optimizers that need the
  loss (line searches, L-BFGS, second-order steps). Hashable: the optimizer is part of the
  compiled program."""

  optimizer: optax.GradientTransformation

  def __call__(self, weights, opt_state, grads, value, loss):
    value_fn = lambda ws: loss(end_to_end(ws))
    updates, opt_state = optax.with_extra_args_support(self.optimizer).update(
      grads, opt_state, weights, value=value, grad=grads, value_fn=value_fn
    )
    return optax.apply_updates(weights, updates), opt_state


def _advance(update, lane: LaneState, value, grads, t, stop_at_loss, active, loss) -> LaneState:
  """One update at step ``t`` unless the lane is inactive, diverged or stopped (then it is
  frozen). Divergence is checked even when inactive (the last record takes no step)."""
  alive = (lane.diverged < 0) & (lane.stopped < 0)
  diverged = jnp.where(alive & ~jnp.isfinite(value), t, lane.diverged)
  running = active & alive
  stopped = jnp.where(running & (value <= stop_at_loss), t, lane.stopped)
  moving = running & (diverged < 0) & (stopped < 0)
  # A cond, not a select of both: a single run skips the update when frozen (vmapped: a select).
  weights, opt_state = lax.cond(
    moving,
    lambda: update(lane.weights, lane.opt_state, grads, value, loss),
    lambda: (lane.weights, lane.opt_state),
  )
  return lane._replace(weights=weights, opt_state=opt_state, diverged=diverged, stopped=stopped)


def lane_point(lane: LaneState, loss):
  """Loss and gradients of one network at its current step, and whether its record is invalid
  (the lane diverged earlier, or its loss is not finite now)."""
  value, grads = value_and_grad(lane.weights, loss)
  return value, grads, (lane.diverged >= 0) | ~jnp.isfinite(value)


def minibatch_point(lane: LaneState, loss, t, sampling: Sampling):
  """The lane with its sampler at step ``t``, the minibatch loss of step ``t``, its value and
  gradients."""
  rows, sampler = minibatch.indices(sampling, lane.sampler, t)
  batch = loss.minibatch(rows)
  value, grads = value_and_grad(lane.weights, batch)
  return lane._replace(sampler=sampler), value, grads, batch


def lane_steps(
  update, lanes: LaneState, first, loss, stop_at_loss, t0, n, *, sampling=None, axes=None
) -> LaneState:
  r"""Take ``n`` steps (``n`` traced) of one network, or of a batch of lanes (``axes``: the
  loss's lane axis, 0 or None), from step ``t0``; the first step with ``first = (value, grads,
  loss)`` (the record's, or with ``sampling`` the minibatch's gradient beside the full loss's
  value).

  A lane whose loss at step ``t`` is not finite is marked ``diverged = t`` and frozen (its
  records are NaN from then on); one whose loss is :math:`\le` ``stop_at_loss`` is marked
  ``stopped = t`` and frozen (its records repeat). With ``sampling`` (minibatch SGD) every step
  takes the minibatch gradient and only the first one (a record, on the full loss) checks
  ``stop_at_loss``. The loop over steps is outside the lanes' ``vmap``: the step counter is
  shared, so what depends on the step only (a new epoch's order) is computed once per step.
  """
  advance, point = functools.partial(_advance, update), value_and_grad
  if sampling is not None:
    point = functools.partial(minibatch_point, sampling=sampling)
  if axes is not None:
    advance = jax.vmap(advance, in_axes=(0, 0, 0, None, 0, None, axes[0]))
    point = (
      jax.vmap(point, in_axes=(0, axes[0], None))
      if sampling is not None
      else jax.vmap(point, in_axes=(0, axes[0]))
    )
  value, grads, step_loss = first
  lanes = advance(lanes, value, grads, t0, stop_at_loss, n > 0, step_loss)
  later_stop = stop_at_loss if sampling is None else jnp.full_like(stop_at_loss, -jnp.inf)

  def going(carry):  # frozen lanes take no more steps: the loop ends once every lane is frozen
    j, lanes = carry
    return (j < n) & jnp.any((lanes.diverged < 0) & (lanes.stopped < 0))

  def step(carry):
    j, lanes = carry
    if sampling is None:
      value, grads = point(lanes.weights, loss)
      step_loss = loss
    else:
      lanes, value, grads, step_loss = point(lanes, loss, t0 + j)
    return j + 1, advance(lanes, value, grads, t0 + j, later_stop, True, step_loss)

  return lax.while_loop(going, step, (jnp.ones_like(n), lanes))[1]


def _settled(state: RunState, record_every, track_every):
  """True once every lane stopped or diverged no later than the last written record's step, and
  that record is one where the tracked metrics were computed (so it stands for every later one)."""
  done = jnp.maximum(state.lanes.diverged, state.lanes.stopped)
  return (
    (state.block > 0)
    & ((state.block - 1) % track_every == 0)
    & jnp.all((done >= 0) & (done <= (state.block - 1) * record_every))
  )


def _watch(lane: LaneState, value, t, early: EarlyStopping) -> LaneState:
  """Keep the best record of held-out loss ``value`` at step ``t``; out of patience, stop at
  ``t``."""
  watch, alive = lane.watch, (lane.diverged < 0) & (lane.stopped < 0)
  improved = alive & (value < watch.value - early.min_delta)
  keep = lambda new, old: jnp.where(improved, new, old)
  wait = jnp.where(improved, 0, jnp.where(alive, watch.wait + 1, watch.wait))
  watch = Watch(
    jax.tree_util.tree_map(keep, lane.weights, watch.best),
    keep(value, watch.value),
    keep(t, watch.step),
    wait,
  )
  stopped = lane.stopped
  if early.patience is not None:
    stopped = jnp.where(alive & (wait >= early.patience), t, stopped)
  return lane._replace(watch=watch, stopped=stopped)


def _run_records(
  update,
  state: RunState,
  objective,
  stop_at_loss,
  until,
  *,
  schedule: Schedule,
  recorder: Recorder,
  batched,
  loss_batched,
  early=None,
  sampling=None,
):
  """Write records ``state.block .. until - 1``; once every lane has settled, stop stepping and
  fill the remaining records with the last one (the lanes are frozen, so the loop would write
  the same record again; tracked metrics only at their records, NaN between) and set the counter
  to ``T``. A batch runs the single-network functions vmapped. ``objective`` is ``(loss,
  validation)`` (``validation`` None without held-out data); with ``early`` (an
  :class:`EarlyStopping`) the lanes keep their best record on it and stop out of patience.
  With ``sampling`` (a :class:`lintraj.minibatch.Sampling`) the steps are minibatch SGD and each
  record adds ``minibatch_loss``, the minibatch loss of the step taken from it (NaN at the last).
  """
  loss, validation = objective
  steps, record_every, total = schedule.steps, schedule.record_every, schedule.records
  track_every = schedule.track_every if recorder.track else 1
  loss_axis = 0 if loss_batched else None
  point, sample = lane_point, functools.partial(minibatch_point, sampling=sampling)
  take_steps = functools.partial(
    lane_steps, update, sampling=sampling, axes=(loss_axis,) if batched else None
  )
  record_at = functools.partial(record_point, rec=recorder, track_every=track_every)
  watch = functools.partial(_watch, early=early)
  if batched:
    point = jax.vmap(point, in_axes=(0, loss_axis))
    sample = jax.vmap(sample, in_axes=(0, loss_axis, None))
    record_at = jax.vmap(record_at, in_axes=(0, 0, 0, loss_axis, 0, None, loss_axis))
    watch = jax.vmap(watch, in_axes=(0, 0, None))
  axis = 1 if batched else 0

  def body(state):
    t0 = state.block * record_every
    value, grads, invalid = point(state.lanes, loss)
    rec = record_at(state.lanes.weights, value, grads, loss, invalid, state.block, validation)
    lanes = state.lanes if early is None else watch(state.lanes, rec["validation_loss"], t0)
    n = jnp.minimum(record_every, steps - t0)
    first = (value, grads, loss)
    if sampling is not None:  # the step from a record takes the minibatch's gradient
      lanes, batch_value, batch_grads, batch = sample(lanes, loss, t0)
      first = (value, batch_grads, batch)
      rec["minibatch_loss"] = jnp.where(invalid | (n == 0), jnp.nan, batch_value)
    lanes = take_steps(lanes, first, loss, stop_at_loss, t0, n)
    records = jax.tree_util.tree_map(
      lambda buf, r: lax.dynamic_update_index_in_dim(buf, r.astype(buf.dtype), state.block, axis),
      state.records,
      rec,
    )
    return RunState(lanes, records, state.block + 1)

  def cond(state):
    return (state.block < until) & ~_settled(state, record_every, track_every)

  def fill(state):
    index = jnp.arange(total)

    def fill_buffer(buf, written):  # written: which later records this field has (not NaN)
      shape = [-1 if a == axis else 1 for a in range(buf.ndim)]
      last = lax.dynamic_index_in_dim(buf, state.block - 1, axis, keepdims=True)
      later = (index >= state.block).reshape(shape)
      return jnp.where(later & written.reshape(shape), last, jnp.where(later, jnp.nan, buf))

    tracked = index % track_every == 0
    records = {
      name: jax.tree_util.tree_map(
        functools.partial(fill_buffer, written=tracked if name in recorder.track else index >= 0),
        buf,
      )
      for name, buf in state.records.items()
    }
    return RunState(state.lanes, records, jnp.full_like(state.block, total))

  state = lax.while_loop(cond, body, state)
  return lax.cond(state.block < until, fill, lambda state: state, state)


def _per_device(run, mesh, loss_batched):
  """``run`` on each device's own lanes (``shard_map`` over the mesh axis ``"lanes"``): every
  device runs its own loop, ending when its lanes settle, with no communication between devices.
  The record counter has one entry per device."""
  lanes = PartitionSpec("lanes")

  def local(state, loss, stop_at_loss, until):
    state = run(state._replace(block=state.block[0]), loss, stop_at_loss, until)
    return state._replace(block=state.block[None])

  return jax.shard_map(
    local,
    mesh=mesh,
    in_specs=(lanes, lanes if loss_batched else PartitionSpec(), lanes, PartitionSpec()),
    out_specs=lanes,
  )


@functools.partial(
  jax.jit,
  static_argnames=(
    "update",
    "schedule",
    "recorder",
    "batched",
    "loss_batched",
    "mesh",
    "early",
    "sampling",
  ),
  donate_argnums=0,
)
def _segment(
  state,
  objective,
  stop_at_loss,
  until,
  *,
  update,
  schedule,
  recorder,
  batched=False,
  loss_batched=False,
  mesh=None,
  early=None,
  sampling=None,
):
  """The compiled loop, from ``state.block`` to record ``until``."""
  run = functools.partial(
    _run_records,
    update,
    schedule=schedule,
    recorder=recorder,
    batched=batched,
    loss_batched=loss_batched,
    early=early,
    sampling=sampling,
  )
  if mesh is not None:
    run = _per_device(run, mesh, loss_batched)
  return run(state, objective, stop_at_loss, until)


def records_written(state: RunState) -> int:
  """Records written so far (the least over devices; settled devices count as finished)."""
  return int(np.min(to_host(state.block)))


def state_shapes(
  lanes: LaneState, loss, schedule: Schedule, recorder: Recorder, *, batched=False, validation=None
) -> RunState:
  """The shapes and dtypes (``jax.ShapeDtypeStruct``) of a run's :class:`RunState` (one record
  counter, as a checkpoint stores it)."""
  lane_weights = jax.tree_util.tree_map(lambda w: w[0], lanes.weights) if batched else lanes.weights
  rec = record_shapes(lane_weights, loss, recorder, validation)
  if lanes.sampler is not None:
    rec = dict(rec, minibatch_loss=rec["loss"])
  lead = ((np.shape(lanes.diverged)[0],) if batched else ()) + (schedule.records,)
  as_struct = lambda x: jax.ShapeDtypeStruct(*spec(x))
  return RunState(
    jax.tree_util.tree_map(as_struct, lanes),
    jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(lead + s.shape, s.dtype), rec),
    jax.ShapeDtypeStruct((), jnp.int32),
  )


def restore(template, leaves: dict):
  """The pytree of ``template`` (e.g. :func:`state_shapes`) with the saved ``leaves`` (named
  "0", "1", ...), or ValueError if they do not fit."""
  flat, treedef = jax.tree_util.tree_flatten(template)
  if len(leaves) != len(flat) or any(
    np.shape(leaves[str(i)]) != x.shape or leaves[str(i)].dtype != x.dtype
    for i, x in enumerate(flat)
  ):
    raise ValueError(
      "the checkpoint's state does not fit its run's arguments (another optimizer, "
      "other metrics, or written by another version of lintraj?)."
    )
  return jax.tree_util.tree_unflatten(treedef, [leaves[str(i)] for i in range(len(flat))])


@functools.partial(jax.jit, static_argnums=(2, 3))
def _fresh_state(lanes, block, record_specs, records_treedef) -> RunState:
  """A new carry on the default device in one dispatch: copies of ``lanes`` and NaN records."""
  records = [jnp.full(shape, jnp.nan, dtype) for shape, dtype in record_specs]
  return RunState(
    jax.tree_util.tree_map(jnp.copy, lanes),
    jax.tree_util.tree_unflatten(records_treedef, records),
    jnp.copy(block),
  )


def initial_state(
  lanes: LaneState,
  loss,
  schedule,
  recorder,
  *,
  batched=False,
  saved=None,
  mesh=None,
  validation=None,
) -> RunState:
  """The loop's starting carry: fresh copies of ``lanes`` and NaN buffers for ``T`` records, or
  the ``saved`` state (host arrays) put on the devices.

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
    return RunState(
      jax.tree_util.tree_map(place, saved.lanes),
      jax.tree_util.tree_map(place, saved.records),
      place(block),
    )
  shapes = state_shapes(lanes, loss, schedule, recorder, batched=batched, validation=validation)
  if mesh is None:
    leaves, treedef = jax.tree_util.tree_flatten(shapes.records)
    return _fresh_state(lanes, block, tuple((x.shape, x.dtype) for x in leaves), treedef)
  records = jax.tree_util.tree_map(
    lambda s: jnp.full(s.shape, jnp.nan, s.dtype, device=lane_sharding), shapes.records
  )
  return RunState(jax.tree_util.tree_map(place, lanes), records, place(block))


def drive(
  run_segment,
  state,
  total: int,
  *,
  written=None,
  report=None,
  checkpoint=None,
  every=None,
  seconds=None,
):
  """Run a compiled loop to record ``total`` in segments of about ``seconds`` (default
  :data:`SEGMENT_SECONDS`) of work each, sized from the measured speed (the first is one record).

  Args:
    run_segment: ``run_segment(state, until) -> state`` (the jitted loop, other arguments bound).
    state: the loop's carry (a :class:`RunState` by default).
    total: records in all.
    written: ``written(state) -> int`` records written so far (default :func:`records_written`);
      a segment that ends before its ``until`` ends the run (e.g. a flow out of steps).
    report: ``report(state, written)`` after every segment (progress), or None.
    checkpoint: ``checkpoint(state)`` writes a checkpoint, or None; called every ``every``
      records and at the end.

  Between segments Python handles interrupts, so Ctrl-C takes effect within about a segment.
  The loop runs inside :func:`lintraj.singular_values.lapack_single_thread`.
  """
  seconds = SEGMENT_SECONDS if seconds is None else seconds
  written = records_written if written is None else written
  rate = None
  with lapack_single_thread():  # OpenBLAS threads only contend with XLA's (see singular_values)
    block = written(state)
    while block < total:
      until = min(total, block + (1 if rate is None else max(1, int(rate * seconds))))
      if checkpoint is not None:
        until = min(until, (block // every + 1) * every)
      started = time.perf_counter()
      state = run_segment(state, until)
      now = written(state)
      rate = (now - block) / max(time.perf_counter() - started, 1e-9)
      block = now
      if report is not None:
        report(state, block)
      if checkpoint is not None and (block % every == 0 or block >= total):
        checkpoint(state)
      if block < until:
        break
  return state


class Job(NamedTuple):
  """A validated run: everything :func:`execute` needs, and what its checkpoint stores.

  Attributes:
    kind: the run function's name (a checkpoint names it to :func:`lintraj.resume`).
    update: :func:`gd_update` or an :class:`OptaxUpdate`.
    lanes: the starting :class:`LaneState` as host arrays (a batch: leading lane axis).
    loss: the loss (shared, or per lane stacked along a leading axis when ``loss_batched``).
    stop: stopping threshold(s), ``()`` or ``(B,)`` float64 (``-inf``: never).
    schedule, recorder: what the run records, when.
    batched, loss_batched: whether it is a batch, and whether the loss is per lane.
    lanes_per_device: lanes per device at a time (a batch), None for a single run.
    mesh: the devices of a batch (None: one device).
    checkpoint: a path, or None.
    call: JSON arguments of the run function, for its checkpoint.
    arrays: array arguments of the run function, for its checkpoint.
    validation: the held-out loss (batched like ``loss``), or None.
    early: the :class:`EarlyStopping` rule with ``validation``, else None.
    sampling: the :class:`lintraj.minibatch.Sampling` of minibatch SGD (the lanes then hold
      their samplers), or None for full batch.
  """

  kind: str
  update: Any
  lanes: LaneState
  loss: Any
  stop: np.ndarray
  schedule: Schedule
  recorder: Recorder
  batched: bool = False
  loss_batched: bool = False
  lanes_per_device: int | None = None
  mesh: Any = None
  checkpoint: str | None = None
  call: dict = {}
  arrays: dict = {}
  validation: Any = None
  early: EarlyStopping | None = None
  sampling: Sampling | None = None


def with_minibatch(job: Job, sampling: Sampling | None, keys) -> Job:
  """``job`` as minibatch SGD with ``sampling`` (None: unchanged, full batch): its lanes get
  samplers from ``keys`` (one per lane in a batch), its checkpoint stores both."""
  if sampling is None:
    return job
  sampler = minibatch.start(sampling, keys, batched=job.batched)
  return job._replace(
    lanes=job.lanes._replace(sampler=sampler),
    sampling=sampling,
    call=dict(job.call, minibatch=dict(batch_size=sampling.batch_size, sampling=sampling.scheme)),
    arrays=dict(job.arrays, key=np.asarray(keys)),
  )


def lane_loss(loss, loss_batched):
  """Lane 0's loss of a batch whose loss is per lane (stacked), else the loss: the one whose
  examples every lane shares."""
  return _take(loss, 0) if loss_batched else loss


def execute_with(job: Job, held_out, minibatches, meter=None):
  """:func:`execute` ``job`` with the held-out loss and early stopping of
  :func:`check_held_out` and the minibatch SGD of :func:`lintraj.minibatch.check_sampling`
  attached: what every discrete-time run function ends with."""
  validation, early = held_out
  return execute(
    with_minibatch(job._replace(validation=validation, early=early), *minibatches), meter
  )


def resumed_minibatch(job: Job, call: dict, arrays: dict) -> Job:
  """The job of a checkpoint, as minibatch SGD again if it was (:func:`with_minibatch`)."""
  spec = call.get("minibatch")
  if spec is None:
    return job
  examples = lane_loss(job.loss, job.loss_batched).n_examples
  sampling = Sampling(int(spec["batch_size"]), spec["sampling"], examples)
  return with_minibatch(job, sampling, arrays["key"])


def _first_watch(lanes: LaneState, batched) -> Watch:
  """No best record yet: the starting weights, validation loss +inf, step -1, no wait."""
  lead = np.shape(lanes.diverged)
  dtype = jax.tree_util.tree_leaves(lanes.weights)[0].dtype
  return Watch(
    tuple(np.array(w) for w in lanes.weights),
    np.full(lead, np.inf, dtype),
    np.full(lead, -1, np.int32),
    np.zeros(lead, np.int32),
  )


def check_held_out(
  validation, patience, min_delta, lane_weights, *, loss_batched=False, lanes=None
):
  """``(validation loss, EarlyStopping)`` of a run's ``validation=`` / ``patience=`` /
  ``min_delta=``, both None without validation; ValueError naming the fix. A batch with one loss
  per lane takes one validation loss per lane (stacked), a shared loss a shared one."""
  if validation is None:
    if patience is not None:
      raise ValueError(
        "patience= stops on the validation loss: pass validation= (a loss on held-out data) too."
      )
    return None, None
  patience = None if patience is None else check_int("patience", patience, 1)
  min_delta = check_positive("min_delta", min_delta, allow_zero=True)
  many = isinstance(validation, (list, tuple))
  if many != loss_batched:
    raise ValueError(
      "validation= must be of the same kind as loss=: one loss per lane when loss "
      "is a sequence of per-lane losses, else one loss shared by every lane."
    )
  if many:
    if len(validation) != lanes:
      raise ValueError(
        f"validation has {len(validation)} entries but the batch has {lanes} "
        "lanes; give one validation loss per lane."
      )
    checked = [check_held_out(v, None, 0.0, lane_weights)[0] for v in validation]
    validation = stack_losses(checked)
  else:
    validation = check_loss(as_loss(validation), lane_weights)
  return validation, EarlyStopping(patience, min_delta)


def _take(tree, index):
  return jax.tree_util.tree_map(lambda x: np.asarray(x)[index], tree)


def _host(state: RunState, lanes: int | None) -> RunState:
  """The state on the host as NumPy arrays (a batch: padding lanes dropped), one counter."""
  cut = (lambda x: to_host(x)) if lanes is None else (lambda x: to_host(x)[:lanes])
  return RunState(
    jax.tree_util.tree_map(cut, state.lanes),
    jax.tree_util.tree_map(cut, state.records),
    np.int32(records_written(state)),
  )


def _concat(states: list[RunState]) -> RunState:
  if len(states) == 1:
    return states[0]
  stack = lambda *xs: np.concatenate(xs)
  return RunState(
    jax.tree_util.tree_map(stack, *[s.lanes for s in states]),
    jax.tree_util.tree_map(stack, *[s.records for s in states]),
    states[-1].block,
  )


def _unprefix(leaves: dict, prefix: str) -> dict:
  return {k[len(prefix) :]: v for k, v in leaves.items() if k.startswith(prefix)}


def _leaves(state: RunState, prefix: str) -> dict:
  return {f"{prefix}{i}": x for i, x in enumerate(jax.tree_util.tree_leaves(state))}


@jax.jit
def _loss_at(weights, loss):
  return loss(end_to_end(weights))


def fingerprint(weights, loss) -> np.ndarray:
  """The loss at ``weights`` (one network): a checkpoint stores it at its saved point, and
  :func:`lintraj.resume` compares it with the loss it is given, so another loss is noticed even
  when its data sit in a closure."""
  return np.asarray(_loss_at(tuple(jnp.asarray(w) for w in weights), loss))


def _check_fingerprint(job: Job, current: RunState, leaves: dict, lo: int):
  """ValueError unless the loss (and validation loss) of ``job`` give the stored values at the
  saved point."""
  weights = _take(current.lanes.weights, 0) if job.batched else current.lanes.weights
  objective = (job.loss, job.validation)
  objective = _take(objective, lo) if job.loss_batched else objective
  for what, loss in zip(("loss", "validation"), objective):
    stored = leaves.get("fingerprint" if what == "loss" else "validation_fingerprint")
    if stored is None or loss is None:
      continue
    value = fingerprint(weights, loss)
    if not np.allclose(value, stored, rtol=1e-4, atol=0, equal_nan=True):
      raise ValueError(
        f"the {what} given to resume is {float(value):.6g} at the checkpoint's saved "
        f"weights, where the run's own {what} was {float(stored):.6g}: it is another "
        f"loss. Pass the {what} the run was started with."
      )


def _recorder_header(recorder: Recorder) -> dict:
  return dict(
    singular_values=recorder.singular_values,
    track=list(recorder.track),
    metrics={name: io.function_reference(fn) for name, fn in recorder.metrics},
  )


def execute(job: Job, meter=None, saved=None):
  """Run ``job`` to the end (or continue it from a checkpoint's ``saved`` ``(call, state)``)
  and return its :class:`lintraj.Trajectory`.

  A single run is one compiled loop. A batch runs in chunks of ``lanes_per_device`` lanes per
  device, padded with copies of the chunk's last lane (they settle with it, so they never prolong
  the loop); each chunk's records are gathered on the host.
  """
  if job.validation is not None and job.lanes.watch is None:
    job = job._replace(lanes=job.lanes._replace(watch=_first_watch(job.lanes, job.batched)))
  schedule, recorder, batched = job.schedule, job.recorder, job.batched
  compiled = dict(
    update=job.update,
    schedule=schedule.compiled(),
    recorder=recorder,
    batched=batched,
    loss_batched=job.loss_batched,
    mesh=job.mesh,
    early=job.early,
    sampling=job.sampling,
  )
  objective = (job.loss, job.validation)
  dtype = jax.tree_util.tree_leaves(job.lanes.weights)[0].dtype
  devices = 1 if job.mesh is None else job.mesh.size
  lanes = np.shape(job.lanes.diverged)[0] if batched else None
  chunk = (job.lanes_per_device or 1) * devices
  lane_loss, lane_validation = _take(objective, 0) if job.loss_batched else objective
  weights0 = _take(job.lanes.weights, 0) if batched else job.lanes.weights
  check_memory(
    weights0,
    lane_loss,
    schedule,
    recorder,
    lane_validation,
    device_lanes=job.lanes_per_device or 1,
    host_lanes=lanes or 0,
    devices=None if job.mesh is None else list(job.mesh.devices.flat),
  )
  if batched:  # every process must make this call, with these arguments (else: a ValueError)
    _distributed.check_same_call(
      _distributed.fingerprint(
        job.kind,
        jax.tree_util.tree_map(lambda x: (np.shape(x), np.asarray(x).dtype.str), job.lanes.weights),
        sorted(job.arrays.items()),
        dict(job.call, saved=None if saved is None else saved[0]),
        job.stop,
        str(schedule),
        str(recorder.track),
        job.loss.name,
        job.loss.data,
        job.loss.target,
      ),
      job.kind,
    )
  runs = 1 if not batched else -(-lanes // chunk)
  if meter is not None:
    meter.start(schedule.steps * runs, lanes=lanes, desc=job.kind.replace("_", " "))

  def put(x, spec):
    return jnp.asarray(x) if job.mesh is None else put_sharded(x, NamedSharding(job.mesh, spec))

  def template(n):
    lane_state = job.lanes if not batched else _take(job.lanes, np.zeros(n, int))
    return state_shapes(
      lane_state, lane_loss, schedule, recorder, batched=batched, validation=lane_validation
    )

  lo, finished, current = 0, [], None
  if saved is not None:
    call, leaves = saved
    lo = call["done"]
    if lo:
      finished = [restore(template(lo), _unprefix(leaves, "finished/"))]
    current = restore(template(call["chunk_lanes"]), _unprefix(leaves, "current/"))
    _check_fingerprint(job, current, leaves, lo)
  shared = (
    None
    if job.loss_batched
    else jax.tree_util.tree_map(lambda x: put(x, PartitionSpec()), objective)
  )
  lane_spec = PartitionSpec("lanes") if batched else PartitionSpec()
  try:
    while lo < (lanes or 1):
      if batched:
        n = min(chunk, lanes - lo) if current is None else int(call["chunk_lanes"])
        width = max(chunk, -(-n // devices) * devices)
        index = np.minimum(np.arange(lo, lo + width), lo + n - 1)
        pad = lambda tree: _take(tree, np.minimum(np.arange(width), n - 1))
        start = (
          None
          if current is None
          else RunState(pad(current.lanes), pad(current.records), current.block)
        )
        lane_state = _take(job.lanes, index)
      else:
        n, index, start, lane_state = None, None, current, job.lanes
      current = None
      state = initial_state(
        lane_state,
        lane_loss,
        schedule,
        recorder,
        batched=batched,
        saved=start,
        mesh=job.mesh,
        validation=lane_validation,
      )
      placed = (
        jax.tree_util.tree_map(lambda x: put(np.asarray(x)[index], lane_spec), objective)
        if job.loss_batched
        else shared
      )
      chunk_stop = put((job.stop if index is None else job.stop[index]).astype(dtype), lane_spec)
      segment = lambda s, until: _segment(s, placed, chunk_stop, until, **compiled)
      writer = None
      if job.checkpoint is not None:
        finished = [_concat(finished)] if finished else []
        writer = _writer(
          job,
          dict(done=lo, chunk_lanes=n),
          finished,
          n,
          _take(objective, lo) if job.loss_batched else objective,
        )
      report = None
      if meter is not None:
        offset = (lo // chunk) * schedule.steps
        earlier = [
          sum(int(np.sum(getattr(f.lanes, k) >= 0)) for f in finished)
          for k in ("stopped", "diverged")
        ]

        def report(s, block, offset=offset, earlier=earlier, n=n):
          step = min(block * schedule.record_every, schedule.steps)
          if not batched:
            return meter.update(offset + step)
          counts = [
            e + int(np.sum(to_host(getattr(s.lanes, k))[:n] >= 0))
            for e, k in zip(earlier, ("stopped", "diverged"))
          ]
          meter.update(offset + step, stopped=counts[0], diverged=counts[1])

      state = drive(
        segment,
        state,
        schedule.records,
        report=report,
        checkpoint=writer,
        every=schedule.checkpoint_records,
      )
      finished.append(_host(state, n))
      lo += n or 1
  finally:
    if meter is not None:
      meter.close()
  done = _concat(finished)
  return trajectory(
    done.records,
    schedule,
    done.lanes.weights,
    done.lanes.diverged,
    done.lanes.stopped,
    batched=batched,
    watch=done.lanes.watch,
  )


def _writer(job: Job, position: dict, finished: list, n, objective0):
  """``checkpoint(state)``: writes the job, the finished chunks and the current state."""
  call = dict(
    job.call,
    steps=job.schedule.steps,
    record_every=job.schedule.record_every,
    track_every=job.schedule.track_every,
    checkpoint_every=job.schedule.checkpoint_every,
    recorder=_recorder_header(job.recorder),
    early=None if job.early is None else list(job.early),
    **position,
  )
  loss0, validation0 = objective0
  finished_leaves = _leaves(finished[0], "finished/") if finished else {}

  def held_out_fingerprint(weights) -> dict:
    if validation0 is None:
      return {}
    return {"validation_fingerprint": fingerprint(weights, validation0)}

  def write(state):
    host = _host(state, n)
    weights = _take(host.lanes.weights, 0) if job.batched else host.lanes.weights
    io.write_checkpoint(
      job.checkpoint,
      job.kind,
      call=call,
      arrays=job.arrays,
      loss=job.loss,
      validation=job.validation,
      state_arrays={
        **finished_leaves,
        **_leaves(host, "current/"),
        "fingerprint": fingerprint(weights, loss0),
        **held_out_fingerprint(weights),
      },
    )

  return write


def check_run(
  run: str,
  weights,
  loss,
  *,
  steps,
  record_every,
  track=(),
  track_every=1,
  singular_values="batched",
  metrics=None,
  checkpoint=None,
  checkpoint_every=None,
  **concrete,
):
  """Validate what every run function takes (before tracing): ``(weights, loss, schedule,
  recorder, checkpoint path)``; ``concrete`` names further arguments that must not be traced."""
  check_concrete(run, weights=weights, **concrete)
  weights = check_weights(weights)
  loss = as_loss(loss)
  dims = layer_dims(weights)
  if loss.target is not None and tuple(np.shape(loss.target)) != (dims[-1], dims[0]):
    raise ValueError(
      f"the loss's target has shape {tuple(np.shape(loss.target))} but the end-to-end matrix of "
      f"these weights has shape {(dims[-1], dims[0])} (d_N, d_0); build the weights with "
      f"dims = ({np.shape(loss.target)[1]}, ..., {np.shape(loss.target)[0]})."
    )
  loss = check_loss(loss, weights)
  path, checkpoint_every = check_checkpoint(checkpoint, checkpoint_every)
  sched = schedule(steps, record_every, track_every, checkpoint_every)
  rec = recorder(track, singular_values, metrics)
  check_metrics(rec, weights)
  return weights, loss, sched, rec, path


def recorder_from_header(header: dict, metrics=None) -> Recorder:
  """The :class:`lintraj.recording.Recorder` a checkpoint stored, its user metrics resolved by
  reference or taken from ``metrics`` (a dict name -> function)."""
  given = {} if metrics is None else dict(metrics)
  functions = {}
  for name, reference in header.get("metrics", {}).items():
    if name in given:
      functions[name] = given[name]
    elif reference is not None:
      functions[name] = io.resolve(reference)
    else:
      raise ValueError(
        f"the checkpoint records the metric {name!r}, a function lintraj cannot "
        f"import by itself; pass it: lintraj.resume(path, metrics={{{name!r}: fn}})."
      )
  return recorder(
    tuple(header.get("track", ())), header.get("singular_values", "batched"), functions
  )

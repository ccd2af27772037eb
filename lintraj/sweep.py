r"""Sweeps: many gradient-descent trajectories in one compiled call, across all devices.

:func:`batch_gradient_descent` runs a batch of networks (every weight array with a leading lane
axis) through the per-network loop body of :func:`lintraj.gradient_descent`, vmapped, inside one
``lax.while_loop`` that ends once every lane has stopped (``stop_at_loss``) or diverged. With
several devices the lanes are split across them (``NamedSharding`` on a 1-D mesh, padded to fill
every device) and each device runs its own loop over its own lanes (``shard_map``);
``batch_size=`` (lanes per device) runs a large batch in chunks. :func:`grid` builds
the batch of a learning-rate x init-scale x seed grid and :func:`fastest` reads off, per init
scale, the learning rate that reached the threshold first (Arora et al. 2019, Figure 1).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lintraj import _distributed
from lintraj import init as inits
from lintraj.dynamics import (LaneState, RunState, _gradient_descent_run, call_tracking, check_checkpoint,
                              check_lr, check_memory, check_run, check_stop_at_loss, checkpoint_blocks, drive,
                              initial_state, progress_bar, put_sharded, records_written, restore, state_shapes,
                              to_host)
from lintraj.losses import Loss, as_loss
from lintraj.network import check_weights
from lintraj.trajectory import Trajectory, check_tracking
from lintraj.validation import check_int

__all__ = ["batch_gradient_descent", "grid", "fastest", "lane", "stack_losses", "lane_mesh",
           "resume_batch_gradient_descent"]

_INITS = {"balanced": lambda key, dims, std, dtype: inits.balanced(key, dims, std=std, dtype=dtype),
          "gaussian": lambda key, dims, std, dtype: inits.gaussian(key, dims, std=std, dtype=dtype),
          "orthogonal": lambda key, dims, std, dtype: inits.orthogonal(key, dims, scale=std, dtype=dtype)}


def stack_losses(losses: Sequence) -> Loss:
  """One loss per lane, stacked into a :class:`lintraj.losses.Loss` whose data and target have a
  leading lane axis; every loss must have the same function and array shapes.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> loss = stack_losses([lt.losses.target(jnp.ones((1, 2))), lt.losses.target(jnp.zeros((1, 2)))])
    >>> loss.target.shape
    (2, 1, 2)
  """
  losses = [as_loss(loss) for loss in losses]
  if not losses:
    raise ValueError("loss is an empty sequence; give one loss per lane, or one loss shared by all.")
  first = losses[0]
  structure = lambda loss: jax.tree_util.tree_map(np.shape, (loss.data, loss.target))
  for i, loss in enumerate(losses[1:], start=1):
    if loss.fn is not first.fn or structure(loss) != structure(first):
      raise ValueError(f"the per-lane losses differ in kind or shapes: lane 0 is {first!r} with data "
                       f"shapes {structure(first)}, lane {i} is {loss!r} with {structure(loss)}; a batch "
                       "needs one function with same-shaped data (e.g. lt.losses.target of same-shaped "
                       "targets).")
  stack = lambda *xs: np.stack([np.asarray(x) for x in xs])
  data = jax.tree_util.tree_map(stack, *[loss.data for loss in losses])
  target = None if first.target is None else stack(*[loss.target for loss in losses])
  return Loss(first.fn, data=data, target=target, name=first.name)


def lane_mesh(devices=None) -> Mesh | None:
  """A 1-D mesh (axis ``"lanes"``) over ``devices`` (default ``jax.devices()``: every device, of
  every process under ``jax.distributed.initialize()``), or None for a single device.

  Example:
    >>> lane_mesh() is None or lane_mesh().axis_names == ("lanes",)
    True
  """
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("devices is empty; pass None (all devices) or a list such as jax.devices()[:4].")
  return None if len(devices) == 1 else Mesh(np.array(devices), ("lanes",))


def _check_batch(weights) -> tuple:
  if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or not weights:
    raise ValueError("weights must be a non-empty tuple (W_1, ..., W_N) of batched layers, W_j of shape "
                     f"(B, d_j, d_{{j-1}}); got {type(weights).__name__}. Build them with lintraj.sweep.grid.")
  weights = tuple(np.asarray(w) for w in weights)
  weights = tuple(w.astype(jax.dtypes.canonicalize_dtype(w.dtype), copy=False) for w in weights)
  for j, w in enumerate(weights, start=1):
    if w.ndim != 3 or w.shape[0] != weights[0].shape[0] or w.shape[0] == 0:
      raise ValueError(
          f"layer W_{j} has shape {w.shape}; in a batch every layer has shape (B, d_j, d_{{j-1}}) with the "
          f"same B >= 1 (W_1 has {weights[0].shape}). For one network use lintraj.gradient_descent.")
  check_weights(tuple(w[0] for w in weights))
  return weights


def _per_lane(value, lanes: int, name: str) -> np.ndarray:
  value = np.asarray(value, np.float64)
  if value.shape not in ((), (lanes,)):
    raise ValueError(f"{name} must be a number or an array of shape ({lanes},), one per lane; got shape "
                     f"{value.shape}.")
  return np.broadcast_to(value, (lanes,)).copy()


def _check_lrs(lr, lanes: int) -> np.ndarray:
  try:
    lrs = _per_lane(lr, lanes, "lr")
  except (TypeError, ValueError) as err:
    if "one per lane" in str(err):
      raise
    raise ValueError(f"lr must be a positive finite number or one per lane; got {lr!r}.") from None
  bad = ~(np.isfinite(lrs) & (lrs > 0))
  if bad.any():
    check_lr(lrs[np.argmax(bad)])
  return lrs


def batch_gradient_descent(weights, loss, *, lr, steps: int, record_every: int = 1, stop_at_loss=None,
                           track=(), track_every: int = 1, singular_values: str = "batched",
                           batch_size: int | None = None, devices=None, progress: bool = False,
                           checkpoint=None, checkpoint_every: int | None = None) -> Trajectory:
  r"""Gradient descent on a batch of ``B`` networks at once, one compiled loop, lane by lane
  equal to :func:`lintraj.gradient_descent`.

  Every lane follows :math:`W_j \leftarrow W_j - \eta_b\, \partial L_b^N / \partial W_j` with its
  own learning rate :math:`\eta_b` and (optionally) its own loss :math:`L_b`. A lane stops
  updating at the first step :math:`t` whose loss is :math:`\le` ``stop_at_loss``
  (``stopped_step[b] = t``; its later records repeat its final values) and freezes at the first
  step with a non-finite loss (``diverged_step[b] = t``; its records are NaN from there). The loop
  ends when every lane has stopped or diverged, or after ``steps`` steps.

  With several devices the lanes are split across all of them (``jax.devices()``, every process
  under ``jax.distributed.initialize()``); the records are identical to a single-device run. The
  memory the records need is checked before running.

  Args:
    weights: ``(W_1, ..., W_N)``, ``W_j`` of shape ``(B, d_j, d_{j-1})``, e.g. from :func:`grid`.
    loss: one loss shared by every lane (a :class:`lintraj.losses.Loss` or function of the
      end-to-end matrix), or a sequence of ``B`` losses of one kind (e.g. one target per lane).
    lr: learning rate, a number or shape ``(B,)``.
    steps: maximum number of steps.
    record_every: record at steps ``0, k, 2k, ...``; ``T = steps // k + 1`` records.
    stop_at_loss: threshold, a number or shape ``(B,)``; None never stops.
    track, track_every, singular_values: as in :func:`lintraj.gradient_descent` (``sharpness``
      then has shape ``(B, T)``).
    batch_size: lanes per device at a time (default: all lanes in one go); a larger batch runs
      in chunks of ``batch_size`` lanes per device, one chunk after another.
    devices: the devices to spread the lanes over (default ``jax.devices()``, all of them).
    progress: show a tqdm bar with the lanes stopped and diverged so far.
    checkpoint: a path; with ``checkpoint_every=K`` the state is written there every ``K``
      steps (rounded up to a multiple of ``record_every``); :func:`lintraj.resume` continues.
    checkpoint_every: steps between checkpoints.

  Returns:
    A :class:`lintraj.Trajectory` of NumPy arrays with a leading lane axis: ``step`` ``(B, T)``,
    ``loss`` ``(B, T)``, ..., ``final`` weights ``(B, d_j, d_{j-1})``, ``diverged_step`` and
    ``stopped_step`` ``(B,)`` int (``-1``: never). :func:`lane` extracts one run.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> ws, lrs, table = lt.sweep.grid("balanced", (2, 3, 1), std=[0.5], lr=[0.05, 0.1], seeds=[0])
    >>> traj = lt.batch_gradient_descent(ws, lt.losses.target(jnp.array([[1.0, 0.5]])), lr=lrs,
    ...                                  steps=1000, stop_at_loss=1.15e-4)
    >>> traj.loss.shape, traj.stopped_step.tolist()
    ((2, 1001), [82, 41])

  References:
    Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019 (arXiv 1810.02281), Eq. (4) and Figure 1 (the sweep it runs).
  """
  weights = _check_batch(weights)
  lanes = weights[0].shape[0]
  lane_weights = check_weights(tuple(w[0] for w in weights))
  loss_batched = isinstance(loss, (list, tuple))
  if loss_batched:
    if len(loss) != lanes:
      raise ValueError(f"loss has {len(loss)} entries but the batch has {lanes} lanes; give one loss per "
                       "lane or one shared loss.")
    for lane_loss in loss:
      _, _, steps, record_every = check_run(lane_weights, lane_loss, steps, record_every)
    loss = stack_losses(loss)
  else:
    _, loss, steps, record_every = check_run(lane_weights, loss, steps, record_every)
  lrs = _check_lrs(lr, lanes)
  stop = _per_lane(check_stop_at_loss(stop_at_loss), lanes, "stop_at_loss")
  batch_size = None if batch_size is None else check_int("batch_size", batch_size, 1)
  tracking = check_tracking(track, track_every, singular_values)
  path, checkpoint_every = check_checkpoint(checkpoint, checkpoint_every)
  mesh = lane_mesh(devices)
  devices = 1 if mesh is None else mesh.size
  call = dict(steps=steps, record_every=record_every, checkpoint_every=checkpoint_every,
              batch_size=min(int(batch_size or lanes), -(-lanes // devices)), loss_batched=loss_batched,
              tracking=tracking._asdict())
  _distributed.check_same_call(_distributed.fingerprint(
      [(w.shape, w.dtype.str) for w in weights], lrs, stop, call, loss.name, loss.data, loss.target),
      "batch_gradient_descent")
  return _run(weights, loss, lrs, stop, call, progress, path, mesh)


def _bar(progress, call, lanes, devices):
  runs = -(-lanes // (call["batch_size"] * devices))
  return progress_bar(progress, call["steps"], "sweep", runs=runs, lanes=lanes)


def _lane_loss(loss, loss_batched, index):
  return jax.tree_util.tree_map(lambda x: x[index], loss) if loss_batched else loss


def _to_host(state: RunState, lanes: int) -> RunState:
  """The state on the host as NumPy arrays, padding lanes dropped, one record counter."""
  cut = lambda x: to_host(x)[:lanes]
  return RunState(jax.tree_util.tree_map(cut, state.lanes), jax.tree_util.tree_map(cut, state.records),
                  np.int32(records_written(state)))


def _unprefix(arrays: dict, prefix: str) -> dict:
  return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _concat(states: list[RunState]) -> RunState:
  if len(states) == 1:
    return states[0]
  stack = lambda *xs: np.concatenate(xs)
  return RunState(jax.tree_util.tree_map(stack, *[s.lanes for s in states]),
                  jax.tree_util.tree_map(stack, *[s.records for s in states]), states[-1].block)


def _leaves(state: RunState, prefix: str) -> dict:
  return {f"{prefix}/{i}": x for i, x in enumerate(jax.tree_util.tree_leaves(state))}


def _run(weights, loss, lrs, stop, call, progress, path, mesh, saved=None) -> Trajectory:
  """Run (or, from a checkpoint's ``saved`` leaves, continue) a validated batched call.

  Lanes run in chunks of ``batch_size`` per device, padded with copies of the chunk's last lane
  (they settle with it, so they never prolong the loop).
  """
  steps, record_every, batch_size = call["steps"], call["record_every"], call["batch_size"]
  lanes, dtype = weights[0].shape[0], weights[0].dtype
  loss_batched, tracking = call["loss_batched"], call_tracking(call)
  devices = 1 if mesh is None else mesh.size
  chunk = batch_size * devices
  lane_loss = _lane_loss(loss, loss_batched, 0)
  check_memory(tuple(w[0] for w in weights), lane_loss, steps, record_every, tracking=tracking,
               device_lanes=batch_size, host_lanes=lanes,
               devices=None if mesh is None else list(mesh.devices.flat))
  bar = _bar(progress, call, lanes, devices)

  def lane_state(index):
    return LaneState(tuple(w[index] for w in weights), lrs[index].astype(dtype),
                     np.full(len(index), -1, np.int32), np.full(len(index), -1, np.int32))

  def host_state(leaves, n):
    return restore(state_shapes(lane_state(np.zeros(n, int)), lane_loss, steps, record_every,
                                tracking=tracking, batched=True), leaves)

  def put(x, spec):
    return jnp.asarray(x) if mesh is None else put_sharded(x, NamedSharding(mesh, spec))

  lo, finished, current = 0, [], None
  if saved is not None:
    lo = call["done"]
    if lo:
      finished = [host_state(_unprefix(saved, "finished/"), lo)]
    current = host_state(_unprefix(saved, "current/"), call["chunk_lanes"])
  shared_loss = None if loss_batched else jax.tree_util.tree_map(lambda x: put(x, PartitionSpec()), loss)
  lane_spec = PartitionSpec("lanes")
  every = checkpoint_blocks(call["checkpoint_every"], record_every)
  try:
    while lo < lanes:
      n = min(chunk, lanes - lo) if current is None else call["chunk_lanes"]
      width = max(chunk, -(-n // devices) * devices)
      index = np.minimum(np.arange(lo, lo + width), lo + n - 1)
      start = None
      if current is not None:
        pad = lambda x: x[np.minimum(np.arange(width), n - 1)]
        start = RunState(jax.tree_util.tree_map(pad, current.lanes),
                         jax.tree_util.tree_map(pad, current.records), current.block)
        current = None
      state = initial_state(lane_state(index), lane_loss, steps, record_every, tracking=tracking,
                            batched=True, saved=start, mesh=mesh)
      chunk_loss = (jax.tree_util.tree_map(lambda x: put(np.asarray(x)[index], lane_spec), loss)
                    if loss_batched else shared_loss)
      chunk_stop = put(stop[index].astype(dtype), lane_spec)
      segment = lambda s, until: _gradient_descent_run(
          s, chunk_loss, chunk_stop, until, steps=steps, record_every=record_every, tracking=tracking,
          batched=True, loss_batched=loss_batched, mesh=mesh)
      writer = None
      if path is not None:
        finished = [_concat(finished)] if finished else []
        writer = _checkpoint_writer(path, dict(call, done=lo, chunk_lanes=n), weights, lrs, stop, loss,
                                    finished, n)
      count = None
      if bar is not None:
        bar.begin(lo // chunk)
        earlier = (sum(int(np.sum(f.lanes.stopped >= 0)) for f in finished),
                   sum(int(np.sum(f.lanes.diverged >= 0)) for f in finished))
        count = lambda s, n=n, earlier=earlier: (earlier[0] + int(np.sum(to_host(s.lanes.stopped)[:n] >= 0)),
                                                  earlier[1] + int(np.sum(to_host(s.lanes.diverged)[:n] >= 0)))
      state = drive(segment, state, steps=steps, record_every=record_every, progress=bar,
                    checkpoint=writer, checkpoint_blocks=every, count=count)
      finished.append(_to_host(state, n))
      lo += n
  finally:
    if bar is not None:
      bar.close()
  done = _concat(finished)
  total = steps // record_every + 1
  return Trajectory(step=np.tile(np.arange(total, dtype=np.int32) * record_every, (lanes, 1)),
                    final=done.lanes.weights, diverged_step=done.lanes.diverged,
                    stopped_step=done.lanes.stopped, **done.records)


def _checkpoint_writer(path, call, weights, lrs, stop, loss, finished, lanes):
  from lintraj import io
  arrays = {**{f"weights/{j}": w for j, w in enumerate(weights)}, "lr": lrs, "stop_at_loss": stop}
  finished_arrays = _leaves(finished[0], "finished") if finished else {}
  return lambda state: io.write_checkpoint(
      path, "batch_gradient_descent", call=call, arrays=arrays, loss=loss,
      state_arrays={**finished_arrays, **_leaves(_to_host(state, lanes), "current")})


def resume_batch_gradient_descent(path, call, arrays, loss, saved, progress, devices=None) -> Trajectory:
  """Continue a :func:`batch_gradient_descent` run from a checkpoint's contents (see :func:`lintraj.resume`)."""
  weights = _check_batch([arrays[f"weights/{j}"] for j in range(sum(k.startswith("weights/") for k in arrays))])
  mesh = lane_mesh(devices)
  return _run(weights, loss, arrays["lr"], arrays["stop_at_loss"], call, progress, path, mesh, saved)


def grid(init, dims: Sequence[int], *, std: Sequence[float], lr: Sequence[float],
         seeds: Sequence[int] = (0,), draws: str = "independent", dtype=None):
  r"""The batch of a sweep over init scale x learning rate x seed, lanes in that order.

  Lane ``b`` of the product ``std x lr x seeds`` starts from ``init(key, dims, std)``: the lanes of
  one ``(std, seed)`` share their initial weights and differ in the learning rate only, as in a
  learning-rate grid search per init. With ``draws="independent"`` (default) every ``(std, seed)``
  gets its own draw, ``key = fold_in(PRNGKey(seed), i)`` for the ``i``-th std; with
  ``draws="common"`` every std uses ``PRNGKey(seed)`` (common random numbers: for a scale-family
  init such as ``"gaussian"`` each std's weights are one draw rescaled, which removes the draw's
  noise from comparisons across stds but shows one sample of the init law only).

  Args:
    init: ``"balanced"``, ``"gaussian"``, ``"orthogonal"`` (``std`` is its ``scale``), or a
      function ``init(key, dims, std=...)`` returning ``(W_1, ..., W_N)``.
    dims: ``(d_0, ..., d_N)``.
    std: init scales.
    lr: learning rates.
    seeds: integer seeds.
    draws: ``"independent"`` or ``"common"`` (see above).
    dtype: the weights' dtype (default: float32, float64 under ``jax.enable_x64``).

  Returns:
    ``(weights, lrs, table)``: batched weights ``W_j`` of shape ``(B, d_j, d_{j-1})``, learning
    rates ``(B,)``, and the grid's coordinates ``table = {"std": (B,), "lr": (B,), "seed": (B,)}``.

  Example:
    >>> ws, lrs, table = grid("gaussian", (4, 3, 1), std=[0.1, 1.0], lr=[1e-3, 1e-2, 1e-1], seeds=[0, 1])
    >>> [w.shape for w in ws], lrs.shape, table["std"][:4].tolist(), table["seed"][:4].tolist()
    ([(12, 3, 4), (12, 1, 3)], (12,), [0.1, 0.1, 0.1, 0.1], [0, 1, 0, 1])

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Section 5 and Figure 1.
  """
  if isinstance(init, str):
    if init not in _INITS:
      raise ValueError(f"init must be one of {sorted(_INITS)} or a function init(key, dims, std=...); got "
                       f"{init!r}.")
    make = _INITS[init]
  elif callable(init):
    make = lambda key, dims, std, dtype: init(key, dims, std=std)
  else:
    raise ValueError(f"init must be a name or a function init(key, dims, std=...); got {type(init).__name__}.")
  columns = {}
  for name, values in (("std", std), ("lr", lr), ("seeds", seeds)):
    values = np.asarray(values)
    if values.ndim != 1 or values.size == 0:
      raise ValueError(f"{name} must be a non-empty 1-D sequence; got {values.tolist()!r}.")
    columns[name] = values
  if not np.issubdtype(columns["seeds"].dtype, np.integer):
    raise ValueError(f"seeds must be integers; got {columns['seeds'].tolist()!r}.")
  if draws not in ("independent", "common"):
    raise ValueError(f"draws must be 'independent' (one draw per std and seed) or 'common' (one draw per "
                     f"seed, shared by every std); got {draws!r}.")
  for value in columns["lr"]:
    check_lr(value)

  def key(i, seed):
    base = jax.random.PRNGKey(int(seed))
    return base if draws == "common" else jax.random.fold_in(base, i)

  starts = {(s, seed): make(key(i, seed), tuple(dims), float(s), dtype)
            for i, s in enumerate(columns["std"]) for seed in columns["seeds"]}
  coords = list(itertools.product(columns["std"], columns["lr"], columns["seeds"]))
  weights = tuple(np.stack([np.asarray(starts[(s, seed)][j]) for s, _, seed in coords])
                  for j in range(len(dims) - 1))
  table = {"std": np.array([c[0] for c in coords], np.float64),
           "lr": np.array([c[1] for c in coords], np.float64),
           "seed": np.array([c[2] for c in coords], np.int64)}
  return weights, table["lr"].copy(), table


def fastest(table: dict, trajectory: Trajectory, by="std") -> dict:
  r"""Per value of ``by`` (a column of ``table`` or a tuple of columns), the lane that stopped
  first: its coordinates and ``steps`` (its ``stopped_step``; ``-1`` and NaN coordinates where no
  lane of the group stopped).

  Args:
    table: the grid's coordinates, as returned by :func:`grid` (one entry per lane).
    trajectory: the batched run's :class:`lintraj.Trajectory` (needs ``stopped_step``).
    by: the grouping column(s).

  Returns:
    A table (dict of arrays, one row per group, groups sorted) with every column of ``table``
    plus ``steps``.

  Example:
    >>> import types, numpy as np
    >>> table = {"std": np.array([1.0, 1.0, 2.0]), "lr": np.array([0.1, 0.2, 0.1])}
    >>> traj = types.SimpleNamespace(stopped_step=np.array([50, 20, -1]))  # a batched run's result
    >>> best = fastest(table, traj)
    >>> best["std"].tolist(), best["lr"].tolist(), best["steps"].tolist()
    ([1.0, 2.0], [0.2, nan], [20, -1])

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Figure 1 (iterations to
    convergence of the best learning rate, per init scale).
  """
  by = (by,) if isinstance(by, str) else tuple(by)
  stopped = np.asarray(trajectory.stopped_step)
  for name in by:
    if name not in table:
      raise ValueError(f"by names {name!r}, which is not a column of the table {sorted(table)}.")
  if any(len(np.asarray(v)) != len(stopped) for v in table.values()):
    raise ValueError(f"the table has {len(next(iter(table.values())))} rows but the trajectory "
                     f"{len(stopped)} lanes.")
  keys = list(zip(*(np.asarray(table[name]).tolist() for name in by)))
  rows = {name: [] for name in table}
  rows["steps"] = []
  for key in sorted(set(keys)):
    members = [b for b, k in enumerate(keys) if k == key and stopped[b] >= 0]
    best = min(members, key=lambda b: stopped[b]) if members else None
    for name, values in table.items():
      values = np.asarray(values)
      if name in by:
        rows[name].append(key[by.index(name)])
      else:
        rows[name].append(values[best] if best is not None else math.nan)
    rows["steps"].append(int(stopped[best]) if best is not None else -1)
  return {name: np.asarray(values) for name, values in rows.items()}


def lane(trajectory: Trajectory, index: int) -> Trajectory:
  """Lane ``index`` of a batched trajectory, as the single-run :class:`lintraj.Trajectory` of
  :func:`lintraj.gradient_descent` (``diverged_step``/``stopped_step`` int or None).

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> ws, lrs, _ = lt.sweep.grid("balanced", (2, 3, 1), std=[0.5], lr=[0.05, 0.1])
    >>> traj = lt.batch_gradient_descent(ws, lt.losses.target(jnp.ones((1, 2))), lr=lrs, steps=10)
    >>> lane(traj, 1).loss.shape, lane(traj, 1).stopped_step
    ((11,), None)
  """
  as_step = lambda x: None if x is None or int(x[index]) < 0 else int(x[index])
  values = {}
  for name, value in trajectory._asdict().items():
    if name in ("diverged_step", "stopped_step"):
      values[name] = as_step(value)
    elif value is None:
      values[name] = None
    elif isinstance(value, tuple):
      values[name] = tuple(v[index] for v in value)
    else:
      values[name] = value[index]
  return Trajectory(**values)

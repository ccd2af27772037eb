r"""Sweeps: many gradient-descent trajectories in one compiled call, across all devices.

:func:`batch_gradient_descent` runs a batch of networks (every weight array with a leading lane
axis) through the per-network loop body of :func:`lintraj.gradient_descent`, vmapped, inside one
``lax.while_loop`` that ends once every lane has stopped (``stop_at_loss``) or diverged. With
several devices the lanes are split across them (``NamedSharding`` on a 1-D mesh, padded to fill
every device) and each device runs its own loop over its own lanes (``shard_map``);
``lanes_per_device=`` runs a large batch in chunks. :func:`grid` builds
the batch of a learning-rate x init-scale x seed grid and :func:`fastest` reads off, per init
scale, the learning rate that reached the threshold first (Arora et al. 2019, Figure 1).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lintraj import _engine
from lintraj import init as inits
from lintraj._runtime import lane_mesh
from lintraj.losses import stack_losses
from lintraj.minibatch import check_sampling
from lintraj.network import check_weights
from lintraj.progress import meter
from lintraj.recording import Trajectory
from lintraj.validation import check_int, check_lr, check_stop_at_loss

__all__ = [
  "batch_gradient_descent",
  "batch_train",
  "grid",
  "stack",
  "fastest",
  "fastest_iterations",
  "lane",
  "stack_losses",
  "lane_mesh",
]


def _check_batch(weights) -> tuple:
  """``(weights, lane 0's weights)`` of a batch, or ValueError."""
  if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or not weights:
    raise ValueError(
      "weights must be a non-empty tuple (W_1, ..., W_N) of batched layers, W_j of shape "
      f"(B, d_j, d_{{j-1}}); got {type(weights).__name__}. Build them with lintraj.sweep.grid."
    )
  weights = tuple(np.asarray(w) for w in weights)
  weights = tuple(w.astype(jax.dtypes.canonicalize_dtype(w.dtype), copy=False) for w in weights)
  for j, w in enumerate(weights, start=1):
    if w.ndim != 3 or w.shape[0] != weights[0].shape[0] or w.shape[0] == 0:
      raise ValueError(
        f"layer W_{j} has shape {w.shape}; in a batch every layer has shape "
        f"(B, d_j, d_{{j-1}}) with the same B >= 1 (W_1 has {weights[0].shape}). For one "
        "network use lintraj.gradient_descent."
      )
  return weights, check_weights(tuple(w[0] for w in weights))


def _per_lane(value, lanes: int, name: str) -> np.ndarray:
  value = np.asarray(value, np.float64)
  if value.shape not in ((), (lanes,)):
    raise ValueError(
      f"{name} must be a number or an array of shape ({lanes},), one per lane; got shape "
      f"{value.shape}."
    )
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


def batch_gradient_descent(
  weights,
  loss,
  *,
  lr,
  steps: int,
  record_every: int = 1,
  stop_at_loss=None,
  track=(),
  track_every: int = 1,
  singular_values: str = "batched",
  metrics=None,
  validation=None,
  patience: int | None = None,
  min_delta: float = 0.0,
  batch_size: int | None = None,
  sampling: str = "shuffle",
  key=None,
  lanes_per_device: int | None = None,
  devices=None,
  progress=False,
  checkpoint=None,
  checkpoint_every: int | None = None,
) -> Trajectory:
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
    track, track_every, singular_values, metrics: as in :func:`lintraj.gradient_descent`
      (``sharpness`` then has shape ``(B, T)``, ``metrics[name]`` ``(B, T, ...)``).
    validation, patience, min_delta: held-out loss and early stopping on it, per lane, as in
      :func:`lintraj.gradient_descent`; ``validation`` is one loss per lane when ``loss`` is
      (``best_step`` has shape ``(B,)``, ``best`` the weights ``(B, d_j, d_{j-1})``).
    batch_size, sampling: minibatch SGD, as in :func:`lintraj.gradient_descent` (one batch size
      and scheme for every lane).
    key: the minibatches' PRNG key: one key, split into one per lane (lane ``b`` gets
      ``jax.random.split(key, B)[b]``), or an array ``(B, 2)`` of one key per lane. Lane ``b``
      equals :func:`lintraj.gradient_descent` with its key.
    lanes_per_device: lanes per device at a time (default: all lanes in one go); a larger batch
      runs in chunks of ``lanes_per_device`` lanes per device, one chunk after another. (It was
      called ``batch_size`` before minibatches came; ``batch_size`` is now the minibatch size.)
    devices: the devices to spread the lanes over (default ``jax.devices()``, all of them).
    progress: True for a tqdm bar with the lanes stopped and diverged so far, False, or a meter
      (:class:`lintraj.progress.Meter`).
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
  weights, lane_weights = _check_batch(weights)
  lanes = weights[0].shape[0]
  loss, loss_batched, sched, rec, path = _check_batch_run(
    "batch_gradient_descent",
    weights,
    lane_weights,
    loss,
    steps=steps,
    record_every=record_every,
    track=track,
    track_every=track_every,
    singular_values=singular_values,
    metrics=metrics,
    checkpoint=checkpoint,
    checkpoint_every=checkpoint_every,
    lr=lr,
    stop_at_loss=stop_at_loss,
    batch_size=batch_size,
  )
  lrs = _check_lrs(lr, lanes)
  stop = _per_lane(check_stop_at_loss(stop_at_loss), lanes, "stop_at_loss")
  mesh = lane_mesh(devices)
  per_device = _lanes_per_device(lanes_per_device, lanes, mesh)
  held_out = _engine.check_held_out(
    validation, patience, min_delta, lane_weights, loss_batched=loss_batched, lanes=lanes
  )
  minibatches = check_sampling(
    _engine.lane_loss(loss, loss_batched), batch_size, sampling, key, lanes=lanes
  )
  job = _batch_gradient_descent_job(
    weights, loss, loss_batched, lrs, stop, sched, rec, per_device, mesh, path
  )
  return _engine.execute_with(job, held_out, minibatches, meter(progress))


def _check_batch_run(run, weights, lane_weights, loss, **kwargs):
  """The checks of a batched run: the run's common checks on lane 0 (every lane has its
  shapes), the per-lane losses (stacked), ``(loss, loss_batched, schedule, recorder, path)``."""
  lanes = weights[0].shape[0]
  loss_batched = isinstance(loss, (list, tuple))
  if loss_batched:
    if len(loss) != lanes:
      raise ValueError(
        f"loss has {len(loss)} entries but the batch has {lanes} lanes; give one "
        "loss per lane or one shared loss."
      )
    for lane_loss in loss:
      _engine.check_run(run, lane_weights, lane_loss, **kwargs)
    loss = stack_losses(loss)
    _, _, sched, rec, path = _engine.check_run(
      run, lane_weights, jax.tree_util.tree_map(lambda x: x[0], loss), **kwargs
    )
  else:
    _, loss, sched, rec, path = _engine.check_run(run, lane_weights, loss, **kwargs)
  return loss, loss_batched, sched, rec, path


def _lanes_per_device(lanes_per_device, lanes, mesh) -> int:
  """Lanes per device at a time: all lanes (spread over the devices) unless
  ``lanes_per_device``."""
  devices = 1 if mesh is None else mesh.size
  if lanes_per_device is not None:
    lanes_per_device = check_int("lanes_per_device", lanes_per_device, 1)
  return min(int(lanes_per_device or lanes), -(-lanes // devices))


def _lanes(weights, opt_state) -> _engine.LaneState:
  lanes = weights[0].shape[0]
  return _engine.LaneState(
    tuple(weights), opt_state, np.full(lanes, -1, np.int32), np.full(lanes, -1, np.int32)
  )


def _batch_gradient_descent_job(
  weights, loss, loss_batched, lrs, stop, sched, rec, per_device, mesh, path
) -> _engine.Job:
  lrs = np.asarray(lrs, np.float64)
  return _engine.Job(
    "batch_gradient_descent",
    _engine.gd_update,
    _lanes(weights, lrs.astype(weights[0].dtype)),
    loss,
    np.asarray(stop, np.float64),
    sched,
    rec,
    batched=True,
    loss_batched=loss_batched,
    lanes_per_device=per_device,
    mesh=mesh,
    checkpoint=path,
    call=dict(loss_batched=loss_batched, lanes_per_device=per_device),
    arrays={**_weight_arrays(weights), "lr": lrs, "stop_at_loss": np.asarray(stop, np.float64)},
  )


def _weight_arrays(weights) -> dict:
  return {f"weights/{j}": np.asarray(w) for j, w in enumerate(weights)}


def _stored_batch(arrays: dict) -> tuple:
  count = sum(k.startswith("weights/") for k in arrays)
  return _check_batch([arrays[f"weights/{j}"] for j in range(count)])[0]


def _resumed_mesh_and_batch(call, lanes, devices):
  mesh = lane_mesh(devices)
  per_device = call.get("lanes_per_device", call.get("batch_size"))  # its name before SGD came
  return mesh, min(int(per_device), -(-lanes // (1 if mesh is None else mesh.size)))


def resume_batch_gradient_descent(
  call, arrays, loss, sched, rec, path, optimizer=None, devices=None
) -> _engine.Job:
  """The job of a :func:`batch_gradient_descent` checkpoint (see :func:`lintraj.resume`)."""
  weights = _stored_batch(arrays)
  mesh, per_device = _resumed_mesh_and_batch(call, weights[0].shape[0], devices)
  return _batch_gradient_descent_job(
    weights,
    loss,
    call["loss_batched"],
    arrays["lr"],
    arrays["stop_at_loss"],
    sched,
    rec,
    per_device,
    mesh,
    path,
  )


def batch_train(
  weights,
  loss,
  optimizer,
  *,
  hyperparams=None,
  steps: int,
  record_every: int = 1,
  stop_at_loss=None,
  track=(),
  track_every: int = 1,
  singular_values: str = "batched",
  metrics=None,
  validation=None,
  patience: int | None = None,
  min_delta: float = 0.0,
  batch_size: int | None = None,
  sampling: str = "shuffle",
  key=None,
  lanes_per_device: int | None = None,
  devices=None,
  progress=False,
  checkpoint=None,
  checkpoint_every: int | None = None,
) -> Trajectory:
  r"""Train a batch of ``B`` networks with an optax optimizer in one compiled loop, lane by lane
  equal to :func:`lintraj.train` (to rounding, ``stopped_step`` included).

  ``optimizer`` is either one ``optax.GradientTransformation`` shared by every lane, or a
  function of keyword hyperparameters returning one (``optax.adam``, ``optax.sgd``, ...) with
  ``hyperparams={"learning_rate": lrs, ...}``: scalars are shared, arrays of shape ``(B,)`` give
  each lane its own value, through ``optax.inject_hyperparams`` (so one program serves every
  value). Lane ``b`` then runs ``optimizer(**hyperparams_b)``. Every other argument is as in
  :func:`batch_gradient_descent`.

  Example:
    >>> import jax.numpy as jnp, numpy as np, optax, lintraj as lt
    >>> ws, lrs, table = lt.sweep.grid("balanced", (2, 3, 1), std=[0.5], lr=[0.01, 0.1])
    >>> traj = lt.batch_train(ws, lt.losses.target(jnp.array([[1.0, 0.5]])), optax.adam,
    ...                       hyperparams={"learning_rate": lrs}, steps=300, stop_at_loss=1e-6)
    >>> bool(traj.stopped_step[1] < traj.stopped_step[0])  # the larger step size is faster
    True

  References:
    Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration by
    Overparameterization. ICML 2018 (arXiv 1802.06509), Section 6 (tuned optimizers compared).
  """
  weights, lane_weights = _check_batch(weights)
  lanes = weights[0].shape[0]
  loss, loss_batched, sched, rec, path = _check_batch_run(
    "batch_train",
    weights,
    lane_weights,
    loss,
    steps=steps,
    record_every=record_every,
    track=track,
    track_every=track_every,
    singular_values=singular_values,
    metrics=metrics,
    checkpoint=checkpoint,
    checkpoint_every=checkpoint_every,
    hyperparams=hyperparams,
    stop_at_loss=stop_at_loss,
    batch_size=batch_size,
  )
  hyper = _check_hyperparams(optimizer, hyperparams, lanes)
  stop = _per_lane(check_stop_at_loss(stop_at_loss), lanes, "stop_at_loss")
  mesh = lane_mesh(devices)
  held_out = _engine.check_held_out(
    validation, patience, min_delta, lane_weights, loss_batched=loss_batched, lanes=lanes
  )
  job = _batch_train_job(
    weights,
    loss,
    loss_batched,
    optimizer,
    hyper,
    stop,
    sched,
    rec,
    _lanes_per_device(lanes_per_device, lanes, mesh),
    mesh,
    path,
  )
  minibatches = check_sampling(
    _engine.lane_loss(loss, loss_batched), batch_size, sampling, key, lanes=lanes
  )
  return _engine.execute_with(job, held_out, minibatches, meter(progress))


def _check_hyperparams(optimizer, hyperparams, lanes) -> dict | None:
  """The per-lane hyperparameters as ``(B,)`` float64 arrays (None for a shared optimizer)."""
  if hyperparams is None:
    if not isinstance(optimizer, optax.GradientTransformation):
      raise ValueError(
        "optimizer must be an optax.GradientTransformation shared by every lane, "
        "or a function of hyperparameters such as optax.adam with "
        "hyperparams={'learning_rate': lrs}; got "
        f"{type(optimizer).__name__} without hyperparams."
      )
    return None
  if isinstance(optimizer, optax.GradientTransformation) or not callable(optimizer):
    raise ValueError(
      "with hyperparams=, optimizer must be a function of them returning an optax "
      "optimizer (e.g. optax.adam, not optax.adam(1e-3))."
    )
  if not isinstance(hyperparams, dict) or not hyperparams:
    raise ValueError(
      "hyperparams must be a non-empty dict name -> value or (B,) values, e.g. "
      f"{{'learning_rate': lrs}}; got {hyperparams!r}."
    )
  out = {}
  for name, value in hyperparams.items():
    if isinstance(value, (str, bytes)):
      raise ValueError(f"hyperparams[{name!r}] must be a number or one per lane; got {value!r}.")
    out[name] = _per_lane(value, lanes, f"hyperparams[{name!r}]")
  try:
    inner = optimizer(**{name: float(v[0]) for name, v in out.items()})
  except TypeError as err:
    raise ValueError(
      f"optimizer({', '.join(out)}=...) failed: {err}. Give the keyword arguments "
      "the optimizer function takes (e.g. learning_rate for optax.adam)."
    ) from None
  if not isinstance(inner, optax.GradientTransformation):
    raise ValueError(
      "optimizer(**hyperparams) must return an optax.GradientTransformation; got "
      f"{type(inner).__name__}."
    )
  return out


@functools.lru_cache(maxsize=64)
def _injected(factory, names: tuple):
  """One injected optimizer per (factory, hyperparameter names): the same object, so the same
  compiled program, for every call with other values."""
  return optax.inject_hyperparams(factory)(**{name: 0.0 for name in names})


def _batch_train_job(
  weights, loss, loss_batched, optimizer, hyper, stop, sched, rec, per_device, mesh, path
) -> _engine.Job:
  dtype = weights[0].dtype
  if hyper is None:
    transform = optimizer
    # The state of each lane is the init of its own weights (e.g. L-BFGS stores them).
    opt_state = jax.device_get(jax.vmap(optimizer.init)(tuple(jnp.asarray(w) for w in weights)))
  else:
    transform = _injected(optimizer, tuple(sorted(hyper)))

    def init(ws, values):
      state = transform.init(ws)
      cast = {k: jnp.asarray(values[k], state.hyperparams[k].dtype) for k in hyper}
      return state._replace(hyperparams={**state.hyperparams, **cast})

    values = {k: jnp.asarray(v, dtype) for k, v in hyper.items()}
    opt_state = jax.device_get(jax.vmap(init)(tuple(jnp.asarray(w) for w in weights), values))
  arrays = {**_weight_arrays(weights), "stop_at_loss": np.asarray(stop, np.float64)}
  arrays.update({f"hyper/{k}": v for k, v in (hyper or {}).items()})
  return _engine.Job(
    "batch_train",
    _engine.OptaxUpdate(transform),
    _lanes(weights, opt_state),
    loss,
    np.asarray(stop, np.float64),
    sched,
    rec,
    batched=True,
    loss_batched=loss_batched,
    lanes_per_device=per_device,
    mesh=mesh,
    checkpoint=path,
    call=dict(loss_batched=loss_batched, lanes_per_device=per_device),
    arrays=arrays,
  )


def resume_batch_train(
  call, arrays, loss, sched, rec, path, optimizer=None, devices=None
) -> _engine.Job:
  """The job of a :func:`batch_train` checkpoint; ``optimizer`` is the run's own (not stored)."""
  if optimizer is None:
    raise ValueError(
      "this checkpoint is of lt.batch_train, whose optimizer a checkpoint cannot "
      "store; pass the same one: lt.resume(path, optimizer=optax.adam)."
    )
  weights = _stored_batch(arrays)
  hyper = {k[len("hyper/") :]: v for k, v in arrays.items() if k.startswith("hyper/")} or None
  _check_hyperparams(optimizer, hyper, weights[0].shape[0])
  mesh, per_device = _resumed_mesh_and_batch(call, weights[0].shape[0], devices)
  return _batch_train_job(
    weights,
    loss,
    call["loss_batched"],
    optimizer,
    hyper,
    arrays["stop_at_loss"],
    sched,
    rec,
    per_device,
    mesh,
    path,
  )


def grid(
  init,
  dims: Sequence[int],
  *,
  std: Sequence[float],
  lr: Sequence[float],
  seeds: Sequence[int] = (0,),
  draws: str = "independent",
  dtype=None,
):
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
    >>> ws, lrs, table = grid("gaussian", (4, 3, 1), std=[0.1, 1.0], lr=[1e-3, 1e-2, 1e-1],
    ...                       seeds=[0, 1])
    >>> [w.shape for w in ws], lrs.shape, table["std"][:4].tolist(), table["seed"][:4].tolist()
    ([(12, 3, 4), (12, 1, 3)], (12,), [0.1, 0.1, 0.1, 0.1], [0, 1, 0, 1])

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Section 5 and Figure 1.
  """
  if isinstance(init, str):
    make = inits.by_name(init)
  elif callable(init):
    make = lambda key, dims, std, dtype: init(key, dims, std=std)
  else:
    raise ValueError(
      f"init must be a name or a function init(key, dims, std=...); got {type(init).__name__}."
    )
  columns = {}
  for name, values in (("std", std), ("lr", lr), ("seeds", seeds)):
    values = np.asarray(values)
    if values.ndim != 1 or values.size == 0:
      raise ValueError(f"{name} must be a non-empty 1-D sequence; got {values.tolist()!r}.")
    columns[name] = values
  if not np.issubdtype(columns["seeds"].dtype, np.integer):
    raise ValueError(f"seeds must be integers; got {columns['seeds'].tolist()!r}.")
  if draws not in ("independent", "common"):
    raise ValueError(
      f"draws must be 'independent' (one draw per std and seed) or 'common' (one draw per "
      f"seed, shared by every std); got {draws!r}."
    )
  for value in columns["lr"]:
    check_lr(value)

  def key(i, seed):
    base = jax.random.PRNGKey(int(seed))
    return base if draws == "common" else jax.random.fold_in(base, i)

  starts = {
    (s, seed): make(key(i, seed), tuple(dims), float(s), dtype)
    for i, s in enumerate(columns["std"])
    for seed in columns["seeds"]
  }
  coords = list(itertools.product(columns["std"], columns["lr"], columns["seeds"]))
  weights = tuple(
    np.stack([np.asarray(starts[(s, seed)][j]) for s, _, seed in coords])
    for j in range(len(dims) - 1)
  )
  table = {
    "std": np.array([c[0] for c in coords], np.float64),
    "lr": np.array([c[1] for c in coords], np.float64),
    "seed": np.array([c[2] for c in coords], np.int64),
  }
  return weights, table["lr"].copy(), table


def fastest(table: dict, trajectory, by="std") -> dict:
  r"""Per value of ``by`` (a column of ``table`` or a tuple of columns), the lane that stopped
  first: its coordinates and ``steps`` (its ``stopped_step``; ``-1`` and NaN coordinates where no
  lane of the group stopped).

  Args:
    table: the grid's coordinates, as returned by :func:`grid` (one entry per lane).
    trajectory: the batched run's :class:`lintraj.Trajectory`, or its ``stopped_step`` array
      (``-1``: never stopped).
    by: the grouping column(s).

  Returns:
    A table (dict of arrays, one row per group, groups sorted) with every column of ``table``
    plus ``steps``.

  Example:
    >>> import numpy as np
    >>> table = {"std": np.array([1.0, 1.0, 2.0]), "lr": np.array([0.1, 0.2, 0.1])}
    >>> best = fastest(table, np.array([50, 20, -1]))  # a batched run's stopped_step
    >>> best["std"].tolist(), best["lr"].tolist(), best["steps"].tolist()
    ([1.0, 2.0], [0.2, nan], [20, -1])

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Figure 1 (iterations to
    convergence of the best learning rate, per init scale).
  """
  by = (by,) if isinstance(by, str) else tuple(by)
  stopped = np.asarray(getattr(trajectory, "stopped_step", trajectory))
  for name in by:
    if name not in table:
      raise ValueError(f"by names {name!r}, which is not a column of the table {sorted(table)}.")
  if any(len(np.asarray(v)) != len(stopped) for v in table.values()):
    raise ValueError(
      f"the table has {len(next(iter(table.values())))} rows but the trajectory "
      f"{len(stopped)} lanes."
    )
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


def stack(networks) -> tuple:
  """Networks ``[(W_1, ..., W_N), ...]`` of equal shapes as one batch ``(W_1, ..., W_N)`` for
  :func:`batch_gradient_descent` and :func:`batch_train`, ``W_j`` of shape ``(B, d_j, d_{j-1})``
  (lane ``b`` is ``networks[b]``).

  Example:
    >>> import jax, lintraj as lt
    >>> nets = [lt.init.gaussian(jax.random.PRNGKey(k), (3, 4, 2), std=0.1) for k in range(5)]
    >>> [w.shape for w in stack(nets)]
    [(5, 4, 3), (5, 2, 4)]
  """
  networks = [tuple(ws) for ws in networks]
  if not networks or len({tuple(jnp.shape(w) for w in ws) for ws in networks}) != 1:
    raise ValueError(
      "stack needs at least one network, all with the same layer shapes; got layer shapes "
      f"{sorted({tuple(jnp.shape(w) for w in ws) for ws in networks})}."
    )
  return tuple(jnp.stack([ws[j] for ws in networks]) for j in range(len(networks[0])))


def lane(trajectory: Trajectory, index: int) -> Trajectory:
  """Lane ``index`` of a batched trajectory, as the single-run :class:`lintraj.Trajectory` of
  :func:`lintraj.gradient_descent` (``diverged_step``, ``stopped_step``, ``best_step``: int or
  None).

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
    if name in ("diverged_step", "stopped_step", "best_step"):
      values[name] = as_step(value)
    elif value is None:
      values[name] = None
    elif isinstance(value, tuple):
      values[name] = tuple(v[index] for v in value)
    elif isinstance(value, dict):
      values[name] = {k: v[index] for k, v in value.items()}
    else:
      values[name] = value[index]
  return Trajectory(**values)


def fastest_iterations(
  init,
  dims,
  loss,
  *,
  stds,
  lrs,
  caps,
  threshold,
  seeds=(0,),
  draws="independent",
  lanes_per_device=None,
  progress=False,
  seed=None,
):
  r"""For each init, init scale and seed, the fewest GD iterations any learning rate of a grid
  needs to reach ``loss <= threshold``:

  .. math::
     T(\text{init}, s, \text{seed}) = \min_{\eta \in \text{lrs}}
     \min\{t : L(W(t; \text{init}, s, \text{seed}, \eta)) \le \text{threshold}\}.

  The staged search of the learning rate: runs the grid ``inits x stds x lrs x seeds``
  (:func:`grid` per init, every lane in one :func:`lintraj.batch_gradient_descent` call per stage,
  so one compiled program serves all inits and seeds) in stages ending at ``caps``. After each
  stage an ``(init, std, seed)`` with a converged lane leaves the search (any later lane would be
  slower), diverged lanes are dropped, so are lanes whose weights end a stage bit for bit where
  they began it (an exact fixed point or cycle of GD in the lane's precision, such as a Gaussian
  init so small that every update rounds away: it never reaches the threshold), and the other
  lanes continue from their weights (GD is a Markov chain: no step is repeated). Each stage
  records only its first and last step (the search needs ``stopped_step``, ``diverged_step`` and
  the final weights, which do not depend on the records).

  Args:
    init: an init name of :func:`grid` or a function ``init(key, dims, std=...)``, or a sequence
      of them (their lanes share each stage's batched call).
    dims: ``(d_0, ..., d_N)``.
    loss: the loss, shared by every lane.
    stds: init scales; lrs: learning rates.
    caps: increasing step counts at which the stages end; the last is the iteration cap.
    threshold: the loss that counts as converged.
    seeds: the init seeds (one independent search per seed).
    draws: ``"independent"`` (one draw per std and seed) or ``"common"`` (one draw per seed,
      rescaled for every std), as in :func:`grid`.
    lanes_per_device: run each stage in chunks of this many lanes per device, as in
      :func:`batch_gradient_descent` (default: all lanes at once). On a CPU, chunks whose weights
      fit in the cache take fewer cycles per step than one large batch, and a chunk ends as soon
      as its own lanes have stopped.
    progress: show a progress bar per stage.
    seed: refused with the fix: the single seed of earlier versions is ``seeds=(seed,)`` now.

  Returns:
    ``(best, lane_steps)``: the :func:`fastest` table grouped by ``init`` (the name, or the
    function's ``__name__``), ``std`` and ``seed`` (columns ``init``, ``std``, ``seed``, ``lr``,
    ``steps``; ``steps = -1`` and ``lr`` NaN where no learning rate converged within the last
    cap), with a ``diverged`` column (how many learning rates diverged before the group left the
    search) and a ``fixed`` column (how many left it as exact fixed points), and the GD steps
    taken, summed over lanes.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> loss = lt.losses.target(jnp.array([[1.0, 0.5]]))
    >>> best, _ = lt.sweep.fastest_iterations("balanced", (2, 3, 1), loss, stds=[0.5],
    ...                                       lrs=[0.05, 0.1], caps=[20, 1000], threshold=1.15e-4)
    >>> best["lr"].tolist(), best["steps"].tolist()
    ([0.1], [41])

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Section 5 and Figure 1 (iterations
    to convergence of the best learning rate, per init scale).
  """
  if seed is not None:
    raise ValueError(
      f"fastest_iterations takes seeds= (a sequence, one search per seed); pass "
      f"seeds=({seed!r},) in place of seed={seed!r}."
    )
  inits = tuple(init) if isinstance(init, (list, tuple)) else (init,)
  if not inits:
    raise ValueError("init must name at least one init (e.g. 'balanced').")
  names = [i if isinstance(i, str) else getattr(i, "__name__", repr(i)) for i in inits]
  batches = [grid(i, dims, std=stds, lr=lrs, seeds=seeds, draws=draws) for i in inits]
  weights = [np.concatenate([np.asarray(b[0][j]) for b in batches]) for j in range(len(dims) - 1)]
  lr = np.concatenate([b[1] for b in batches])
  table = {"init": np.repeat(names, len(batches[0][1]))}
  table.update({k: np.concatenate([b[2][k] for b in batches]) for k in ("std", "lr", "seed")})
  groups = list(zip(table["init"].tolist(), table["std"].tolist(), table["seed"].tolist()))
  number = {g: i for i, g in enumerate(dict.fromkeys(groups))}
  group = np.array([number[g] for g in groups])
  lanes = len(lr)
  stopped, diverged, fixed = np.full(lanes, -1), np.zeros(lanes, bool), np.zeros(lanes, bool)
  active, done, lane_steps = np.ones(lanes, bool), 0, 0
  for cap in caps:
    index = np.flatnonzero(active)
    if index.size == 0:
      break
    steps = cap - done
    traj = batch_gradient_descent(
      tuple(w[index] for w in weights),
      loss,
      lr=lr[index],
      steps=steps,
      record_every=steps,
      stop_at_loss=threshold,
      lanes_per_device=lanes_per_device,
      progress=progress,
    )
    stop, div = np.asarray(traj.stopped_step), np.asarray(traj.diverged_step)
    lane_steps += int(np.sum(np.where(stop >= 0, stop, np.where(div >= 0, div, steps))))
    stopped[index[stop >= 0]] = done + stop[stop >= 0]
    diverged[index[div >= 0]] = True
    unchanged = np.ones(index.size, bool)
    for w, final in zip(weights, traj.final):
      final = np.asarray(final)
      unchanged &= np.all(w[index] == final, axis=tuple(range(1, final.ndim)))
      w[index] = final
    fixed[index[unchanged & (stop < 0) & (div < 0)]] = True
    active &= ~diverged & ~fixed & (stopped < 0) & ~np.isin(group, group[stopped >= 0])
    done = cap
  best = fastest(table, stopped, by=("init", "std", "seed"))
  keys = list(zip(best["init"].tolist(), best["std"].tolist(), best["seed"].tolist()))
  for name, lanes_out in (("diverged", diverged), ("fixed", fixed)):
    count = {key: 0 for key in keys}
    for g, out in zip(groups, lanes_out):
      count[g] += int(out)
    best[name] = np.array([count[key] for key in keys])
  return best, lane_steps

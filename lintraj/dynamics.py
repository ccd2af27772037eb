r"""Gradient descent and optax training of one deep linear network, recording the theory's
metrics every ``record_every`` steps.

Both run on the one engine (:mod:`lintraj._engine`): a compiled loop over records, run in
segments, with early stopping, divergence detection, user metrics, tracked curvature, progress
meters and checkpoints. Their batched forms are in :mod:`lintraj.sweep`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lintraj import _engine
from lintraj.minibatch import check_sampling
from lintraj.network import check_weights
from lintraj.progress import meter
from lintraj.recording import Trajectory
from lintraj.validation import check_lr, check_stop_at_loss

__all__ = ["gradient_descent", "train"]


def _single_stop(stop_at_loss) -> np.ndarray:
  stop = check_stop_at_loss(stop_at_loss)
  if stop.ndim:
    raise ValueError(
      f"stop_at_loss must be a number for a single run; got shape {stop.shape} "
      "(one per lane is for lt.batch_gradient_descent / lt.batch_train)."
    )
  return stop


def _weight_arrays(weights) -> dict:
  return {f"weights/{j}": np.asarray(w) for j, w in enumerate(weights)}


def _stored_weights(arrays: dict) -> tuple:
  return tuple(arrays[f"weights/{j}"] for j in range(sum(k.startswith("weights/") for k in arrays)))


def check_optimizer(optimizer) -> optax.GradientTransformation:
  """``optimizer`` if it is an optax ``GradientTransformation``, else ValueError naming the fix."""
  if not isinstance(optimizer, optax.GradientTransformation):
    raise ValueError(
      "optimizer must be an optax.GradientTransformation (e.g. optax.sgd(1e-2)); "
      f"got {type(optimizer).__name__}."
    )
  return optimizer


def gradient_descent(
  weights,
  loss,
  *,
  lr,
  steps: int,
  record_every: int = 1,
  stop_at_loss=None,
  batch_size: int | None = None,
  sampling: str = "shuffle",
  key=None,
  track=(),
  track_every: int = 1,
  singular_values: str = "batched",
  metrics=None,
  validation=None,
  patience: int | None = None,
  min_delta: float = 0.0,
  progress=False,
  checkpoint=None,
  checkpoint_every: int | None = None,
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
    stop_at_loss: stop once the loss is at most this (None: never). With ``batch_size`` it is
      checked at records only (on the full loss), so a run stops at the first record below it.
    batch_size: None (default) for full-batch gradient descent; an integer ``b`` for minibatch
      SGD: step ``t`` takes the gradient of the loss's own formula on ``b`` of its examples
      (:meth:`lintraj.losses.Loss.minibatch`; for :func:`lintraj.losses.regression`
      :math:`\frac{1}{2b}\|W X_b^\top - Y_b^\top\|_F^2`), so ``batch_size=m`` with
      ``sampling="sequential"`` is full-batch GD to rounding. Records stay on the full data and
      add ``minibatch_loss``. The loss must have examples (``Loss(..., examples=True)``).
    sampling: which examples each step sees (:mod:`lintraj.minibatch`): ``"shuffle"`` (a new
      random order every epoch), ``"shuffle_once"``, ``"sequential"`` (the data's order) or
      ``"with_replacement"``. When ``b`` does not divide ``m``, batches run on into the next
      epoch's order (no example is dropped, every batch has ``b`` examples).
    key: the PRNG key of the minibatches (``jax.random.PRNGKey(seed)``); the same key gives
      the same run, bit for bit. Needed unless ``sampling="sequential"``.
    track: curvature to record besides the default fields, from
      :data:`lintraj.recording.TRACKABLE`: ``"sharpness"``, the top Hessian eigenvalue
      (:func:`lintraj.landscape.sharpness`, Lanczos, matrix-free) to compare with :math:`2/\eta`;
      ``"min_hessian_eigenvalue"``, the bottom one (negative near a saddle). Both come from one
      Lanczos run (:func:`lintraj.landscape.hessian_extremes`).
    track_every: record the tracked metrics at every ``track_every``-th record only (NaN at the
      others). Each tracked record is one Lanczos run of :math:`\min(P, 60)` Hessian-vector
      products with full reorthogonalisation against a :math:`61 \times P` basis (:math:`P` the
      number of weights), far more than the rest of a record at large widths
      (``benchmarks/bench_tracking.py`` measures it).
    singular_values: ``"batched"`` (default: equal-shaped matrices share one LAPACK call) or
      ``"exact"`` (one call per matrix); the same values either way
      (:mod:`lintraj.singular_values`).
    metrics: your own metrics, a dict ``name -> f(weights)`` of jittable functions of the
      weights tuple, recorded at every record as ``traj.metrics[name]`` (leading axis ``T``);
      ready ones are in :mod:`lintraj.metrics`. Checkpoints store them by reference (a function
      at the top level of an importable module), else ``resume(path, metrics=...)`` needs them.
    validation: a loss of the same kind on held-out data (e.g.
      ``lt.losses.regression(x_test, y_test)``), recorded at every record as
      ``traj.validation_loss``; the trajectory keeps the weights and step of the record where it
      was lowest (``traj.best``, ``traj.best_step``). Checkpoints store it like ``loss``.
    patience: with ``validation``, stop after this many records in a row without a validation
      loss below the best by more than ``min_delta`` (early stopping on held-out data, checked at
      records only); ``stopped_step`` is the step of the record that ran out of patience.
      None (default): never stop on it.
    min_delta: the improvement that counts, :math:`\ge 0`.
    progress: True for a tqdm bar, False, or a meter of your own (:class:`lintraj.progress.Meter`).
      Every run is cut into segments of about half a second of the same compiled loop, so the
      records are identical with and without a bar, and an interrupt (Ctrl-C, a notebook's stop
      button) takes effect within about a segment.
    checkpoint: a path; with ``checkpoint_every=K`` the run's state is written there (atomically)
      every ``K`` steps (rounded up to a multiple of ``record_every``) and at the end;
      :func:`lintraj.resume` continues an interrupted run from it.
    checkpoint_every: steps between checkpoints.

  Run functions compile and drive their own loop, so they cannot be called under ``jax.jit`` or
  ``jax.vmap``: for many runs at once use :func:`lintraj.batch_gradient_descent`.

  Returns:
    A :class:`lintraj.Trajectory`.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> phi = jnp.array([[1.0, 0.5]])
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 3, 1), std=0.5)
    >>> traj = lt.gradient_descent(ws, lt.losses.target(phi), lr=0.1, steps=500, record_every=100)
    >>> traj.loss.shape, bool(traj.loss[-1] < 1e-6)
    ((6,), True)
    >>> loss = lt.losses.target(phi)
    >>> early = lt.gradient_descent(ws, loss, lr=0.1, steps=500, stop_at_loss=1.1e-4)
    >>> early.stopped_step
    30
    >>> traj = lt.gradient_descent(ws, lt.losses.target(phi), lr=0.1, steps=500, record_every=100,
    ...                            track=("sharpness",))
    >>> bool(traj.sharpness[-1] < 2 / 0.1)   # GD settled where it is stable: sharpness < 2 / lr
    True

  References:
    Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019 (arXiv 1810.02281), Eq. (4).
  """
  weights, loss, sched, rec, path = _engine.check_run(
    "gradient_descent",
    weights,
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
  held_out = _engine.check_held_out(validation, patience, min_delta, weights)
  minibatches = check_sampling(loss, batch_size, sampling, key)
  job = _gradient_descent_job(
    weights, loss, check_lr(lr), _single_stop(stop_at_loss), sched, rec, path
  )
  return _engine.execute_with(job, held_out, minibatches, meter(progress))


def _gradient_descent_job(weights, loss, lr, stop, sched, rec, path) -> _engine.Job:
  dtype = weights[0].dtype
  lanes = _engine.LaneState(
    tuple(np.asarray(w) for w in weights), np.asarray(lr, dtype), np.int32(-1), np.int32(-1)
  )
  return _engine.Job(
    "gradient_descent",
    _engine.gd_update,
    lanes,
    loss,
    np.asarray(stop),
    sched,
    rec,
    checkpoint=path,
    call=dict(lr=float(lr), stop_at_loss=float(stop)),
    arrays=_weight_arrays(weights),
  )


def resume_gradient_descent(call, arrays, loss, sched, rec, path, optimizer=None) -> _engine.Job:
  """The job of a :func:`gradient_descent` checkpoint (see :func:`lintraj.resume`)."""
  return _gradient_descent_job(
    check_weights(_stored_weights(arrays)), loss, call["lr"], call["stop_at_loss"], sched, rec, path
  )


def train(
  weights,
  loss,
  optimizer: optax.GradientTransformation,
  *,
  steps: int,
  record_every: int = 1,
  stop_at_loss=None,
  batch_size: int | None = None,
  sampling: str = "shuffle",
  key=None,
  track=(),
  track_every: int = 1,
  singular_values: str = "batched",
  metrics=None,
  validation=None,
  patience: int | None = None,
  min_delta: float = 0.0,
  progress=False,
  checkpoint=None,
  checkpoint_every: int | None = None,
) -> Trajectory:
  r"""Train the network with any optax optimizer, recording like :func:`gradient_descent`
  (every argument but ``lr`` as there).

  .. math::
     (u_t, s_{t+1}) = \mathrm{update}(\nabla L^N(W_t), s_t, W_t), \qquad W_{t+1} = W_t + u_t .

  The optimizer gets optax's extra arguments (``value``, ``grad``, and ``value_fn``, the network
  loss as a function of the weights tuple), so optimizers that need the loss run too
  (``optax.lbfgs()``, line searches, :func:`lintraj.landscape.saddle_free_newton`). The optimizer
  is a compile-time constant: reuse the same object to avoid recompiling. A checkpointed run is
  continued with ``lt.resume(path, optimizer=the_same_optimizer)``.

  Example:
    >>> import jax, jax.numpy as jnp, optax, lintraj as lt
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 3, 1), std=0.5)
    >>> loss = lt.losses.target(jnp.array([[1.0, 0.5]]))
    >>> traj = lt.train(ws, loss, optax.adam(1e-2), steps=100)
    >>> traj.step.shape
    (101,)
    >>> lt.train(ws, loss, optax.lbfgs(), steps=50, stop_at_loss=1e-8).stopped_step is not None
    True

  References:
    Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration by
    Overparameterization. ICML 2018 (arXiv 1802.06509), Section 6 (GD vs adaptive methods).
  """
  weights, loss, sched, rec, path = _engine.check_run(
    "train",
    weights,
    loss,
    steps=steps,
    record_every=record_every,
    track=track,
    track_every=track_every,
    singular_values=singular_values,
    metrics=metrics,
    checkpoint=checkpoint,
    checkpoint_every=checkpoint_every,
    stop_at_loss=stop_at_loss,
    batch_size=batch_size,
  )
  held_out = _engine.check_held_out(validation, patience, min_delta, weights)
  minibatches = check_sampling(loss, batch_size, sampling, key)
  job = _train_job(
    weights, loss, check_optimizer(optimizer), _single_stop(stop_at_loss), sched, rec, path
  )
  return _engine.execute_with(job, held_out, minibatches, meter(progress))


def _train_job(weights, loss, optimizer, stop, sched, rec, path) -> _engine.Job:
  opt_state = jax.device_get(optimizer.init(tuple(jnp.asarray(w) for w in weights)))
  lanes = _engine.LaneState(
    tuple(np.asarray(w) for w in weights), opt_state, np.int32(-1), np.int32(-1)
  )
  return _engine.Job(
    "train",
    _engine.OptaxUpdate(optimizer),
    lanes,
    loss,
    np.asarray(stop),
    sched,
    rec,
    checkpoint=path,
    call=dict(stop_at_loss=float(stop)),
    arrays=_weight_arrays(weights),
  )


def resume_train(call, arrays, loss, sched, rec, path, optimizer=None) -> _engine.Job:
  """The job of a :func:`train` checkpoint; ``optimizer`` is the run's own (not stored)."""
  if optimizer is None:
    raise ValueError(
      "this checkpoint is of lt.train, whose optimizer a checkpoint cannot store; "
      "pass the same one: lt.resume(path, optimizer=optax.adam(1e-3))."
    )
  return _train_job(
    check_weights(_stored_weights(arrays)),
    loss,
    check_optimizer(optimizer),
    call["stop_at_loss"],
    sched,
    rec,
    path,
  )

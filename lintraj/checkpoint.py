"""Continuing a run from its checkpoint: :func:`resume` reads the file (:mod:`lintraj.io`),
rebuilds the run it names and continues it on the engine, bit for bit."""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np

from lintraj import _engine, dynamics, io, sweep
from lintraj.progress import meter
from lintraj.recording import Trajectory, schedule

__all__ = ["resume"]

_RUNS = {
  "gradient_descent": dynamics.resume_gradient_descent,
  "train": dynamics.resume_train,
  "batch_gradient_descent": sweep.resume_batch_gradient_descent,
  "batch_train": sweep.resume_batch_train,
}


def resume(
  path, *, loss=None, validation=None, optimizer=None, metrics=None, progress=False, devices=None
) -> Trajectory:
  r"""Continue a run from its checkpoint to the end and return its trajectory.

  Works for every run function that takes ``checkpoint=`` (:func:`lintraj.gradient_descent`,
  :func:`lintraj.train`, :func:`lintraj.batch_gradient_descent`, :func:`lintraj.batch_train`).
  The records are bit-identical to those of the same run done without interruption. The
  checkpoint keeps being updated as the run goes on (a finished run's checkpoint just returns
  its trajectory).

  A checkpoint stores arrays and the names of functions, never code: the loss function and user
  metrics by reference when they are importable (defined at the top level of a module), and
  the loss's value at the saved weights, which is compared with the loss you pass (another loss
  is refused, even when its data sit in a closure).

  Args:
    path: a file written by a run with ``checkpoint=path, checkpoint_every=K``.
    loss: the loss, needed only when its function cannot be imported by name; it must have
      the same data and target.
    optimizer: for :func:`lintraj.train` / :func:`lintraj.batch_train` checkpoints, the run's
      optimizer (``batch_train``: the function of hyperparameters, e.g. ``optax.adam``).
    validation: the held-out loss of a run with ``validation=``, needed only when its function
      cannot be imported by name (as ``loss``; early stopping continues as it was set).
    metrics: user metrics that cannot be imported by name, ``{name: function}``.
    progress: True, False or a meter (:class:`lintraj.progress.Meter`).
    devices: for a batched run, the devices to spread its lanes over (default: all). With
      another number of devices than the interrupted run, the chunk that was running continues
      with another number of lanes per device (its records then agree to rounding, not bit for
      bit).

  Returns:
    A :class:`lintraj.Trajectory`, as the interrupted call would have returned.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt, tempfile, os
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 2, 1), std=0.5)
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> traj = lt.gradient_descent(ws, lt.losses.target(jnp.ones((1, 2))), lr=0.1, steps=20,
    ...                            checkpoint=path, checkpoint_every=5)
    >>> bool((lt.resume(path).loss == traj.loss).all())
    True
  """
  run, call, arrays, loss, state, validation = io.read_checkpoint(path, loss, validation)
  if not jax.config.jax_enable_x64 and any(a.dtype == np.float64 for a in state.values()):
    raise ValueError(
      f"{os.fspath(path)} holds a float64 run; resume it inside `with jax.enable_x64(True):`."
    )
  if run not in _RUNS:
    raise ValueError(
      f"{os.fspath(path)} is a checkpoint of an unknown kind of run {run!r} "
      f"(known: {sorted(_RUNS)})."
    )
  sched = schedule(
    call["steps"], call["record_every"], call.get("track_every", 1), call["checkpoint_every"]
  )
  rec = _engine.recorder_from_header(call.get("recorder", {}), metrics)
  extra = {} if run in ("gradient_descent", "train") else {"devices": devices}
  job = _RUNS[run](call, arrays, loss, sched, rec, os.fspath(path), optimizer=optimizer, **extra)
  job = _engine.resumed_minibatch(job, call, arrays)
  if validation is not None:
    job = job._replace(validation=validation, early=_engine.EarlyStopping(*call["early"]))
  return _engine.execute(job, meter(progress), saved=(call, state))


def _deprecated_io_resume(*args, **kwargs):
  """``lintraj.io.resume``, deprecated: use :func:`lintraj.resume`."""
  warnings.warn(
    "lintraj.io.resume is deprecated and will be removed in the next release: use "
    "lintraj.resume (lintraj.checkpoint.resume).",
    DeprecationWarning,
    stacklevel=2,
  )
  return resume(*args, **kwargs)


# The old import path, for one release. Set from here because io (file formats) must not import
# the run modules that resuming needs.
io.resume = _deprecated_io_resume

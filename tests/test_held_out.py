"""Held-out data on every run function: ``validation=`` records the held-out loss, the trajectory
keeps its best record, ``patience=`` / ``min_delta=`` stop early on it.

References are independent of the engine: the held-out loss of NumPy GD iterates
(tests/numpy_reference.py), the best record and the early-stopping step read off the recorded
curve by a plain Python loop, and single runs for the lanes of a batch.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lintraj as lt
from lintraj import io
from tests import numpy_reference as ref

DIMS = (4, 5, 3)


def _problem(seed=0):
  """A teacher-student regression whose held-out loss first falls, then rises (the training
  labels are noisy, the held-out ones are not): an early-stopping point exists."""
  rng = np.random.default_rng(seed)
  teacher = rng.normal(size=(DIMS[-1], DIMS[0]))
  x, x_test = rng.normal(size=(6, DIMS[0])), rng.normal(size=(40, DIMS[0]))
  y = x @ teacher.T + 1.5 * rng.normal(size=(6, DIMS[-1]))
  return x, y, x_test, x_test @ teacher.T


def _losses(x, y, x_test, y_test):
  return lt.losses.regression(x, y), lt.losses.regression(x_test, y_test)


def _numpy_held_out(ws, x, y, x_test, y_test, lr, steps, every):
  """Held-out loss 1/(2m) ||W x^T - y^T||^2 of NumPy GD iterates on the training regression."""
  ws = [np.asarray(w, np.float64) for w in ws]
  m = len(x)
  out = []
  for t in range(steps + 1):
    w = ref.product(ws, 1, len(ws))
    if t % every == 0:
      out.append(0.5 * np.sum((w @ x_test.T - y_test.T) ** 2) / len(x_test))
    if t == steps:
      break
    grad = (w @ x.T - y.T) @ x / m
    ws = [a - lr * g for a, g in zip(ws, ref.layer_gradients(ws, grad))]
  return np.asarray(out)


def _stop_record(curve, patience, min_delta):
  """Index of the record at which early stopping fires (None if never), and the best record."""
  best, best_index, wait = np.inf, -1, 0
  for i, value in enumerate(curve):
    if value < best - min_delta:
      best, best_index, wait = value, i, 0
    else:
      wait += 1
      if patience is not None and wait >= patience:
        return i, best_index
  return None, best_index


@pytest.fixture
def problem(x64):
  x, y, x_test, y_test = _problem()
  ws = lt.init.gaussian(jax.random.PRNGKey(1), DIMS, std=0.3)
  return ws, (x, y, x_test, y_test)


def test_validation_loss_is_the_held_out_loss_of_the_iterates(problem):
  ws, data = problem
  train_loss, held_out = _losses(*data)
  traj = lt.gradient_descent(
    ws, train_loss, lr=0.05, steps=300, record_every=10, validation=held_out
  )
  expected = _numpy_held_out(ws, *data, lr=0.05, steps=300, every=10)
  np.testing.assert_allclose(traj.validation_loss, expected, rtol=1e-10)
  first = int(np.argmin(expected))
  assert 0 < first < len(expected) - 1, "the problem must have an interior best record"
  assert traj.best_step == 10 * first and traj.stopped_step is None
  again = lt.gradient_descent(ws, train_loss, lr=0.05, steps=10 * first, record_every=10)
  for best, w in zip(traj.best, again.final):
    np.testing.assert_allclose(best, w, rtol=1e-12)


@pytest.mark.parametrize("patience, min_delta", [(1, 0.0), (3, 0.0), (2, 1e-3), (2, 1e3)])
def test_patience_stops_where_the_recorded_curve_says(problem, patience, min_delta):
  ws, data = problem
  train_loss, held_out = _losses(*data)
  full = lt.gradient_descent(
    ws, train_loss, lr=0.05, steps=300, record_every=10, validation=held_out
  )
  stop, best = _stop_record(np.asarray(full.validation_loss), patience, min_delta)
  assert stop is not None
  traj = lt.gradient_descent(
    ws,
    train_loss,
    lr=0.05,
    steps=300,
    record_every=10,
    validation=held_out,
    patience=patience,
    min_delta=min_delta,
  )
  assert traj.stopped_step == 10 * stop and traj.best_step == 10 * best
  np.testing.assert_array_equal(traj.validation_loss[: stop + 1], full.validation_loss[: stop + 1])
  assert np.all(traj.loss[stop:] == traj.loss[stop])  # frozen from the stop on
  if min_delta > 1:  # no improvement is that large: stop `patience` records after step 0
    assert traj.stopped_step == 10 * patience and traj.best_step == 0


def test_train_and_batched_runs_keep_their_best_records_lane_by_lane(problem):
  ws, data = problem
  train_loss, held_out = _losses(*data)
  x, y, x_test, y_test = data
  other = lt.losses.regression(x_test[::-1], y_test[::-1] + 0.3)
  batch, lrs, _ = lt.sweep.grid("gaussian", DIMS, std=[0.3, 0.5], lr=[0.02, 0.05])
  batch = tuple(np.asarray(w, np.float64) for w in batch)
  kwargs = dict(steps=200, record_every=10, patience=2)
  got = lt.batch_gradient_descent(
    batch, [train_loss] * 4, lr=lrs, validation=[held_out, other] * 2, **kwargs
  )
  for b in range(4):
    single = lt.gradient_descent(
      tuple(w[b] for w in batch),
      train_loss,
      lr=float(lrs[b]),
      validation=[held_out, other][b % 2],
      **kwargs,
    )
    one = lt.sweep.lane(got, b)
    assert (one.best_step, one.stopped_step) == (single.best_step, single.stopped_step)
    np.testing.assert_allclose(one.validation_loss, single.validation_loss, rtol=1e-10)
    for a, c in zip(one.best, single.best):
      np.testing.assert_allclose(a, c, rtol=1e-10)
  adam = lt.batch_train(
    batch, train_loss, optax.adam, hyperparams={"learning_rate": lrs}, validation=held_out, **kwargs
  )
  single = lt.train(
    tuple(w[3] for w in batch), train_loss, optax.adam(float(lrs[3])), validation=held_out, **kwargs
  )
  assert adam.best_step[3] == single.best_step and adam.stopped_step[3] == single.stopped_step
  np.testing.assert_allclose(adam.validation_loss[3], single.validation_loss, rtol=1e-10)


def test_saved_trajectories_keep_the_held_out_fields(problem, tmp_path):
  ws, data = problem
  train_loss, held_out = _losses(*data)
  traj = lt.gradient_descent(
    ws, train_loss, lr=0.05, steps=100, record_every=10, validation=held_out, patience=2
  )
  lt.save(tmp_path / "t.npz", traj)
  loaded, _ = lt.load(tmp_path / "t.npz")
  assert loaded.best_step == traj.best_step
  np.testing.assert_array_equal(loaded.validation_loss, traj.validation_loss)
  for a, b in zip(loaded.best, traj.best):
    np.testing.assert_array_equal(a, b)
  assert "validation_loss" in repr(traj) and "best_step" in repr(traj)


def _interrupt_at_first_checkpoint(monkeypatch):
  """Make the run stop (KeyboardInterrupt) right after its first checkpoint is written."""
  original, writes = io.write_checkpoint, []

  def write(*args, **kwargs):
    original(*args, **kwargs)
    writes.append(1)
    if len(writes) == 1:
      raise KeyboardInterrupt

  monkeypatch.setattr(io, "write_checkpoint", write)
  return lambda: monkeypatch.setattr(io, "write_checkpoint", original)


@pytest.mark.parametrize("batched", [False, True])
def test_interrupted_runs_with_validation_resume_bit_for_bit(
  problem, tmp_path, monkeypatch, batched
):
  """Checkpoints store the validation loss, the best record so far and the patience counter:
  a run interrupted at its first checkpoint (step 40: best record at step 20, two records of
  patience used) and resumed equals the uninterrupted one bit for bit, its early stop at step 50
  included (a resumed run that forgot the best record would stop later). Batched: one validation
  loss per lane, in chunks of one lane."""
  ws, data = problem
  train_loss, held_out = _losses(*data)
  x, y, x_test, y_test = data
  other = lt.losses.regression(x_test[::-1], y_test[::-1] + 0.3)
  kwargs = dict(steps=300, record_every=10, patience=3, checkpoint_every=40)
  if batched:
    batch, lrs, _ = lt.sweep.grid("gaussian", DIMS, std=[0.3, 0.5], lr=[0.05])
    batch = tuple(np.asarray(w, np.float64) for w in batch)
    run = lambda **k: lt.batch_gradient_descent(
      batch, [train_loss] * 2, lr=lrs, validation=[held_out, other], lanes_per_device=1, **k
    )
  else:
    run = lambda **k: lt.gradient_descent(ws, train_loss, lr=0.05, validation=held_out, **k)
  full = run(**kwargs, checkpoint=tmp_path / "full.npz")
  restore = _interrupt_at_first_checkpoint(monkeypatch)
  with pytest.raises(KeyboardInterrupt):
    run(**kwargs, checkpoint=tmp_path / "cut.npz")
  restore()
  resumed = lt.resume(tmp_path / "cut.npz")
  assert np.ravel(full.best_step)[0] == 20 and np.ravel(full.stopped_step)[0] == 50  # lane 0
  for a, b in zip(
    jax.tree_util.tree_leaves(full._asdict()),
    jax.tree_util.tree_leaves(resumed._asdict()),
    strict=True,
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ValueError, match="other data"):
    lt.resume(tmp_path / "cut.npz", validation=lt.losses.regression(x_test, y_test + 1.0))


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(patience=2), "pass validation="),
    (dict(validation="held", patience=0), "patience must be"),
    (dict(validation="held", min_delta=-1.0), "min_delta"),
    (dict(validation=["held"]), "same kind as loss"),
    (dict(validation=lambda w: w), "real scalar"),
  ],
)
def test_bad_held_out_arguments_raise_before_running(
  kwargs, match, tmp_path, monkeypatch, compiles
):
  monkeypatch.chdir(tmp_path)
  x, y, x_test, y_test = _problem()
  train_loss, held_out = _losses(*(jnp.asarray(a, jnp.float32) for a in (x, y, x_test, y_test)))
  kwargs = {
    k: ([held_out] if v == ["held"] else held_out if v == "held" else v) for k, v in kwargs.items()
  }
  ws = lt.init.gaussian(jax.random.PRNGKey(1), DIMS, std=0.3)
  with pytest.raises(ValueError, match=match):
    lt.gradient_descent(ws, train_loss, lr=0.05, steps=10, **kwargs)
  assert compiles("_segment") == 0

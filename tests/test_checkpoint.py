"""Checkpoints: a run killed mid-way and resumed equals the uninterrupted run, bit for bit."""

import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt
from lintraj import io
from tests import checkpoint_job as job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _assert_identical(a: lt.Trajectory, b: lt.Trajectory):
  for name, x in a._asdict().items():
    y = getattr(b, name)
    if x is None or isinstance(x, int):
      assert x == y, name
      continue
    for u, v in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y), strict=True):
      u, v = np.asarray(u), np.asarray(v)
      assert u.dtype == v.dtype and u.shape == v.shape, name
      np.testing.assert_array_equal(u, v, err_msg=name)


def _kill_after_checkpoint(kind, path, ready):
  """Start the job, SIGKILL it as soon as its checkpoint satisfies ``ready(call)``; returns the
  checkpoint's call at the kill."""
  proc = subprocess.Popen(
    [sys.executable, "-m", "tests.checkpoint_job", kind, str(path)],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
  )
  deadline = time.monotonic() + 120
  try:
    while time.monotonic() < deadline:
      assert proc.poll() is None, (
        f"the job ended before it was killed: {proc.communicate()[0].decode()[-2000:]}"
      )
      if os.path.exists(path):
        _, call, _, _, state, _ = io.read_checkpoint(path)
        if ready(call, state):
          proc.send_signal(signal.SIGKILL)
          proc.wait(30)
          return io.read_checkpoint(path)
      time.sleep(0.005)
    raise AssertionError("no checkpoint appeared within 120 s")
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait(30)


def _records_written(state, prefix=""):
  """The record counter: the last leaf of the saved state (leaves are named prefix + "0", "1",
  ...)."""
  leaves = [k for k in state if k.startswith(prefix) and k[len(prefix) :].isdigit()]
  return int(np.min(state[f"{prefix}{len(leaves) - 1}"]))


def test_killed_single_run_resumes_bit_for_bit(tmp_path):
  path = tmp_path / "single.npz"
  total = job.STEPS["single"] // job.RECORD_EVERY + 1
  _, call, _, _, state, _ = _kill_after_checkpoint("single", path, lambda call, state: True)
  written = _records_written(state, "current/")
  assert 0 < written < total, "the job must be killed mid-run, after a checkpoint"
  with jax.enable_x64(True):
    resumed = lt.resume(path)
    uninterrupted = job.run("single")
  _assert_identical(resumed, uninterrupted)
  assert resumed.loss.shape == (total,) and np.all(np.isfinite(resumed.loss))
  with jax.enable_x64(True):  # the finished checkpoint now holds the whole run
    _assert_identical(lt.resume(path), uninterrupted)


def test_killed_batched_run_resumes_bit_for_bit_across_chunks(tmp_path):
  path = tmp_path / "batch.npz"
  _, call, _, _, state, _ = _kill_after_checkpoint(
    "batch", path, lambda call, state: call["done"] >= 2
  )
  assert call["done"] in (2, 4) and call["chunk_lanes"] == 2
  with jax.enable_x64(True):
    resumed = lt.resume(path)
    uninterrupted = job.run("batch")
  _assert_identical(resumed, uninterrupted)
  assert np.any(resumed.stopped_step >= 0) and np.any(resumed.stopped_step < 0)


def test_checkpoint_writes_are_atomic_and_resume_of_a_finished_run_recomputes_nothing(
  tmp_path, x64
):
  path = tmp_path / "run.npz"
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  loss = lt.losses.target(jnp.ones((2, 3)) / 3)
  traj = lt.gradient_descent(
    ws, loss, lr=0.1, steps=40, record_every=3, checkpoint=path, checkpoint_every=7
  )
  assert sorted(os.listdir(tmp_path)) == ["run.npz"]  # no temporary files left
  _, call, _, _, state, _ = io.read_checkpoint(path)
  assert call["checkpoint_every"] == 7 and _records_written(state, "current/") == 40 // 3 + 1
  _assert_identical(lt.resume(path), traj)
  plain = lt.gradient_descent(ws, loss, lr=0.1, steps=40, record_every=3)
  _assert_identical(plain, traj)


def test_checkpoints_land_on_record_boundaries(tmp_path, monkeypatch):
  """checkpoint_every=7 with record_every=3 writes at records 3, 6, 9, ... (steps 9, 18, ...)."""
  written = []
  original = io.write_checkpoint
  monkeypatch.setattr(
    io,
    "write_checkpoint",
    lambda *a, **k: (
      written.append(_records_written(k["state_arrays"], "current/")) or original(*a, **k)
    ),
  )
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  lt.gradient_descent(
    ws,
    lt.losses.target(jnp.ones((2, 3))),
    lr=0.05,
    steps=40,
    record_every=3,
    checkpoint=tmp_path / "c.npz",
    checkpoint_every=7,
  )
  assert written == [3, 6, 9, 12, 14]


def _user_loss(w):
  return 0.5 * jnp.sum((w - 1.0) ** 2)


def _closure_loss(shift):
  """A loss whose data sit in a closure: a checkpoint can neither import nor compare them."""
  return lambda w: 0.5 * jnp.sum((w - shift) ** 2)


def test_user_loss_importable_by_name_needs_nothing_on_resume(tmp_path):
  path = tmp_path / "user.npz"
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  loss = lt.losses.Loss(_user_loss, target=jnp.ones((2, 3)))
  traj = lt.gradient_descent(ws, loss, lr=0.1, steps=12, checkpoint=path, checkpoint_every=5)
  _assert_identical(lt.resume(path), traj)
  with pytest.raises(ValueError, match="other data or target"):
    lt.resume(path, loss=lt.losses.Loss(_user_loss, target=jnp.zeros((2, 3))))
  with pytest.raises(ValueError, match="run with the loss function"):
    lt.resume(path, loss=lt.losses.Loss(lt.metrics.balancedness, target=jnp.ones((2, 3))))


def test_resume_needs_a_closure_loss_and_notices_another_one(tmp_path):
  path = tmp_path / "closure.npz"
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  traj = lt.gradient_descent(
    ws, _closure_loss(1.0), lr=0.1, steps=12, checkpoint=path, checkpoint_every=5
  )
  with pytest.raises(ValueError, match="pass it"):
    lt.resume(path)
  with pytest.raises(ValueError, match="another loss"):  # same name, other data in the closure
    lt.resume(path, loss=_closure_loss(0.5))
  _assert_identical(lt.resume(path, loss=_closure_loss(1.0)), traj)


def test_resume_refuses_float64_checkpoint_without_x64(tmp_path):
  path = tmp_path / "f64.npz"
  with jax.enable_x64(True):
    ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5, dtype=jnp.float64)
    lt.gradient_descent(
      ws, lt.losses.target(jnp.ones((2, 3))), lr=0.1, steps=5, checkpoint=path, checkpoint_every=2
    )
  with pytest.raises(ValueError, match="enable_x64"):
    lt.resume(path)


@pytest.mark.parametrize(
  "kwargs,match",
  [
    (dict(checkpoint="x.npz"), "both"),
    (dict(checkpoint_every=10), "both"),
    (dict(checkpoint="x.npz", checkpoint_every=0), "checkpoint_every"),
    (dict(checkpoint="x.npz", checkpoint_every=2.5), "checkpoint_every"),
  ],
)
def test_bad_checkpoint_arguments(kwargs, match):
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  with pytest.raises(ValueError, match=match):
    lt.gradient_descent(ws, lt.losses.target(jnp.ones((2, 3))), lr=0.1, steps=5, **kwargs)


def test_numpy_integer_checkpoint_every(tmp_path):
  ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 2, 1), std=0.5)
  path = tmp_path / "ckpt.npz"
  traj = lt.gradient_descent(
    ws,
    lt.losses.target(jnp.ones((1, 2))),
    lr=0.1,
    steps=20,
    checkpoint=path,
    checkpoint_every=np.int64(5),
  )
  np.testing.assert_array_equal(lt.resume(path).loss, traj.loss)

"""Progress bars: the run is cut into segments of one compiled loop; the records do not change."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lintraj as lt
from lintraj import dynamics, progress


def _leaves(traj):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(traj._asdict())]


class _EverySegment(progress.Progress):
  """A bar that asks for one record per segment and remembers where it was updated."""

  positions = []

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    _EverySegment.positions = []

  def until(self, block, limit):
    return min(limit, block + 1)

  def update(self, step, *counts):
    _EverySegment.positions.append((step, counts))
    super().update(step, *counts)


def test_single_run_identical_with_bar_that_updates_every_record(monkeypatch, capsys):
  ws = lt.init.balanced(jax.random.PRNGKey(0), (4, 5, 5, 2), std=0.3)
  loss = lt.losses.target(jnp.ones((2, 4)) / 3)
  kwargs = dict(lr=0.1, steps=95, record_every=10, stop_at_loss=1e-3)
  quiet = lt.gradient_descent(ws, loss, **kwargs)
  assert capsys.readouterr().err == ""
  monkeypatch.setattr(dynamics, "Progress", _EverySegment)
  compiled = dynamics._gradient_descent_run._cache_size()
  shown = lt.gradient_descent(ws, loss, progress=True, **kwargs)
  assert dynamics._gradient_descent_run._cache_size() == compiled  # the same program, run in segments
  for a, b in zip(_leaves(quiet), _leaves(shown), strict=True):
    np.testing.assert_array_equal(a, b)
  steps = [p[0] for p in _EverySegment.positions]
  assert len(steps) > 1 and steps == sorted(steps) and steps[-1] == 95
  assert "95/95" in capsys.readouterr().err


def test_train_identical_with_bar(monkeypatch):
  ws = lt.init.balanced(jax.random.PRNGKey(1), (4, 5, 2), std=0.3)
  loss = lt.losses.target(jnp.ones((2, 4)) / 3)
  optimizer = optax.adam(1e-2)
  quiet = lt.train(ws, loss, optimizer, steps=33, record_every=4)
  monkeypatch.setattr(dynamics, "Progress", _EverySegment)
  shown = lt.train(ws, loss, optimizer, steps=33, record_every=4, progress=True)
  for a, b in zip(_leaves(quiet), _leaves(shown), strict=True):
    np.testing.assert_array_equal(a, b)
  assert len(_EverySegment.positions) == 33 // 4 + 1 and _EverySegment.positions[-1][0] == 33


def test_batched_run_identical_with_bar_and_counts_stopped_lanes(monkeypatch, capsys):
  ws, lrs, _ = lt.sweep.grid("balanced", (4, 5, 2), std=[0.3], lr=[0.05, 0.1, 0.2, 40.0, 0.01])
  loss = lt.losses.target(jnp.ones((2, 4)) / 3)
  kwargs = dict(lr=lrs, steps=120, record_every=10, stop_at_loss=1e-3, batch_size=2)
  quiet = lt.batch_gradient_descent(ws, loss, **kwargs)
  monkeypatch.setattr(dynamics, "Progress", _EverySegment)
  shown = lt.batch_gradient_descent(ws, loss, progress=True, **kwargs)
  for a, b in zip(_leaves(quiet), _leaves(shown), strict=True):
    np.testing.assert_array_equal(a, b)
  final_counts = _EverySegment.positions[-1][1]
  assert final_counts == (int(np.sum(quiet.stopped_step >= 0)), int(np.sum(quiet.diverged_step >= 0)))
  assert final_counts[1] == 1
  err = capsys.readouterr().err
  assert "sweep" in err and f"stopped {final_counts[0]}/5, diverged 1" in err


def test_segments_grow_to_the_measured_speed(monkeypatch):
  """Segments are sized to last ``interval`` seconds at the speed measured over the last one."""
  clock = iter([0.0, 1.0, 1.125, 1.25])
  monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
  bar = progress.Progress(1000, interval=0.5, disable=True)
  assert bar.until(0, 100) == 1  # no speed known yet: one record
  assert bar.until(1, 100) == 2  # 1 record in 1 s: 0.5 records per interval, at least 1
  assert bar.until(2, 100) == 6  # 1 record in 0.125 s: 4 per interval
  assert bar.until(6, 20) == 20  # 4 records in 0.125 s: 16 per interval, capped by the limit
  bar.close()


def test_progress_argument_is_checked():
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 2), std=0.5)
  with pytest.raises(ValueError, match="progress must be"):
    lt.gradient_descent(ws, lt.losses.target(jnp.ones((2, 3))), lr=0.1, steps=3, progress="yes")


def test_missing_tqdm_is_explained(monkeypatch):
  monkeypatch.setitem(sys.modules, "tqdm.auto", None)
  with pytest.raises(ValueError, match="pip install tqdm"):
    progress.Progress(10)

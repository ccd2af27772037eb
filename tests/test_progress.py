"""Progress and interrupts: every run is cut into segments of one compiled loop; the records do
not change, meters see every segment, and an interrupt lands between segments."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lintraj as lt
from lintraj import _engine, progress


def _leaves(traj):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(traj._asdict())]


class _Meter:
  """A meter of one's own (the protocol of lintraj.progress.Meter), remembering every call."""

  def __init__(self):
    self.calls = []

  def start(self, total, *, lanes=None, desc=""):
    self.calls.append(("start", total, lanes, desc))

  def update(self, done, *, stopped=None, diverged=None):
    self.calls.append(("update", done, stopped, diverged))

  def close(self):
    self.calls.append(("close",))

  def updates(self):
    return [c[1:] for c in self.calls if c[0] == "update"]


@pytest.fixture
def one_record_segments(monkeypatch):
  """Segments of one record each (a segment 'lasts' 0 s), and a count of compiled-loop calls."""
  monkeypatch.setattr(_engine, "SEGMENT_SECONDS", 0.0)
  calls = []
  segment = _engine._segment

  def counted(*args, **kwargs):
    calls.append(args[3])
    return segment(*args, **kwargs)

  monkeypatch.setattr(_engine, "_segment", counted)
  return calls


def test_single_run_identical_in_segments_with_and_without_meter(
  one_record_segments, capsys, compiles
):
  ws = lt.init.balanced(jax.random.PRNGKey(0), (4, 5, 5, 2), std=0.3)
  loss = lt.losses.target(jnp.ones((2, 4)) / 3)
  kwargs = dict(lr=0.1, steps=95, record_every=10, stop_at_loss=1e-3)
  quiet = lt.gradient_descent(ws, loss, **kwargs)
  assert len(one_record_segments) > 1  # segments without a meter too: interrupts are prompt
  compiled = compiles("_segment")
  meter = _Meter()
  shown = lt.gradient_descent(ws, loss, progress=meter, **kwargs)
  assert compiles("_segment") == compiled  # the same program, run in segments
  for a, b in zip(_leaves(quiet), _leaves(shown), strict=True):
    np.testing.assert_array_equal(a, b)
  assert meter.calls[0] == ("start", 95, None, "gradient descent") and meter.calls[-1] == ("close",)
  steps = [u[0] for u in meter.updates()]
  assert len(steps) > 1 and steps == sorted(steps) and steps[-1] == 95
  lt.gradient_descent(ws, loss, progress=True, **kwargs)
  assert "95/95" in capsys.readouterr().err


def test_train_identical_with_meter(one_record_segments):
  ws = lt.init.balanced(jax.random.PRNGKey(1), (4, 5, 2), std=0.3)
  loss = lt.losses.target(jnp.ones((2, 4)) / 3)
  optimizer = optax.adam(1e-2)
  quiet = lt.train(ws, loss, optimizer, steps=33, record_every=4)
  meter = _Meter()
  shown = lt.train(ws, loss, optimizer, steps=33, record_every=4, progress=meter)
  for a, b in zip(_leaves(quiet), _leaves(shown), strict=True):
    np.testing.assert_array_equal(a, b)
  assert len(meter.updates()) == 33 // 4 + 1 and meter.updates()[-1][0] == 33


def test_batched_run_identical_with_meter_and_counts_stopped_lanes(one_record_segments, capsys):
  ws, lrs, _ = lt.sweep.grid("balanced", (4, 5, 2), std=[0.3], lr=[0.05, 0.1, 0.2, 40.0, 0.01])
  loss = lt.losses.target(jnp.ones((2, 4)) / 3)
  kwargs = dict(lr=lrs, steps=120, record_every=10, stop_at_loss=1e-3, lanes_per_device=2)
  quiet = lt.batch_gradient_descent(ws, loss, **kwargs)
  meter = _Meter()
  shown = lt.batch_gradient_descent(ws, loss, progress=meter, **kwargs)
  for a, b in zip(_leaves(quiet), _leaves(shown), strict=True):
    np.testing.assert_array_equal(a, b)
  assert meter.calls[0][:3] == ("start", 120 * 3, 5)  # three chunks of (at most) two lanes
  done, stopped, diverged = meter.updates()[-1]
  assert (stopped, diverged) == (
    int(np.sum(quiet.stopped_step >= 0)),
    int(np.sum(quiet.diverged_step >= 0)),
  )
  assert diverged == 1 and done == 360
  lt.batch_gradient_descent(ws, loss, progress=True, **kwargs)
  assert f"stopped {stopped}/5, diverged 1" in capsys.readouterr().err


def test_gradient_flow_runs_in_segments_with_meter(monkeypatch):
  monkeypatch.setattr(_engine, "SEGMENT_SECONDS", 0.0)
  ws = lt.init.balanced(jax.random.PRNGKey(2), (3, 4, 2), std=0.3)
  loss = lt.losses.target(jnp.ones((2, 3)) / 3)
  quiet = lt.gradient_flow(ws, loss, time=5.0, n_records=11)
  meter = _Meter()
  shown = lt.gradient_flow(ws, loss, time=5.0, n_records=11, progress=meter)
  for a, b in zip(_leaves(quiet), _leaves(shown), strict=True):
    np.testing.assert_array_equal(a, b)
  assert [u[0] for u in meter.updates()] == list(range(1, 12))
  assert meter.calls[0] == ("start", 11, None, "gradient flow") and meter.calls[-1] == ("close",)


def test_interrupt_lands_between_segments_and_closes_the_meter(monkeypatch):
  monkeypatch.setattr(_engine, "SEGMENT_SECONDS", 0.0)
  segment, calls = _engine._segment, []

  def interrupted(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return segment(*args, **kwargs)

  monkeypatch.setattr(_engine, "_segment", interrupted)
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 3, 2), std=0.3)
  meter = _Meter()
  with pytest.raises(KeyboardInterrupt):
    lt.gradient_descent(
      ws,
      lt.losses.target(jnp.ones((2, 3)) / 3),
      lr=0.1,
      steps=1000,
      record_every=10,
      progress=meter,
    )
  assert len(calls) == 3 and meter.calls[-1] == ("close",)


def test_segments_grow_to_the_measured_speed(monkeypatch):
  """Segments are sized to last ``seconds`` at the speed measured over the last one."""
  clock = iter([0.0, 1.0, 2.0, 2.125, 3.0, 3.125, 4.0, 4.125])
  monkeypatch.setattr(_engine.time, "perf_counter", lambda: next(clock))
  untils = []

  def run_segment(state, until):
    untils.append(until)
    return until

  _engine.drive(run_segment, 0, 20, written=lambda s: s, seconds=0.5)
  # no speed known: one record; 1 record in 1 s: 0.5 per segment, at least 1; 1 record in
  # 0.125 s: 4 per segment; 4 in 0.125 s: 16, capped by the total
  assert untils == [1, 2, 6, 20]


def test_progress_argument_is_checked():
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 2), std=0.5)
  with pytest.raises(ValueError, match="progress must be"):
    lt.gradient_descent(ws, lt.losses.target(jnp.ones((2, 3))), lr=0.1, steps=3, progress="yes")


def test_missing_tqdm_is_explained(monkeypatch):
  monkeypatch.setitem(sys.modules, "tqdm.auto", None)
  with pytest.raises(ValueError, match="pip install tqdm"):
    progress.Progress()

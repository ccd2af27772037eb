"""gradient_descent and train against an independent NumPy reference; semantics of a run."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lintraj as lt
from lintraj import recording
from tests import numpy_reference as ref

DIMS = [(5, 7, 4, 3), (6, 9, 5, 8, 1), (3, 3), (4, 6, 2), (2, 5, 6, 7, 3)]


def _rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def _problem(dims, seed=0, scale=0.6):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  ws = lt.init.gaussian(k1, dims, std=scale / np.sqrt(max(dims)))
  phi = jax.random.normal(k2, (dims[-1], dims[0]))
  return ws, phi / jnp.linalg.norm(phi)


@pytest.mark.parametrize("dims", DIMS)
def test_matches_numpy_reference_float64(x64, dims):
  ws, phi = _problem(dims)
  traj = lt.gradient_descent(ws, lt.losses.target(phi), lr=0.05, steps=37, record_every=4)
  records, final = ref.gradient_descent(ws, np.asarray(phi), 0.05, 37, 4)
  assert traj.loss.dtype == jnp.float64
  assert len(records) == traj.step.shape[0] == 37 // 4 + 1
  np.testing.assert_array_equal(traj.step, np.arange(10) * 4)
  for name in (
    "loss",
    "balancedness",
    "deficiency_margin",
    "grad_norm",
    "end_to_end_singular_values",
  ):
    assert _rel_err(getattr(traj, name), [r[name] for r in records]) <= 1e-12, name
  for j, sv in enumerate(traj.layer_singular_values):
    assert _rel_err(sv, [r["layer_singular_values"][j] for r in records]) <= 1e-12
  for w, w_ref in zip(traj.final, final):
    assert _rel_err(w, w_ref) <= 1e-12
  assert traj.diverged_step is None


@jax.jit
def _jitted_record(ws, loss):
  """The record of ``ws``, jitted: one compilation per shape instead of one per operation."""
  value, grads = jax.value_and_grad(lambda v: loss(lt.end_to_end(v)))(ws)
  return recording.record(ws, value, grads, loss.target)


@settings(max_examples=25, deadline=None)
@given(depth=st.integers(1, 6), data=st.data())
def test_metrics_match_numpy_for_random_shapes(depth, data):
  dims = tuple(data.draw(st.integers(1, 12)) for _ in range(depth + 1))
  seed = data.draw(st.integers(0, 2**16))
  rng = np.random.default_rng(seed)  # NumPy draws: the test is of the record, not of init
  ws = [rng.normal(size=(b, a)) * 0.6 / np.sqrt(max(dims)) for a, b in zip(dims[:-1], dims[1:])]
  phi = rng.normal(size=(dims[-1], dims[0]))
  phi /= np.linalg.norm(phi)
  expected = ref.metrics(ws, phi)
  with jax.enable_x64(True):
    rec = _jitted_record(tuple(jnp.asarray(w) for w in ws), lt.losses.target(phi))
    for name in (
      "loss",
      "balancedness",
      "deficiency_margin",
      "grad_norm",
      "end_to_end_singular_values",
    ):
      np.testing.assert_allclose(rec[name], expected[name], rtol=1e-11, atol=1e-13, err_msg=name)
    for got, want in zip(rec["layer_singular_values"], expected["layer_singular_values"]):
      np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize(
  "steps,record_every", [(0, 1), (0, 5), (10, 1), (10, 3), (10, 10), (12, 4)]
)
def test_record_every_semantics(x64, steps, record_every):
  """Records at steps 0, k, 2k, ..., T = steps // k + 1; final is after all steps."""
  ws, phi = _problem((3, 4, 2))
  loss = lt.losses.target(phi)
  traj = lt.gradient_descent(ws, loss, lr=0.1, steps=steps, record_every=record_every)
  every = lt.gradient_descent(ws, loss, lr=0.1, steps=steps, record_every=1)
  assert traj.step.shape == (steps // record_every + 1,)
  np.testing.assert_array_equal(traj.step, np.arange(steps // record_every + 1) * record_every)
  np.testing.assert_allclose(traj.loss, every.loss[::record_every], rtol=1e-13)
  for a, b in zip(traj.final, every.final):
    np.testing.assert_allclose(a, b, rtol=1e-13)
  assert traj.layer_singular_values[1].shape == (steps // record_every + 1, 2)


def test_record_every_larger_than_steps_is_refused():
  """It would record step 0 only (a converged run whose summary showed its initial loss)."""
  ws, phi = _problem((3, 4, 2))
  for run in (
    lambda **k: lt.gradient_descent(ws, lt.losses.target(phi), lr=0.1, **k),
    lambda **k: lt.train(ws, lt.losses.target(phi), optax.sgd(0.1), **k),
  ):
    with pytest.raises(ValueError, match="record_every=1000 is larger than steps=100"):
      run(steps=100, record_every=1000)


def test_float32_by_default_and_close_to_float64():
  ws, phi = _problem((4, 5, 3))
  traj32 = lt.gradient_descent(ws, lt.losses.target(phi), lr=0.1, steps=50, record_every=5)
  assert traj32.loss.dtype == jnp.float32 and traj32.final[0].dtype == jnp.float32
  with jax.enable_x64(True):
    ws64 = tuple(jnp.asarray(w, jnp.float64) for w in ws)
    traj64 = lt.gradient_descent(
      ws64, lt.losses.target(jnp.asarray(phi, jnp.float64)), lr=0.1, steps=50, record_every=5
    )
  assert traj64.loss.dtype == jnp.float64
  np.testing.assert_allclose(traj32.loss, traj64.loss, rtol=1e-4)


def test_no_recompile_for_new_target_data_or_lr(compiles):
  ws, phi = _problem((4, 6, 3))
  kwargs = dict(steps=7, record_every=2)
  lt.gradient_descent(ws, lt.losses.target(phi), lr=0.1, **kwargs)
  before = compiles("_segment")
  lt.gradient_descent(ws, lt.losses.target(2 * phi), lr=0.05, **kwargs)
  lt.gradient_descent(tuple(w + 1 for w in ws), lt.losses.target(-phi), lr=0.3, **kwargs)
  assert compiles("_segment") == before
  x = jax.random.normal(jax.random.PRNGKey(3), (20, 4))
  lt.gradient_descent(ws, lt.losses.regression(x, x[:, :3]), lr=0.1, **kwargs)
  after_regression = compiles("_segment")
  lt.gradient_descent(ws, lt.losses.regression(2 * x, x[:, 1:]), lr=0.2, **kwargs)
  assert compiles("_segment") == after_regression


def test_train_with_sgd_equals_gradient_descent(x64):
  ws, phi = _problem((5, 4, 4, 2))
  loss = lt.losses.target(phi)
  gd = lt.gradient_descent(ws, loss, lr=0.07, steps=30, record_every=3)
  sgd = lt.train(ws, loss, optax.sgd(0.07), steps=30, record_every=3)
  for name in ("loss", "balancedness", "grad_norm", "deficiency_margin"):
    np.testing.assert_allclose(getattr(sgd, name), getattr(gd, name), rtol=1e-12, err_msg=name)
  for a, b in zip(sgd.final, gd.final):
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_train_with_momentum_matches_numpy_heavy_ball(x64):
  ws, phi = _problem((3, 4, 2))
  traj = lt.train(
    ws, lt.losses.target(phi), optax.sgd(0.05, momentum=0.9), steps=20, record_every=20
  )
  w_np = [np.asarray(w) for w in ws]
  velocity = [np.zeros_like(w) for w in w_np]
  for _ in range(20):
    grads = ref.layer_gradients(w_np, ref.product(w_np, 1, len(w_np)) - np.asarray(phi))
    velocity = [g + 0.9 * v for g, v in zip(grads, velocity)]
    w_np = [w - 0.05 * v for w, v in zip(w_np, velocity)]
  for a, b in zip(traj.final, w_np):
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_target_free_loss_has_nan_margin():
  ws, _ = _problem((3, 4, 2))
  traj = lt.gradient_descent(ws, lambda w: jnp.sum(w**2), lr=0.1, steps=5)
  assert np.all(np.isnan(traj.deficiency_margin))
  assert np.all(np.isfinite(traj.loss)) and traj.loss[-1] < traj.loss[0]


def test_divergence_is_flagged_and_earlier_records_are_intact(x64):
  """Scalar N = 2 with an unbalanced init (w1 = 10, w2 = 0.05) and lr 1: the loss blows up."""
  ws = (jnp.array([[10.0]]), jnp.array([[0.05]]))
  loss = lt.losses.target(jnp.array([[1.0]]))
  traj = lt.gradient_descent(ws, loss, lr=1.0, steps=200, record_every=1)
  d = traj.diverged_step
  assert isinstance(d, int) and 0 < d < 200
  finite = lt.gradient_descent(ws, loss, lr=1.0, steps=d - 1, record_every=1)
  np.testing.assert_array_equal(traj.loss[:d], finite.loss)
  assert np.all(np.isfinite(traj.loss[:d])) and np.all(np.isnan(traj.loss[d:]))
  assert np.all(np.isnan(traj.end_to_end_singular_values[d:]))
  frozen = lt.gradient_descent(ws, loss, lr=1.0, steps=d, record_every=1)
  for a, b in zip(traj.final, frozen.final):
    np.testing.assert_array_equal(a, b)


def _valid():
  return lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=1.0), lt.losses.target(
    jnp.ones((2, 3))
  )


@pytest.mark.parametrize(
  "change,match",
  [
    (lambda: dict(weights=(jnp.ones((4, 3)), jnp.ones((2, 5)))), "do not chain"),
    (lambda: dict(weights=(jnp.ones(3),)), "2-D"),
    (lambda: dict(weights=()), "non-empty"),
    (lambda: dict(loss=lt.losses.target(jnp.ones((3, 2)))), "target has shape"),
    (lambda: dict(lr=0.0), "lr must be"),
    (lambda: dict(lr=-1.0), "lr must be"),
    (lambda: dict(lr=float("nan")), "lr must be"),
    (lambda: dict(lr=float("inf")), "lr must be"),
    (lambda: dict(steps=-1), "steps must be"),
    (lambda: dict(steps=2.5), "steps must be"),
    (lambda: dict(record_every=0), "record_every must be"),
    (lambda: dict(loss="mse"), "loss must be"),
  ],
)
def test_bad_input_raises_before_tracing(change, match, compiles):
  # ``change`` is a lambda: a JAX array made at collection would start XLA's threads in the
  # process that mutation testing forks from (docs/mutation-testing.md).
  ws, loss = _valid()
  kwargs = dict(weights=ws, loss=loss, lr=0.1, steps=5, record_every=1) | change()
  before = compiles("_segment")
  with pytest.raises(ValueError, match=match):
    lt.gradient_descent(kwargs.pop("weights"), kwargs.pop("loss"), **kwargs)
  assert compiles("_segment") == before


def test_train_rejects_non_optax_optimizer():
  ws, loss = _valid()
  with pytest.raises(ValueError, match="optax"):
    lt.train(ws, loss, "adam", steps=3)


def test_divergence_at_the_last_step_is_reported():
  weights = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 4, 1), std=0.2)
  loss = lt.losses.target(jnp.array([[2.0, 0.5, -1.0]]))
  longer = lt.gradient_descent(weights, loss, lr=3.0, steps=60, record_every=1)
  assert longer.diverged_step is not None
  last = lt.gradient_descent(weights, loss, lr=3.0, steps=longer.diverged_step, record_every=1)
  assert np.isnan(last.loss[-1]) and last.diverged_step == longer.diverged_step
  batch = lt.batch_gradient_descent(
    tuple(w[None] for w in weights), loss, lr=3.0, steps=longer.diverged_step
  )
  assert batch.diverged_step.tolist() == [longer.diverged_step]


def test_another_p_of_lp_regression_does_not_recompile(compiles):
  x = jax.random.normal(jax.random.PRNGKey(0), (20, 3))
  y = x @ jnp.array([1.0, -0.5, 0.2])
  ws = lt.init.balanced(jax.random.PRNGKey(1), (3, 4, 1), std=0.3)
  lt.gradient_descent(ws, lt.losses.lp_regression(x, y, 3), lr=0.01, steps=5)
  compiled = compiles("_segment")
  lt.gradient_descent(ws, lt.losses.lp_regression(x, y, 4), lr=0.01, steps=5)
  assert compiles("_segment") == compiled


def test_schedule_records_checkpoints_and_defaults():
  """Records, record steps and checkpoint intervals of hand-computed schedules."""
  s = recording.Schedule(10, 3)
  assert (s.record_every, s.track_every, s.checkpoint_every) == (3, 1, None)
  assert s.records == 4 and s.checkpoint_records is None
  steps = s.record_steps()
  assert steps.dtype == np.int32 and steps.tolist() == [0, 3, 6, 9]
  assert recording.Schedule(9, 3).record_steps().tolist() == [0, 3, 6, 9]
  assert recording.Schedule(8, 3).records == 3 and recording.Schedule(0, 1).records == 1
  assert recording.Schedule(5).record_steps().tolist() == [0, 1, 2, 3, 4, 5]
  # checkpoint_every in steps, rounded up to whole records
  for every, records in ((1, 1), (3, 1), (4, 2), (6, 2), (7, 3)):
    assert recording.Schedule(10, 3, 2, every).checkpoint_records == records, every
  full = recording.Schedule(10, 3, 2, 7)
  assert full.compiled() == recording.Schedule(10, 3, 2, None)
  assert full.checkpoint_every == 7  # compiled() is a copy


def test_schedule_validates_each_argument_by_name():
  build = recording.schedule
  assert build(10, 2, 3, 5) == recording.Schedule(10, 2, 3, 5)
  assert build(10, 3) == recording.Schedule(10, 3, 1, None)
  assert build(0, 7) == recording.Schedule(0, 7)  # no steps: step 0 is all there is to record
  assert build(5, 5).records == 2
  top = recording.MAX_STEPS
  assert build(top, top) == recording.Schedule(top, top)
  with pytest.raises(
    ValueError,
    match=r"record_every=6 is larger than steps=5, so only step 0 would be recorded; "
    r"use record_every <= steps \(e\.g\. record_every=5\)\.",
  ):
    build(5, 6)
  for args, match in (
    ((-1, 1), r"steps must be an integer in \[0, 2147483647\]; got -1"),
    ((top + 1, 1), r"steps must be an integer in \[0, 2147483647\]"),
    ((4, 0), r"record_every must be an integer in \[1, 2147483647\]; got 0"),
    ((0, top + 1), r"record_every must be an integer in \[1, 2147483647\]"),
    ((4, 2, 0), r"track_every must be an integer >= 1; got 0"),
    ((4, 2, 1.0), r"track_every must be an integer >= 1"),
    ((4, 2, 1, 0), r"checkpoint_every must be an integer >= 1; got 0"),
    ((4, 2, 1, 2.0), r"checkpoint_every must be an integer >= 1"),
  ):
    with pytest.raises(ValueError, match=match):
      build(*args)
  assert build(4, 2, 1, 1).checkpoint_every == 1 and build(4, 2, 1).checkpoint_every is None


def test_trajectory_of_records_and_lane_counters():
  """Single runs: ints (None for -1, 0 kept); batches: the (B,) counters and tiled record steps."""
  records = dict(
    loss=np.arange(3.0),
    balancedness=np.ones(3),
    deficiency_margin=np.ones(3),
    grad_norm=np.ones(3),
    layer_singular_values=(np.ones((3, 1)),),
    end_to_end_singular_values=np.ones((3, 1)),
  )
  sched, final = recording.Schedule(10, 4), (np.ones((1, 1)),)
  watch = lambda step: types.SimpleNamespace(best=final, step=step)
  one = recording.trajectory(records, sched, final, np.int32(-1), np.int32(0), batched=False)
  assert one.step.tolist() == [0, 4, 8] and one.final is final
  assert one.diverged_step is None and one.stopped_step == 0 and one.best_step is None
  assert isinstance(one.stopped_step, int) and one.loss is records["loss"]
  two = recording.trajectory(
    records, sched, final, np.int32(8), np.int32(-1), batched=False, watch=watch(np.int32(4))
  )
  assert (two.diverged_step, two.stopped_step, two.best_step) == (8, None, 4)
  assert two.best is final
  assert (
    recording.trajectory(
      records, sched, final, -1, -1, batched=False, watch=watch(np.int32(-1))
    ).best_step
    is None
  )
  lanes = recording.trajectory(
    records,
    sched,
    final,
    np.array([-1, 4, 0]),
    np.array([2, -1, -1]),
    batched=True,
    watch=watch([0, 8, -1]),
  )
  assert lanes.step.shape == (3, 3) and lanes.step.tolist() == [[0, 4, 8]] * 3
  assert lanes.diverged_step.tolist() == [-1, 4, 0] and lanes.stopped_step.tolist() == [2, -1, -1]
  assert lanes.best_step.tolist() == [0, 8, -1] and lanes.best is final


def test_record_of_float32_weights_is_float32_with_x64(x64):
  """The margin is cast to the weights' dtype, also against a float64 target, and NaN in it
  without a target."""
  ws = (jnp.ones((3, 2), jnp.float32), jnp.full((2, 3), 0.5, jnp.float32))
  for target in (np.eye(2), None):
    rec = recording.record(ws, jnp.float32(0), ws, target)
    for name in ("deficiency_margin", "balancedness", "grad_norm", "end_to_end_singular_values"):
      assert rec[name].dtype == jnp.float32, (name, target)
  np.testing.assert_allclose(rec["end_to_end_singular_values"], [3.0, 0.0], atol=1e-6)
  assert np.isnan(rec["deficiency_margin"]) and rec["deficiency_margin"].shape == ()
  with_target = recording.record(ws, jnp.float32(0), ws, np.eye(2))["deficiency_margin"]
  # W = 1.5 * ones(2, 2): sigma_min(I) - ||W - I||_F = 1 - sqrt(2 * 0.25 + 2 * 2.25)
  np.testing.assert_allclose(with_target, 1 - np.sqrt(5.0), rtol=1e-6)

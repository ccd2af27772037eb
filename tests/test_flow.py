"""Tests of lintraj.flow: the Dormand-Prince integrator and gradient_flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import lintraj as lt
from lintraj import flow, theory


def test_odeint_matches_closed_forms_on_pytrees(x64):
  """y' = -y and the harmonic oscillator (a tuple state) against exp / cos / sin at 5 times."""
  times = jnp.array([0.0, 0.5, 1.0, 2.5, 7.0])
  rhs = lambda y: (-y[0], (y[1][1], -y[1][0]))
  y0 = (jnp.ones(3), (jnp.ones(()), jnp.zeros(())))
  records, y_end, n_reached, n_steps = flow.odeint(
    rhs, y0, times, lambda y: y, rtol=1e-10, atol=1e-12, max_steps=10_000
  )
  t = np.asarray(times)
  np.testing.assert_allclose(records[0], np.exp(-t)[:, None] * np.ones(3), rtol=1e-8, atol=1e-12)
  np.testing.assert_allclose(records[1][0], np.cos(t), atol=1e-8)
  np.testing.assert_allclose(records[1][1], -np.sin(t), atol=1e-8)
  assert int(n_reached) == 5 and 10 < int(n_steps) < 2000
  np.testing.assert_allclose(y_end[1][0], np.cos(7.0), atol=1e-8)


def test_odeint_error_scales_with_tolerance(x64):
  """Tighter tolerances give smaller errors (fifth-order pair): the error at rtol 1e-10 is at
  least 100 times smaller than at rtol 1e-6 on y' = -y^2 (y = 1 / (1 + t))."""
  errors = []
  for tol in (1e-6, 1e-10):
    records, *_ = flow.odeint(
      lambda y: -(y**2),
      jnp.ones(()),
      jnp.array([5.0]),
      lambda y: y,
      rtol=tol,
      atol=tol,
      max_steps=10_000,
    )
    errors.append(abs(float(records[0]) - 1 / 6))
  assert errors[1] < errors[0] / 100 and errors[1] < 1e-9


def test_step_control_is_invariant_to_scale_and_to_copies(x64):
  """The documented acceptance test is the RMS over components of e_i / (atol + rtol |y_i|): with
  atol = 0 it does not change when y' = -y starts at 1024 instead of 1 (an exact rescaling: the
  same steps, the records times 1024), nor when the state is 64 copies of the scalar (the same
  steps up to rounding); a sum instead of a mean over components, or rtol / |y|, would."""
  run = lambda y0: flow.odeint(
    lambda y: -y, y0, jnp.array([1.0, 5.0]), lambda y: y, rtol=1e-8, atol=0.0, max_steps=10_000
  )
  records, _, _, n_steps = run(jnp.ones(()))
  records_scaled, _, _, n_steps_scaled = run(jnp.full((), 1024.0))
  records_copies, _, _, n_steps_copies = run(jnp.ones(64))
  np.testing.assert_allclose(records, np.exp([-1.0, -5.0]), rtol=1e-7)
  assert int(n_steps_scaled) == int(n_steps) and abs(int(n_steps_copies) - int(n_steps)) <= 1
  np.testing.assert_array_equal(records_scaled, 1024 * np.asarray(records))
  np.testing.assert_allclose(records_copies, np.repeat(records[:, None], 64, 1), rtol=1e-12)


# Dormand-Prince 5(4) as printed by Hairer, Norsett, Wanner (Solving ODEs I, Table 5.2): the
# stages, the 5th-order weights and the embedded 4th-order weights (not their difference).
_DP_A = (
  (1 / 5,),
  (3 / 40, 9 / 40),
  (44 / 45, -56 / 15, 32 / 9),
  (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
  (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_DP_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def _numpy_dopri(f, y0, times, rtol, atol, max_steps):
  """odeint's documented algorithm in NumPy float64, written from the book: returns the records,
  the steps attempted and the steps rejected."""
  rms = lambda v: np.sqrt(np.mean(v**2))
  y, t, n_steps, rejected, records = np.array(y0, float), 0.0, 0, 0, []
  fy = f(y)
  h = _hairer_h0(y, fy, rtol, atol, times[-1])
  while (
    len(records) < len(times) and n_steps < max_steps and h > 16 * np.finfo(float).eps * max(t, 1)
  ):
    if t >= times[len(records)]:
      records.append(y.copy())
      continue
    gap = times[len(records)] - t
    dt = gap if 1.01 * h >= gap else h  # land on the record time rather than leave a sliver
    k = [fy]
    for row in _DP_A:
      k.append(f(y + dt * sum(a * k_ for a, k_ in zip(row, k))))
    y_new = y + dt * sum(b * k_ for b, k_ in zip(_DP_B5, k))
    k.append(f(y_new))
    error = dt * sum((b5 - b4) * k_ for b5, b4, k_ in zip(_DP_B5, _DP_B4, k))
    err = rms(error / (atol + rtol * np.maximum(np.abs(y), np.abs(y_new))))
    finite = np.isfinite(err) and np.isfinite(k[-1]).all()
    if finite and err <= 1:
      t, y, fy = (times[len(records)] if dt == gap else t + dt), y_new, k[-1]
    else:
      rejected += 1
    h = dt * (min(10.0, max(0.2, 0.9 * max(err, 1e-10) ** -0.2)) if finite else 0.2)
    n_steps += 1
  return np.array(records), n_steps, rejected


def test_odeint_takes_the_steps_of_a_numpy_dormand_prince(x64):
  """A damped pendulum: odeint and the NumPy implementation of its documented algorithm
  (tableau from the book, starting step, acceptance test, step-size rule, landing on record
  times) attempt the same number of steps, reject the same number, and record the same states.
  The accuracy tests cannot see the step-size controller (any controller meeting the tolerance
  passes them); this one can."""
  rhs = lambda y: jnp.stack([y[1], -jnp.sin(y[0]) - 0.1 * y[1]])
  rhs_np = lambda y: np.array([y[1], -np.sin(y[0]) - 0.1 * y[1]])
  times = [0.0, 0.7, 0.71, 3.0, 10.0]
  records, _, n_reached, n_steps = flow.odeint(
    rhs,
    jnp.array([2.0, 0.0]),
    jnp.asarray(times),
    lambda y: y,
    rtol=1e-6,
    atol=1e-9,
    max_steps=1000,
  )
  want, want_steps, rejected = _numpy_dopri(rhs_np, [2.0, 0.0], times, 1e-6, 1e-9, 1000)
  assert rejected >= 1 and int(n_reached) == 5
  assert int(n_steps) == want_steps
  np.testing.assert_allclose(records, want, rtol=1e-12, atol=1e-14)


def _hairer_h0(y0, f0, rtol, atol, span):
  """The starting step of Hairer, Norsett, Wanner (Solving ODEs I, Sec. II.4), in NumPy, as odeint
  documents it: d0, d1 the RMS norms of y0 and f(y0) scaled by atol + rtol |y0|; 1e-6 (times the
  span) if either is below 1e-5 or d1 is not finite, else 0.01 d0 / d1; at most the span."""
  scale = atol + rtol * np.abs(y0)
  d0, d1 = (np.sqrt(np.mean((v / scale) ** 2)) for v in (y0, f0))
  small = d0 < 1e-5 or d1 < 1e-5 or not np.isfinite(d1)
  return min(1e-6 * span if small else 0.01 * d0 / d1, span)


@pytest.mark.parametrize(
  "y0, rhs, atol, times",
  [
    ([0.5, -0.25, 0.1], lambda y: -0.5 * y, 1.0, [0.0, 0.5, 1.0]),  # d0, d1 in (1e-5, 1)
    ([0.5, -0.25, 0.1], lambda y: -0.5 * y, 1.0, [0.0, 1e-4, 2e-4, 3e-4]),  # capped by the span
    ([1e-7, 2e-7], lambda y: jnp.ones_like(y), 1.0, [0.0, 2.0]),  # d0 small only
    ([1.0, 2.0], lambda y: 1e-8 * y, 1.0, [0.0, 2.0]),  # d1 small only
    ([1.0, 2.0], lambda y: y + jnp.inf, 1.0, [0.0, 2.0]),  # d1 infinite
    ([1e-5], lambda y: jnp.full_like(y, 1e-5), 1.0, [0.0, 2.0]),  # d0 = d1 = 1e-5 exactly
  ],
)
def test_starting_step_is_hairers(x64, y0, rhs, atol, times):
  """The integrator's first step against the book's rule in NumPy (the adaptive controller would
  recover from a wrong one, so only this test sees it)."""
  y0, rtol = np.array(y0), 2.0**-60 if y0 == [1e-5] else 1e-6
  state = flow._ode_start(rhs, jnp.asarray(y0), jnp.asarray(times), lambda y, i: y, rtol, atol)
  f0 = np.asarray(rhs(jnp.asarray(y0)))
  assert float(state.h) == pytest.approx(_hairer_h0(y0, f0, rtol, atol, times[-1]), rel=1e-12)


def test_float32_state_with_x64_enabled_stays_float32(x64):
  """A float32 state and float32 times integrate in float32 even where float64 is the default:
  the integrator's state keeps float32 times and steps and int32 counters, and a float32 run of
  y' = y^2 from 1/64 (y = 1 / (64 - t), which blows up at t = 64) takes the same steps with x64
  enabled as disabled, stopping short of the blow-up when the step nears float32's resolution."""
  times = jnp.array([0.0, 32.0, 128.0], jnp.float32)
  run = lambda: flow.odeint(
    lambda y: y**2,
    jnp.full(2, 1 / 64, jnp.float32),
    times,
    lambda y: y,
    rtol=1e-5,
    atol=1e-7,
    max_steps=5000,
  )
  records, y_end, n_reached, n_steps = run()
  assert records.dtype == y_end.dtype == jnp.float32 and n_steps.dtype == jnp.int32
  np.testing.assert_allclose(records[:2], [[1 / 64] * 2, [1 / 32] * 2], rtol=1e-4)
  assert int(n_reached) == 2 and int(n_steps) < 5000  # stopped by underflow, not max_steps
  # Short of the blow-up: float32 resolves t below 64 to 64 eps, so y = 1 / (64 - t) < 1 / (64 eps)
  # (a step floor below float32's resolution steps past t = 64, to y near 1e7).
  assert 100 < float(y_end[0]) < 1 / (64 * np.finfo(np.float32).eps)
  state = flow._ode_start(lambda y: -y, jnp.ones(2, jnp.float32), times, lambda y, i: y, 1e-5, 1e-7)
  assert state.t.dtype == state.h.dtype == jnp.float32
  assert state.index.dtype == state.n_steps.dtype == jnp.int32
  with jax.enable_x64(False):
    records32, _, _, n_steps32 = run()
  assert int(n_steps32) == int(n_steps)
  np.testing.assert_allclose(records32[:2], records[:2], rtol=1e-6)


def test_odeint_attempts_exactly_max_steps(x64):
  """max_steps is the number of steps attempted: a run that needs more stops after exactly that
  many, with only t = 0 recorded."""
  records, _, n_reached, n_steps = flow.odeint(
    lambda y: -y,
    jnp.ones(()),
    jnp.array([0.0, 100.0]),
    lambda y: y,
    rtol=1e-8,
    atol=1e-10,
    max_steps=7,
  )
  assert int(n_steps) == 7 and int(n_reached) == 1
  assert float(records[0]) == 1.0 and np.isnan(float(records[1]))


def test_odeint_shrinks_the_step_after_a_non_finite_trial_and_stops_at_the_floor(x64):
  """y' = -sqrt(y) from 1 reaches 0 at t = 2 (y = (1 - t/2)^2); a trial step past it takes the
  root of a negative number (NaN). Each such step is retried at a fifth of its size, so the steps
  reach the floor and the run stops just short of t = 2, with t = 3 not reached, after a few
  hundred steps (250 measured), not after max_steps."""
  records, y_end, n_reached, n_steps = flow.odeint(
    lambda y: -jnp.sqrt(y),
    jnp.ones(()),
    jnp.array([0.0, 1.0, 3.0]),
    lambda y: y,
    rtol=1e-8,
    atol=1e-10,
    max_steps=100_000,
  )
  assert float(records[1]) == pytest.approx(0.25, rel=1e-7)
  assert int(n_reached) == 2 and np.isnan(float(records[2]))
  assert 0.0 <= float(y_end) < 1e-20
  assert int(n_steps) < 1000


def test_odeint_records_what_is_due_at_the_start_even_when_no_step_follows(x64):
  """Record times at t = 0 are observed: alone (a zero-length span, where no step can be taken),
  repeated, and before later ones (exp(-t) at t = 1 as the reference). The loop used to end
  before observing anything when the span was zero (n_reached 0)."""
  kw = dict(rtol=1e-8, atol=1e-10, max_steps=1000)
  recs, _, reached, steps = flow.odeint(
    lambda y: -y, jnp.ones(()), jnp.array([0.0]), lambda y: y, **kw
  )
  assert int(reached) == 1 and float(recs[0]) == 1.0 and int(steps) == 0
  times = jnp.array([0.0, 0.0, 1.0])
  recs, _, reached, _ = flow.odeint(lambda y: -y, jnp.ones(()), times, lambda y: y, **kw)
  assert int(reached) == 3
  np.testing.assert_allclose(np.asarray(recs), [1.0, 1.0, np.exp(-1.0)], rtol=1e-7)


def test_gradient_flow_depth_one_matches_exponential_decay(x64):
  """Depth 1, loss 1/2||W - Phi||^2: W(t) = Phi + (W0 - Phi) e^{-t}, so loss(t) = loss(0)
  e^{-2t}."""
  rng = np.random.default_rng(0)
  phi, w0 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
  traj = lt.gradient_flow(
    (jnp.asarray(w0),), lt.losses.target(phi), time=4.0, n_records=9, rtol=1e-11, atol=1e-13
  )
  t = np.asarray(traj.step)
  np.testing.assert_allclose(t, np.linspace(0, 4, 9))
  np.testing.assert_allclose(traj.loss, 0.5 * np.sum((w0 - phi) ** 2) * np.exp(-2 * t), rtol=1e-7)
  np.testing.assert_allclose(traj.final[0], phi + (w0 - phi) * np.exp(-4.0), atol=1e-9)
  assert traj.diverged_step is None


def test_gradient_flow_defaults_and_user_metrics(x64, capsys):
  """The closed form of the depth-1 flow W(t) = Phi + (W0 - Phi) e^{-t} with the default
  tolerances (rtol 1e-8, atol 1e-10: 1e-6 relative), as a user metric (entry (0, 1) of W), with
  no progress bar by default; and max_steps=1 (the least) takes one step and warns."""
  rng = np.random.default_rng(1)
  phi, w0 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
  loss = lt.losses.target(phi)
  traj = lt.gradient_flow(
    (jnp.asarray(w0),), loss, time=3.0, n_records=4, metrics={"w01": lambda ws: ws[0][0, 1]}
  )
  t = np.arange(4.0)
  np.testing.assert_allclose(traj.loss, 0.5 * np.sum((w0 - phi) ** 2) * np.exp(-2 * t), rtol=1e-6)
  np.testing.assert_allclose(traj.metrics["w01"], phi[0, 1] + (w0 - phi)[0, 1] * np.exp(-t), 1e-7)
  assert capsys.readouterr().err == ""
  with pytest.warns(RuntimeWarning, match="max_steps=1 used up"):
    short = lt.gradient_flow((jnp.asarray(w0),), loss, time=3.0, n_records=4, max_steps=1)
  assert np.isfinite(short.loss[0]) and np.isnan(short.loss[1:]).all()


def test_traced_time_is_refused():
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  loss = lt.losses.target(jnp.ones((2, 3)))
  with pytest.raises(ValueError, match="^gradient_flow got a traced time"):
    jax.jit(lambda t: lt.gradient_flow(ws, loss, time=t).loss)(1.0)


@pytest.mark.parametrize("depth", [2, 3])
def test_gradient_flow_follows_saxe_mode_dynamics(x64, depth):
  """Aligned balanced init: the flow's end-to-end singular values equal
  lintraj.theory.mode_strength (closed form at depth 2, independent solver at depth 3) to 1e-7."""
  rng = np.random.default_rng(depth)
  u = np.linalg.qr(rng.standard_normal((3, 3)))[0]
  v = np.linalg.qr(rng.standard_normal((4, 4)))[0][:, :3]
  s, u0 = np.array([2.0, 1.0, 0.5]), 0.05
  ws = lt.init.balanced(
    None, (4,) + (5,) * (depth - 1) + (3,), end_to_end=u @ np.diag([u0] * 3) @ v.T
  )
  traj = lt.gradient_flow(
    ws, lt.losses.target(u @ np.diag(s) @ v.T), time=8.0, n_records=17, rtol=1e-11, atol=1e-13
  )
  predicted = theory.mode_strength(traj.step[:, None], jnp.asarray(s)[None, :], u0, depth)
  np.testing.assert_allclose(traj.end_to_end_singular_values, predicted, atol=1e-7)
  assert float(predicted[-1, -1]) > 0.4  # the slowest mode is learned by the end


def test_gradient_descent_approaches_the_flow_linearly_in_lr(x64):
  """GD at t = lr * step is an Euler discretisation of the flow: the gap halves with lr."""
  rng = np.random.default_rng(1)
  ws = lt.init.gaussian(jax.random.PRNGKey(0), (3, 4, 2), std=0.7)
  loss = lt.losses.target(rng.standard_normal((2, 3)))
  reference = lt.gradient_flow(ws, loss, time=2.0, n_records=5, rtol=1e-11, atol=1e-13)
  gaps = []
  for lr in (0.02, 0.01):
    steps = int(round(2.0 / lr))
    gd = lt.gradient_descent(ws, loss, lr=lr, steps=steps, record_every=steps // 4)
    gaps.append(float(jnp.max(jnp.abs(gd.loss - reference.loss))))
  assert 1.7 < gaps[0] / gaps[1] < 2.3, gaps


def test_record_every_time_and_trajectory_fields(x64):
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  loss = lt.losses.target(jnp.ones((2, 3)))
  traj = lt.gradient_flow(ws, loss, time=1.0, record_every_time=0.25)
  np.testing.assert_allclose(traj.step, [0.0, 0.25, 0.5, 0.75, 1.0])
  gd = lt.gradient_descent(ws, loss, lr=0.1, steps=4)
  for name in (
    "loss",
    "balancedness",
    "deficiency_margin",
    "grad_norm",
    "end_to_end_singular_values",
  ):
    assert getattr(traj, name).shape == getattr(gd, name).shape
  assert [x.shape for x in traj.layer_singular_values] == [
    x.shape for x in gd.layer_singular_values
  ]
  assert [w.shape for w in traj.final] == [w.shape for w in ws]
  partial = lt.gradient_flow(ws, loss, time=1.1, record_every_time=0.25)
  np.testing.assert_allclose(partial.step, [0.0, 0.25, 0.5, 0.75, 1.0])


def test_default_and_fewest_records(x64):
  """101 records by default (the documented default), and n_records=2 (the least allowed) records
  only t = 0 and t = T."""
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  loss = lt.losses.target(jnp.ones((2, 3)))
  np.testing.assert_allclose(lt.gradient_flow(ws, loss, time=1.0).step, np.arange(101) / 100)
  np.testing.assert_allclose(lt.gradient_flow(ws, loss, time=1.0, n_records=2).step, [0.0, 1.0])


def test_tracked_sharpness_every_other_record_matches_jax_hessian(x64):
  """track=("sharpness",), track_every=2: records 0, 2, 4 hold the top eigenvalue of the Hessian
  of the network loss (jax.hessian, dense, at the initial and the final weights), 1 and 3 NaN."""
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  loss = lt.losses.target(jnp.array([[1.0, 0.5, -0.3], [0.2, -1.0, 0.4]]))
  traj = lt.gradient_flow(
    ws, loss, time=2.0, n_records=5, track=("sharpness",), track_every=2, rtol=1e-11, atol=1e-13
  )

  def top_eigenvalue(weights):
    flat, unravel = ravel_pytree(weights)
    hessian = jax.hessian(lambda x: loss(lt.end_to_end(unravel(x))))(flat)
    return np.linalg.eigvalsh(np.asarray(hessian))[-1]

  sharp = np.asarray(traj.sharpness)
  assert np.isnan(sharp[[1, 3]]).all() and np.isfinite(sharp[[0, 2, 4]]).all()
  np.testing.assert_allclose(sharp[[0, 4]], [top_eigenvalue(ws), top_eigenvalue(traj.final)], 1e-8)


@pytest.mark.parametrize("x64_enabled", [False, True])
def test_float32_weights_give_float32_records(x64_enabled):
  """Float32 weights run and record in float32, also where float64 is the default."""
  with jax.enable_x64(x64_enabled):
    ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5, dtype=jnp.float32)
    traj = lt.gradient_flow(
      ws,
      lt.losses.target(jnp.ones((2, 3), jnp.float32)),
      time=5.0,
      n_records=3,
      rtol=1e-5,
      atol=1e-7,
    )
  assert traj.loss.dtype == jnp.float32 and traj.step.dtype == jnp.float32
  assert float(traj.loss[-1]) < 1e-3 * float(traj.loss[0])


def test_max_steps_exhausted_warns_and_masks(x64):
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  message = (
    r"^gradient_flow stopped before t = \S+ \(max_steps=15 used up, or the step size underflowed "
    r"because the flow stopped being finite\); later records are NaN\. Raise max_steps or loosen "
    r"rtol/atol\.$"
  )
  with pytest.warns(RuntimeWarning, match=message):
    traj = lt.gradient_flow(
      ws, lt.losses.target(jnp.ones((2, 3))), time=10.0, n_records=5, max_steps=15
    )
  reached = np.isfinite(np.asarray(traj.loss))
  assert reached[0] and not reached[-1]
  first_missing = int(np.argmin(reached))
  assert not reached[first_missing:].any()
  assert traj.diverged_step == pytest.approx(float(traj.step[first_missing]))


def test_no_recompilation_for_new_time_tolerances_or_target(x64, compiles):
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  lt.gradient_flow(ws, lt.losses.target(jnp.ones((2, 3))), time=1.0, n_records=5)
  size = compiles("_flow_segment")
  lt.gradient_flow(
    ws, lt.losses.target(2 * jnp.ones((2, 3))), time=3.0, n_records=5, rtol=1e-6, atol=1e-9
  )
  assert compiles("_flow_segment") == size


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(time=0.0), "^time must"),
    (dict(time=-1.0), "^time must"),
    (dict(time=float("nan")), "^time must"),
    (dict(time=1.0, n_records=1), "^n_records must"),
    (dict(time=1.0, n_records=2.5), "^n_records must"),
    (dict(time=1.0, n_records=3, record_every_time=0.1), "^pass at most one"),
    (dict(time=1.0, record_every_time=0.0), "^record_every_time must"),
    (dict(time=1.0, rtol=0.0), "^rtol must"),
    (dict(time=1.0, atol=-1.0), "^atol must"),
    (dict(time=1.0, max_steps=0), "^max_steps must"),
    (dict(time=1.0, track_every=0), "^track_every must"),
    (dict(time=1.0, singular_values="svd"), "^singular-value method must"),
  ],
)
def test_bad_arguments_raise(kwargs, match):
  """Each message starts with the argument it names (so a wrong name in the check fails)."""
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  with pytest.raises(ValueError, match=match):
    lt.gradient_flow(ws, lt.losses.target(jnp.ones((2, 3))), **kwargs)


def test_bad_network_or_target_raises():
  with pytest.raises(ValueError, match="chain"):
    lt.gradient_flow(
      (jnp.ones((3, 2)), jnp.ones((2, 4))), lt.losses.target(jnp.ones((2, 2))), time=1.0
    )
  with pytest.raises(ValueError, match="target"):
    lt.gradient_flow((jnp.ones((3, 2)),), lt.losses.target(jnp.ones((2, 2))), time=1.0)

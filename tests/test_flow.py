"""Tests of lintraj.flow: the Dormand-Prince integrator and gradient_flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


def test_float32_weights_give_float32_records():
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  traj = lt.gradient_flow(
    ws, lt.losses.target(jnp.ones((2, 3))), time=5.0, n_records=3, rtol=1e-5, atol=1e-7
  )
  assert traj.loss.dtype == jnp.float32 and traj.step.dtype == jnp.float32
  assert float(traj.loss[-1]) < 1e-3 * float(traj.loss[0])


def test_max_steps_exhausted_warns_and_masks(x64):
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  with pytest.warns(RuntimeWarning, match="max_steps"):
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
    (dict(time=0.0), "time"),
    (dict(time=-1.0), "time"),
    (dict(time=float("nan")), "time"),
    (dict(time=1.0, n_records=1), "n_records"),
    (dict(time=1.0, n_records=2.5), "n_records"),
    (dict(time=1.0, n_records=3, record_every_time=0.1), "at most one"),
    (dict(time=1.0, record_every_time=0.0), "record_every_time"),
    (dict(time=1.0, rtol=0.0), "rtol"),
    (dict(time=1.0, atol=-1.0), "atol"),
    (dict(time=1.0, max_steps=0), "max_steps"),
  ],
)
def test_bad_arguments_raise(kwargs, match):
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

"""Damped Newton (lt.second_order) against NumPy: closed forms for the linear model, and
numpy.linalg.solve on a finite-difference Hessian of a NumPy loss for a depth-2 network."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lintraj as lt


def _regression(seed=0, m=30, d0=4, d2=2):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(m, d0)) @ np.diag([3.0, 1.0, 0.5, 0.2])[:d0, :d0]
  return x, x @ rng.normal(size=(d0, d2)) + 0.1 * rng.normal(size=(m, d2))


@pytest.mark.parametrize("damping", [0.0, 5.0])
@pytest.mark.parametrize("solver", ["dense", "cg"])
def test_linear_model_step_is_the_closed_form(x64, damping, solver):
  """Depth 1, regression: H = Sigma (x) I, so one step is W - lr G (Sigma + lambda I)^{-1}, with
  G = (W X^T - Y^T) X / m and Sigma = X^T X / m (NumPy). At lambda = 0 and lr = 1 that is the
  least-squares solution. CG with P = 8 iterations (the number of weights) solves it exactly.
  Rules out a missing or doubled damping, H^{-1} applied on the wrong side (G (Sigma+lambda)^{-1}
  vs (Sigma+lambda)^{-1} G does not even fit the shapes here), the Gauss-Newton factor 1/2."""
  x, y = _regression()
  m = len(x)
  w0 = np.random.default_rng(1).normal(size=(2, 4))

  def step(lr):
    newton = (
      lt.second_order.damped_newton(lr, damping)
      if solver == "dense"
      else lt.second_order.damped_newton_cg(lr, damping, iterations=8)
    )
    traj = lt.train((jnp.asarray(w0),), lt.losses.regression(x, y), newton, steps=1)
    return np.asarray(traj.final[0])

  sigma, grad = x.T @ x / m, (w0 @ x.T - y.T) @ x / m
  expected = w0 - 0.7 * grad @ np.linalg.inv(sigma + damping * np.eye(4))
  np.testing.assert_allclose(step(0.7), expected, rtol=1e-9, atol=1e-12)
  if damping == 0.0 and solver == "dense":
    np.testing.assert_allclose(step(1.0), np.linalg.lstsq(x, y, rcond=None)[0].T, rtol=1e-9)


def _numpy_gradient(theta, x, y, shapes):
  """The depth-2 regression gradient, by hand: R = W2 W1 X^T - Y^T, dW2 = R X W1^T / m,
  dW1 = W2^T R X / m."""
  (a, b), (c, d) = shapes
  w1, w2 = theta[: a * b].reshape(a, b), theta[a * b :].reshape(c, d)
  r = w2 @ w1 @ x.T - y.T
  return np.concatenate([(w2.T @ r @ x / len(x)).ravel(), (r @ x @ w1.T / len(x)).ravel()])


def test_deep_network_step_solves_the_damped_system(x64):
  """Depth 2 (dims 4, 3, 2): the step equals -lr solve(H + lambda I, g) with H the central
  difference of a hand-written NumPy gradient (numpy.linalg.solve); dense and CG (P = 18
  iterations) agree. Rules out the Hessian of the wrong function (e.g. of the end-to-end loss,
  not the network loss), a dropped cross term and a transposed layer order."""
  x, y = _regression(2, d0=4, d2=2)
  rng = np.random.default_rng(3)
  ws = (rng.normal(size=(3, 4)) * 0.7, rng.normal(size=(2, 3)) * 0.7)
  shapes = [w.shape for w in ws]
  theta = np.concatenate([w.ravel() for w in ws])
  g = _numpy_gradient(theta, x, y, shapes)
  grad = lambda t: _numpy_gradient(t, x, y, shapes)
  eps, eye = 1e-6, np.eye(theta.size)
  hessian = np.stack([(grad(theta + eps * e) - grad(theta - eps * e)) / (2 * eps) for e in eye])
  damping, lr = 2.0, 0.5
  expected = theta - lr * np.linalg.solve(hessian + damping * eye, g)
  loss = lt.losses.regression(x, y)
  for newton in (
    lt.second_order.damped_newton(lr, damping),
    lt.second_order.damped_newton_cg(lr, damping, iterations=theta.size),
  ):
    traj = lt.train(tuple(map(jnp.asarray, ws)), loss, newton, steps=1)
    got = np.concatenate([np.ravel(w) for w in traj.final])
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)


def test_cg_error_falls_with_its_iterations(x64):
  """The documented iteration count matters: with H + lambda I positive definite (lambda = 40
  above -lambda_min(H) = 33 here), the CG step's distance to the dense one falls with the
  iterations (measured 0.65, 0.014 at 1, 4) and is at rounding at P = 18, the number of weights
  (4e-16)."""
  x, y = _regression(4)
  ws = lt.init.gaussian(jax.random.PRNGKey(0), (4, 3, 2), std=0.6, dtype=jnp.float64)
  loss = lt.losses.regression(x, y)
  exact = lt.train(ws, loss, lt.second_order.damped_newton(1.0, 40.0), steps=1).final
  errors = []
  for k in (1, 4, 18):
    final = lt.train(ws, loss, lt.second_order.damped_newton_cg(1.0, 40.0, k), steps=1).final
    errors.append(max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(final, exact)))
  assert errors == sorted(errors, reverse=True) and errors[0] > 0.1 and errors[-1] < 1e-10, errors


def test_damping_per_lane_in_batch_train_equals_single_runs(x64):
  """hyperparams={"damping": ...} gives each lane its own lambda (optax.inject_hyperparams)."""
  x, y = _regression(5)
  ws = lt.init.balanced(jax.random.PRNGKey(1), (4, 3, 2), std=0.5, dtype=jnp.float64)
  loss, lams = lt.losses.regression(x, y), [0.5, 4.0]
  stacked = tuple(jnp.stack([w, w]) for w in ws)
  batch = lt.batch_train(
    stacked,
    loss,
    lt.second_order.damped_newton,
    hyperparams={"learning_rate": 0.5, "damping": jnp.asarray(lams)},
    steps=10,
    record_every=5,
  )
  for i, lam in enumerate(lams):
    single = lt.train(ws, loss, lt.second_order.damped_newton(0.5, lam), steps=10, record_every=5)
    np.testing.assert_allclose(batch.loss[i], single.loss, rtol=1e-10)
  assert batch.loss[0, -1] != batch.loss[1, -1]


def test_bad_input_and_use_without_the_loss():
  with pytest.raises(ValueError, match="damping must be"):
    lt.second_order.damped_newton(1.0, -1.0)
  with pytest.raises(ValueError, match="iterations must be"):
    lt.second_order.damped_newton_cg(iterations=0)
  newton = lt.second_order.damped_newton()
  params = (jnp.ones((1, 2)),)
  with pytest.raises(ValueError, match="needs the loss: use it through lt.train"):
    newton.update(params, newton.init(params), params)
  assert isinstance(newton, optax.GradientTransformationExtraArgs)

"""Losses and whitening against closed forms and NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt


def test_target_loss_is_half_squared_distance(x64):
  phi, w = np.random.default_rng(0).normal(size=(2, 3, 4))
  loss = lt.losses.target(phi)
  assert float(loss(w)) == pytest.approx(0.5 * np.sum((w - phi) ** 2), rel=1e-14)
  np.testing.assert_array_equal(loss.target, phi)


def test_regression_loss_and_least_squares_target(x64):
  rng = np.random.default_rng(1)
  x, y, w = rng.normal(size=(40, 5)), rng.normal(size=(40, 3)), rng.normal(size=(3, 5))
  loss = lt.losses.regression(x, y)
  assert float(loss(w)) == pytest.approx(np.sum((w @ x.T - y.T) ** 2) / 80, rel=1e-13)
  w_star = np.linalg.lstsq(x, y, rcond=None)[0].T
  np.testing.assert_allclose(loss.target, w_star, rtol=1e-10)
  np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(w_star)), 0.0, atol=1e-12)


@pytest.mark.parametrize("p", [1.5, 2.0, 4.0])
def test_lp_regression_normalisation(x64, p):
  rng = np.random.default_rng(2)
  x, y, w = rng.normal(size=(30, 4)), rng.normal(size=(30, 2)), rng.normal(size=(2, 4))
  loss = lt.losses.lp_regression(x, y, p)
  assert float(loss(w)) == pytest.approx(np.sum(np.abs(w @ x.T - y.T) ** p) / (p * 30), rel=1e-12)
  assert (loss.target is None) == (p != 2)
  if p == 2:
    assert float(loss(w)) == pytest.approx(float(lt.losses.regression(x, y)(w)), rel=1e-13)


def test_matrix_completion_reads_only_observed_entries(x64):
  rng = np.random.default_rng(3)
  mask = rng.random((6, 5)) < 0.4
  values, w = rng.normal(size=(2, 6, 5))
  loss = lt.losses.matrix_completion(mask, np.where(mask, values, np.nan))
  assert float(loss(w)) == pytest.approx(0.5 * np.sum(mask * (w - values) ** 2), rel=1e-13)
  full = lt.losses.matrix_completion(np.ones((6, 5), bool), values)
  assert float(full(w)) == pytest.approx(float(lt.losses.target(values)(w)), rel=1e-14)


def test_whitened_regression_equals_target_plus_constant(x64):
  rng = np.random.default_rng(4)
  m = 200
  x = rng.normal(size=(m, 6)) @ rng.normal(size=(6, 6)) + 3.0
  y = x @ rng.normal(size=(6, 2)) + 0.1 * rng.normal(size=(m, 2)) + 1.0
  xw, phi = lt.whiten(x, y)
  np.testing.assert_allclose(np.asarray(xw).T @ np.asarray(xw) / m, np.eye(6), atol=1e-10)
  np.testing.assert_allclose(np.asarray(xw).mean(axis=0), 0.0, atol=1e-10)
  constant = np.sum(y**2) / (2 * m) - 0.5 * np.sum(np.asarray(phi) ** 2)
  regression, target = lt.losses.regression(xw, y), lt.losses.target(phi)
  for w in rng.normal(size=(4, 2, 6)):
    assert float(regression(w)) == pytest.approx(float(target(w)) + constant, rel=1e-11)


def test_whiten_drops_degenerate_directions(x64):
  rng = np.random.default_rng(5)
  x = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 5))  # rank 3 in 5 dimensions
  xw, phi = lt.whiten(x, rng.normal(size=50))
  assert xw.shape == (50, 3) and phi.shape == (1, 3)
  np.testing.assert_allclose(np.asarray(xw).T @ np.asarray(xw) / 50, np.eye(3), atol=1e-9)


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: lt.losses.target(np.ones(3)), "matrix"),
    (lambda: lt.losses.regression(np.ones((4, 2)), np.ones(5)), "rows like x"),
    (lambda: lt.losses.lp_regression(np.ones((4, 2)), np.ones(4), 0.5), "p must be"),
    (lambda: lt.losses.matrix_completion(np.ones((2, 2), bool), np.ones((2, 3))), "same"),
    (lambda: lt.whiten(np.ones((5, 2)), np.ones(5)), "zero variance"),
  ],
)
def test_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_whiten_drops_rounding_level_directions_in_float32():
  rng = np.random.default_rng(3)
  base = rng.normal(size=(60, 3)).astype(np.float32)
  x = np.concatenate([base, base[:, :1] + base[:, 1:2]], axis=1)  # rank 3 in 4 columns
  xw, phi = lt.whiten(jnp.asarray(x), jnp.asarray(base[:, 0]))
  assert xw.shape == (60, 3) and phi.shape == (1, 3)
  with jax.enable_x64(True):
    assert lt.whiten(jnp.asarray(x, jnp.float64), jnp.asarray(base[:, 0], jnp.float64))[
      0
    ].shape == (60, 3)
  with pytest.raises(ValueError, match="zero variance"):
    lt.whiten(jnp.full((40, 2), 0.1, jnp.float32), jnp.ones(40, jnp.float32))

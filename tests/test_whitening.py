"""Fitted PCA whitening (lt.fit_whitening) against NumPy: fitted on one set, applied to another."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt


def _data(seed, m=80, d0=5, shift=2.0):
  rng = np.random.default_rng(seed)
  mixing = rng.normal(size=(d0, d0))
  return rng.normal(size=(m, d0)) @ mixing + shift, rng.normal(size=(30, d0)) @ mixing - shift


def test_fitted_whitening_maps_other_rows_by_the_fitted_statistics(x64):
  """Invariants that do not depend on the eigenvectors' signs: fitted on the training rows, the
  whitened rows' inner products are (x - mu)^T Sigma^{-1} (x' - mu), with mu and Sigma the
  training rows' mean and covariance (NumPy). Rules out centring by the applied rows' own mean,
  a covariance of other rows, and lambda^{-1} or lambda^{-1/4} in place of lambda^{-1/2}."""
  train, test = _data(0)
  white = lt.fit_whitening(train)
  mu = train.mean(axis=0)
  inverse = np.linalg.inv(np.cov(train, rowvar=False, bias=True))
  a, b = np.asarray(white(train)), np.asarray(white(test))
  np.testing.assert_allclose(a.T @ a / len(train), np.eye(5), atol=1e-10)
  np.testing.assert_allclose(b @ a.T, (test - mu) @ inverse @ (train - mu).T, rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(b @ b.T, (test - mu) @ inverse @ (test - mu).T, rtol=1e-9, atol=1e-9)
  assert np.abs(b.mean(axis=0)).max() > 0.5  # test rows are not centred by their own mean


def test_whiten_is_the_fitted_transform_on_its_own_rows(x64):
  train, _ = _data(1)
  y = train @ np.arange(5.0) + 1.0
  xw, phi = lt.whiten(train, y)
  np.testing.assert_array_equal(np.asarray(xw), np.asarray(lt.fit_whitening(train)(train)))
  np.testing.assert_allclose(np.asarray(phi), y[None, :] @ np.asarray(xw) / len(train), rtol=1e-12)


def test_fitting_on_train_and_test_changes_the_training_inputs(x64):
  """Where the transform is fitted matters (Wadia et al. 2021): fitted on train + test, the
  training rows are no longer white (their covariance is not I)."""
  train, test = _data(2)
  both = lt.fit_whitening(np.concatenate([train, test]))
  rows = np.asarray(both(train))
  assert np.abs(rows.T @ rows / len(train) - np.eye(5)).max() > 0.05


def test_fitted_whitening_drops_degenerate_directions_and_is_jittable(x64):
  rng = np.random.default_rng(3)
  x = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 6))  # rank 3 in 6 columns
  white = lt.fit_whitening(x)
  assert white.projection.shape == (6, 3)
  np.testing.assert_allclose(jax.jit(lambda w, r: w(r))(white, x), white(x), rtol=1e-12)


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: lt.fit_whitening(np.ones(5)), r"x must be \(m, d_0\)"),
    (lambda: lt.fit_whitening(np.ones((5, 2))), "zero variance"),
    (lambda: lt.fit_whitening(np.eye(3))(np.ones((2, 4))), "fitted on inputs with 3 columns"),
  ],
)
def test_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_float32_by_default():
  train, test = _data(4)
  white = lt.fit_whitening(jnp.asarray(train, jnp.float32))
  assert white(jnp.asarray(test, jnp.float32)).dtype == jnp.float32

"""PCA whitening of regression data, reducing whitened l2 regression to a target loss; the
transform can be fitted on one set of inputs and applied to another."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from lintraj.losses import check_regression_data
from lintraj.network import as_float_array
from lintraj.validation import check_positive

__all__ = ["Whitening", "fit_whitening", "whiten"]


class Whitening(NamedTuple):
  r"""A fitted PCA whitening :math:`x \mapsto P^\top (x - \mu)`: ``mean`` :math:`\mu` (d_0,) and
  ``projection`` :math:`P` (d_0, d_0'), the kept eigenvectors of the fitted covariance scaled by
  :math:`\lambda^{-1/2}`. Calling it on rows ``x`` (n, d_0) returns the (n, d_0') whitened rows.
  A pytree of two arrays: it can be passed through ``jax.jit``.

  Example:
    >>> import jax.numpy as jnp
    >>> w = Whitening(mean=jnp.array([1.0, 0.0]), projection=jnp.array([[2.0], [0.0]]))
    >>> w(jnp.array([[1.5, 7.0]])).tolist()
    [[1.0]]
  """

  mean: jnp.ndarray
  projection: jnp.ndarray

  def __call__(self, x):
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
      raise ValueError(
        f"the whitening was fitted on inputs with {self.mean.shape[0]} columns; got an array of "
        f"shape {x.shape}. Pass rows of the same features (n, {self.mean.shape[0]})."
      )
    return (x - self.mean[None, :]) @ self.projection


def fit_whitening(x, *, rtol: float | None = None) -> Whitening:
  r"""Fit PCA whitening on the rows of ``x`` (m, d_0): the transform that maps these rows to
  centred ones with :math:`\tfrac1m X_w^\top X_w = I`, to apply to other rows too.

  With :math:`\mu` the mean row and :math:`\Sigma = \tfrac1m (X - \mu)^\top (X - \mu) = V
  \Lambda V^\top`, the transform is :math:`x \mapsto \Lambda_k^{-1/2} V_k^\top (x - \mu)` over
  the kept directions :math:`k` (:math:`\lambda > \mathrm{rtol}\, s`, see :func:`whiten`). Where
  it is fitted matters: fitted on the training inputs, test inputs are mapped by the training
  statistics; fitted on train and test together (as in Wadia et al.), the test inputs shape the
  transform the training run sees.

  Args:
    x: (m, d_0) inputs, samples as rows.
    rtol: the relative eigenvalue cutoff of :func:`whiten`.

  Returns:
    A :class:`Whitening`; ``fit_whitening(x)(x)`` is ``whiten(x, y)[0]``.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> train = jax.random.normal(jax.random.PRNGKey(0), (50, 3)) * jnp.array([[1.0, 2.0, 3.0]])
    >>> test = jax.random.normal(jax.random.PRNGKey(1), (20, 3)) * jnp.array([[1.0, 2.0, 3.0]])
    >>> w = lt.fit_whitening(train)
    >>> bool(jnp.allclose(w(train).T @ w(train) / 50, jnp.eye(3), atol=1e-4)), w(test).shape
    (True, (20, 3))

  References:
    Wadia, Duckworth, Schoenholz, Dyer, Sohl-Dickstein. Whitening and second order optimization
    both make information in the dataset unusable during training, and can reduce or prevent
    generalization. ICML 2021 (arXiv 2008.07545).
  """
  x = as_float_array(x, "x")
  if x.ndim != 2:
    raise ValueError(f"x must be (m, d_0) with samples as rows; got shape {x.shape}.")
  m, d0 = x.shape
  if rtol is None:
    rtol = max(1e-10, 10 * d0 * float(np.finfo(x.dtype).eps))
  else:
    rtol = check_positive("rtol", rtol, " (or None for the dtype's default)", allow_zero=True)
  mean = x.mean(axis=0)
  centred = x - mean[None, :]
  eigvals, eigvecs = jnp.linalg.eigh(centred.T @ centred / m)
  scale = jnp.maximum(eigvals[-1], jnp.max(jnp.mean(x**2, axis=0)))
  keep = eigvals > rtol * scale
  if not bool(jnp.any(keep)):
    raise ValueError("x has zero variance in every direction; whitening needs varying inputs.")
  return Whitening(mean, eigvecs[:, keep] / jnp.sqrt(eigvals[keep])[None, :])


def whiten(x, y, *, rtol: float | None = None):
  r"""PCA-whiten the inputs and return ``(x_white, phi)``.

  Centre the rows of ``x`` (m, d_0), rotate onto the eigenvectors of the covariance
  :math:`\Sigma = \tfrac1m X_c^\top X_c` and scale each direction by :math:`\lambda^{-1/2}`, so that
  :math:`\tfrac1m X_w^\top X_w = I`. Directions with :math:`\lambda \le \mathrm{rtol}\, s`,
  :math:`s = \max(\lambda_{\max}, \max_j \tfrac1m \|x_{:,j}\|^2)` (the data's scale, so that the
  rounding of the centring counts as no variance), carry no data and are dropped (``x_white``
  then has fewer columns). With
  :math:`\Phi = \tfrac1m Y^\top X_w`,

  .. math::
     \frac{1}{2m}\|W X_w^\top - Y^\top\|_F^2 = \tfrac12\|W - \Phi\|_F^2
        + \underbrace{\tfrac{1}{2m}\|Y\|_F^2 - \tfrac12\|\Phi\|_F^2}_{\text{constant}} .

  Args:
    x: (m, d_0) inputs, samples as rows.
    y: (m, d_N) or (m,) labels.
    rtol: relative eigenvalue cutoff for dropping degenerate directions; default
      :math:`\max(10^{-10}, 10\, d_0\, \varepsilon)` for the dtype's :math:`\varepsilon` (float32:
      the rounding of the covariance is about :math:`\varepsilon` of its scale).

  Returns:
    ``(x_white, phi)``: (m, d_0') whitened inputs and the (d_N, d_0') matrix :math:`\Phi`. To
    whiten other inputs (test data) with the same transform, use :func:`fit_whitening`.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (50, 3))
    >>> xw, phi = lt.whiten(x, x[:, 0])
    >>> bool(jnp.allclose(xw.T @ xw / 50, jnp.eye(3), atol=1e-4)), phi.shape
    (True, (1, 3))

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Section 2 and Section 5.
  """
  x, y = check_regression_data(x, y)
  x_white = fit_whitening(x, rtol=rtol)(x)
  return x_white, y.T @ x_white / x.shape[0]

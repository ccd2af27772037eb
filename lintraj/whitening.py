"""PCA whitening of regression data, reducing whitened l2 regression to a target loss."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from lintraj.losses import check_regression_data
from lintraj.validation import check_positive

__all__ = ["whiten"]


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
    ``(x_white, phi)``: (m, d_0') whitened inputs and the (d_N, d_0') matrix :math:`\Phi`.

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
  m, d0 = x.shape
  if rtol is None:
    rtol = max(1e-10, 10 * d0 * float(np.finfo(x.dtype).eps))
  else:
    rtol = check_positive("rtol", rtol, " (or None for the dtype's default)", allow_zero=True)
  centred = x - x.mean(axis=0, keepdims=True)
  eigvals, eigvecs = jnp.linalg.eigh(centred.T @ centred / m)
  scale = jnp.maximum(eigvals[-1], jnp.max(jnp.mean(x**2, axis=0)))
  keep = eigvals > rtol * scale
  if not bool(jnp.any(keep)):
    raise ValueError("x has zero variance in every direction; whitening needs varying inputs.")
  x_white = (centred @ eigvecs[:, keep]) / jnp.sqrt(eigvals[keep])[None, :]
  return x_white, y.T @ x_white / m

r"""The quantities the trajectory theory is about: balancedness, deficiency margin, singular values.

All functions are pure and jittable; ``weights`` is ``(W_1, ..., W_N)``.
"""

from __future__ import annotations

import jax.numpy as jnp

from lintraj.network import end_to_end
from lintraj.singular_values import singular_values

__all__ = ["balancedness", "balancedness_per_pair", "deficiency_margin", "end_to_end_deficiency_margin",
           "layer_singular_values", "end_to_end_singular_values"]


def balancedness_per_pair(weights) -> jnp.ndarray:
  r"""The imbalance of each adjacent pair, :math:`\|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F` for
  :math:`j = 1, \dots, N-1` (shape ``(N-1,)``).

  Under gradient flow :math:`C_j = W_{j+1}^\top W_{j+1} - W_j W_j^\top` is conserved
  (Arora, Cohen, Hazan 2018, Theorem 1).

  Example:
    >>> import jax.numpy as jnp
    >>> [round(x, 5) for x in balancedness_per_pair((jnp.eye(2), 2 * jnp.eye(2))).tolist()]  # 3 sqrt(2)
    [4.24264]
  """
  return jnp.stack([jnp.linalg.norm(b.T @ b - a @ a.T) for a, b in zip(weights[:-1], weights[1:])]
                   ) if len(weights) > 1 else jnp.zeros((0,), weights[0].dtype)


def balancedness(weights) -> jnp.ndarray:
  r"""The smallest :math:`\delta` for which the weights are :math:`\delta`-balanced:
  :math:`\max_j \|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F` (0 for depth 1).

  Example:
    >>> import jax.numpy as jnp
    >>> float(balancedness((jnp.eye(2), jnp.eye(2))))
    0.0

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Definition 1.
  """
  return jnp.max(balancedness_per_pair(weights), initial=0.0)


def deficiency_margin(weights, target) -> jnp.ndarray:
  r"""The deficiency margin :math:`\sigma_{\min}(\Phi) - \|W_{1:N} - \Phi\|_F` with respect to
  ``target`` :math:`\Phi` (positive: the end-to-end matrix has a margin of that size).

  :math:`\sigma_{\min}` is the smallest of the :math:`\min(d_0, d_N)` singular values of
  :math:`\Phi`.

  Example:
    >>> import jax.numpy as jnp
    >>> round(float(deficiency_margin((jnp.eye(2),), 2 * jnp.eye(2))), 6)  # 2 - sqrt(2)
    0.585786

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Definition 2.
  """
  return end_to_end_deficiency_margin(end_to_end(weights), target)


def end_to_end_deficiency_margin(w, target) -> jnp.ndarray:
  r""":func:`deficiency_margin` of an end-to-end matrix :math:`W` already formed:
  :math:`\sigma_{\min}(\Phi) - \|W - \Phi\|_F`; ``target`` must have the shape of ``w``.

  Example:
    >>> import jax.numpy as jnp
    >>> round(float(end_to_end_deficiency_margin(2 * jnp.eye(2), 3 * jnp.eye(2))), 6)  # 3 - sqrt(2)
    1.585786
  """
  target = jnp.asarray(target)
  if target.shape != w.shape or target.ndim != 2:
    raise ValueError(f"target has shape {target.shape}; it must be the (d_N, d_0) = {w.shape} "
                     "shape of the end-to-end matrix W_N ... W_1.")
  return jnp.linalg.svd(target, compute_uv=False)[-1] - jnp.linalg.norm(w - target)


def layer_singular_values(weights, method: str = "batched") -> tuple:
  r"""The singular values of every layer, each in descending order, a tuple of
  ``(min(d_j, d_{j-1}),)`` arrays.

  ``method="batched"`` (default) computes equal-shaped layers in one batched SVD call,
  ``method="exact"`` one call per layer; both give the same values, within
  :math:`O(\varepsilon)\,\sigma_{\max}` of the exact ones (see :mod:`lintraj.singular_values`).

  Example:
    >>> import jax.numpy as jnp
    >>> [s.tolist() for s in layer_singular_values((jnp.diag(jnp.array([1.0, 3.0])),))]
    [[3.0, 1.0]]
  """
  return singular_values(weights, method)


def end_to_end_singular_values(weights, method: str = "batched") -> jnp.ndarray:
  r"""The singular values of :math:`W_{1:N}`, descending, shape ``(min(d_0, d_N),)``.

  ``method`` as in :func:`layer_singular_values` (one matrix: both make one SVD call).

  Example:
    >>> import jax.numpy as jnp
    >>> end_to_end_singular_values((jnp.eye(2), 3 * jnp.eye(2))).tolist()
    [3.0, 3.0]
  """
  return singular_values((end_to_end(weights),), method)[0]

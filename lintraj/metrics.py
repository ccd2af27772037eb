r"""The quantities the trajectory theory is about: balancedness, deficiency margin, singular values.

All functions are pure and jittable; ``weights`` is ``(W_1, ..., W_N)``.
"""

from __future__ import annotations

import jax.numpy as jnp

from lintraj.network import end_to_end
from lintraj.singular_values import singular_values

__all__ = [
  "balancedness",
  "balancedness_per_pair",
  "deficiency_margin",
  "end_to_end_deficiency_margin",
  "layer_singular_values",
  "end_to_end_singular_values",
  "nuclear_norm",
  "schatten_norm",
  "effective_rank",
  "entry",
  "held_out_error",
  "target_alignment",
]


def balancedness_per_pair(weights) -> jnp.ndarray:
  r"""The imbalance of each adjacent pair, :math:`\|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F` for
  :math:`j = 1, \dots, N-1` (shape ``(N-1,)``).

  Under gradient flow :math:`C_j = W_{j+1}^\top W_{j+1} - W_j W_j^\top` is conserved
  (Arora, Cohen, Hazan 2018, Theorem 1).

  Example:
    >>> import jax.numpy as jnp
    >>> per_pair = balancedness_per_pair((jnp.eye(2), 2 * jnp.eye(2)))
    >>> [round(x, 5) for x in per_pair.tolist()]  # 3 sqrt(2)
    [4.24264]
  """
  return (
    jnp.stack([jnp.linalg.norm(b.T @ b - a @ a.T) for a, b in zip(weights[:-1], weights[1:])])
    if len(weights) > 1
    else jnp.zeros((0,), weights[0].dtype)
  )


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
    raise ValueError(
      f"target has shape {target.shape}; it must be the (d_N, d_0) = {w.shape} "
      "shape of the end-to-end matrix W_N ... W_1."
    )
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


# Ready metrics for ``metrics=`` of the run functions: functions of the weights tuple (or
# factories returning one), each recorded at every record as ``traj.metrics[name]``.


def nuclear_norm(weights) -> jnp.ndarray:
  r"""The nuclear norm :math:`\|W_{1:N}\|_* = \sum_i \sigma_i(W_{1:N})` of the end-to-end matrix.

  Example:
    >>> import jax.numpy as jnp
    >>> float(nuclear_norm((jnp.diag(jnp.array([3.0, 4.0])),)))
    7.0

  References:
    Gunasekar, Woodworth, Bhojanapalli, Neyshabur, Srebro. Implicit Regularization in Matrix
    Factorization. NeurIPS 2017 (the nuclear-norm conjecture).
  """
  return jnp.sum(end_to_end_singular_values(weights))


def schatten_norm(p: float):
  r"""A metric: the Schatten-:math:`p` quasi-norm :math:`(\sum_i \sigma_i^p)^{1/p}` of
  :math:`W_{1:N}` (:math:`p = 1`: nuclear, :math:`p = 2`: Frobenius; :math:`p < 1` the quasi-norms
  that Arora, Cohen, Hu, Luo 2019 compare with depth).

  Example:
    >>> import jax.numpy as jnp
    >>> float(schatten_norm(2.0)((jnp.diag(jnp.array([3.0, 4.0])),)))
    5.0

  References:
    Arora, Cohen, Hu, Luo. Implicit Regularization in Deep Matrix Factorization. NeurIPS 2019.
  """
  if isinstance(p, (str, bytes, bool)) or not float(p) > 0:
    raise ValueError(f"p must be a positive number; got {p!r}.")
  p = float(p)
  return lambda weights: jnp.sum(end_to_end_singular_values(weights) ** p) ** (1 / p)


def effective_rank(weights) -> jnp.ndarray:
  r"""The effective rank :math:`\exp(-\sum_i \rho_i \log \rho_i)`, :math:`\rho_i = \sigma_i /
  \sum_k \sigma_k`, of :math:`W_{1:N}` (1 for a rank-one matrix, :math:`r` for :math:`r` equal
  singular values).

  Example:
    >>> import jax.numpy as jnp
    >>> round(float(effective_rank((jnp.eye(3),))), 6)
    3.0

  References:
    Roy, Vetterli. The effective rank: a measure of effective dimensionality. EUSIPCO 2007;
    used for deep matrix factorization by Arora, Cohen, Hu, Luo, NeurIPS 2019.
  """
  s = end_to_end_singular_values(weights)
  rho = s / jnp.sum(s)
  return jnp.exp(-jnp.sum(jnp.where(rho > 0, rho * jnp.log(jnp.where(rho > 0, rho, 1)), 0)))


def entry(i: int, j: int):
  r"""A metric: the entry :math:`(W_{1:N})_{ij}` of the end-to-end matrix (Razin and Cohen
  follow one unobserved entry of a completion problem along the trajectory).

  Example:
    >>> import jax.numpy as jnp
    >>> float(entry(0, 1)((jnp.array([[1.0, 2.0]]),)))
    2.0

  References:
    Razin, Cohen. Implicit Regularization in Deep Learning May Not Be Explainable by Norms.
    NeurIPS 2020, Section 3.
  """
  i, j = int(i), int(j)
  return lambda weights: end_to_end(weights)[i, j]


def held_out_error(mask, values):
  r"""A metric: the root-mean-square error of :math:`W_{1:N}` on the entries where ``mask`` is
  true, against ``values`` (the test error of matrix completion on the unobserved entries,
  :math:`(\sum_{ij \in \Omega^c} (W_{ij} - M_{ij})^2 / |\Omega^c|)^{1/2}`).

  Example:
    >>> import jax.numpy as jnp
    >>> f = held_out_error(jnp.array([[True, False]]), jnp.array([[1.0, 5.0]]))
    >>> float(f((jnp.array([[3.0, 5.0]]),)))
    2.0

  References:
    Arora, Cohen, Hu, Luo. Implicit Regularization in Deep Matrix Factorization. NeurIPS 2019.
  """
  mask = jnp.asarray(mask, bool)
  values = jnp.asarray(values)
  if mask.shape != values.shape or not mask.any():
    raise ValueError(
      f"mask {mask.shape} and values {values.shape} must have one shape and the "
      "mask at least one held-out entry."
    )
  count = jnp.sum(mask)
  return lambda weights: jnp.sqrt(
    jnp.sum(jnp.where(mask, end_to_end(weights) - values, 0) ** 2) / count
  )


def target_alignment(target):
  r"""A metric: :math:`|u_i^\top W_{1:N} v_i|` for each singular pair :math:`(u_i, v_i)` of
  ``target`` (shape ``(r,)``): how far the trajectory has learned each mode of the target (Saxe,
  McClelland, Ganguli's mode strengths).

  Example:
    >>> import jax.numpy as jnp
    >>> f = target_alignment(jnp.diag(jnp.array([2.0, 1.0])))
    >>> f((0.5 * jnp.eye(2),)).tolist()
    [0.5, 0.5]

  References:
    Saxe, McClelland, Ganguli. Exact solutions to the nonlinear dynamics of learning in deep
    linear neural networks. ICLR 2014.
  """
  u, _, vt = jnp.linalg.svd(jnp.asarray(target), full_matrices=False)
  return lambda weights: jnp.abs(jnp.einsum("ir,ij,rj->r", u, end_to_end(weights), vt))

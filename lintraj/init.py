"""Initializations of deep linear networks: balanced (Procedure 1), Gaussian, residual, orthogonal.

Every initializer returns a plain tuple ``(W_1, ..., W_N)`` with ``W_j`` of shape
``(d_j, d_{j-1})`` for ``dims = (d_0, d_1, ..., d_N)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lintraj.network import as_float_array, default_float_dtype, end_to_end
from lintraj.validation import check_key, check_positive

__all__ = ["balanced", "gaussian", "residual", "orthogonal", "by_name", "with_determinant_sign"]


def _check_dims(dims: Sequence[int]) -> tuple[int, ...]:
  try:
    dims = tuple(int(d) for d in dims)
  except (TypeError, ValueError):
    raise ValueError(
      f"dims must be a sequence of positive integers (d_0, ..., d_N); got {dims!r}."
    ) from None
  if len(dims) < 2:
    raise ValueError(
      f"dims must list at least 2 widths (d_0, ..., d_N) for a network of depth >= 1; got {dims}. "
      "For example dims=(128, 32, 32, 1)."
    )
  if min(dims) < 1:
    raise ValueError(f"every width in dims must be >= 1; got {dims}.")
  return dims


def _check_std(std) -> float:
  return check_positive("std", std, allow_zero=True)


def _dtype(dtype):
  return default_float_dtype() if dtype is None else jnp.dtype(dtype)


def balanced(
  key, dims: Sequence[int], *, std: float | None = None, end_to_end=None, dtype=None
) -> tuple:
  r"""Balanced initialization (Procedure 1 of Arora et al. 2019).

  Draw :math:`A \in \mathbb{R}^{d_N \times d_0}` (iid :math:`\mathcal N(0, \mathrm{std}^2)`
  entries, or the given ``end_to_end``), take its SVD :math:`A = U S V^\top` with
  :math:`r = \min(d_0, d_N)` singular values, and set

  .. math::
     W_N \simeq U S^{1/N}, \quad W_j \simeq S^{1/N}\ (1 < j < N), \quad W_1 \simeq S^{1/N} V^\top,

  where :math:`\simeq` means equal up to zero padding. Then :math:`W_N \cdots W_1 = A` and
  :math:`W_{j+1}^\top W_{j+1} = W_j W_j^\top` for every :math:`j` (0-balanced).

  Args:
    key: a PRNG key (needed with ``std``; may be ``None`` with ``end_to_end``).
    dims: ``(d_0, d_1, ..., d_N)``; every hidden width must be ``>= min(d_0, d_N)``.
    std: standard deviation of the entries of the random end-to-end matrix.
    end_to_end: a given ``(d_N, d_0)`` end-to-end matrix instead of a random one.
    dtype: float dtype (default: float64 under ``jax.enable_x64(True)``, else float32).

  Returns:
    The weights ``(W_1, ..., W_N)``.

  Example:
    >>> import jax, lintraj as lt
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (4, 6, 5, 2), std=1.0)
    >>> [w.shape for w in ws]
    [(6, 4), (5, 6), (2, 5)]
    >>> bool(lt.metrics.balancedness(ws) < 1e-5)
    True

  References:
    Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019 (arXiv 1810.02281), Procedure 1 and Theorem 2.
  """
  dims = _check_dims(dims)
  if (std is None) == (end_to_end is None):
    raise ValueError(
      "pass exactly one of std= (random end-to-end matrix) or end_to_end= (a given matrix)."
    )
  depth, rank = len(dims) - 1, min(dims[0], dims[-1])
  if min(dims[1:-1], default=rank) < rank:
    raise ValueError(
      f"balanced init needs every hidden width >= min(d_0, d_N) = {rank} (no bottleneck); got dims "
      f"{dims}. Widen the hidden layers or use lintraj.init.gaussian."
    )
  if end_to_end is None:
    std = _check_std(std)
    if key is None:
      raise ValueError("balanced(std=...) needs a PRNG key, e.g. jax.random.PRNGKey(0).")
    a = std * jax.random.normal(check_key(key), (dims[-1], dims[0]), _dtype(dtype))
  else:
    a = as_float_array(end_to_end, "end_to_end", dtype)
    if a.shape != (dims[-1], dims[0]):
      raise ValueError(
        f"end_to_end has shape {a.shape}; it must be (d_N, d_0) = {(dims[-1], dims[0])}."
      )
  u, s, vt = jnp.linalg.svd(a, full_matrices=False)
  # Rounding-level singular values are exact zeros of a rank-deficient A: their N-th roots
  # would otherwise put O(eps^{1/N}) junk on the null modes of every layer.
  s = jnp.where(s > max(a.shape) * jnp.finfo(a.dtype).eps * s[0], s, 0.0)
  root = s ** (1.0 / depth)
  if depth == 1:
    return (a,)
  weights = []
  for j in range(1, depth + 1):
    w = jnp.zeros((dims[j], dims[j - 1]), a.dtype)
    if j == 1:
      w = w.at[:rank, :].set(root[:, None] * vt)
    elif j == depth:
      w = w.at[:, :rank].set(u * root[None, :])
    else:
      w = w.at[:rank, :rank].set(jnp.diag(root))
    weights.append(w)
  return tuple(weights)


def gaussian(key, dims: Sequence[int], *, std: float, dtype=None) -> tuple:
  r"""Layer-wise independent Gaussian initialization: every entry of every :math:`W_j` is
  iid :math:`\mathcal N(0, \mathrm{std}^2)`.

  Such inits are :math:`\delta`-balanced only with high probability for small std
  (Arora et al. 2019, Appendix B, Claim 2).

  Example:
    >>> import jax, lintraj as lt
    >>> ws = lt.init.gaussian(jax.random.PRNGKey(0), (3, 4, 2), std=0.1)
    >>> [w.shape for w in ws]
    [(4, 3), (2, 4)]

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Figure 1(a) and Appendix B.
  """
  dims, std = _check_dims(dims), _check_std(std)
  keys = jax.random.split(check_key(key), len(dims) - 1)
  return tuple(
    std * jax.random.normal(k, (dims[j + 1], dims[j]), _dtype(dtype)) for j, k in enumerate(keys)
  )


def residual(dims: Sequence[int], *, dtype=None) -> tuple:
  r"""Identity (residual) initialization: :math:`W_j = I` for every layer (equal widths).

  Example:
    >>> import lintraj as lt
    >>> lt.end_to_end(lt.init.residual((2, 2, 2))).tolist()
    [[1.0, 0.0], [0.0, 1.0]]

  References:
    Bartlett, Helmbold, Long. Gradient descent with identity initialization efficiently learns
    positive definite linear transformations by deep residual networks. ICML 2018.
  """
  dims = _check_dims(dims)
  if len(set(dims)) != 1:
    raise ValueError(
      f"residual init needs equal widths (every W_j square); got dims {dims}. "
      "Use lintraj.init.orthogonal or balanced for unequal widths."
    )
  return tuple(jnp.eye(dims[0], dtype=_dtype(dtype)) for _ in dims[1:])


def orthogonal(key, dims: Sequence[int], *, scale: float = 1.0, dtype=None) -> tuple:
  r"""Scaled random (semi-)orthogonal layers: :math:`W_j = \mathrm{scale}\, Q_j` with :math:`Q_j`
  Haar-distributed, orthonormal rows when :math:`d_j \le d_{j-1}` and orthonormal columns otherwise.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> (w,) = lt.init.orthogonal(jax.random.PRNGKey(0), (3, 3), scale=2.0)
    >>> bool(jnp.allclose(w @ w.T, 4 * jnp.eye(3), atol=1e-5))
    True

  References:
    Saxe, McClelland, Ganguli. Exact solutions to the nonlinear dynamics of learning in deep
    linear neural networks. ICLR 2014 (arXiv 1312.6120), Section 3.
  """
  dims = _check_dims(dims)
  scale = check_positive("scale", scale, allow_zero=True)
  init = jax.nn.initializers.orthogonal(scale)
  keys = jax.random.split(check_key(key), len(dims) - 1)
  return tuple(init(k, (dims[j + 1], dims[j]), _dtype(dtype)) for j, k in enumerate(keys))


_BY_NAME = {
  "balanced": lambda key, dims, std, dtype=None: balanced(key, dims, std=std, dtype=dtype),
  "gaussian": lambda key, dims, std, dtype=None: gaussian(key, dims, std=std, dtype=dtype),
  "orthogonal": lambda key, dims, std, dtype=None: orthogonal(key, dims, scale=std, dtype=dtype),
  "residual": lambda key, dims, std, dtype=None: residual(dims, dtype=dtype),
}


def by_name(name: str):
  """The initializer called ``name``, as a function ``init(key, dims, std, dtype=None) -> weights``.

  ``std`` is the std of :func:`balanced` and :func:`gaussian` and the ``scale`` of
  :func:`orthogonal`; :func:`residual` ignores ``key`` and ``std``. The names are ``balanced``,
  ``gaussian``, ``orthogonal`` and ``residual``.

  Example:
    >>> import jax, lintraj as lt
    >>> ws = lt.init.by_name("orthogonal")(jax.random.PRNGKey(0), (3, 3), 2.0)
    >>> round(float(ws[0][0] @ ws[0][0]), 4)   # a row of 2 Q: squared norm 4
    4.0
  """
  if not isinstance(name, str) or name not in _BY_NAME:
    raise ValueError(f"unknown init {name!r}; choose one of {', '.join(_BY_NAME)}.")
  return _BY_NAME[name]


def with_determinant_sign(
  name: str, key, dims: Sequence[int], *, std: float, sign: int, dtype=None, max_draws: int = 1000
) -> tuple:
  r"""The init ``name`` (see :func:`by_name`) drawn with keys ``fold_in(key, 0), fold_in(key, 1),
  ...`` until the end-to-end matrix's determinant has the sign ``sign`` (+1 or -1).

  Under gradient flow from a balanced start (depth :math:`N \ge 2`) the sign of
  :math:`\det W_{1:N}` never changes (Razin and Cohen 2020), so the sign of the start decides
  which solutions of a completion problem are reachable. Needs a square end-to-end matrix
  (``dims[0] == dims[-1]``).

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> ws = lt.init.with_determinant_sign("gaussian", jax.random.PRNGKey(0), (2, 2, 2), std=0.1,
    ...                                    sign=-1)
    >>> bool(jnp.linalg.det(lt.end_to_end(ws)) < 0)
    True

  References:
    Razin, Cohen. Implicit Regularization in Deep Learning May Not Be Explainable by Norms.
    NeurIPS 2020 (arXiv 2005.06398), Section 3 (inits resampled until the determinant is
    positive).
  """
  dims = _check_dims(dims)
  if dims[0] != dims[-1]:
    raise ValueError(
      f"the determinant needs a square end-to-end matrix; dims {dims} give {dims[-1]}x{dims[0]}."
    )
  if sign not in (1, -1):
    raise ValueError(f"sign must be +1 or -1; got {sign!r}.")
  draw = by_name(name)
  key = check_key(key)
  for i in range(max_draws):
    weights = draw(jax.random.fold_in(key, i), dims, std, dtype=dtype)
    if np.sign(np.linalg.det(np.asarray(end_to_end(weights), np.float64))) == sign:
      return weights
  raise ValueError(
    f"no draw of {max_draws} had a determinant of sign {sign}; raise max_draws or check the init."
  )

r"""Curvature of the network loss: the Hessian in the flattened weights, Hessian-vector products,
Lanczos extreme eigenvalues, the sharpness.

Everything here works on the network loss :math:`L^N(W_1, \dots, W_N) = L^1(W_N \cdots W_1)` as a
function of the **flattened weights**
:math:`\theta = (\mathrm{vec}\,W_1, \dots, \mathrm{vec}\,W_N)`, each :math:`W_j` raveled
row-major and the layers concatenated in order (``jax.flatten_util.ravel_pytree`` of the weight
tuple); :math:`P = \sum_j d_j d_{j-1}` parameters. Hessians are :math:`P \times P` in that order.

:func:`hessian` (dense, small networks), :func:`hvp` (matrix-free), :func:`top_eigenvalues` /
:func:`bottom_eigenvalues` (Lanczos with full reorthogonalisation, one compiled
``lax.fori_loop``), :func:`sharpness` (the top eigenvalue, jittable, for tracking along a run) and
:func:`hessian_extremes` (both ends from one Lanczos run). The recording layer imports this module
to track curvature along runs; users reach it as :mod:`lintraj.landscape`, which re-exports it.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from lintraj.losses import Loss, as_loss
from lintraj.network import check_weights, end_to_end
from lintraj.validation import check_int

__all__ = [
  "hessian",
  "hvp",
  "top_eigenvalues",
  "bottom_eigenvalues",
  "sharpness",
  "hessian_extremes",
]


def _check_network(weights, loss) -> tuple[tuple, Loss]:
  return check_weights(weights), as_loss(loss)


def _num_params(weights) -> int:
  return sum(math.prod(w.shape) for w in weights)


def _default_key(key):
  return jax.random.PRNGKey(0) if key is None else key


def _flat_function(weights, fn):
  """``(theta, unravel, f)`` with ``f(theta) = fn(unravel(theta))``, ``fn`` a function of the
  weights tuple."""
  flat, unravel = ravel_pytree(weights)
  return flat, unravel, lambda x: fn(unravel(x))


def _flat_loss(weights, loss):
  """``(theta, unravel, f)`` with ``f(theta) = L^1(end_to_end(unravel(theta)))``."""
  return _flat_function(weights, lambda ws: loss(end_to_end(ws)))


@jax.jit
def _dense_hessian(weights, loss):
  flat, _, f = _flat_loss(weights, loss)
  return jax.hessian(f)(flat)


def hessian(weights, loss) -> jnp.ndarray:
  r"""The dense Hessian :math:`\nabla^2_\theta L^N` of the network loss in the flattened weights.

  .. math::
     H_{ab} = \frac{\partial^2 L^1(W_N \cdots W_1)}{\partial \theta_a\, \partial \theta_b},
     \qquad \theta = (\mathrm{vec}\,W_1, \dots, \mathrm{vec}\,W_N)
     \ \text{(row-major, in layer order)}.

  Costs :math:`O(P^2)` memory: for small networks. For large ones use :func:`hvp`,
  :func:`top_eigenvalues` or :func:`bottom_eigenvalues`.

  Args:
    weights: ``(W_1, ..., W_N)``, ``W_j`` of shape ``(d_j, d_{j-1})``.
    loss: a :class:`lintraj.losses.Loss` or a jittable function of the end-to-end matrix.

  Returns:
    The symmetric ``(P, P)`` Hessian, ``P = sum_j d_j d_{j-1}``.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> ws = (jnp.zeros((1, 1)), jnp.zeros((1, 1)))        # scalar depth-2 net at the origin
    >>> hessian(ws, lt.losses.target(jnp.array([[2.0]]))).tolist()   # L = (w2 w1 - 2)^2 / 2
    [[0.0, -2.0], [-2.0, 0.0]]

  References:
    Kawaguchi. Deep Learning without Poor Local Minima. NeurIPS 2016 (arXiv 1605.07110),
    Theorem 2.3.
  """
  weights, loss = _check_network(weights, loss)
  return _dense_hessian(weights, loss)


@jax.jit
def _hvp_flat(weights, loss, vector):
  flat, _, f = _flat_loss(weights, loss)
  return jax.jvp(jax.grad(f), (flat,), (vector,))[1]


def hvp(weights, loss, v):
  r"""The Hessian-vector product :math:`H v` without forming :math:`H` (forward-over-reverse).

  .. math:: H v = \frac{d}{d\epsilon} \nabla_\theta L^N(\theta + \epsilon v) \Big|_{\epsilon = 0}.

  Args:
    weights: ``(W_1, ..., W_N)``.
    loss: a :class:`lintraj.losses.Loss` or a function of the end-to-end matrix.
    v: either a flat ``(P,)`` vector (ordered as :func:`hessian`) or a tuple shaped like
      ``weights``.

  Returns:
    :math:`H v` in the form of ``v`` (flat vector or weight-shaped tuple).

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> ws = (jnp.zeros((1, 1)), jnp.zeros((1, 1)))
    >>> hvp(ws, lt.losses.target(jnp.array([[2.0]])), jnp.array([1.0, 0.0])).tolist()
    [0.0, -2.0]
  """
  weights, loss = _check_network(weights, loss)
  flat, unravel = ravel_pytree(weights)
  if isinstance(v, (tuple, list)):
    shapes = [w.shape for w in weights]
    if len(v) != len(weights) or [jnp.shape(x) for x in v] != shapes:
      raise ValueError(
        f"v as a tuple must have the layer shapes {shapes}; got "
        f"{[jnp.shape(x) for x in v]}. Or pass a flat vector of size "
        f"{flat.shape[0]}."
      )
    return unravel(_hvp_flat(weights, loss, ravel_pytree(tuple(v))[0].astype(flat.dtype)))
  v = jnp.asarray(v, flat.dtype)
  if v.shape != flat.shape:
    raise ValueError(
      f"v must be a flat vector of shape {flat.shape} (all weights, row-major, in "
      f"layer order) or a tuple of the layer shapes; got shape {v.shape}."
    )
  return _hvp_flat(weights, loss, v)


def _orthogonalise(w, basis):
  """``w`` minus its projection on the rows of ``basis`` (classical Gram-Schmidt, twice)."""
  w = w - basis.T @ (basis @ w)
  return w - basis.T @ (basis @ w)


def _lanczos(matvec, start, num_iterations: int, key):
  r"""``num_iterations`` Lanczos steps with full reorthogonalisation, in one ``lax.fori_loop``.

  Returns ``(basis, alphas, betas)``: ``basis`` is ``(m + 1, P)`` with orthonormal rows
  :math:`v_1, \dots, v_{m+1}`, and :math:`H V_m = V_{m+1} \bar T_m` with :math:`\bar T_m` the
  ``(m + 1, m)`` tridiagonal matrix of diagonal ``alphas`` and off-diagonal ``betas``. On breakdown
  (an invariant Krylov space, e.g. :math:`H = 0`) the next vector is a random one orthogonal to the
  basis and its ``beta`` is 0, so the Ritz values stay those of an orthonormal projection.
  """
  size, dtype = start.shape[0], start.dtype
  eps, tiny = jnp.finfo(dtype).eps, jnp.finfo(dtype).tiny
  start_norm = jnp.linalg.norm(start)
  start = jnp.where(
    start_norm > 0,
    start / jnp.where(start_norm > 0, start_norm, 1.0),
    jax.random.normal(key, (size,), dtype) / math.sqrt(size),
  )
  basis = jnp.zeros((num_iterations + 1, size), dtype).at[0].set(start)
  alphas = jnp.zeros((num_iterations,), dtype)
  betas = jnp.zeros((num_iterations,), dtype)

  def restart(j, basis):
    fresh = _orthogonalise(jax.random.normal(jax.random.fold_in(key, j), (size,), dtype), basis)
    return fresh / jnp.maximum(jnp.linalg.norm(fresh), tiny)

  def body(j, carry):
    basis, alphas, betas, scale = carry
    v = basis[j]
    w = matvec(v)
    scale = jnp.maximum(scale, jnp.linalg.norm(w))
    alphas = alphas.at[j].set(jnp.vdot(v, w))
    w = _orthogonalise(w, basis)
    beta = jnp.linalg.norm(w)
    broke = beta <= size * eps * scale
    following = lax.cond(broke, lambda: restart(j, basis), lambda: w / jnp.where(broke, 1.0, beta))
    betas = betas.at[j].set(jnp.where(broke, 0.0, beta))
    return basis.at[j + 1].set(following), alphas, betas, scale

  carry = jax.tree_util.tree_map(
    lambda c: _varying_like(c, start), (basis, alphas, betas, jnp.zeros((), dtype))
  )
  basis, alphas, betas, _ = lax.fori_loop(0, num_iterations, body, carry)
  return basis, alphas, betas


def _tridiagonal(alphas, betas):
  off = betas[:-1]
  return jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)


def _varying_like(x, like):
  """``x`` typed as varying over the mesh axes ``like`` varies over (inside ``shard_map``, e.g. a
  sharded sweep tracking the sharpness, a random vector must vary like the weights it meets)."""

  def varying(a):
    return getattr(getattr(jax.typeof(a), "manual_axis_type", None), "varying", frozenset())

  missing = tuple(sorted(varying(like) - varying(x)))
  return lax.pcast(x, missing, to="varying") if missing else x


def _random_start_ritz_values(matvec, flat, key, num_iterations):
  """The Ritz values (ascending) of ``num_iterations`` Lanczos steps on ``matvec`` (the Hessian at
  ``flat``) from a random start."""
  start_key, restart_key = jax.random.split(key)
  start = _varying_like(jax.random.normal(start_key, flat.shape, flat.dtype), flat)
  _, alphas, betas = _lanczos(matvec, start, num_iterations, restart_key)
  return jnp.linalg.eigvalsh(_tridiagonal(alphas, betas))


@functools.partial(jax.jit, static_argnames=("num_iterations",))
def _ritz_values(weights, loss, key, num_iterations):
  """The Ritz values (ascending) of ``num_iterations`` Lanczos steps on the Hessian."""
  flat, _, f = _flat_loss(weights, loss)
  _, matvec = jax.linearize(jax.grad(f), flat)
  return _random_start_ritz_values(matvec, flat, key, num_iterations)


def _default_iterations(k: int, size: int) -> int:
  return min(size, max(2 * k + 40, 60))


def _spectrum(weights, loss, k, method, num_iterations, key):
  """Ascending: the Ritz values of a Lanczos run fit for the ``k`` extreme eigenvalues at either
  end, or the whole spectrum (``method="dense"``)."""
  weights, loss = _check_network(weights, loss)
  size = _num_params(weights)
  k = check_int("k", k, 1, size)
  if method == "dense":
    return jnp.linalg.eigvalsh(_dense_hessian(weights, loss))
  if method == "lanczos":
    if num_iterations is None:
      num_iterations = _default_iterations(k, size)
    num_iterations = min(check_int("num_iterations", num_iterations, k), size)
    return _ritz_values(weights, loss, _default_key(key), num_iterations)
  raise ValueError(
    f"method must be 'lanczos' (matrix-free) or 'dense' (eigvalsh of the dense "
    f"Hessian, small networks); got {method!r}."
  )


def _extreme_eigenvalues(weights, loss, k, method, num_iterations, key, largest: bool):
  values = _spectrum(weights, loss, k, method, num_iterations, key)
  return values[::-1][:k] if largest else values[:k]


def top_eigenvalues(
  weights, loss, k: int, *, method: str = "lanczos", num_iterations: int | None = None, key=None
) -> jnp.ndarray:
  r"""The ``k`` largest eigenvalues of the Hessian of the network loss, in descending order.

  With ``method="lanczos"`` (default) the Hessian is never formed: ``num_iterations`` = :math:`m`
  steps of Lanczos on :math:`v \mapsto H v` with full reorthogonalisation of every new vector
  against all previous ones (classical Gram-Schmidt, twice), in one compiled ``lax.fori_loop``;
  the result is the top ``k`` Ritz values, the eigenvalues of the :math:`m \times m` tridiagonal

  .. math::
     T_m = V_m^\top H V_m, \qquad
     V_m = [v_1, \dots, v_m] \text{ orthonormal Krylov basis of } (H, v_1).

  They converge to the extreme eigenvalues first; :math:`m = P` gives the exact spectrum.
  ``method="dense"`` takes ``eigvalsh`` of :func:`hessian`. Jittable (``k`` and
  ``num_iterations`` are static); the same shapes never recompile.

  Args:
    weights: ``(W_1, ..., W_N)``.
    loss: a :class:`lintraj.losses.Loss` or a function of the end-to-end matrix.
    k: how many eigenvalues, ``1 <= k <= P``.
    method: ``"lanczos"`` or ``"dense"``.
    num_iterations: Lanczos steps :math:`m \ge k` (capped at :math:`P`); default
      ``min(P, max(2k + 40, 60))``.
    key: PRNG key of the random start vector (default ``PRNGKey(0)``).

  Returns:
    ``(k,)`` eigenvalues, largest first.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> ws = (jnp.zeros((2, 2)), jnp.zeros((2, 2)))        # depth 2 at the origin: -+ sigma_i(Phi)
    >>> phi = jnp.diag(jnp.array([3.0, 1.0]))
    >>> [round(float(x), 4) for x in top_eigenvalues(ws, lt.losses.target(phi), 2)]
    [3.0, 3.0]

  References:
    Lanczos (1950); Golub and Van Loan, Matrix Computations, 4th ed., Section 10.1 (full
    reorthogonalisation); Ghorbani, Krishnan, Xiao. An Investigation into Neural Net Optimization
    via Hessian Eigenvalue Density. ICML 2019.
  """
  return _extreme_eigenvalues(weights, loss, k, method, num_iterations, key, largest=True)


def bottom_eigenvalues(
  weights, loss, k: int, *, method: str = "lanczos", num_iterations: int | None = None, key=None
) -> jnp.ndarray:
  r"""The ``k`` smallest eigenvalues of the Hessian of the network loss, in ascending order.

  Same algorithm and arguments as :func:`top_eigenvalues` (Lanczos with full reorthogonalisation,
  the bottom Ritz values of :math:`T_m = V_m^\top H V_m`). A negative value means a direction of
  negative curvature: the point is not a minimum.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> ws = (jnp.zeros((2, 2)), jnp.zeros((2, 2)))
    >>> phi = jnp.diag(jnp.array([3.0, 1.0]))
    >>> [round(float(x), 4) for x in bottom_eigenvalues(ws, lt.losses.target(phi), 3)]
    [-3.0, -3.0, -1.0]

  References:
    Golub and Van Loan, Matrix Computations, 4th ed., Section 10.1; Kawaguchi. Deep Learning
    without Poor Local Minima. NeurIPS 2016 (arXiv 1605.07110), Theorem 2.3 (the origin is a
    saddle; at depth 2 the Hessian there has the eigenvalues :math:`\mp \sigma_i(\Phi)`, derived
    from its block form and checked in tests/test_landscape.py).
  """
  return _extreme_eigenvalues(weights, loss, k, method, num_iterations, key, largest=False)


def sharpness(weights, loss, *, num_iterations: int | None = None, key=None) -> jnp.ndarray:
  r"""The sharpness :math:`\lambda_{\max}(\nabla^2 L^N)`: the top Hessian eigenvalue, matrix-free.

  Gradient descent with step :math:`\eta` is stable on a quadratic only while
  :math:`\lambda_{\max} < 2/\eta`; along many runs the sharpness rises to :math:`2/\eta` (edge of
  stability). On deep linear networks the per-step sharpness then alternates on both sides of
  :math:`2/\eta`; its two-step mean stays within 1% of :math:`2/\eta` while an unbalanced start
  rebalances, but sits 1-40% above it on the orbits of runs that cannot converge (the
  ``edge-of-stability`` reproduction). Jittable: call it inside a compiled loop to track it.
  Lanczos as in :func:`top_eigenvalues` (default ``min(P, 60)`` steps).

  At a balanced global minimum of :math:`\tfrac12\|W - \Phi\|_F^2` the residual is zero, so
  :math:`H = J^\top J` has the nonzero spectrum of the end-to-end preconditioner (Arora, Cohen,
  Hazan 2018): the sharpness is :math:`N \sigma_{\max}(\Phi)^{2 - 2/N}` [derived here; checked in
  tests/test_landscape.py for :math:`N = 2, 3, 4`], so GD is stable there only if
  :math:`\eta < 2 / (N \sigma_{\max}^{2 - 2/N})`.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> phi = jnp.array([[2.0]])
    >>> ws = (jnp.ones((1, 1)) * 2 ** 0.5, jnp.ones((1, 1)) * 2 ** 0.5)  # balanced global minimum
    >>> round(float(sharpness(ws, lt.losses.target(phi))), 4)   # ||(w2, w1)||^2 = 4
    4.0

  References:
    Cohen, Kaur, Li, Kolter, Talwalkar. Gradient Descent on Neural Networks Typically Occurs at
    the Edge of Stability. ICLR 2021 (arXiv 2103.00065), Section 3.
  """
  return top_eigenvalues(weights, loss, 1, num_iterations=num_iterations, key=key)[0]


def hessian_extremes(weights, loss, *, num_iterations: int | None = None, key=None) -> jnp.ndarray:
  r"""The smallest and the largest Hessian eigenvalue, :math:`(\lambda_{\min}, \lambda_{\max})`,
  from one Lanczos run (the extreme Ritz values converge first; see :func:`top_eigenvalues`).

  :math:`\lambda_{\max}` is the :func:`sharpness`; :math:`\lambda_{\min} < 0` means a direction of
  negative curvature (a saddle's escape direction), the quantity to watch along a run that passes
  near one. Jittable; tracked along runs by ``track=("sharpness", "min_hessian_eigenvalue")``.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> ws = (jnp.zeros((2, 2)), jnp.zeros((2, 2)))        # depth 2 at the origin: -+ sigma_i(Phi)
    >>> phi = jnp.diag(jnp.array([3.0, 1.0]))
    >>> [round(float(x), 4) for x in hessian_extremes(ws, lt.losses.target(phi))]
    [-3.0, 3.0]

  References:
    Golub and Van Loan, Matrix Computations, 4th ed., Section 10.1; Dauphin et al. Identifying and
    attacking the saddle point problem in high-dimensional non-convex optimization. NeurIPS 2014.
  """
  values = _spectrum(weights, loss, 1, "lanczos", num_iterations, key)
  return jnp.stack([values[0], values[-1]])

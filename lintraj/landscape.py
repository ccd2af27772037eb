r"""The loss landscape of deep linear networks: Hessians, spectra, critical points, saddle escape.

Everything here works on the network loss :math:`L^N(W_1, \dots, W_N) = L^1(W_N \cdots W_1)` as a
function of the **flattened weights** :math:`\theta = (\mathrm{vec}\,W_1, \dots, \mathrm{vec}\,W_N)`,
each :math:`W_j` raveled row-major and the layers concatenated in order (``jax.flatten_util.ravel_pytree``
of the weight tuple); :math:`P = \sum_j d_j d_{j-1}` parameters. Hessians are :math:`P \times P` in
that order.

- Curvature: :func:`hessian` (dense, small networks), :func:`hvp` (matrix-free),
  :func:`top_eigenvalues` / :func:`bottom_eigenvalues` (Lanczos with full reorthogonalisation, one
  compiled loop), :func:`sharpness` (the top eigenvalue, jittable, for tracking along a run) and
  :func:`hessian_extremes` (both ends from one Lanczos run).
- Critical points: :func:`classify`, :func:`gradient_flatness`, the deep linear autoencoder
  (:func:`autoencoder_loss`, :func:`autoencoder_critical_points`, every analytic critical point), and
  three finders, each one compiled ``lax.scan``: :func:`gradient_norm_descent`, :func:`newton_mr`,
  :func:`damped_newton`.
- Saddle escape as optax update rules usable with :func:`lintraj.train`:
  :func:`perturbed_gradient_descent` and :func:`saddle_free_newton`.

Use float64 (``with jax.enable_x64(True):``) for critical points: the tolerances of Frye et al.
(:math:`\|\nabla L\|^2 < 10^{-10}`) are below float32 resolution.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from lintraj.losses import Loss, as_loss
from lintraj.network import as_float_array, check_weights, end_to_end
from lintraj.validation import check_int, check_positive

__all__ = [
    "hessian", "hvp", "top_eigenvalues", "bottom_eigenvalues", "sharpness", "hessian_extremes",
    "Classification", "classify", "GradientFlatness", "gradient_flatness",
    "autoencoder_loss", "AutoencoderCriticalPoints", "autoencoder_critical_points",
    "CriticalPointSearch", "gradient_norm_descent", "newton_mr", "damped_newton",
    "PerturbedGradientDescentState", "perturbed_gradient_descent", "saddle_free_newton",
]

# classify's probe: radii as multiples of probe_radius (higher-order descent shows at some scale),
# and its projected gradient steps on each sphere: count, first angle, decay per step.
_PROBE_SCALES = (1.0, 0.1, 0.01)
_PROBE_STEPS = 50
_PROBE_ANGLE = 0.3
_PROBE_DECAY = 0.92
# Armijo sufficient-decrease constant of the line searches, and their largest number of halvings.
_ARMIJO = 1e-4
_MAX_HALVINGS = 60


# ----------------------------------------------------------------------------- validation


def _check_network(weights, loss) -> tuple[tuple, Loss]:
  return check_weights(weights), as_loss(loss)


def _num_params(weights) -> int:
  return sum(math.prod(w.shape) for w in weights)


def _check_steps(steps) -> int:
  """A finder's iteration count: an integer >= 0."""
  return check_int("steps", steps, 0)


def _default_key(key):
  return jax.random.PRNGKey(0) if key is None else key


# ----------------------------------------------------------------------------- curvature


def _flat_loss(weights, loss):
  """``(theta, unravel, f)`` with ``f(theta) = L^1(end_to_end(unravel(theta)))``."""
  flat, unravel = ravel_pytree(weights)
  return flat, unravel, lambda x: loss(end_to_end(unravel(x)))


@jax.jit
def _dense_hessian(weights, loss):
  flat, _, f = _flat_loss(weights, loss)
  return jax.hessian(f)(flat)


def hessian(weights, loss) -> jnp.ndarray:
  r"""The dense Hessian :math:`\nabla^2_\theta L^N` of the network loss in the flattened weights.

  .. math::
     H_{ab} = \frac{\partial^2 L^1(W_N \cdots W_1)}{\partial \theta_a\, \partial \theta_b},
     \qquad \theta = (\mathrm{vec}\,W_1, \dots, \mathrm{vec}\,W_N)\ \text{(row-major, in layer order)}.

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
    Kawaguchi. Deep Learning without Poor Local Minima. NeurIPS 2016 (arXiv 1605.07110), Theorem 2.3.
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
    v: either a flat ``(P,)`` vector (ordered as :func:`hessian`) or a tuple shaped like ``weights``.

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
      raise ValueError(f"v as a tuple must have the layer shapes {shapes}; got "
                       f"{[jnp.shape(x) for x in v]}. Or pass a flat vector of size {flat.shape[0]}.")
    return unravel(_hvp_flat(weights, loss, ravel_pytree(tuple(v))[0].astype(flat.dtype)))
  v = jnp.asarray(v, flat.dtype)
  if v.shape != flat.shape:
    raise ValueError(f"v must be a flat vector of shape {flat.shape} (all weights, row-major, in layer "
                     f"order) or a tuple of the layer shapes; got shape {v.shape}.")
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
  start = jnp.where(start_norm > 0, start / jnp.where(start_norm > 0, start_norm, 1.0),
                    jax.random.normal(key, (size,), dtype) / math.sqrt(size))
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
    return (basis.at[j + 1].set(following), alphas, betas.at[j].set(jnp.where(broke, 0.0, beta)), scale)

  carry = jax.tree_util.tree_map(lambda c: _varying_like(c, start), (basis, alphas, betas, jnp.zeros((), dtype)))
  basis, alphas, betas, _ = lax.fori_loop(0, num_iterations, body, carry)
  return basis, alphas, betas


def _tridiagonal(alphas, betas):
  off = betas[:-1]
  return jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)


def _varying_like(x, like):
  """``x`` typed as varying over the mesh axes ``like`` varies over (inside ``shard_map``, e.g. a
  sharded sweep tracking the sharpness, a random vector must vary like the weights it meets)."""
  varying = lambda a: getattr(getattr(jax.typeof(a), "manual_axis_type", None), "varying", frozenset())
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
  raise ValueError(f"method must be 'lanczos' (matrix-free) or 'dense' (eigvalsh of the dense "
                   f"Hessian, small networks); got {method!r}.")


def _extreme_eigenvalues(weights, loss, k, method, num_iterations, key, largest: bool):
  values = _spectrum(weights, loss, k, method, num_iterations, key)
  return values[::-1][:k] if largest else values[:k]


def top_eigenvalues(weights, loss, k: int, *, method: str = "lanczos", num_iterations: int | None = None,
                    key=None) -> jnp.ndarray:
  r"""The ``k`` largest eigenvalues of the Hessian of the network loss, in descending order.

  With ``method="lanczos"`` (default) the Hessian is never formed: ``num_iterations`` = :math:`m`
  steps of Lanczos on :math:`v \mapsto H v` with full reorthogonalisation of every new vector
  against all previous ones (classical Gram-Schmidt, twice), in one compiled ``lax.fori_loop``;
  the result is the top ``k`` Ritz values, the eigenvalues of the :math:`m \times m` tridiagonal

  .. math:: T_m = V_m^\top H V_m, \qquad V_m = [v_1, \dots, v_m] \text{ orthonormal Krylov basis of } (H, v_1).

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


def bottom_eigenvalues(weights, loss, k: int, *, method: str = "lanczos",
                       num_iterations: int | None = None, key=None) -> jnp.ndarray:
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
    Golub and Van Loan, Matrix Computations, 4th ed., Section 10.1; THEORY.md "Landscape facts"
    (depth 2 at the origin: eigenvalues :math:`\mp \sigma_i(\Phi)`).
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


# ----------------------------------------------------------------------------- classification


def _check_points(weights) -> tuple[tuple, bool, int]:
  """``(weights, batched, P)``: one network, or a batch (every layer with a leading batch axis)."""
  batched = (isinstance(weights, Sequence) and len(weights) > 0 and all(jnp.ndim(w) == 3 for w in weights))
  if batched:
    weights = tuple(jnp.asarray(w) for w in weights)
    return weights, True, _num_params(check_weights(tuple(w[0] for w in weights)))
  weights = check_weights(weights)
  return weights, False, _num_params(weights)


@functools.lru_cache(maxsize=None)
def _compiled(function, batched: bool, static: tuple):
  """``function(weights, args, **static)`` jitted, vmapped over the weights when ``batched``; cached,
  so repeated calls with the same shapes reuse one compiled program."""
  bound = functools.partial(function, **dict(static))
  return jax.jit(jax.vmap(bound, in_axes=(0, None)) if batched else bound)




class Classification(NamedTuple):
  r"""What :func:`classify` found at a point (arrays with a leading batch axis for batched weights).

  Attributes:
    verdict: ``"minimum"``, ``"strict saddle"``, ``"non-strict saddle"`` or ``"not critical"``
      (a NumPy array of those strings for batched weights).
    loss: :math:`L^N` at the point.
    squared_grad_norm: :math:`\|\nabla_\theta L^N\|^2`.
    index: the fraction of Hessian eigenvalues :math:`< -\mathrm{eig\_tol}` (Frye et al.).
    num_negative: how many eigenvalues are :math:`< -\mathrm{eig\_tol}`.
    num_near_zero: how many satisfy :math:`|\lambda| \le \mathrm{eig\_tol}`.
    min_eigenvalue, max_eigenvalue: the extreme Hessian eigenvalues.
    probe_decrease: the largest drop of the loss below its first-order model that the probe found
      on small spheres around the point, started in the near-null space of the Hessian
      (higher-order descent; > 0 beyond rounding at a non-strict saddle; 0 when no eigenvalue is
      near zero).
  """

  verdict: Any
  loss: Any
  squared_grad_norm: Any
  index: Any
  num_negative: Any
  num_near_zero: Any
  min_eigenvalue: Any
  max_eigenvalue: Any
  probe_decrease: Any


def _probe_decrease(f, flat, value, grad, starts, radii):
  r"""The largest drop :math:`\max -h` found by minimising
  :math:`h(d) = L(\theta + t d) - L(\theta) - t\, g^\top d` over unit vectors :math:`d`, by
  normalised projected gradient steps on the sphere from each start, at each radius :math:`t`."""
  tiny = jnp.finfo(flat.dtype).tiny

  def above_tangent(t, d):
    return f(flat + t * d) - value - t * (grad @ d)

  def minimise(t, d):
    def body(k, state):
      d, lowest = state
      h, slope = jax.value_and_grad(functools.partial(above_tangent, t))(d)
      tangent = slope - (slope @ d) * d
      d = d - _PROBE_ANGLE * _PROBE_DECAY ** k * tangent / jnp.maximum(jnp.linalg.norm(tangent), tiny)
      return d / jnp.linalg.norm(d), jnp.minimum(lowest, h)

    d, lowest = lax.fori_loop(0, _PROBE_STEPS, body, (d, above_tangent(t, d)))
    return jnp.minimum(lowest, above_tangent(t, d))

  return -jnp.min(jax.vmap(lambda t: jax.vmap(functools.partial(minimise, t))(starts))(radii))


def _classification_numbers(weights, args, num_probes):
  loss, eig_tol, probe_radius, key = args
  flat, _, f = _flat_loss(weights, loss)
  value, grad = jax.value_and_grad(f)(flat)
  eigenvalues, eigenvectors = jnp.linalg.eigh(jax.hessian(f)(flat))
  near_zero = jnp.abs(eigenvalues) <= eig_tol
  # Random unit starts in the span of the near-null eigenvectors (the first one if there are none:
  # its result is then discarded).
  mask = jnp.where(jnp.any(near_zero), near_zero, jnp.arange(flat.shape[0]) == 0)
  coordinates = jax.random.normal(key, (num_probes, flat.shape[0]), flat.dtype) @ eigenvectors
  starts = (coordinates * mask[None, :]) @ eigenvectors.T
  starts = starts / jnp.linalg.norm(starts, axis=1, keepdims=True)
  radii = probe_radius * jnp.asarray(_PROBE_SCALES, flat.dtype)
  decrease = _probe_decrease(f, flat, value, grad, starts, radii)
  return dict(
      loss=value,
      squared_grad_norm=grad @ grad,
      num_negative=jnp.sum(eigenvalues < -eig_tol),
      num_near_zero=jnp.sum(near_zero),
      min_eigenvalue=eigenvalues[0],
      max_eigenvalue=eigenvalues[-1],
      probe_decrease=jnp.where(jnp.any(near_zero), decrease, 0.0),
  )




def classify(weights, loss, *, grad_tol: float = 1e-10, eig_tol: float = 1e-5,
             probe_radius: float = 0.1, num_probes: int = 32, key=None) -> Classification:
  r"""Classify a point of the landscape from its gradient, Hessian spectrum and a higher-order probe.

  With :math:`g = \nabla_\theta L^N`, :math:`H = \nabla^2_\theta L^N` (dense) and eigenvalues
  :math:`\lambda_1 \le \dots \le \lambda_P`:

  - ``"not critical"`` if :math:`\|g\|^2 \ge \mathrm{grad\_tol}` (Frye et al. count a point
    critical when :math:`\|g\|^2 < 10^{-10}`);
  - ``"strict saddle"`` if :math:`\lambda_1 < -\mathrm{eig\_tol}` (a negative-curvature direction;
    a local maximum would land here too, deep linear networks have none);
  - otherwise the second-order test is inconclusive when some :math:`|\lambda| \le
    \mathrm{eig\_tol}`. The probe looks for higher-order descent: on spheres of radius
    :math:`t \in \mathrm{probe\_radius}\cdot\{1, 0.1, 0.01\}` it minimises
    :math:`h(d) = L(\theta + t d) - L(\theta) - t\, g^\top d` over unit :math:`d` (50 normalised
    projected gradient steps) from ``num_probes`` random starts in the span of the near-null
    eigenvectors, and reports :math:`\max(-h)`. A drop beyond rounding
    (:math:`100\,\epsilon_{\mathrm{mach}} (1 + |L|)`) means ``"non-strict saddle"`` (e.g. the origin
    at depth :math:`\ge 3`). Else ``"minimum"``.

  The index is :math:`\#\{\lambda_i < -\mathrm{eig\_tol}\} / P` (Frye et al. 2019). The probe is a
  search, not a proof: a non-strict saddle whose descent directions the probes miss reads as a
  minimum. It found the descent at every non-strict saddle in tests/test_landscape.py (origin at
  depth 3 and 4, rank-deficient autoencoder points at depth 3). Use float64.

  Args:
    weights: ``(W_1, ..., W_N)``, or a batch: every layer with a leading batch axis ``(B, d_j, d_{j-1})``.
    loss: a :class:`lintraj.losses.Loss` or a function of the end-to-end matrix.
    grad_tol: threshold on :math:`\|g\|^2`.
    eig_tol: eigenvalues with :math:`|\lambda| \le` ``eig_tol`` count as zero.
    probe_radius: the largest probe radius (absolute, in the flattened weights).
    num_probes: random starts per radius.
    key: PRNG key of the probes (default ``PRNGKey(0)``).

  Returns:
    A :class:`Classification`.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> phi = jnp.array([[1.0, 0.0], [0.0, 0.5]])
    >>> with jax.enable_x64(True):
    ...   origin2 = tuple(jnp.zeros((2, 2), jnp.float64) for _ in range(2))
    ...   origin3 = tuple(jnp.zeros((2, 2), jnp.float64) for _ in range(3))
    ...   print(classify(origin2, lt.losses.target(phi)).verdict,
    ...         "|", classify(origin3, lt.losses.target(phi)).verdict)
    strict saddle | non-strict saddle

  References:
    Frye, Wadia, DeWeese, Bouchard. Numerically Recovering the Critical Points of a Deep Linear
    Autoencoder. arXiv 1901.10603 (2019), Section 2 (criticality and index). Kawaguchi. Deep
    Learning without Poor Local Minima. NeurIPS 2016, Theorem 2.3 (iv) (saddles without negative
    curvature for depth >= 3).
  """
  loss = as_loss(loss)
  grad_tol = check_positive("grad_tol", grad_tol)
  eig_tol = check_positive("eig_tol", eig_tol, allow_zero=True)
  probe_radius = check_positive("probe_radius", probe_radius)
  num_probes = check_int("num_probes", num_probes, 1)
  weights, batched, size = _check_points(weights)
  numbers = _compiled(_classification_numbers, batched, (("num_probes", num_probes),))(
      weights, (loss, eig_tol, probe_radius, _default_key(key)))
  host = {name: np.asarray(value) for name, value in numbers.items()}
  rounding = 100 * np.finfo(host["loss"].dtype).eps * (1 + np.abs(host["loss"]))
  verdict = np.where(host["squared_grad_norm"] >= grad_tol, "not critical",
                     np.where(host["num_negative"] > 0, "strict saddle",
                              np.where(host["probe_decrease"] > rounding, "non-strict saddle", "minimum")))
  return Classification(verdict=verdict if batched else str(verdict), index=host["num_negative"] / size,
                        **numbers)


class GradientFlatness(NamedTuple):
  r"""The gradient-flat diagnostic of :func:`gradient_flatness`.

  Attributes:
    ratio: :math:`\|H g\| / (\|H\|_2 \|g\|)` in :math:`[0, 1]`.
    squared_grad_norm: :math:`\|g\|^2`.
    gradient_flat: ``ratio < flat_tol`` while :math:`\|g\|^2 \ge` ``grad_tol``.
  """

  ratio: Any
  squared_grad_norm: Any
  gradient_flat: Any


def _flatness_numbers(weights, args, num_iterations):
  loss, flat_tol, grad_tol, key = args
  flat, _, f = _flat_loss(weights, loss)
  grad, matvec = jax.linearize(jax.grad(f), flat)
  ritz = _random_start_ritz_values(matvec, flat, key, num_iterations)
  spectral_norm = jnp.maximum(jnp.abs(ritz[0]), jnp.abs(ritz[-1]))
  grad_norm = jnp.linalg.norm(grad)
  denominator = spectral_norm * grad_norm
  ratio = jnp.where(denominator > 0, jnp.linalg.norm(matvec(grad)) / jnp.where(denominator > 0, denominator, 1.0),
                    0.0)
  squared = grad_norm ** 2
  return GradientFlatness(ratio=ratio, squared_grad_norm=squared,
                          gradient_flat=(ratio < flat_tol) & (squared >= grad_tol))


def gradient_flatness(weights, loss, *, flat_tol: float = 1e-3, grad_tol: float = 1e-10,
                      num_iterations: int | None = None, key=None) -> GradientFlatness:
  r"""The gradient-flat diagnostic of Frye et al. (2020): is the gradient nearly in the Hessian's kernel?

  .. math:: r = \frac{\|H g\|}{\|H\|_2\, \|g\|}, \qquad g = \nabla_\theta L^N,\ H = \nabla^2_\theta L^N .

  Critical-point finders minimise :math:`\tfrac12\|g\|^2`, whose gradient is :math:`H g`; where
  :math:`H g = 0` but :math:`g \ne 0` they stall at a point that is not critical (the loss is
  locally linear along :math:`g`). The point is *gradient-flat* when :math:`r <` ``flat_tol`` while
  :math:`\|g\|^2 \ge` ``grad_tol``. :math:`\|H\|_2 = \max(|\lambda_{\max}|, |\lambda_{\min}|)` comes
  from Lanczos (matrix-free, as :func:`top_eigenvalues`); :math:`r = 0` when :math:`H g = 0` or
  :math:`g = 0`.

  Args:
    weights: ``(W_1, ..., W_N)``, or a batch: every layer with a leading batch axis.
    loss: a :class:`lintraj.losses.Loss` or a function of the end-to-end matrix.
    flat_tol: threshold on the ratio.
    grad_tol: threshold on :math:`\|g\|^2` below which the point counts as critical, not flat.
    num_iterations: Lanczos steps for :math:`\|H\|_2` (default ``min(P, 60)``).
    key: PRNG key of the Lanczos start (default ``PRNGKey(0)``).

  Returns:
    A :class:`GradientFlatness` (arrays with a leading batch axis for a batch).

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> def tilted(w): return w[0, 0] + 0.5 * w[0, 1] ** 2   # linear along w11: gradient-flat
    >>> out = gradient_flatness((jnp.zeros((1, 2)),), tilted)
    >>> float(out.ratio), bool(out.gradient_flat)
    (0.0, True)

  References:
    Frye, Simon, Wadia, Ligeralde, DeWeese, Bouchard. Critical Point-Finding Methods Reveal
    Gradient-Flat Regions of Deep Network Losses. Neural Computation 33 (2021), arXiv 2003.10397,
    Section 3.
  """
  loss = as_loss(loss)
  flat_tol = check_positive("flat_tol", flat_tol)
  grad_tol = check_positive("grad_tol", grad_tol)
  weights, batched, size = _check_points(weights)
  num_iterations = min(check_int("num_iterations", num_iterations, 1), size) if num_iterations is not None \
      else _default_iterations(1, size)
  return _compiled(_flatness_numbers, batched, (("num_iterations", num_iterations),))(
      weights, (loss, flat_tol, grad_tol, _default_key(key)))


# ----------------------------------------------------------------------------- the deep linear autoencoder


def _reconstruction_error(w, cov):
  residual = jnp.eye(cov.shape[0], dtype=w.dtype) - w
  return 0.5 * jnp.sum((residual @ cov) * residual)


def _check_covariance(cov) -> jnp.ndarray:
  cov = as_float_array(cov, "cov")
  if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
    raise ValueError(f"cov must be a square (n, n) covariance matrix; got shape {cov.shape}.")
  host = np.asarray(cov, np.float64)
  scale = max(np.max(np.abs(host)), np.finfo(np.float64).tiny)
  if np.max(np.abs(host - host.T)) > 1e-6 * scale:
    raise ValueError("cov must be symmetric; symmetrise it with (cov + cov.T) / 2.")
  if np.linalg.eigvalsh((host + host.T) / 2)[0] < -1e-6 * scale:
    raise ValueError("cov must be positive semidefinite (a covariance, e.g. x.T @ x / m).")
  return cov


def autoencoder_loss(cov) -> Loss:
  r"""The linear autoencoder loss of the end-to-end matrix :math:`W` (``n x n``):

  .. math::
     L^1(W) = \tfrac12\, \mathbb{E}\, \|x - W x\|^2
            = \tfrac12 \operatorname{tr}\big((I - W)\, \Sigma\, (I - W)^\top\big),
     \qquad \Sigma = \mathbb{E}\, x x^\top .

  Convention: with the :math:`\tfrac12` in front (as every lintraj loss). For samples ``x`` (rows)
  and ``cov = x.T @ x / m`` it equals ``lintraj.losses.regression(x, x)``. The covariance is the
  loss's data (a traced leaf): a new covariance does not recompile. ``.target`` is None (the
  minimiser is a projection, not unique as a matrix when eigenvalues tie).

  Example:
    >>> import jax.numpy as jnp
    >>> float(autoencoder_loss(jnp.diag(jnp.array([3.0, 1.0])))(jnp.zeros((2, 2))))   # tr(Sigma) / 2
    2.0

  References:
    Baldi, Hornik. Neural Networks and Principal Component Analysis: Learning from Examples
    Without Local Minima. Neural Networks 2 (1989); Frye et al., arXiv 1901.10603, Section 3.
  """
  return Loss(_reconstruction_error, data=_check_covariance(cov), name="autoencoder")


class AutoencoderCriticalPoints(NamedTuple):
  r"""Every analytic critical point of a deep linear autoencoder (see :func:`autoencoder_critical_points`).

  ``K`` points, one per index set :math:`I`; ``n`` inputs, ``P`` parameters.

  Attributes:
    components: ``(K, n)`` booleans, row ``k`` marks :math:`I_k` over the eigenvectors of
      :math:`\Sigma` sorted by descending eigenvalue (component 0 is the top principal direction).
    weights: ``(W_1, ..., W_N)`` stacked, ``W_j`` of shape ``(K, d_j, d_{j-1})``.
    loss: ``(K,)`` :math:`\tfrac12 (\operatorname{tr}\Sigma - \sum_{i \in I} \lambda_i)`.
    num_negative: ``(K,)`` the analytic number of negative Hessian eigenvalues.
    index: ``(K,)`` ``num_negative / P``.
    eigenvalues: ``(n,)`` :math:`\lambda_1 \ge \dots \ge \lambda_n` of :math:`\Sigma`.
    eigenvectors: ``(n, n)`` the matching eigenvectors as columns.
  """

  components: Any
  weights: tuple
  loss: Any
  num_negative: Any
  index: Any
  eigenvalues: Any
  eigenvectors: Any


# Refuse enumerations larger than this (every point stores all P weights).
_MAX_CRITICAL_POINTS = 200_000


def autoencoder_critical_points(cov, hidden: int, depth: int) -> AutoencoderCriticalPoints:
  r"""Every analytic critical point of the deep linear autoencoder with dims ``(n, p, ..., p, n)``.

  For :math:`\Sigma = \sum_i \lambda_i e_i e_i^\top` and every index set :math:`I`,
  :math:`|I| = r \le p` = ``hidden``, the balanced weights

  .. math::
     W_1 = \begin{bmatrix} E_I^\top \\ 0 \end{bmatrix}, \quad
     W_j = \begin{bmatrix} I_r & 0 \\ 0 & 0 \end{bmatrix}\ (1 < j < N), \quad
     W_N = \begin{bmatrix} E_I & 0 \end{bmatrix}, \qquad W_{1:N} = E_I E_I^\top,

  (:math:`E_I` the eigenvectors in :math:`I`) are a critical point of :func:`autoencoder_loss`,
  with end-to-end map the projection onto :math:`\mathrm{span}(e_I)` and loss

  .. math:: L = \tfrac12 \Big(\operatorname{tr}\Sigma - \sum_{i \in I} \lambda_i\Big)

  (THEORY.md's :math:`\operatorname{tr}\Sigma - \sum_{i\in I}\lambda_i` is the loss without the
  :math:`\tfrac12`; checked numerically in the tests). The number of negative Hessian eigenvalues
  of these weights, derived from the second-order expansion in the eigenbasis and checked against
  the dense Hessian in the tests, is

  .. math::
     \#\{(i, j): i \notin I,\ j \in I,\ \lambda_i > \lambda_j\}
     \;+\; [N = 2]\,(p - r)\,\#\{i \notin I: \lambda_i > 0\}:

  each pair "swap a kept direction for a stronger dropped one" gives a :math:`2\times 2` block
  :math:`\begin{bmatrix}\lambda_j & -\lambda_i\\ -\lambda_i & \lambda_i\end{bmatrix}`, and at depth
  2 each unused hidden unit and dropped direction a block with eigenvalues :math:`\pm\lambda_i`
  (at depth :math:`\ge 3` that descent is third order: a non-strict saddle). So the only minima are
  :math:`I` = the top :math:`p` directions (index 0, :math:`r = p`), and at depth :math:`\ge 3` the
  top-:math:`r` sets with :math:`r < p` are non-strict saddles of index 0.

  Args:
    cov: ``(n, n)`` symmetric positive semidefinite covariance :math:`\Sigma`.
    hidden: hidden width :math:`p \ge 1`.
    depth: number of layers :math:`N \ge 2`.

  Returns:
    An :class:`AutoencoderCriticalPoints` with :math:`K = \sum_{r=0}^{\min(p, n)} \binom{n}{r}`
    points, ordered by :math:`|I|` then lexicographically.

  Example:
    >>> import jax.numpy as jnp
    >>> cps = autoencoder_critical_points(jnp.diag(jnp.array([3.0, 2.0, 1.0])), hidden=1, depth=2)
    >>> cps.components.astype(int).tolist(), cps.loss.tolist(), cps.num_negative.tolist()
    ([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], [3.0, 1.5, 2.0, 2.5], [3, 0, 1, 2])

  References:
    Baldi, Hornik (1989), Theorem 1 (depth 2); Frye, Wadia, DeWeese, Bouchard, arXiv 1901.10603,
    Section 3 (deep linear autoencoder critical points and their indices).
  """
  cov = _check_covariance(cov)
  hidden = check_int("hidden", hidden, 1)
  depth = check_int("depth", depth, 2)
  n = cov.shape[0]
  largest = min(hidden, n)
  count = sum(math.comb(n, r) for r in range(largest + 1))
  if count > _MAX_CRITICAL_POINTS:
    raise ValueError(f"{count} index sets (n = {n}, hidden = {hidden}) is too many to enumerate; use a "
                     f"smaller n or hidden width (at most {_MAX_CRITICAL_POINTS} sets).")
  host = np.asarray(cov, np.float64)
  eigenvalues, eigenvectors = np.linalg.eigh((host + host.T) / 2)
  eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
  # Enumerate I by size, then lexicographically, as boolean masks over the components.
  components = np.zeros((count, n), bool)
  row = 0
  for r in range(largest + 1):
    for subset in itertools.combinations(range(n), r):
      components[row, list(subset)] = True
      row += 1
  sizes = components.sum(axis=1)
  # Selection S (p x n): hidden unit k carries the k-th chosen component.
  position = np.cumsum(components, axis=1) - 1
  selection = (components[:, None, :] & (position[:, None, :] == np.arange(hidden)[None, :, None])
               ).astype(np.float64)
  first = selection @ eigenvectors.T[None, :, :]
  last = eigenvectors[None, :, :] @ np.transpose(selection, (0, 2, 1))
  middle = selection @ np.transpose(selection, (0, 2, 1))
  dtype = cov.dtype
  weights = (jnp.asarray(first, dtype),) + tuple(jnp.asarray(middle, dtype) for _ in range(depth - 2)) \
      + (jnp.asarray(last, dtype),)
  kept = np.where(components, eigenvalues[None, :], 0.0)
  loss = 0.5 * (eigenvalues.sum() - kept.sum(axis=1))
  # Swap pairs: dropped i stronger than kept j.
  stronger = eigenvalues[:, None] > eigenvalues[None, :]
  swaps = np.einsum("ki,kj,ij->k", (~components).astype(np.int64), components.astype(np.int64),
                    stronger.astype(np.int64))
  dropped_positive = np.sum(~components & (eigenvalues[None, :] > 0), axis=1)
  num_negative = swaps + (depth == 2) * (hidden - sizes) * dropped_positive
  size = 2 * n * hidden + (depth - 2) * hidden * hidden
  return AutoencoderCriticalPoints(components=components, weights=weights, loss=loss.astype(dtype),
                                   num_negative=num_negative, index=num_negative / size,
                                   eigenvalues=eigenvalues, eigenvectors=eigenvectors)


# ----------------------------------------------------------------------------- critical-point finders


class CriticalPointSearch(NamedTuple):
  r"""The result of a critical-point finder: where it ended and how it got there.

  Attributes:
    point: the final weights ``(W_1, ..., W_N)``.
    loss: ``(steps + 1,)`` :math:`L^N` at every iterate (the start first).
    squared_grad_norm: ``(steps + 1,)`` :math:`\|\nabla_\theta L^N\|^2` at every iterate.
    step_size: ``(steps,)`` the step length taken (0 where the line search found no decrease).
  """

  point: tuple
  loss: Any
  squared_grad_norm: Any
  step_size: Any


def _backtrack(accept, trial):
  """The largest ``trial / 2^k`` (k < _MAX_HALVINGS) that ``accept``s, or 0 if none."""
  def unaccepted(state):
    _, halvings, ok = state
    return ~ok & (halvings < _MAX_HALVINGS)

  def halve(state):
    step, halvings, _ = state
    return step / 2, halvings + 1, accept(step / 2)

  step, _, ok = lax.while_loop(unaccepted, halve, (trial, 0, accept(trial)))
  return jnp.where(ok, step, jnp.zeros_like(step))


def _search_result(unravel, x, history, final_value, final_squared):
  values, squared, steps = history
  return CriticalPointSearch(point=unravel(x), loss=jnp.concatenate([values, final_value[None]]),
                             squared_grad_norm=jnp.concatenate([squared, final_squared[None]]),
                             step_size=steps)


@functools.partial(jax.jit, static_argnames=("steps",))
def _gradient_norm_run(weights, loss, lr, steps):
  flat, unravel, f = _flat_loss(weights, loss)
  grad = jax.grad(f)

  def half_squared(x):
    g = grad(x)
    return 0.5 * g @ g

  def step(carry, _):
    x, trial = carry
    g, matvec = jax.linearize(grad, x)
    descent = matvec(g)                      # grad of 1/2 ||g||^2
    phi, slope = 0.5 * g @ g, descent @ descent

    def accept(a):
      new = half_squared(x - a * descent)
      return jnp.isfinite(new) & (new <= phi - _ARMIJO * a * slope)

    a = _backtrack(accept, trial)
    return (x - a * descent, jnp.where(a > 0, jnp.minimum(2 * a, lr), lr)), (f(x), 2 * phi, a)

  (x, _), history = lax.scan(step, (flat, lr), None, length=steps)
  g = grad(x)
  return _search_result(unravel, x, history, f(x), g @ g)


def gradient_norm_descent(weights, loss, *, steps: int, lr: float = 1.0) -> CriticalPointSearch:
  r"""Find a critical point by gradient descent on the squared gradient norm.

  .. math::
     \theta_{t+1} = \theta_t - \alpha_t\, H_t g_t, \qquad
     \nabla_\theta \tfrac12 \|g\|^2 = H g \ (\text{one Hessian-vector product}),

  with :math:`\alpha_t` from Armijo backtracking on :math:`\tfrac12\|g\|^2` (trial step: twice the
  last accepted one, at most ``lr``; halved until sufficient decrease, 0 after 60 halvings). It
  converges to any stationary point of :math:`\|g\|^2`: critical points of the loss (of every
  index), but also gradient-flat points where :math:`H g = 0,\ g \ne 0` (see
  :func:`gradient_flatness`). One compiled ``lax.scan`` of ``steps`` iterations; vmappable over
  starts.

  Args:
    weights: start ``(W_1, ..., W_N)``.
    loss: a :class:`lintraj.losses.Loss` or a function of the end-to-end matrix.
    steps: iterations.
    lr: largest step tried.

  Returns:
    A :class:`CriticalPointSearch`.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> with jax.enable_x64(True):
    ...   ws = (jnp.full((1, 1), 0.1), jnp.full((1, 1), -0.05))      # near the saddle at 0
    ...   out = gradient_norm_descent(ws, lt.losses.target(jnp.array([[1.0]])), steps=200)
    >>> float(out.squared_grad_norm[-1]) < 1e-10, round(float(out.loss[-1]), 6)
    (True, 0.5)

  References:
    Frye, Wadia, DeWeese, Bouchard, arXiv 1901.10603, Section 2.2 (gradient norm minimisation);
    Pennington, Bahri. Geometry of Neural Network Loss Surfaces via Random Matrix Theory. ICML 2017.
  """
  weights, loss = _check_network(weights, loss)
  steps = _check_steps(steps)
  lr = jnp.asarray(check_positive("lr", lr), weights[0].dtype)
  return _gradient_norm_run(weights, loss, lr, steps)


@functools.partial(jax.jit, static_argnames=("steps", "minres_iterations"))
def _newton_mr_run(weights, loss, key, steps, minres_iterations):
  flat, unravel, f = _flat_loss(weights, loss)
  grad = jax.grad(f)
  m = minres_iterations
  rhs_unit = jnp.zeros((m + 1,), flat.dtype).at[0].set(1.0)

  def squared_norm(x):
    g = grad(x)
    return g @ g

  def step(x, t):
    g, matvec = jax.linearize(grad, x)
    squared = g @ g
    # MINRES: the least-squares solution of H p = -g over the Krylov space K_m(H, g), from the
    # Lanczos relation H V_m = V_{m+1} Tbar_m (full reorthogonalisation).
    basis, alphas, betas = _lanczos(matvec, g, m, jax.random.fold_in(key, t))
    tbar = jnp.zeros((m + 1, m), flat.dtype).at[:m].set(_tridiagonal(alphas, betas)).at[m, m - 1].set(betas[-1])
    coefficients = jnp.linalg.lstsq(tbar, -jnp.sqrt(squared) * rhs_unit)[0]
    direction = basis[:m].T @ coefficients
    slope = direction @ matvec(g)            # <p, H g> = -||H p||^2 <= 0

    def accept(a):
      new = squared_norm(x + a * direction)
      return jnp.isfinite(new) & (new <= squared + 2 * _ARMIJO * a * slope)

    a = _backtrack(accept, jnp.ones((), flat.dtype))
    return x + a * direction, (f(x), squared, a)

  x, history = lax.scan(step, flat, jnp.arange(steps))
  return _search_result(unravel, x, history, f(x), squared_norm(x))


def newton_mr(weights, loss, *, steps: int, minres_iterations: int | None = None,
              key=None) -> CriticalPointSearch:
  r"""Find a critical point with Newton-MR: MINRES Newton directions, line search on :math:`\|g\|^2`.

  .. math::
     p_t = \arg\min_{p \in \mathcal K_m(H_t, g_t)} \|H_t p + g_t\| \ (\text{minimum norm}), \qquad
     \theta_{t+1} = \theta_t + \alpha_t p_t,

  :math:`\alpha_t` the largest of :math:`1, \tfrac12, \tfrac14, \dots` with
  :math:`\|g(\theta_t + \alpha p_t)\|^2 \le \|g_t\|^2 + 2\rho\,\alpha\, \langle p_t, H_t g_t\rangle`
  (:math:`\rho = 10^{-4}`; :math:`\langle p, H g\rangle = -\|H p\|^2 \le 0`, so :math:`p` descends
  on :math:`\|g\|^2`). The MINRES step is computed from ``minres_iterations`` Lanczos steps with full
  reorthogonalisation and a dense least-squares solve of the small :math:`(m+1)\times m` tridiagonal
  system (minimum-norm, like MINRES-QLP on singular Hessians), matrix-free in :math:`H`. Newton-MR
  is attracted to critical points of every index. One compiled ``lax.scan``; vmappable.

  Args:
    weights: start ``(W_1, ..., W_N)``.
    loss: a :class:`lintraj.losses.Loss` or a function of the end-to-end matrix.
    steps: Newton iterations.
    minres_iterations: Krylov dimension :math:`m` (default ``min(P, 50)``; near :math:`P` the
      minimum-norm solve reaches the near-null directions and the line search shortens the steps).
    key: PRNG key for Lanczos restarts on breakdown (default ``PRNGKey(0)``).

  Returns:
    A :class:`CriticalPointSearch`.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> with jax.enable_x64(True):
    ...   ws = (jnp.full((1, 1), 0.1), jnp.full((1, 1), -0.05))
    ...   out = newton_mr(ws, lt.losses.target(jnp.array([[1.0]])), steps=20)
    >>> float(out.squared_grad_norm[-1]) < 1e-10, round(float(out.loss[-1]), 6)
    (True, 0.5)

  References:
    Roosta, Liu, Xu, Mahoney. Newton-MR: Newton's Method Without Smoothness or Convexity.
    arXiv 1810.00303, Algorithm 1; Frye et al., arXiv 1901.10603 (Newton-MR finds critical points
    of the deep linear autoencoder best); Choi, Paige, Saunders. MINRES-QLP. SIAM J. Sci. Comput. 2011.
  """
  weights, loss = _check_network(weights, loss)
  steps = _check_steps(steps)
  size = _num_params(weights)
  m = min(size, 50) if minres_iterations is None else min(
      check_int("minres_iterations", minres_iterations, 1), size)
  return _newton_mr_run(weights, loss, _default_key(key), steps, m)


@functools.partial(jax.jit, static_argnames=("steps",))
def _damped_newton_run(weights, loss, lr, damping, rcond, steps):
  flat, unravel, f = _flat_loss(weights, loss)
  grad = jax.grad(f)

  def step(x, _):
    g = grad(x)
    eigenvalues, eigenvectors = jnp.linalg.eigh(jax.hessian(f)(x))
    shifted = eigenvalues + damping
    kept = jnp.abs(shifted) > rcond * jnp.max(jnp.abs(shifted))
    inverse = jnp.where(kept, 1.0 / jnp.where(kept, shifted, 1.0), 0.0)
    direction = -eigenvectors @ (inverse * (eigenvectors.T @ g))
    return x + lr * direction, (f(x), g @ g, lr)

  x, history = lax.scan(step, flat, None, length=steps)
  g = grad(x)
  return _search_result(unravel, x, history, f(x), g @ g)


def damped_newton(weights, loss, *, steps: int, lr: float = 0.5, damping: float = 0.0,
                  rcond: float = 1e-10) -> CriticalPointSearch:
  r"""Find a critical point with damped Newton: a fixed fraction of the (shifted, pseudo-inverse) Newton step.

  .. math::
     \theta_{t+1} = \theta_t - \alpha\, (H_t + \mu I)^{+} g_t ,

  :math:`\alpha` = ``lr``, :math:`\mu` = ``damping``; the pseudo-inverse drops eigenvalues of
  :math:`H_t + \mu I` below ``rcond`` times the largest in magnitude (the Hessian of a deep linear
  network is singular along its symmetries). With :math:`\mu = 0` this is Newton's root-finding
  iteration on :math:`g = 0`, attracted to critical points of every index. Dense Hessian
  (eigendecomposition every step): small networks. One compiled ``lax.scan``; vmappable.

  Args:
    weights: start ``(W_1, ..., W_N)``.
    loss: a :class:`lintraj.losses.Loss` or a function of the end-to-end matrix.
    steps: iterations.
    lr: step fraction :math:`0 < \alpha \le 1`.
    damping: shift :math:`\mu \ge 0`.
    rcond: relative cutoff of the pseudo-inverse.

  Returns:
    A :class:`CriticalPointSearch` (``step_size`` is ``lr`` at every step).

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> with jax.enable_x64(True):
    ...   ws = (jnp.full((1, 1), 0.1), jnp.full((1, 1), -0.05))
    ...   out = damped_newton(ws, lt.losses.target(jnp.array([[1.0]])), steps=60)
    >>> float(out.squared_grad_norm[-1]) < 1e-10, round(float(out.loss[-1]), 6)
    (True, 0.5)

  References:
    Nocedal, Wright. Numerical Optimization, 2nd ed., Section 3.3 (Newton's method with step
    length); Frye et al., arXiv 1901.10603, Section 2.2 (Newton methods as critical-point finders).
  """
  weights, loss = _check_network(weights, loss)
  steps = _check_steps(steps)
  dtype = weights[0].dtype
  lr = check_positive("lr", lr)
  if lr > 1:
    raise ValueError(f"lr is the fraction of the Newton step taken, in (0, 1]; got {lr}.")
  damping = check_positive("damping", damping, allow_zero=True)
  rcond = check_positive("rcond", rcond)
  return _damped_newton_run(weights, loss, jnp.asarray(lr, dtype), jnp.asarray(damping, dtype),
                            jnp.asarray(rcond, dtype), steps)


# ----------------------------------------------------------------------------- saddle escape


class PerturbedGradientDescentState(NamedTuple):
  """State of :func:`perturbed_gradient_descent`: the PRNG key and the steps since the last perturbation."""

  key: Any
  steps_since_perturbation: Any


def perturbed_gradient_descent(lr: float, *, radius: float, grad_threshold: float, wait: int,
                               seed: int = 0) -> optax.GradientTransformation:
  r"""Perturbed gradient descent (Jin et al. 2017) as an optax transformation, usable with :func:`lintraj.train`.

  .. math::
     \theta_{t+1} = \theta_t - \eta\, g_t + \xi_t, \qquad
     \xi_t \sim \mathrm{Uniform}(B_0(r)) \text{ if } \|g_t\| \le g_{\mathrm{thres}} \text{ and no
     perturbation in the last } t_{\mathrm{thres}} \text{ steps, else } \xi_t = 0,

  with :math:`\|g\|` the norm over all layers, :math:`B_0(r)` the ball of radius ``radius`` in the
  flattened weights, :math:`t_{\mathrm{thres}}` = ``wait``. Jin et al. take the gradient step from
  the perturbed point; here (one optax update) it is taken from the current one, which differs by
  :math:`O(\eta \|H\| r)` only at perturbation steps. A perturbation is allowed at step 0.

  Args:
    lr: learning rate :math:`\eta`.
    radius: perturbation radius :math:`r`.
    grad_threshold: :math:`g_{\mathrm{thres}}`.
    wait: :math:`t_{\mathrm{thres}}`, steps between perturbations.
    seed: seed of the perturbations (the key lives in the optimizer state).

  Returns:
    An ``optax.GradientTransformation``.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> ws = tuple(jnp.zeros((2, 2)) for _ in range(2))    # GD never leaves the origin (grad = 0)
    >>> opt = perturbed_gradient_descent(0.1, radius=0.1, grad_threshold=1e-3, wait=50)
    >>> traj = lt.train(ws, lt.losses.target(jnp.eye(2)), opt, steps=400, record_every=400)
    >>> bool(traj.loss[-1] < 1e-3)
    True

  References:
    Jin, Ge, Netrapalli, Kakade, Jordan. How to Escape Saddle Points Efficiently. ICML 2017
    (arXiv 1703.00887), Algorithm 2.
  """
  lr = check_positive("lr", lr)
  radius = check_positive("radius", radius)
  grad_threshold = check_positive("grad_threshold", grad_threshold, allow_zero=True)
  wait = check_int("wait", wait, 0)
  seed = check_int("seed", seed, 0)

  def init(params):
    del params
    return PerturbedGradientDescentState(key=jax.random.PRNGKey(seed),
                                         steps_since_perturbation=jnp.asarray(wait, jnp.int32))

  def update(grads, state, params=None):
    del params
    flat, unravel = ravel_pytree(grads)
    key, direction_key, radius_key = jax.random.split(state.key, 3)
    direction = jax.random.normal(direction_key, flat.shape, flat.dtype)
    length = radius * jax.random.uniform(radius_key, (), flat.dtype) ** (1.0 / flat.shape[0])
    noise = length * direction / jnp.maximum(jnp.linalg.norm(direction), jnp.finfo(flat.dtype).tiny)
    perturb = (jnp.linalg.norm(flat) <= grad_threshold) & (state.steps_since_perturbation >= wait)
    updates = -lr * flat + jnp.where(perturb, noise, jnp.zeros_like(noise))
    since = jnp.where(perturb, 0, state.steps_since_perturbation + 1)
    return unravel(updates), PerturbedGradientDescentState(key=key, steps_since_perturbation=since)

  return optax.GradientTransformation(init, update)


def saddle_free_newton(loss, lr: float = 1.0, *, damping: float = 1e-3) -> optax.GradientTransformation:
  r"""Saddle-free Newton (Dauphin et al. 2014) as an optax transformation, usable with :func:`lintraj.train`.

  .. math::
     \theta_{t+1} = \theta_t - \eta\, (|H_t| + \mu I)^{-1} g_t, \qquad
     |H| = Q\, |\Lambda|\, Q^\top \text{ for } H = Q \Lambda Q^\top,

  Newton's step with the Hessian's eigenvalues replaced by their absolute values: negative
  curvature is descended, not climbed, and saddles repel (they attract plain Newton). The exact
  dense eigendecomposition of the Hessian every step (Dauphin et al. approximate it in a Krylov
  subspace): small networks.

  The Hessian needs the loss, so the transformation is built for one: pass the **same** ``loss``
  to :func:`lintraj.train`. ``update(grads, state, params)`` needs the weights as ``params``
  (``train`` passes them); :math:`g` is the ``grads`` it is given.

  Args:
    loss: the :class:`lintraj.losses.Loss` (or function of the end-to-end matrix) being trained.
    lr: step size :math:`\eta`.
    damping: :math:`\mu > 0`, keeps the step finite where :math:`H` is singular.

  Returns:
    An ``optax.GradientTransformation`` (stateless).

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> loss = lt.losses.target(jnp.diag(jnp.array([1.0, 0.5])))
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 2, 2), std=1e-3)      # near the strict saddle
    >>> traj = lt.train(ws, loss, saddle_free_newton(loss, 0.5), steps=100, record_every=100)
    >>> bool(traj.loss[-1] < 1e-6)
    True

  References:
    Dauphin, Pascanu, Gulcehre, Cho, Ganguli, Bengio. Identifying and attacking the saddle point
    problem in high-dimensional non-convex optimization. NeurIPS 2014 (arXiv 1406.2572), Section 5.
  """
  loss = as_loss(loss)
  lr = check_positive("lr", lr)
  damping = check_positive("damping", damping)

  def init(params):
    del params
    return optax.EmptyState()

  def update(grads, state, params=None):
    if params is None:
      raise ValueError("saddle_free_newton needs the weights: call update(grads, state, params) "
                       "(lintraj.train does).")
    flat_grads, unravel = ravel_pytree(grads)
    eigenvalues, eigenvectors = jnp.linalg.eigh(_dense_hessian(tuple(params), loss))
    scaled = (eigenvectors.T @ flat_grads) / (jnp.abs(eigenvalues) + damping)
    return unravel(-lr * (eigenvectors @ scaled)), state

  return optax.GradientTransformation(init, update)

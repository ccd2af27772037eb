r"""Critical points of the network loss: classification, the gradient-flat diagnostic, and every
analytic critical point of the deep linear autoencoder.

:func:`classify` tells a minimum from a strict or non-strict saddle (dense Hessian plus a
higher-order probe); :func:`gradient_flatness` detects points where the gradient lies in the
Hessian's kernel (where critical-point finders stall); :func:`autoencoder_critical_points`
enumerates the critical points of :func:`lintraj.losses.autoencoder_loss` with their loss and
index. Weights are flattened as in :mod:`lintraj.landscape`. Use float64
(``with jax.enable_x64(True):``): the tolerances of Frye et al. are below float32 resolution.

References:
  Frye, Wadia, DeWeese, Bouchard. Numerically Recovering the Critical Points of a Deep Linear
  Autoencoder. arXiv 1901.10603 (2019).
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
from jax import lax

from lintraj._curvature import (
  _default_iterations,
  _default_key,
  _flat_loss,
  _num_params,
  _random_start_ritz_values,
)
from lintraj.losses import as_loss, check_covariance
from lintraj.network import check_weights
from lintraj.validation import check_int, check_positive

__all__ = [
  "Classification",
  "classify",
  "GradientFlatness",
  "gradient_flatness",
  "AutoencoderCriticalPoints",
  "autoencoder_critical_points",
]

# classify's probe: radii as multiples of probe_radius (higher-order descent shows at some scale),
# and its projected gradient steps on each sphere: count, first angle, decay per step.
_PROBE_SCALES = (1.0, 0.1, 0.01)
_PROBE_STEPS = 50
_PROBE_ANGLE = 0.3
_PROBE_DECAY = 0.92


def _check_points(weights) -> tuple[tuple, bool, int]:
  """``(weights, batched, P)``: one network, or a batch (every layer with a leading batch axis)."""
  batched = (
    isinstance(weights, Sequence) and len(weights) > 0 and all(jnp.ndim(w) == 3 for w in weights)
  )
  if batched:
    weights = tuple(jnp.asarray(w) for w in weights)
    return weights, True, _num_params(check_weights(tuple(w[0] for w in weights)))
  weights = check_weights(weights)
  return weights, False, _num_params(weights)


@functools.lru_cache(maxsize=None)
def _compiled(function, batched: bool, static: tuple):
  """``function(weights, args, **static)`` jitted, vmapped over the weights when ``batched``;
  cached, so repeated calls with the same shapes reuse one compiled program."""
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
      angle = _PROBE_ANGLE * _PROBE_DECAY**k
      d = d - angle * tangent / jnp.maximum(jnp.linalg.norm(tangent), tiny)
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


def classify(
  weights,
  loss,
  *,
  grad_tol: float = 1e-10,
  eig_tol: float = 1e-5,
  probe_radius: float = 0.1,
  num_probes: int = 32,
  key=None,
) -> Classification:
  r"""Classify a point of the landscape from its gradient, Hessian spectrum and a higher-order
  probe.

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
    weights: ``(W_1, ..., W_N)``, or a batch: every layer with a leading batch axis
      ``(B, d_j, d_{j-1})``.
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
    weights, (loss, eig_tol, probe_radius, _default_key(key))
  )
  host = {name: np.asarray(value) for name, value in numbers.items()}
  rounding = 100 * np.finfo(host["loss"].dtype).eps * (1 + np.abs(host["loss"]))
  verdict = np.where(
    host["squared_grad_norm"] >= grad_tol,
    "not critical",
    np.where(
      host["num_negative"] > 0,
      "strict saddle",
      np.where(host["probe_decrease"] > rounding, "non-strict saddle", "minimum"),
    ),
  )
  return Classification(
    verdict=verdict if batched else str(verdict), index=host["num_negative"] / size, **numbers
  )


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
  positive = denominator > 0
  ratio = jnp.where(
    positive, jnp.linalg.norm(matvec(grad)) / jnp.where(positive, denominator, 1.0), 0.0
  )
  squared = grad_norm**2
  return GradientFlatness(
    ratio=ratio, squared_grad_norm=squared, gradient_flat=(ratio < flat_tol) & (squared >= grad_tol)
  )


def gradient_flatness(
  weights,
  loss,
  *,
  flat_tol: float = 1e-3,
  grad_tol: float = 1e-10,
  num_iterations: int | None = None,
  key=None,
) -> GradientFlatness:
  r"""The gradient-flat diagnostic of Frye et al. (2020): is the gradient nearly in the Hessian's
  kernel?

  .. math::
     r = \frac{\|H g\|}{\|H\|_2\, \|g\|}, \qquad
     g = \nabla_\theta L^N,\ H = \nabla^2_\theta L^N .

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
  num_iterations = (
    _default_iterations(1, size)
    if num_iterations is None
    else min(check_int("num_iterations", num_iterations, 1), size)
  )
  return _compiled(_flatness_numbers, batched, (("num_iterations", num_iterations),))(
    weights, (loss, flat_tol, grad_tol, _default_key(key))
  )


class AutoencoderCriticalPoints(NamedTuple):
  r"""Every analytic critical point of a deep linear autoencoder (see
  :func:`autoencoder_critical_points`).

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
  r"""One analytic critical point per index set of the deep linear autoencoder with dims
  ``(n, p, ..., p, n)``: a balanced representative of each family, not every critical point
  (an invertible change of basis between consecutive layers gives others with the same
  end-to-end map and loss; an orthogonal one also keeps the Hessian's spectrum).

  For :math:`\Sigma = \sum_i \lambda_i e_i e_i^\top` and every index set :math:`I`,
  :math:`|I| = r \le p` = ``hidden``, the balanced weights

  .. math::
     W_1 = \begin{bmatrix} E_I^\top \\ 0 \end{bmatrix}, \quad
     W_j = \begin{bmatrix} I_r & 0 \\ 0 & 0 \end{bmatrix}\ (1 < j < N), \quad
     W_N = \begin{bmatrix} E_I & 0 \end{bmatrix}, \qquad W_{1:N} = E_I E_I^\top,

  (:math:`E_I` the eigenvectors in :math:`I`) are a critical point of
  :func:`lintraj.losses.autoencoder_loss`, with end-to-end map the projection onto
  :math:`\mathrm{span}(e_I)` and loss

  .. math:: L = \tfrac12 \Big(\operatorname{tr}\Sigma - \sum_{i \in I} \lambda_i\Big)

  (Baldi and Hornik's :math:`\operatorname{tr}\Sigma - \sum_{i\in I}\lambda_i` is the loss without
  the :math:`\tfrac12`; checked numerically in the tests). The number of negative Hessian
  eigenvalues of these weights, derived from the second-order expansion in the eigenbasis and
  checked against the dense Hessian in the tests, is

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
  cov = check_covariance(cov)
  hidden = check_int("hidden", hidden, 1)
  depth = check_int("depth", depth, 2)
  n = cov.shape[0]
  largest = min(hidden, n)
  count = sum(math.comb(n, r) for r in range(largest + 1))
  if count > _MAX_CRITICAL_POINTS:
    raise ValueError(
      f"{count} index sets (n = {n}, hidden = {hidden}) is too many to enumerate; "
      f"use a smaller n or hidden width (at most {_MAX_CRITICAL_POINTS} sets)."
    )
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
  selection = (
    components[:, None, :] & (position[:, None, :] == np.arange(hidden)[None, :, None])
  ).astype(np.float64)
  first = selection @ eigenvectors.T[None, :, :]
  last = eigenvectors[None, :, :] @ np.transpose(selection, (0, 2, 1))
  middle = selection @ np.transpose(selection, (0, 2, 1))
  dtype = cov.dtype
  middles = tuple(jnp.asarray(middle, dtype) for _ in range(depth - 2))
  weights = (jnp.asarray(first, dtype),) + middles + (jnp.asarray(last, dtype),)
  kept = np.where(components, eigenvalues[None, :], 0.0)
  loss = 0.5 * (eigenvalues.sum() - kept.sum(axis=1))
  # Swap pairs: dropped i stronger than kept j.
  stronger = eigenvalues[:, None] > eigenvalues[None, :]
  swaps = np.einsum(
    "ki,kj,ij->k",
    (~components).astype(np.int64),
    components.astype(np.int64),
    stronger.astype(np.int64),
  )
  dropped_positive = np.sum(~components & (eigenvalues[None, :] > 0), axis=1)
  num_negative = swaps + (depth == 2) * (hidden - sizes) * dropped_positive
  size = 2 * n * hidden + (depth - 2) * hidden * hidden
  return AutoencoderCriticalPoints(
    components=components,
    weights=weights,
    loss=loss.astype(dtype),
    num_negative=num_negative,
    index=num_negative / size,
    eigenvalues=eigenvalues,
    eigenvectors=eigenvectors,
  )

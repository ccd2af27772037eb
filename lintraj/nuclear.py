r"""Minimum nuclear norm matrix completion, the convex baseline of deep matrix factorization.

Given the entries :math:`M_{ij}`, :math:`(i, j) \in \Omega`, of an :math:`n_1 \times n_2` matrix,
:func:`min_nuclear_norm_completion` solves

.. math::  \min_X \|X\|_* \quad \text{subject to} \quad X_{ij} = M_{ij}, \ (i, j) \in \Omega,

the convex relaxation of rank minimisation that recovers a low-rank incoherent :math:`M` from
enough random entries (Candès and Recht 2009). Arora, Cohen, Hu and Luo (2019) compare deep
matrix factorization trained by gradient descent with this solution.

The solver is singular value thresholding (SVT, Cai, Candès and Shen 2010) in JAX: one compiled
``lax.while_loop``, one SVD per iteration, no dependency beyond JAX. With
:math:`P_\Omega` the projection that zeroes the unobserved entries and
:math:`\mathcal D_\tau(Y) = U \max(\Sigma - \tau, 0) V^\top` the soft-thresholding of the singular
values of :math:`Y = U \Sigma V^\top`,

.. math::

  Y_0 = k_0 \delta P_\Omega(M), \qquad
  X_k = \mathcal D_\tau(Y_{k-1}), \qquad
  Y_k = Y_{k-1} + \delta P_\Omega(M - X_k),

with :math:`k_0 = \lceil \tau / (\delta \|P_\Omega(M)\|_2) \rceil` (the first iterate that is not
zero), stopped when :math:`\|P_\Omega(X_k - M)\|_F / \|P_\Omega(M)\|_F \le` ``tol``.

SVT is Uzawa's dual ascent on the regularised problem

.. math::  \min_X \tau \|X\|_* + \tfrac12 \|X\|_F^2 \quad \text{subject to} \quad
  P_\Omega(X) = P_\Omega(M),

whose solution tends to the minimum nuclear norm solution (the one of least Frobenius norm among
them) as :math:`\tau \to \infty` (Cai, Candès, Shen 2010). Where completion recovers
a low-rank matrix (a strict dual certificate exists and :math:`P_\Omega` is injective on the
tangent space of the solution: the regime of Candès and Recht's theorem) the two problems have the
same solution once :math:`\tau` is large enough; elsewhere they differ, by less as :math:`\tau`
grows. ``exact=True`` removes the difference: it repeats SVT centred at its previous answer,

.. math::  X^{(r+1)} = \arg\min_X \tau \|X\|_* + \tfrac12 \|X - X^{(r)}\|_F^2 \quad
  \text{subject to} \quad P_\Omega(X) = P_\Omega(M)

(the proximal point method, Rockafellar 1976, whose fixed points are exactly the minimum nuclear
norm completions: :math:`X = \mathcal D_\tau(X + Y)` with :math:`Y` supported on :math:`\Omega`
says that :math:`Y / \tau` is a dual certificate), each round warm-started from the previous dual
variable, until consecutive rounds differ by at most ``tol`` in relative Frobenius norm.

``method="admm"`` solves the minimum nuclear norm problem itself, with no ``tau`` bias, by the
alternating direction method of multipliers (Douglas-Rachford splitting of
:math:`\|X\|_*` and the indicator of the constraint set; Boyd, Parikh, Chu, Peleato, Eckstein
2011, Section 3), in scaled form with penalty :math:`\rho`:

.. math::

  X_{k+1} = \mathcal D_{1/\rho}(Z_k - U_k), \qquad
  Z_{k+1} = P_\Omega(M) + P_{\bar\Omega}(X_{k+1} + U_k), \qquad
  U_{k+1} = U_k + X_{k+1} - Z_{k+1},

from :math:`Z_0 = P_\Omega(M)`, :math:`U_0 = 0`. It converges for every :math:`\rho > 0`; the
speed depends on :math:`\rho`, which is adapted by residual balancing (ibid., Section 3.4.1):
every 10 iterations :math:`\rho` doubles (and :math:`U` halves) when the relative primal
residual :math:`r_k = \|X_k - Z_k\|_F / \|P_\Omega(M)\|_F` (:math:`X_k - Z_k = P_\Omega(X_k -
M)`) exceeds 10 times the relative dual residual :math:`s_k = \rho \|Z_k - Z_{k-1}\|_F / \|\rho
U_k\|_F`, and halves in the opposite case (both are unchanged when the values and ``tau`` are
scaled together, so are the iterations). It stops when both are at most ``tol``. Away from
the recovery regime, where SVT's iterations crawl, ADMM converges in hundreds: on the 100x100
rank-5 truth of deep matrix factorization (scaled to :math:`\|M\|_F = 100`) observed on 2000
entries, SVT with its defaults left a relative residual 0.53 after 5000 iterations, ADMM reached
``tol=1e-6`` in 460 (float64).

Both methods report a duality gap, a certificate that does not trust the iteration. The dual of
the problem is :math:`\max \langle Y, M \rangle` over :math:`Y` supported on :math:`\Omega`
with :math:`\|Y\|_2 \le 1`. The multiplier of the constraint (:math:`-\rho U_k` for ADMM,
:math:`Y_k / \tau` for SVT; supported on :math:`\Omega`), divided by :math:`\max(1,
\|\cdot\|_2)`, is dual feasible, so its value is a lower bound on the least nuclear norm; the
completion with its observed entries set to :math:`M` is feasible, so its nuclear norm is an
upper bound. ``gap`` is their difference relative to the upper bound: the minimum lies within it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lintraj.network import default_float_dtype
from lintraj.validation import check_int, check_positive

__all__ = ["Completion", "min_nuclear_norm_completion", "shrink"]


class Completion(NamedTuple):
  """The result of :func:`min_nuclear_norm_completion`.

  Attributes:
    completed: the ``(n_1, n_2)`` completed matrix.
    iterations: iterations (SVDs) used, all rounds together; at most ``max_iters``.
    residual: :math:`\\|P_\\Omega(X - M)\\|_F / \\|P_\\Omega(M)\\|_F` of ``completed`` (0 when every
      observed entry is 0); at most ``tol`` unless ``max_iters`` ran out.
    rounds: proximal rounds run (1 without ``exact=True`` and with ``method="admm"``).
    gap: the relative duality gap :math:`(\\|\\tilde X\\|_* - \\langle Y, M\\rangle) /
      \\|\\tilde X\\|_*` of ``completed`` with its observed entries set to :math:`M`
      (:math:`\\tilde X`) and the scaled multiplier :math:`Y` (module docstring): the least nuclear
      norm lies in :math:`[\\langle Y, M\\rangle, \\|\\tilde X\\|_*]` (0 when every observed entry
      is 0).
  """

  completed: jnp.ndarray
  iterations: jnp.ndarray
  residual: jnp.ndarray
  rounds: jnp.ndarray
  gap: jnp.ndarray


def shrink(y, tau):
  r"""The singular value shrinkage :math:`\mathcal D_\tau(Y) = U \max(\Sigma - \tau, 0) V^\top`, the
  proximal operator of :math:`\tau \|\cdot\|_*`.

  Example:
    >>> import jax.numpy as jnp
    >>> shrink(jnp.diag(jnp.array([3.0, 1.0])), 2.0).tolist()
    [[1.0, 0.0], [0.0, 0.0]]
  """
  u, s, vt = jnp.linalg.svd(y, full_matrices=False)
  return (u * jnp.maximum(s - tau, 0)[None, :]) @ vt


def _traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _check(mask, values, method, tau, delta, tol, max_iters, exact):
  """Validate before tracing; the checks that need values are skipped for traced arguments."""
  if method not in ("svt", "admm"):
    raise ValueError(f'method must be "svt" or "admm"; got {method!r}.')
  shapes = [np.shape(mask), np.shape(values)]
  if len(shapes[1]) != 2 or 0 in shapes[1]:
    raise ValueError(
      f"values must be a non-empty (n_1, n_2) matrix; got shape {shapes[1]}. Pass the matrix "
      "to complete (unobserved entries can hold anything, NaN included: they are never read)."
    )
  if shapes[0] != shapes[1]:
    raise ValueError(
      f"mask {shapes[0]} and values {shapes[1]} must have the same (n_1, n_2) shape: mask is "
      "True on the observed entries of values."
    )
  dtype = mask.dtype
  if dtype != np.bool_:
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
      raise ValueError(f"mask must be booleans (True on observed entries); got dtype {dtype}.")
    if not _traced(mask) and not np.isin(np.asarray(mask), (0, 1)).all():
      raise ValueError(
        f"mask of dtype {dtype} must hold only 0 and 1 (1 on observed entries); got other "
        "values. Pass a boolean mask, e.g. mask != 0."
      )
  vtype = values.dtype
  if not (np.issubdtype(vtype, np.floating) or np.issubdtype(vtype, np.integer)):
    raise ValueError(f"values must be a real numeric matrix; got dtype {vtype}.")
  if not _traced(mask):
    observed = np.asarray(mask).astype(bool)
    if not observed.any():
      raise ValueError(
        "mask observes no entry, so every matrix is a completion; mark at least one observed "
        "entry True."
      )
    if not _traced(values) and not np.isfinite(np.asarray(values)[observed]).all():
      raise ValueError(
        "values has non-finite (NaN or inf) observed entries; fix them or mark them False in "
        "mask (unobserved entries may be NaN)."
      )
  for name, value in (("tau", tau), ("delta", delta)):
    if value is not None and not _traced(value):
      check_positive(name, value, " Leave it None for the default of Cai, Candès, Shen (2010).")
  if not _traced(tol):
    check_positive("tol", tol, " Typical values: 1e-4 .. 1e-8; 0 runs max_iters.", allow_zero=True)
  if not _traced(max_iters):
    check_int("max_iters", max_iters, 1)
  if not (_traced(exact) or isinstance(exact, (bool, np.bool_))):
    raise ValueError(f"exact must be True or False; got {exact!r}.")
  if method == "admm" and (delta is not None or _traced(exact) or exact):
    raise ValueError(
      'delta and exact are options of method="svt"; method="admm" solves the minimum nuclear '
      "norm problem itself (no tau bias) and adapts its step. Leave them out."
    )


def min_nuclear_norm_completion(
  mask, values, *, method="svt", tau=None, delta=None, tol=1e-4, max_iters=1000, exact=False
) -> Completion:
  r"""The minimum nuclear norm completion of the observed entries, by singular value thresholding
  or by ADMM.

  Solves :math:`\min_X \tau \|X\|_* + \tfrac12 \|X\|_F^2` subject to :math:`X_{ij} = M_{ij}` on
  the observed entries (the SVT problem, see the module docstring for the iteration); its solution
  tends to :math:`\arg\min \|X\|_*` under the same constraints as ``tau`` grows, and equals it for
  large ``tau`` in the recovery regime (low-rank :math:`M`, enough random entries). For the
  minimum nuclear norm completion itself in every case pass ``exact=True`` (proximal rounds), or
  get closer with a larger ``tau``, at the price of more iterations. On the 2x2 example below
  with ``(a, b, c) = (1, 2, 3)`` (minimiser ``x = 1``, full rank) ``tau`` = 10 (the default),
  100 give ``x`` = 0.67, 0.95 in 51, 69 iterations, ``exact=True`` gives 1 to 1e-10; with
  ``(1, -0.7, 1.2)`` (rank-1 minimiser ``x = -0.84``, the tau-problem has it for ``tau >= 10.01``)
  the default misses by 1.4e-4 and ``tau = 100`` is exact, in 190 and 3992 iterations (all with
  ``tol=1e-11``).

  ``method="admm"`` (module docstring) solves :math:`\min \|X\|_*` under the constraints
  directly, with no ``tau`` bias and no ``exact`` rounds; use it away from the recovery regime,
  where SVT needs many iterations. ``gap`` (both methods) bounds how far the nuclear norm of the
  answer is from the least one.

  Jittable: ``jax.jit(min_nuclear_norm_completion, static_argnames="method")(mask, values)``
  compiles the whole solve (one ``lax.while_loop``); traced arguments skip the checks that need
  their values.

  Args:
    mask: ``(n_1, n_2)`` booleans (or 0/1), True on the observed entries :math:`\Omega`.
    values: ``(n_1, n_2)`` real matrix; only the observed entries are read (the others may be NaN).
    method: ``"svt"`` (singular value thresholding, the default) or ``"admm"``.
    tau: with ``"svt"`` the threshold; default :math:`5 \sqrt{n_1 n_2}` (Cai, Candès, Shen
      2010, for their test matrices: products of Gaussian factors). Scale it with your
      entries: values times ``c`` and ``tau`` times ``c`` give the completion times ``c``, in the
      same iterations. With ``"admm"`` the first threshold :math:`1/\rho` (then adapted);
      default :math:`\|P_\Omega(M)\|_2 / 10`.
    delta: the step of ``"svt"``; default :math:`1.2\, n_1 n_2 / |\Omega|` (ibid.). Convergence
      is proven for :math:`0 < \delta < 2`, and the default exceeds 2 below 60% observed: if the
      residual stalls above ``tol`` (it stalled near 4e-2 on some 40x40 rank-2 instances with
      half the entries observed, where ``delta = 1.5`` converged), pass a ``delta`` below 2, or
      use ``method="admm"``.
    tol: stop when :math:`\|P_\Omega(X - M)\|_F / \|P_\Omega(M)\|_F \le` ``tol`` (and, with
      ``exact=True``, consecutive rounds differ by at most ``tol`` in relative Frobenius norm);
      with ``"admm"``, when the primal and the dual residual (module docstring) are.
    max_iters: at most this many iterations (SVDs), all rounds together.
    exact: ``"svt"`` only: run proximal rounds until the tau-regularisation has no effect
      (module docstring).

  Returns:
    A :class:`Completion` ``(completed, iterations, residual, rounds, gap)``.

  Example:
    The 2x2 matrix with a missing corner: the rank-1 completion ``b c / a`` has the least nuclear
    norm when ``|b c| <= a**2``.

    >>> import jax.numpy as jnp
    >>> mask = jnp.array([[True, True], [True, False]])
    >>> values = jnp.array([[2.0, 1.0], [1.5, jnp.nan]])
    >>> result = min_nuclear_norm_completion(mask, values, tol=1e-6)
    >>> round(float(result.completed[1, 1]), 4), bool(result.residual <= 1e-6)
    (0.75, True)

    When ``|b c| > a**2`` the minimiser ``sign(b c / a) |a|`` is full rank and the default tau
    falls short of it; ``exact=True`` reaches it:

    >>> values = jnp.array([[1.0, 2.0], [3.0, jnp.nan]])
    >>> plain = min_nuclear_norm_completion(mask, values, tol=1e-5)
    >>> exact = min_nuclear_norm_completion(mask, values, tol=1e-5, exact=True)
    >>> round(float(plain.completed[1, 1]), 2), round(float(exact.completed[1, 1]), 3)
    (0.67, 1.0)
    >>> admm = min_nuclear_norm_completion(mask, values, method="admm", tol=1e-6)
    >>> round(float(admm.completed[1, 1]), 3), bool(admm.gap < 1e-4)
    (1.0, True)

  References:
    Cai, Candès, Shen. A Singular Value Thresholding Algorithm for Matrix Completion. SIAM J.
    Optim. 20(4), 2010 (arXiv 0810.3286): the algorithm, its limit as tau grows, the defaults.
    Candès, Recht. Exact Matrix Completion via Convex Optimization. Found. Comput. Math. 9, 2009.
    Arora, Cohen, Hu, Luo. Implicit Regularization in Deep Matrix Factorization. NeurIPS 2019
    (arXiv 1905.13655): minimum nuclear norm as the baseline of deep matrix factorization.
    Rockafellar. Monotone Operators and the Proximal Point Algorithm. SIAM J. Control Optim.
    14(5), 1976: the rounds of ``exact=True``.
    Boyd, Parikh, Chu, Peleato, Eckstein. Distributed Optimization and Statistical Learning via
    the Alternating Direction Method of Multipliers. Found. Trends Mach. Learn. 3(1), 2011:
    ``method="admm"`` and its residual balancing.
  """
  mask, values = (a if _traced(a) else np.asarray(a) for a in (mask, values))
  _check(mask, values, method, tau, delta, tol, max_iters, exact)
  shape = values.shape
  floating = np.issubdtype(values.dtype, np.floating)
  dtype = jax.dtypes.canonicalize_dtype(values.dtype) if floating else default_float_dtype()
  mask = jnp.asarray(mask).astype(bool)
  values = jnp.where(mask, jnp.asarray(values, dtype), 0)
  if method == "admm":
    tau = jnp.linalg.norm(values, 2) / 10 if tau is None else tau
    return _admm(mask, values, tau, tol, max_iters)
  size = shape[0] * shape[1]
  tau = 5 * math.sqrt(size) if tau is None else tau
  delta = 1.2 * size / jnp.sum(mask) if delta is None else delta
  return _svt(mask, values, tau, delta, tol, max_iters, exact)


def _gap(mask, pm, x, multiplier):
  """The relative duality gap of ``x`` (observed entries set to ``pm``) and ``multiplier``."""
  upper = jnp.sum(jnp.linalg.svd(jnp.where(mask, pm, x), compute_uv=False))
  y = jnp.where(mask, multiplier, 0)
  lower = jnp.sum(y * pm) / jnp.maximum(1, jnp.linalg.norm(y, 2))
  return jnp.where(upper > 0, (upper - lower) / jnp.where(upper > 0, upper, 1), 0)


@jax.jit
def _admm(mask, pm, tau, tol, max_iters):
  """ADMM with residual balancing; ``tau`` is the first threshold ``1 / rho``."""
  tau, tol = (jnp.asarray(a, pm.dtype) for a in (tau, tol))
  scale = jnp.linalg.norm(pm)
  scale = jnp.where(scale > 0, scale, 1)
  rho = 1 / jnp.where(tau > 0, tau, 1)

  def body(state):
    x, z, u, rho, k, _, _, _ = state
    x = shrink(z - u, 1 / rho)
    z_next = jnp.where(mask, pm, x + u)
    u = u + x - z_next
    primal = jnp.linalg.norm(x - z_next) / scale
    multiplier = jnp.linalg.norm(u)
    dual = jnp.linalg.norm(z_next - z) / jnp.where(multiplier > 0, multiplier, 1)
    done = jnp.maximum(primal, dual) <= tol
    balance = (k % 10 == 9) & ~done
    factor = jnp.where(balance & (primal > 10 * dual), 2.0, 1.0)
    factor = jnp.where(balance & (dual > 10 * primal), 0.5, factor).astype(pm.dtype)
    return x, z_next, u / factor, rho * factor, k + 1, primal, dual, done

  def cond(state):
    return (state[4] < max_iters) & ~state[7]

  zero = jnp.zeros_like(pm)
  inf = jnp.asarray(jnp.inf, pm.dtype)
  start = (zero, pm, zero, rho, jnp.int32(0), inf, inf, jnp.asarray(False))
  x, _, u, rho, k, primal, _, _ = lax.while_loop(cond, body, start)
  return Completion(x, k, primal, jnp.int32(1), _gap(mask, pm, x, -rho * u))


@jax.jit
def _svt(mask, pm, tau, delta, tol, max_iters, exact):
  """The compiled solve: one trace per shape and dtype, the options are traced."""
  tau, delta, tol = (jnp.asarray(a, pm.dtype) for a in (tau, delta, tol))
  exact = jnp.asarray(exact, bool)
  norm = jnp.linalg.norm(pm)
  scale = jnp.where(norm > 0, norm, 1)
  spectral = jnp.linalg.norm(pm, 2)
  k0 = jnp.where(spectral > 0, jnp.ceil(tau / (delta * jnp.where(spectral > 0, spectral, 1))), 0)

  def body(state):
    x, y, centre, k, r, _, _ = state
    x = shrink(centre + y, tau)
    gap = jnp.where(mask, pm - x, 0)
    residual = jnp.linalg.norm(gap) / scale
    feasible = residual <= tol
    size = jnp.linalg.norm(x)
    change = jnp.linalg.norm(x - centre) / jnp.where(size > 0, size, 1)
    done = feasible & (~exact | (change <= tol))
    again = feasible & ~done  # exact=True: start the next round, centred at x
    return (
      x,
      y + delta * gap,
      jnp.where(again, x, centre),
      k + 1,
      r + again,
      residual,
      done,
    )

  def cond(state):
    k, done = state[3], state[6]
    return (k < max_iters) & ~done

  zero = jnp.zeros_like(pm)
  start = (zero, k0 * delta * pm, zero, jnp.int32(0), jnp.int32(1), jnp.asarray(jnp.inf, pm.dtype))
  x, y, _, k, r, residual, _ = lax.while_loop(cond, body, (*start, jnp.asarray(False)))
  return Completion(x, k, residual, r, _gap(mask, pm, x, y / tau))

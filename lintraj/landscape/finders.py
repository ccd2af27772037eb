r"""Critical-point finders: gradient-norm descent, Newton-MR and damped Newton.

Each finder runs from a start ``(W_1, ..., W_N)`` on the network loss in the flattened weights
(as in :mod:`lintraj.landscape`) and returns a :class:`CriticalPointSearch`: the final point and
the loss, squared gradient norm and step length along the way. They are attracted to critical
points of every index (saddles included), the point of the exercise: compare what they find with
:func:`lintraj.landscape.classify` or the analytic points of
:func:`lintraj.landscape.autoencoder_critical_points`. Each is one compiled program, vmappable
over starts. Use float64 (``with jax.enable_x64(True):``): the tolerances of Frye et al.
(:math:`\|\nabla L\|^2 < 10^{-10}`) are below float32 resolution.

References:
  Frye, Wadia, DeWeese, Bouchard. Numerically Recovering the Critical Points of a Deep Linear
  Autoencoder. arXiv 1901.10603 (2019), Section 2.2.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lintraj._curvature import (
  _check_network,
  _default_key,
  _flat_loss,
  _lanczos,
  _num_params,
  _tridiagonal,
)
from lintraj.singular_values import lapack_single_thread
from lintraj.validation import check_int, check_positive

__all__ = ["CriticalPointSearch", "gradient_norm_descent", "newton_mr", "damped_newton"]

# Armijo sufficient-decrease constant of the line searches, and their largest number of halvings.
_ARMIJO = 1e-4
_MAX_HALVINGS = 60


def _check_steps(steps) -> int:
  """A finder's iteration count: an integer >= 0."""
  return check_int("steps", steps, 0)


class CriticalPointSearch(NamedTuple):
  r"""The result of a critical-point finder: where it ended and how it got there.

  Attributes:
    point: the final weights ``(W_1, ..., W_N)``.
    loss: ``(steps + 1,)`` :math:`L^N` at every iterate (the start first).
    squared_grad_norm: ``(steps + 1,)`` :math:`\|\nabla_\theta L^N\|^2` at every iterate.
    step_size: ``(steps,)`` the step length taken (0 where the line search found no decrease, and
      after a stop).
    iterations: how many iterations ran: ``steps``, or fewer where a stopping tolerance stopped
      the search (each finder's ``grad_tol``; later entries repeat the last iterate).
  """

  point: tuple
  loss: Any
  squared_grad_norm: Any
  step_size: Any
  iterations: Any


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


def _held(run, *args):
  """``run(*args)`` to completion with LAPACK's OpenBLAS on one thread (see
  :func:`lintraj.singular_values.lapack_single_thread`)."""
  with lapack_single_thread():
    return jax.block_until_ready(run(*args))


def _squared_norm(grad):
  """``x -> ||grad(x)||^2``."""

  def squared(x):
    g = grad(x)
    return g @ g

  return squared


def _tolerance(grad_tol, dtype):
  """``grad_tol`` checked, as an array (0: no stop)."""
  return jnp.asarray(0.0 if grad_tol is None else check_positive("grad_tol", grad_tol), dtype)


def _search(step, flat, extra, *, steps, grad_tol, f, squared_norm, unravel):
  r"""The loop every finder runs: ``step(t, x, squared, extra) -> (x', extra', a)`` (``squared``
  is :math:`\|g\|^2` at ``x``, ``a`` the step length taken) until ``steps`` iterations ran or
  an iterate has :math:`\|g\|^2 <` ``grad_tol``; then every later history entry repeats the
  stopped point, with step 0."""

  def body(state):
    t, x, squared, extra, history = state
    moved, extra, a = step(t, x, squared, extra)
    history = tuple(h.at[t].set(v) for h, v in zip(history, (f(x), squared, a)))
    return t + 1, moved, squared_norm(moved), extra, history

  def going(state):
    t, _, squared, _, _ = state
    return (t < steps) & ~(squared < grad_tol)  # a NaN norm goes on, as without a tolerance

  empty = tuple(jnp.zeros((steps,), flat.dtype) for _ in range(3))
  start = (jnp.zeros((), jnp.int32), flat, squared_norm(flat), extra, empty)
  iterations, x, squared, _, history = lax.while_loop(going, body, start)
  after = jnp.arange(steps) >= iterations
  value = f(x)
  values, squares, sizes = (
    jnp.where(after, fill, h) for h, fill in zip(history, (value, squared, jnp.zeros_like(value)))
  )
  return CriticalPointSearch(
    point=unravel(x),
    loss=jnp.concatenate([values, value[None]]),
    squared_grad_norm=jnp.concatenate([squares, squared[None]]),
    step_size=sizes,
    iterations=iterations,
  )


@functools.partial(jax.jit, static_argnames=("steps",))
def _gradient_norm_run(weights, loss, lr, grad_tol, steps):
  flat, unravel, f = _flat_loss(weights, loss)
  grad = jax.grad(f)

  squared_norm = _squared_norm(grad)

  def step(t, x, squared, trial):
    g, matvec = jax.linearize(grad, x)
    descent = matvec(g)  # grad of 1/2 ||g||^2
    slope = descent @ descent

    def accept(a):
      new = 0.5 * squared_norm(x - a * descent)
      return jnp.isfinite(new) & (new <= 0.5 * squared - _ARMIJO * a * slope)

    a = _backtrack(accept, trial)
    return x - a * descent, jnp.where(a > 0, jnp.minimum(2 * a, lr), lr), a

  return _search(
    step,
    flat,
    lr,
    steps=steps,
    grad_tol=grad_tol,
    f=f,
    squared_norm=squared_norm,
    unravel=unravel,
  )


def gradient_norm_descent(
  weights, loss, *, steps: int, lr: float = 1.0, grad_tol: float | None = None
) -> CriticalPointSearch:
  r"""Find a critical point by gradient descent on the squared gradient norm.

  .. math::
     \theta_{t+1} = \theta_t - \alpha_t\, H_t g_t, \qquad
     \nabla_\theta \tfrac12 \|g\|^2 = H g \ (\text{one Hessian-vector product}),

  with :math:`\alpha_t` from Armijo backtracking on :math:`\tfrac12\|g\|^2` (trial step: twice the
  last accepted one, at most ``lr``; halved until sufficient decrease, 0 after 60 halvings). It
  converges to any stationary point of :math:`\|g\|^2`: critical points of the loss (of every
  index), but also gradient-flat points where :math:`H g = 0,\ g \ne 0` (see
  :func:`gradient_flatness`). One compiled ``lax.while_loop`` of at most ``steps`` iterations;
  vmappable over starts. ``grad_tol`` stops it as in :func:`newton_mr`.

  Args:
    weights: start ``(W_1, ..., W_N)``.
    loss: a :class:`lintraj.losses.Loss` or a function of the end-to-end matrix.
    steps: the most iterations.
    lr: largest step tried.
    grad_tol: stop once :math:`\|\nabla_\theta L^N\|^2` is below this (:func:`newton_mr`).

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
  dtype = weights[0].dtype
  lr = jnp.asarray(check_positive("lr", lr), dtype)
  return _gradient_norm_run(weights, loss, lr, _tolerance(grad_tol, dtype), steps)


@functools.partial(jax.jit, static_argnames=("steps", "minres_iterations"))
def _newton_mr_run(weights, loss, key, grad_tol, steps, minres_iterations):
  flat, unravel, f = _flat_loss(weights, loss)
  grad = jax.grad(f)
  m = minres_iterations
  rhs_unit = jnp.zeros((m + 1,), flat.dtype).at[0].set(1.0)

  squared_norm = _squared_norm(grad)

  def step(t, x, squared, extra):
    g, matvec = jax.linearize(grad, x)
    # MINRES: the least-squares solution of H p = -g over the Krylov space K_m(H, g), from the
    # Lanczos relation H V_m = V_{m+1} Tbar_m (full reorthogonalisation).
    basis, alphas, betas = _lanczos(matvec, g, m, jax.random.fold_in(key, t))
    tbar = jnp.zeros((m + 1, m), flat.dtype).at[:m].set(_tridiagonal(alphas, betas))
    tbar = tbar.at[m, m - 1].set(betas[-1])
    coefficients = jnp.linalg.lstsq(tbar, -jnp.sqrt(squared) * rhs_unit)[0]
    direction = basis[:m].T @ coefficients
    slope = direction @ matvec(g)  # <p, H g> = -||H p||^2 <= 0

    def accept(a):
      new = squared_norm(x + a * direction)
      return jnp.isfinite(new) & (new <= squared + 2 * _ARMIJO * a * slope)

    a = _backtrack(accept, jnp.ones((), flat.dtype))
    return x + a * direction, extra, a

  return _search(
    step,
    flat,
    (),
    steps=steps,
    grad_tol=grad_tol,
    f=f,
    squared_norm=squared_norm,
    unravel=unravel,
  )


def newton_mr(
  weights,
  loss,
  *,
  steps: int,
  minres_iterations: int | None = None,
  grad_tol: float | None = None,
  key=None,
) -> CriticalPointSearch:
  r"""Find a critical point with Newton-MR: MINRES Newton directions, line search on
  :math:`\|g\|^2`.

  .. math::
     p_t = \arg\min_{p \in \mathcal K_m(H_t, g_t)} \|H_t p + g_t\| \ (\text{minimum norm}), \qquad
     \theta_{t+1} = \theta_t + \alpha_t p_t,

  :math:`\alpha_t` the largest of :math:`1, \tfrac12, \tfrac14, \dots` with
  :math:`\|g(\theta_t + \alpha p_t)\|^2 \le \|g_t\|^2 + 2\rho\,\alpha\, \langle p_t, H_t g_t\rangle`
  (:math:`\rho = 10^{-4}`; :math:`\langle p, H g\rangle = -\|H p\|^2 \le 0`, so :math:`p` descends
  on :math:`\|g\|^2`). The MINRES step is computed from ``minres_iterations`` Lanczos steps with
  full reorthogonalisation and a dense least-squares solve of the small :math:`(m+1)\times m`
  tridiagonal system (minimum-norm, like MINRES-QLP on singular Hessians), matrix-free in
  :math:`H`. Newton-MR is attracted to critical points of every index. One compiled
  ``lax.while_loop``; vmappable (vmapped, it runs until the last start stops).

  Stopping: from the first iterate with :math:`\|g_t\|^2 <` ``grad_tol`` the search stops (the
  point stays, later history entries repeat it, ``step_size`` is 0) and ``iterations`` counts the
  iterations that ran. Without it, the iterations past the rounding floor of :math:`\|g\|^2`
  (about :math:`10^{-30}` for :math:`O(1)` weights in float64) find no decrease and halve the
  step about 40 times each before a step too small to move the point is accepted.

  The least-squares solve calls LAPACK: the call holds the OpenBLAS behind it to one thread
  (:func:`lintraj.singular_values.lapack_single_thread`, as every run does), since its threads
  only contend with XLA's. Inside your own ``jax.jit`` or ``jax.vmap`` the hold covers tracing
  only: wrap the call that runs it in ``with lt.singular_values.lapack_single_thread():``.

  Args:
    weights: start ``(W_1, ..., W_N)``.
    loss: a :class:`lintraj.losses.Loss` or a function of the end-to-end matrix.
    steps: the most Newton iterations.
    minres_iterations: Krylov dimension :math:`m` (default ``min(P, 50)``; near :math:`P` the
      minimum-norm solve reaches the near-null directions and the line search shortens the steps).
    grad_tol: stop once :math:`\|\nabla_\theta L^N\|^2` is below this (the squared norm, like
      :func:`classify`'s ``grad_tol``; Frye et al. use :math:`10^{-10}`). None: run every step.
    key: PRNG key for Lanczos restarts on breakdown (default ``PRNGKey(0)``).

  Returns:
    A :class:`CriticalPointSearch`.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> with jax.enable_x64(True):
    ...   ws = (jnp.full((1, 1), 0.1), jnp.full((1, 1), -0.05))
    ...   out = newton_mr(ws, lt.losses.target(jnp.array([[1.0]])), steps=20)
    ...   early = newton_mr(ws, lt.losses.target(jnp.array([[1.0]])), steps=20, grad_tol=1e-10)
    >>> float(out.squared_grad_norm[-1]) < 1e-10, round(float(out.loss[-1]), 6)
    (True, 0.5)
    >>> int(early.iterations) < 20, float(early.squared_grad_norm[-1]) < 1e-10
    (True, True)

  References:
    Roosta, Liu, Xu, Mahoney. Newton-MR: Newton's Method Without Smoothness or Convexity.
    arXiv 1810.00303, Algorithm 1; Frye et al., arXiv 1901.10603 (Newton-MR finds critical points
    of the deep linear autoencoder best); Choi, Paige, Saunders. MINRES-QLP. SIAM J. Sci.
    Comput. 2011.
  """
  weights, loss = _check_network(weights, loss)
  steps = _check_steps(steps)
  size = _num_params(weights)
  m = (
    min(size, 50)
    if minres_iterations is None
    else min(check_int("minres_iterations", minres_iterations, 1), size)
  )
  return _held(
    _newton_mr_run,
    weights,
    loss,
    _default_key(key),
    _tolerance(grad_tol, weights[0].dtype),
    steps,
    m,
  )


@functools.partial(jax.jit, static_argnames=("steps",))
def _damped_newton_run(weights, loss, lr, damping, rcond, grad_tol, steps):
  flat, unravel, f = _flat_loss(weights, loss)
  grad = jax.grad(f)

  squared_norm = _squared_norm(grad)

  def step(t, x, squared, extra):
    g = grad(x)
    eigenvalues, eigenvectors = jnp.linalg.eigh(jax.hessian(f)(x))
    shifted = eigenvalues + damping
    kept = jnp.abs(shifted) > rcond * jnp.max(jnp.abs(shifted))
    inverse = jnp.where(kept, 1.0 / jnp.where(kept, shifted, 1.0), 0.0)
    direction = -eigenvectors @ (inverse * (eigenvectors.T @ g))
    return x + lr * direction, extra, lr

  return _search(
    step,
    flat,
    (),
    steps=steps,
    grad_tol=grad_tol,
    f=f,
    squared_norm=squared_norm,
    unravel=unravel,
  )


def damped_newton(
  weights,
  loss,
  *,
  steps: int,
  lr: float = 0.5,
  damping: float = 0.0,
  rcond: float = 1e-10,
  grad_tol: float | None = None,
) -> CriticalPointSearch:
  r"""Find a critical point with damped Newton: a fixed fraction of the (shifted,
  pseudo-inverse) Newton step.

  .. math::
     \theta_{t+1} = \theta_t - \alpha\, (H_t + \mu I)^{+} g_t ,

  :math:`\alpha` = ``lr``, :math:`\mu` = ``damping``; the pseudo-inverse drops eigenvalues of
  :math:`H_t + \mu I` below ``rcond`` times the largest in magnitude (the Hessian of a deep linear
  network is singular along its symmetries). With :math:`\mu = 0` this is Newton's root-finding
  iteration on :math:`g = 0`, attracted to critical points of every index. Dense Hessian
  (eigendecomposition every step): small networks. One compiled ``lax.while_loop``; vmappable;
  ``grad_tol`` stops it as in :func:`newton_mr`. The eigendecomposition calls LAPACK, held to one
  thread as in :func:`newton_mr`.

  Args:
    weights: start ``(W_1, ..., W_N)``.
    loss: a :class:`lintraj.losses.Loss` or a function of the end-to-end matrix.
    steps: iterations.
    lr: step fraction :math:`0 < \alpha \le 1`.
    damping: shift :math:`\mu \ge 0`.
    rcond: relative cutoff of the pseudo-inverse.
    grad_tol: stop once :math:`\|\nabla_\theta L^N\|^2` is below this (:func:`newton_mr`).

  Returns:
    A :class:`CriticalPointSearch` (``step_size`` is ``lr`` at every step that ran).

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
  return _held(
    _damped_newton_run,
    weights,
    loss,
    jnp.asarray(lr, dtype),
    jnp.asarray(damping, dtype),
    jnp.asarray(rcond, dtype),
    _tolerance(grad_tol, dtype),
    steps,
  )

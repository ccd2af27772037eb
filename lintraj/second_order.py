r"""Second-order steps as optax transformations: damped Newton, with a dense Hessian or matrix-free
by conjugate gradients.

Both are complete optimizers (they return the update :math:`-\eta\,(H + \lambda I)^{-1} g`, like
``optax.sgd`` returns :math:`-\eta g`) and read the loss through optax's extra arguments
(``value_fn``), which :func:`lintraj.train` and :func:`lintraj.batch_train` pass to every
optimizer. :math:`H` is the Hessian of the network loss :math:`L^N(W_1, \dots, W_N)` in all the
weights, flattened in the order of ``jax.flatten_util.ravel_pytree``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jax.scipy.sparse.linalg import cg

from lintraj.validation import check_int, check_positive

__all__ = ["damped_newton", "damped_newton_cg"]


def _number(name: str, value):
  """A Python number is checked (finite, >= 0); arrays pass through unchecked, as
  ``optax.inject_hyperparams`` (``lt.batch_train(hyperparams=...)``) passes them traced."""
  if isinstance(value, (int, float)):
    return check_positive(name, value, allow_zero=True)
  return value


def _network_loss(value_fn, params):
  if value_fn is None:
    raise ValueError(
      "damped Newton needs the loss: use it through lt.train / lt.batch_train (they pass "
      "value_fn=), or call update(grads, state, params, value_fn=f) with f(params) the loss."
    )
  flat, unravel = ravel_pytree(params)
  return flat, unravel, lambda theta: value_fn(unravel(theta))


def _transformation(solve) -> optax.GradientTransformationExtraArgs:
  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None, *, value_fn=None, **extra):
    del extra
    flat, unravel, f = _network_loss(value_fn, params)
    g, _ = ravel_pytree(updates)
    return unravel(solve(f, flat, g)), state

  return optax.GradientTransformationExtraArgs(init, update)


def damped_newton(
  learning_rate: float = 1.0, damping: float = 0.0
) -> optax.GradientTransformationExtraArgs:
  r"""Damped Newton with the dense Hessian: :math:`\theta \leftarrow \theta - \eta\,(H(\theta) +
  \lambda I)^{-1} \nabla L(\theta)`, :math:`H` from ``jax.hessian`` (:math:`P^2` entries for
  :math:`P` weights: small networks; for larger ones :func:`damped_newton_cg`).

  :math:`\lambda = 0` is Newton's method; as :math:`\lambda \to \infty`, :math:`\lambda\eta^{-1}`
  fixed, it becomes gradient descent at rate :math:`\eta/\lambda`. On a deep network :math:`H`
  can be indefinite (at and near saddles, e.g. the origin), where the step is not a descent
  direction unless :math:`\lambda > -\lambda_{\min}(H)`. For the linear model on
  :func:`lintraj.losses.regression`, :math:`H = \Sigma \otimes I` with :math:`\Sigma =
  \tfrac1m X^\top X` and the step is :math:`W \leftarrow W - \eta\, G (\Sigma + \lambda I)^{-1}`:
  the "online Newton" of Wadia et al., which at :math:`\lambda = 0` is gradient descent on
  inputs whitened by :math:`\Sigma^{-1/2}`.

  Args:
    learning_rate: :math:`\eta \ge 0` (1: the full Newton step).
    damping: :math:`\lambda \ge 0`. Both may be arrays of one value per lane through
      ``lt.batch_train(..., lt.second_order.damped_newton, hyperparams={"damping": lams})``.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> loss = lt.losses.regression(x, x @ jnp.array([[1.0], [-1.0]]))
    >>> traj = lt.train((jnp.zeros((1, 2)),), loss, lt.second_order.damped_newton(), steps=1)
    >>> [round(float(v), 6) for v in traj.final[0][0]]   # one Newton step: least squares
    [1.0, -1.0]

  References:
    Wadia, Duckworth, Schoenholz, Dyer, Sohl-Dickstein. Whitening and second order optimization
    both make information in the dataset unusable during training, and can reduce or prevent
    generalization. ICML 2021 (arXiv 2008.07545), Section 3 (online Newton); Nocedal, Wright,
    Numerical Optimization (2006), Sections 3.4 and 4 (damped / regularised Newton).
  """
  lr, lam = _number("learning_rate", learning_rate), _number("damping", damping)

  def solve(f, flat, g):
    h = jax.hessian(f)(flat)
    return -lr * jnp.linalg.solve(h + lam * jnp.eye(flat.size, dtype=h.dtype), g)

  return _transformation(solve)


def damped_newton_cg(
  learning_rate: float = 1.0, damping: float = 1e-3, iterations: int = 20
) -> optax.GradientTransformationExtraArgs:
  r"""Damped Newton without forming the Hessian: :math:`(H + \lambda I)^{-1} g` by ``iterations``
  steps of conjugate gradients (``jax.scipy.sparse.linalg.cg`` from 0, no tolerance stop),
  each one Hessian-vector product (``jax.jvp`` of ``jax.grad``), so a step costs about
  ``iterations`` + 1 gradients and :math:`O(P)` memory.

  In exact arithmetic CG solves the system in at most :math:`P` iterations (the number of
  weights), and after :math:`k` its error in the :math:`(H + \lambda I)`-norm is at most
  :math:`2\big((\sqrt\kappa - 1)/(\sqrt\kappa + 1)\big)^k` of the initial one, :math:`\kappa`
  the condition number; so 10-50 iterations suffice when :math:`\lambda` bounds :math:`\kappa`.
  CG needs :math:`H + \lambda I` positive definite: on a deep network choose
  :math:`\lambda > -\lambda_{\min}(H)` (see :func:`damped_newton`).

  Args:
    learning_rate: :math:`\eta \ge 0`.
    damping: :math:`\lambda \ge 0` (both may be per-lane hyperparameters, as in
      :func:`damped_newton`).
    iterations: CG iterations per step (at least 1).

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> loss = lt.losses.regression(x, x @ jnp.array([[1.0], [-1.0]]))
    >>> newton = lt.second_order.damped_newton_cg(damping=0.0, iterations=2)  # P = 2 weights
    >>> traj = lt.train((jnp.zeros((1, 2)),), loss, newton, steps=1)
    >>> [round(float(v), 5) for v in traj.final[0][0]]
    [1.0, -1.0]

  References:
    Martens. Deep learning via Hessian-free optimization. ICML 2010; Hestenes, Stiefel. Methods
    of conjugate gradients for solving linear systems. J. Res. NBS 49 (1952).
  """
  lr, lam = _number("learning_rate", learning_rate), _number("damping", damping)
  steps = check_int("iterations", iterations, 1)

  def solve(f, flat, g):
    grad = jax.grad(f)
    operator = lambda v: jax.jvp(grad, (flat,), (v,))[1] + lam * v
    return -lr * cg(operator, g, maxiter=steps, tol=0.0)[0]

  return _transformation(solve)

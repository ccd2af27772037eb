r"""Saddle escape as optax update rules usable with :func:`lintraj.train`: perturbed gradient
descent and saddle-free Newton.

References:
  Jin, Ge, Netrapalli, Kakade, Jordan. How to Escape Saddle Points Efficiently. ICML 2017;
  Dauphin, Pascanu, Gulcehre, Cho, Ganguli, Bengio. Identifying and attacking the saddle point
  problem in high-dimensional non-convex optimization. NeurIPS 2014.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from lintraj.validation import check_int, check_positive

__all__ = ["PerturbedGradientDescentState", "perturbed_gradient_descent", "saddle_free_newton"]


class PerturbedGradientDescentState(NamedTuple):
  """State of :func:`perturbed_gradient_descent`: the PRNG key and the steps since the last
  perturbation."""

  key: Any
  steps_since_perturbation: Any


def perturbed_gradient_descent(
  lr: float, *, radius: float, grad_threshold: float, wait: int, seed: int = 0
) -> optax.GradientTransformation:
  r"""Perturbed gradient descent (Jin et al. 2017) as an optax transformation, usable with
  :func:`lintraj.train`.

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
    since = jnp.asarray(wait, jnp.int32)
    return PerturbedGradientDescentState(
      key=jax.random.PRNGKey(seed), steps_since_perturbation=since
    )

  def update(grads, state, params=None):
    del params
    flat, unravel = ravel_pytree(grads)
    key, direction_key, radius_key = jax.random.split(state.key, 3)
    direction = jax.random.normal(direction_key, flat.shape, flat.dtype)
    length = radius * jax.random.uniform(radius_key, (), flat.dtype) ** (1.0 / flat.shape[0])
    tiny = jnp.finfo(flat.dtype).tiny
    noise = length * direction / jnp.maximum(jnp.linalg.norm(direction), tiny)
    perturb = (jnp.linalg.norm(flat) <= grad_threshold) & (state.steps_since_perturbation >= wait)
    updates = -lr * flat + jnp.where(perturb, noise, jnp.zeros_like(noise))
    since = jnp.where(perturb, 0, state.steps_since_perturbation + 1)
    return unravel(updates), PerturbedGradientDescentState(key=key, steps_since_perturbation=since)

  return optax.GradientTransformation(init, update)


def saddle_free_newton(
  lr: float = 1.0, *, damping: float = 1e-3
) -> optax.GradientTransformationExtraArgs:
  r"""Saddle-free Newton (Dauphin et al. 2014) as an optax transformation, usable with
  :func:`lintraj.train`.

  .. math::
     \theta_{t+1} = \theta_t - \eta\, (|H_t| + \mu I)^{-1} g_t, \qquad
     |H| = Q\, |\Lambda|\, Q^\top \text{ for } H = Q \Lambda Q^\top,

  Newton's step with the Hessian's eigenvalues replaced by their absolute values: negative
  curvature is descended, not climbed, and saddles repel (they attract plain Newton). The exact
  dense eigendecomposition of the Hessian every step (Dauphin et al. approximate it in a Krylov
  subspace): small networks.

  The Hessian is that of ``value_fn``, the loss as a function of the weights, which optax's
  extra-args protocol passes to ``update(grads, state, params, value_fn=...)``;
  :func:`lintraj.train` and :func:`lintraj.sweep.batch_train` pass it (and the weights as
  ``params``), so the same transformation serves any loss. :math:`g` is the ``grads`` given.

  Args:
    lr: step size :math:`\eta`.
    damping: :math:`\mu > 0`, keeps the step finite where :math:`H` is singular.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` (stateless).

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> loss = lt.losses.target(jnp.diag(jnp.array([1.0, 0.5])))
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 2, 2), std=1e-3)  # near the strict saddle
    >>> traj = lt.train(ws, loss, saddle_free_newton(0.5), steps=100, record_every=100)
    >>> bool(traj.loss[-1] < 1e-6)
    True

  References:
    Dauphin, Pascanu, Gulcehre, Cho, Ganguli, Bengio. Identifying and attacking the saddle point
    problem in high-dimensional non-convex optimization. NeurIPS 2014 (arXiv 1406.2572), Section 5.
  """
  if callable(lr):
    raise ValueError(
      "saddle_free_newton no longer takes the loss: the run passes it to the "
      "update as value_fn (optax's extra-args protocol). Call "
      "saddle_free_newton(lr, damping=...)."
    )
  lr = check_positive("lr", lr)
  damping = check_positive("damping", damping)

  def init(params):
    del params
    return optax.EmptyState()

  def update(grads, state, params=None, *, value_fn=None, **extra_args):
    del extra_args
    if params is None or value_fn is None:
      raise ValueError(
        "saddle_free_newton needs the weights and the loss: call "
        "update(grads, state, params, value_fn=loss_of_weights) (lintraj.train "
        "does)."
      )
    flat_grads, unravel = ravel_pytree(grads)
    flat, unravel_params = ravel_pytree(params)
    hessian = jax.hessian(lambda theta: value_fn(unravel_params(theta)))(flat)
    eigenvalues, eigenvectors = jnp.linalg.eigh(hessian)
    scaled = (eigenvectors.T @ flat_grads) / (jnp.abs(eigenvalues) + damping)
    return unravel(-lr * (eigenvectors @ scaled)), state

  return optax.GradientTransformationExtraArgs(init, update)

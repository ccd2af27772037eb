r"""Gradient descent and optax training of deep linear networks, recording the theory's metrics.

One call compiles one ``lax.scan`` over records, each an inner scan of ``record_every`` steps;
the metrics are computed only at recorded steps and the gradient of a recorded step is reused
for its update. A second call with the same shapes, steps and record_every (but other data,
target or learning rate) reuses the compiled program.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from lintraj.losses import as_loss
from lintraj.network import check_weights, end_to_end, layer_dims
from lintraj.trajectory import Trajectory, mask_record, record

__all__ = ["gradient_descent", "train", "check_run"]


def check_run(weights, loss, steps, record_every):
  """Validate the common arguments of a run (before tracing); returns (weights, loss, steps, record_every)."""
  weights = check_weights(weights)
  loss = as_loss(loss)
  dims = layer_dims(weights)
  if loss.target is not None and tuple(np.shape(loss.target)) != (dims[-1], dims[0]):
    raise ValueError(
        f"the loss's target has shape {tuple(np.shape(loss.target))} but the end-to-end matrix of "
        f"these weights has shape {(dims[-1], dims[0])} (d_N, d_0); build the weights with "
        f"dims = ({np.shape(loss.target)[1]}, ..., {np.shape(loss.target)[0]}).")
  for name, value, least in (("steps", steps, 0), ("record_every", record_every, 1)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
      raise ValueError(f"{name} must be an integer >= {least}; got {value!r}.")
  return weights, loss, int(steps), int(record_every)


def check_lr(lr) -> float:
  """A learning rate as a float, or ValueError if it is not finite and positive."""
  try:
    lr = float(lr)
  except (TypeError, ValueError):
    raise ValueError(f"lr must be a positive finite number; got {lr!r}.") from None
  if not math.isfinite(lr) or lr <= 0:
    raise ValueError(f"lr must be a positive finite number; got {lr}. Typical values: 1e-4 .. 1.")
  return lr


def _simulate(update, state, weights, loss, steps, record_every):
  """The compiled body shared by every optimizer: records every ``record_every`` steps."""
  value_and_grad = jax.value_and_grad(lambda ws: loss(end_to_end(ws)))

  def advance(carry, value, grads):
    ws, st, t, diverged = carry
    diverged = jnp.where((diverged < 0) & ~jnp.isfinite(value), t, diverged)
    new_ws, new_st = update(ws, st, grads)
    frozen = diverged >= 0
    keep = lambda old, new: jnp.where(frozen, old, new)
    return (jax.tree_util.tree_map(keep, ws, new_ws), jax.tree_util.tree_map(keep, st, new_st),
            t + 1, diverged)

  def unrecorded_step(carry, _):
    value, grads = value_and_grad(carry[0])
    return advance(carry, value, grads), None

  def recorded(carry):
    value, grads = value_and_grad(carry[0])
    invalid = (carry[3] >= 0) | ~jnp.isfinite(value)
    return value, grads, mask_record(record(carry[0], value, grads, loss.target), invalid)

  def block(carry, _):
    value, grads, rec = recorded(carry)
    carry = advance(carry, value, grads)
    carry, _ = lax.scan(unrecorded_step, carry, None, length=record_every - 1)
    return carry, rec

  n_blocks = steps // record_every
  carry = (weights, state, jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32))
  carry, recs = lax.scan(block, carry, None, length=n_blocks)
  *_, last = recorded(carry)
  carry, _ = lax.scan(unrecorded_step, carry, None, length=steps - n_blocks * record_every)
  recs = jax.tree_util.tree_map(lambda r, x: jnp.concatenate([r, x[None]]), recs, last)
  return recs, carry[0], carry[3]


def _sgd_update(ws, lr, grads):
  return jax.tree_util.tree_map(lambda w, g: w - lr * g, ws, grads), lr


def _optax_update(optimizer, ws, opt_state, grads):
  updates, opt_state = optimizer.update(grads, opt_state, ws)
  return optax.apply_updates(ws, updates), opt_state


@functools.partial(jax.jit, static_argnames=("steps", "record_every"))
def _gradient_descent_run(weights, loss, lr, steps, record_every):
  return _simulate(_sgd_update, lr, weights, loss, steps, record_every)


@functools.partial(jax.jit, static_argnames=("optimizer", "steps", "record_every"))
def _train_run(weights, loss, optimizer, steps, record_every):
  update = functools.partial(_optax_update, optimizer)
  return _simulate(update, optimizer.init(weights), weights, loss, steps, record_every)


def _trajectory(recs, final, diverged, steps, record_every) -> Trajectory:
  diverged = int(diverged)
  return Trajectory(step=jnp.arange(steps // record_every + 1, dtype=jnp.int32) * record_every,
                    final=final, diverged_step=None if diverged < 0 else diverged, **recs)


def gradient_descent(weights, loss, *, lr, steps: int, record_every: int = 1) -> Trajectory:
  r"""Full-batch gradient descent on the network loss :math:`L^N(W_1..W_N) = L^1(W_{1:N})`,
  recording the theory's metrics every ``record_every`` steps.

  .. math::
     W_j(t+1) = W_j(t) - \eta\, \frac{\partial L^N}{\partial W_j}
              = W_j(t) - \eta\, W_{j+1:N}^\top \nabla L^1(W_{1:N})\, W_{1:j-1}^\top .

  Numerically equal to :func:`train` with ``optax.sgd(lr)``, but the learning rate is a traced
  argument: changing it does not recompile. The dtype follows the weights (float64 under
  ``jax.enable_x64(True)`` with float64 weights).

  Divergence: from the first step whose loss is not finite the weights stop changing, the
  records from that step on are NaN, and ``diverged_step`` names the step; earlier records
  are intact.

  Args:
    weights: ``(W_1, ..., W_N)``, ``W_j`` of shape ``(d_j, d_{j-1})``.
    loss: a :class:`lintraj.losses.Loss` (e.g. ``lintraj.losses.target(phi)``) or a jittable
      function of the end-to-end matrix.
    lr: learning rate :math:`\eta > 0`.
    steps: number of GD steps.
    record_every: record at steps ``0, k, 2k, ...``; ``T = steps // k + 1`` records.

  Returns:
    A :class:`lintraj.Trajectory`.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> phi = jnp.array([[1.0, 0.5]])
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 3, 1), std=0.5)
    >>> traj = lt.gradient_descent(ws, lt.losses.target(phi), lr=0.1, steps=500, record_every=100)
    >>> traj.loss.shape, bool(traj.loss[-1] < 1e-6)
    ((6,), True)

  References:
    Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019 (arXiv 1810.02281), Eq. (4).
  """
  weights, loss, steps, record_every = check_run(weights, loss, steps, record_every)
  lr = jnp.asarray(check_lr(lr), weights[0].dtype)
  recs, final, diverged = _gradient_descent_run(weights, loss, lr, steps, record_every)
  return _trajectory(recs, final, diverged, steps, record_every)


def train(weights, loss, optimizer: optax.GradientTransformation, *, steps: int,
          record_every: int = 1) -> Trajectory:
  r"""Train the network with any optax optimizer, recording like :func:`gradient_descent`.

  The optimizer is a compile-time constant: reuse the same object to avoid recompiling.

  Example:
    >>> import jax, jax.numpy as jnp, optax, lintraj as lt
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 3, 1), std=0.5)
    >>> traj = lt.train(ws, lt.losses.target(jnp.array([[1.0, 0.5]])), optax.adam(1e-2), steps=100)
    >>> traj.step.shape
    (101,)

  References:
    Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration by
    Overparameterization. ICML 2018 (arXiv 1802.06509), Section 6 (GD vs adaptive methods).
  """
  weights, loss, steps, record_every = check_run(weights, loss, steps, record_every)
  if not isinstance(optimizer, optax.GradientTransformation):
    raise ValueError(f"optimizer must be an optax.GradientTransformation (e.g. optax.sgd(1e-2)); got "
                     f"{type(optimizer).__name__}.")
  recs, final, diverged = _train_run(weights, loss, optimizer, steps, record_every)
  return _trajectory(recs, final, diverged, steps, record_every)

"""An independent NumPy float64 implementation of deep linear network GD and its metrics.

Written from the formulas of docs/theory.md, "Notation" (explicit gradients
dL^N/dW_j = W_{j+1:N}^T G W_{1:j-1}^T), sharing no code with lintraj. The minibatches of SGD
are drawn with ``jax.random`` directly, from the sampling rules README.md states. Matrix
sensing's loss and gradient are written from its formula (lintraj.losses.matrix_sensing), by loops
over the measurements.
"""

import jax
import numpy as np


def product(ws, lo, hi):
  """W_{lo:hi} = W_hi ... W_lo (1-based, inclusive); identity of the right size when empty."""
  out = np.eye(ws[lo - 1].shape[1]) if hi < lo else ws[lo - 1]
  for j in range(lo + 1, hi + 1):
    out = ws[j - 1] @ out
  return out


def layer_gradients(ws, grad_end_to_end):
  n = len(ws)
  grads = []
  for j in range(1, n + 1):
    left = product(ws, j + 1, n) if j < n else np.eye(ws[-1].shape[0])
    right = product(ws, 1, j - 1) if j > 1 else np.eye(ws[0].shape[1])
    grads.append(left.T @ grad_end_to_end @ right.T)
  return grads


def metrics(ws, phi):
  w = product(ws, 1, len(ws))
  pairs = [np.linalg.norm(b.T @ b - a @ a.T) for a, b in zip(ws[:-1], ws[1:])]
  grads = layer_gradients(ws, w - phi)
  return dict(
    loss=0.5 * np.sum((w - phi) ** 2),
    balancedness=max(pairs, default=0.0),
    deficiency_margin=np.linalg.svd(phi, compute_uv=False)[-1] - np.linalg.norm(w - phi),
    grad_norm=np.sqrt(sum(np.sum(g**2) for g in grads)),
    layer_singular_values=[np.linalg.svd(x, compute_uv=False) for x in ws],
    end_to_end_singular_values=np.linalg.svd(w, compute_uv=False),
  )


def gradient_descent(ws, phi, lr, steps, record_every):
  """Returns (list of metric dicts at steps 0, k, 2k, ..., final weights)."""
  ws = [np.array(w, np.float64) for w in ws]
  records = []
  for t in range(steps + 1):
    if t % record_every == 0:
      records.append(metrics(ws, phi))
    if t == steps:
      break
    grads = layer_gradients(ws, product(ws, 1, len(ws)) - phi)
    ws = [w - lr * g for w, g in zip(ws, grads)]
  return records, ws


def minibatch_rows(scheme, key, m, b, steps):
  """The example rows of each SGD step: epoch ``e``'s order is the identity (sequential), one
  ``permutation(key, m)`` (shuffle_once) or ``permutation(fold_in(key, e), m)`` (shuffle), and
  batches are consecutive ``b`` of the orders laid end to end; with_replacement draws
  ``randint(fold_in(key, t), (b,), 0, m)`` at step ``t``."""
  if scheme == "with_replacement":
    draw = lambda t: jax.random.randint(jax.random.fold_in(key, t), (b,), 0, m, np.int32)
    return [np.asarray(draw(t)) for t in range(steps)]
  if scheme == "sequential":
    orders = lambda e: np.arange(m)
  elif scheme == "shuffle_once":
    orders = lambda e: np.asarray(jax.random.permutation(key, m))
  else:
    orders = lambda e: np.asarray(jax.random.permutation(jax.random.fold_in(key, e), m))
  flat = np.concatenate([orders(e) for e in range(steps * b // m + 2)])
  return [flat[t * b : (t + 1) * b] for t in range(steps)]


def sensing_loss(a, y, w):
  """Matrix sensing 1/(2m) sum_i (<A_i, W> - y_i)^2, <A, W> = trace(A^T W), by a Python loop."""
  residuals = [np.trace(np.asarray(a_i).T @ w) - y_i for a_i, y_i in zip(a, y)]
  return 0.5 * np.sum(np.square(residuals)) / len(residuals)


def sensing_gradient(a, y, w):
  """Its gradient in W: 1/m sum_i (<A_i, W> - y_i) A_i."""
  return sum((np.trace(a_i.T @ w) - y_i) * a_i for a_i, y_i in zip(a, y)) / len(y)


def central_differences(f, w, h=1e-6):
  """The gradient of the scalar function ``f`` at the matrix ``w`` by central differences."""
  grad = np.zeros_like(w)
  for index in np.ndindex(w.shape):
    step = np.zeros_like(w)
    step[index] = h
    grad[index] = (f(w + step) - f(w - step)) / (2 * h)
  return grad


def gradient_descent_on(ws, grad_fn, lr, steps, rows=None):
  """GD (or SGD with ``rows[t]``, the examples of step ``t``) with the end-to-end gradient
  ``grad_fn(W)`` (``grad_fn(W, rows[t])`` with rows); returns the weights after each step
  (index 0: the initial ones)."""
  ws = [np.array(w, np.float64) for w in ws]
  out = [ws]
  for t in range(steps):
    w = product(ws, 1, len(ws))
    g = grad_fn(w) if rows is None else grad_fn(w, rows[t])
    ws = [a - lr * d for a, d in zip(ws, layer_gradients(ws, g))]
    out.append(ws)
  return out

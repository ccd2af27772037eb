"""An independent NumPy float64 implementation of deep linear network GD and its metrics.

Written from the formulas of docs/theory.md, "Notation" (explicit gradients
dL^N/dW_j = W_{j+1:N}^T G W_{1:j-1}^T), sharing no code with lintraj.
"""

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

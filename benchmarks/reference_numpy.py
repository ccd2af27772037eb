"""The NumPy loop a researcher writes: explicit gradients, metrics every ``record_every`` steps.

.. math::
   \\frac{\\partial L^N}{\\partial W_j} = W_{j+1:N}^\\top (W_{1:N} - \\Phi)\\, W_{1:j-1}^\\top .
"""

from __future__ import annotations

import numpy as np


def run(weights, phi, *, lr: float, steps: int, record_every: int) -> dict:
  """GD on ``1/2 ||W_N ... W_1 - phi||_F^2``; the records of lintraj's fields at steps 0, k, 2k,
  ..."""
  ws = [np.array(w) for w in weights]
  phi = np.asarray(phi)
  sigma_min_phi = np.linalg.svd(phi, compute_uv=False)[-1]
  rec = {
    k: []
    for k in (
      "loss",
      "balancedness",
      "deficiency_margin",
      "grad_norm",
      "layer_singular_values",
      "end_to_end_singular_values",
    )
  }
  for t in range(steps + 1):
    prefix = [ws[0]]  # prefix[j] = W_{j+1} ... W_1
    for w in ws[1:]:
      prefix.append(w @ prefix[-1])
    residual = prefix[-1] - phi
    grads, back = [None] * len(ws), residual  # back = W_{j+1:N}^T (W - phi)
    for j in range(len(ws) - 1, -1, -1):
      grads[j] = back @ prefix[j - 1].T if j else back
      if j:
        back = ws[j].T @ back
    if t % record_every == 0:
      rec["loss"].append(0.5 * np.sum(residual**2))
      rec["balancedness"].append(
        max((np.linalg.norm(b.T @ b - a @ a.T) for a, b in zip(ws, ws[1:])), default=0.0)
      )
      rec["deficiency_margin"].append(sigma_min_phi - np.linalg.norm(residual))
      rec["grad_norm"].append(np.sqrt(sum(np.sum(g**2) for g in grads)))
      rec["layer_singular_values"].append([np.linalg.svd(w, compute_uv=False) for w in ws])
      rec["end_to_end_singular_values"].append(np.linalg.svd(prefix[-1], compute_uv=False))
    if t < steps:
      ws = [w - lr * g for w, g in zip(ws, grads)]
  out = {k: np.asarray(v) for k, v in rec.items() if k != "layer_singular_values"}
  out["layer_singular_values"] = tuple(np.stack(s) for s in zip(*rec["layer_singular_values"]))
  return out

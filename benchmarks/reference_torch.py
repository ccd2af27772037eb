"""The PyTorch eager loop a researcher writes: autograd, ``torch.optim.SGD``, metrics every
``record_every`` steps (the same fields as :class:`lintraj.Trajectory`)."""

from __future__ import annotations

import numpy as np
import torch


def run(weights, phi, *, lr: float, steps: int, record_every: int, device: str = "cpu") -> dict:
  """GD on ``1/2 ||W_N ... W_1 - phi||_F^2``; the records of lintraj's fields at steps 0, k, 2k,
  ... (tensors on ``device``, records copied back to the CPU)."""
  ws = [torch.tensor(np.asarray(w), device=device, requires_grad=True) for w in weights]
  phi = torch.tensor(np.asarray(phi), device=device)
  opt = torch.optim.SGD(ws, lr=lr)
  sigma_min_phi = torch.linalg.svdvals(phi)[-1]
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
    opt.zero_grad()
    e2e = ws[0]
    for w in ws[1:]:
      e2e = w @ e2e
    loss = 0.5 * ((e2e - phi) ** 2).sum()
    loss.backward()
    if t % record_every == 0:
      with torch.no_grad():
        rec["loss"].append(loss.item())
        rec["balancedness"].append(
          max(
            (torch.linalg.norm(b.T @ b - a @ a.T).item() for a, b in zip(ws, ws[1:])), default=0.0
          )
        )
        rec["deficiency_margin"].append((sigma_min_phi - torch.linalg.norm(e2e - phi)).item())
        rec["grad_norm"].append(torch.sqrt(sum((w.grad**2).sum() for w in ws)).item())
        rec["layer_singular_values"].append([torch.linalg.svdvals(w) for w in ws])
        rec["end_to_end_singular_values"].append(torch.linalg.svdvals(e2e))
    if t < steps:
      opt.step()
  out = {k: np.asarray(rec[k]) for k in ("loss", "balancedness", "deficiency_margin", "grad_norm")}
  out["layer_singular_values"] = tuple(
    torch.stack(s).cpu().numpy() for s in zip(*rec["layer_singular_values"])
  )
  out["end_to_end_singular_values"] = torch.stack(rec["end_to_end_singular_values"]).cpu().numpy()
  return out

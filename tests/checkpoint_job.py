"""Long runs with checkpoints, killed mid-run by tests/test_checkpoint.py.

``python -m tests.checkpoint_job KIND PATH`` runs :func:`run` (KIND ``single`` or ``batch``) with
checkpoints written to PATH every :data:`CHECKPOINT_EVERY` steps; the test kills it after a
checkpoint, resumes from the file and compares with the same run done without interruption.
"""

import sys

import jax
import numpy as np

import lintraj as lt

STEPS = {"single": 600_000, "batch": 300_000}
RECORD_EVERY = 500
CHECKPOINT_EVERY = 5_000


def arguments(kind: str) -> dict:
  """The run's arguments (float64): weights, loss and learning rate(s)."""
  rng = np.random.default_rng(1)
  phi = rng.normal(size=(2, 6))
  phi /= np.linalg.norm(phi)
  loss = lt.losses.target(phi)
  if kind == "single":
    ws = lt.init.balanced(jax.random.PRNGKey(0), (6, 5, 5, 2), std=0.2, dtype=np.float64)
    return dict(weights=ws, loss=loss, lr=0.01)
  ws, lrs, _ = lt.sweep.grid(
    "balanced", (6, 5, 5, 2), std=[0.1, 0.3], lr=[0.0005, 0.003, 0.01], dtype=np.float64
  )
  return dict(weights=ws, loss=loss, lr=lrs, stop_at_loss=1e-26, lanes_per_device=2)


def run(kind: str, **kwargs):
  """The run, with extra keyword arguments (e.g. ``checkpoint=``); call under ``jax.enable_x64``."""
  run_fn = lt.gradient_descent if kind == "single" else lt.batch_gradient_descent
  return run_fn(**arguments(kind), steps=STEPS[kind], record_every=RECORD_EVERY, **kwargs)


if __name__ == "__main__":
  with jax.enable_x64(True):
    run(sys.argv[1], checkpoint=sys.argv[2], checkpoint_every=CHECKPOINT_EVERY)

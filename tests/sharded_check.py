"""Sweeps on several devices, run in a subprocess with fake CPU devices by tests/test_sweep.py.

``python -m tests.sharded_check OUT.npz DEVICES`` runs :func:`cases` with the lanes split over the
first ``DEVICES`` devices and writes every result array to ``OUT.npz``, plus ``devices/...``
entries saying how many devices the placed arrays actually spanned. The test computes the same
cases on one device and compares.

The subprocess is started with more fake devices (8) than it uses (4): XLA's CPU thread pool has
max(cores, devices) threads and jaxlib 0.10.2's LAPACK kernels (the SVDs of the records) hand
work to that pool and block until it is done, so with every pool thread running a device's
program they can all wait on each other forever. Spare threads avoid that.
"""

import sys

import jax
import numpy as np

import lintraj as lt

DIMS = (5, 4, 4, 2)


def problem():
  """Ten lanes (two init scales x five learning rates, the largest diverges), a shared target
  and one target per lane."""
  ws, lrs, _ = lt.sweep.grid("gaussian", DIMS, std=[0.4, 0.7], lr=[0.02, 0.05, 0.1, 0.2, 3.0])
  rng = np.random.default_rng(0)
  targets = rng.normal(size=(len(lrs), DIMS[-1], DIMS[0]))
  targets /= np.linalg.norm(targets, axis=(1, 2), keepdims=True)
  return ws, lrs, targets


def cases(devices=None) -> dict:
  """Every case's trajectory arrays by name ``case/field[/i]`` (float64)."""
  out = {}
  with jax.enable_x64(True):
    ws, lrs, targets = problem()
    ws = tuple(np.asarray(w, np.float64) for w in ws)
    shared = lt.losses.target(targets[0])
    per_lane = [lt.losses.target(t) for t in targets]
    x = np.random.default_rng(1).standard_normal((12, DIMS[0]))  # minibatch SGD: 12 examples
    runs = {
      "shared_bs2": dict(loss=shared, lanes_per_device=2),
      "per_lane_bs3": dict(loss=per_lane, lanes_per_device=3, track=("sharpness",), track_every=2),
      "shared_default": dict(loss=shared, lanes_per_device=None),
      "held_out_bs2": dict(
        loss=shared, lanes_per_device=2, validation=lt.losses.target(targets[1]), patience=2
      ),
      "sgd_bs2": dict(
        loss=lt.losses.regression(x, x @ targets[0].T),
        lanes_per_device=2,
        batch_size=3,
        key=jax.random.PRNGKey(4),
      ),
    }
    for name, kwargs in runs.items():
      traj = lt.batch_gradient_descent(
        ws, lr=lrs, steps=60, record_every=7, stop_at_loss=0.05, devices=devices, **kwargs
      )
      for field, value in traj._asdict().items():
        for i, leaf in enumerate(jax.tree_util.tree_leaves(value)):
          out[f"{name}/{field}/{i}"] = np.asarray(leaf)
  return out


def _main(path, used):
  from lintraj import _engine

  spans = []
  place = _engine.initial_state

  def spying(*args, **kwargs):
    state = place(*args, **kwargs)
    spans.append(len(state.records["loss"].sharding.device_set))
    return state

  _engine.initial_state = spying
  out = cases(jax.devices()[:used])
  out["devices/available"] = np.asarray(jax.device_count())
  out["devices/spanned"] = np.asarray(spans)
  np.savez(path, **out)


if __name__ == "__main__":
  _main(sys.argv[1], int(sys.argv[2]))

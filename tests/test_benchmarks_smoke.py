"""Smoke tests of benchmarks/: the reference loops compute lintraj's metrics, and the tracking
benchmark runs end to end in --quick mode (its numbers are not checked: the machine is shared)."""

import importlib.util
import os
import sys

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import common  # noqa: E402
import reference_numpy  # noqa: E402
from common import lt  # noqa: E402

FIELDS = ("loss", "balancedness", "deficiency_margin", "grad_norm", "end_to_end_singular_values")


def _compare(reference):
  weights, phi = common.problem(3, 4, seed=1)
  ref = reference.run(weights, phi, lr=0.05, steps=20, record_every=5)
  traj = lt.gradient_descent(weights, lt.losses.target(phi), lr=0.05, steps=20, record_every=5)
  for name in FIELDS:
    np.testing.assert_allclose(
      np.asarray(ref[name]), np.asarray(getattr(traj, name)), rtol=2e-4, atol=2e-5, err_msg=name
    )
  for r, s in zip(ref["layer_singular_values"], traj.layer_singular_values):
    np.testing.assert_allclose(r, np.asarray(s), rtol=2e-4, atol=2e-5)


def test_numpy_reference_computes_lintrajs_metrics():
  _compare(reference_numpy)


@pytest.mark.skipif(
  importlib.util.find_spec("torch") is None, reason="torch (the bench extra) not installed"
)
def test_torch_reference_computes_lintrajs_metrics():
  import reference_torch

  _compare(reference_torch)


def test_tracking_benchmark_quick(tmp_path, monkeypatch):
  import bench_tracking

  monkeypatch.setattr(common, "RESULTS", str(tmp_path))
  rows = bench_tracking.main(["--quick", "--no-torch"])
  impls = {r["impl"]: r for r in rows if r["record_every"] == 1}
  assert {
    "lintraj",
    "floor",
    "numpy, 1 thread",
    "numpy, 2 threads",
    "cand: exact",
    "cand: batched",
    "cand: gram",
    "cand: tracked",
  } <= set(impls)
  assert all(r["steps_per_s"] > 0 for r in rows)
  assert impls["cand: batched"]["max_err"] <= 1e-5
  assert impls["lintraj"]["first_call_s"] > 0 and impls["floor"]["x_floor"] == 1
  assert os.path.exists(tmp_path / "tracking.quick.json")

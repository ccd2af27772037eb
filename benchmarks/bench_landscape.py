"""Newton-MR per iteration on the 16-4 linear autoencoder (float64), shipped against what it was.

:func:`lintraj.landscape.newton_mr` at its default Krylov dimension (50) from one Gaussian start
of the critical-points study's autoencoder (16 inputs, hidden width 4, depth 2, covariance
:func:`lintraj.reproductions.landscape_studies.autoencoder_covariance`), ``steps`` iterations,
measured side by side (interleaved, median kept), wall time and this process's CPU time (which
counts every thread, spinning ones included):

- ``shipped``: as shipped (the least-squares solve's LAPACK holds its OpenBLAS to one thread);
- ``OpenBLAS default threads (before)``: the same call with that hold disabled
  (``finders.lapack_single_thread`` replaced by :func:`contextlib.nullcontext`): the behaviour
  before, when XLA's threads and OpenBLAS's contended and an iteration took 1.8 to 87 ms;
- ``grad_tol=1e-10``: shipped, stopping at Frye et al.'s criterion: per iteration that ran, and
  the call's time against a full ``shipped`` call (``x_shipped_call``).

``halvings_after_floor``: the line search's halvings per iteration once ``||g||^2`` reached its
rounding floor (``step_size = 2^-k``), the other half of the anomaly (cheap: a gradient each).

Usage: ``python benchmarks/bench_landscape.py [--quick]``; writes ``results/landscape.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import lt  # noqa: E402

from lintraj.landscape import finders  # noqa: E402
from lintraj.reproductions import landscape_studies  # noqa: E402

DIMS = (16, 4, 16)
START_SEED, START_STD = 3, 0.5
GRAD_TOL = 1e-10


@contextlib.contextmanager
def openblas_default_threads():
  held = finders.lapack_single_thread
  finders.lapack_single_thread = contextlib.nullcontext
  try:
    yield
  finally:
    finders.lapack_single_thread = held


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (a smoke run)")
  args = parser.parse_args(argv)
  common.require_device("cpu")
  steps, repeats = (10, 1) if args.quick else (40, 7)
  with jax.enable_x64(True):
    loss = lt.landscape.autoencoder_loss(landscape_studies.autoencoder_covariance())
    start = lt.init.gaussian(jax.random.PRNGKey(START_SEED), DIMS, std=START_STD)
    call = lambda **kw: jax.block_until_ready(
      lt.landscape.newton_mr(start, loss, steps=steps, **kw)
    )
    full, early = call(), call(grad_tol=GRAD_TOL)  # compile; the trajectories
    cases = {
      "shipped": call,
      "OpenBLAS default threads (before)": call,
      f"grad_tol={GRAD_TOL:g}": lambda: call(grad_tol=GRAD_TOL),
    }
    contexts = {"OpenBLAS default threads (before)": openblas_default_threads}
    wall, cpu = {k: [] for k in cases}, {k: [] for k in cases}
    for _ in range(repeats):
      for name, run in cases.items():
        with contexts.get(name, contextlib.nullcontext)():
          started, cpu_started = time.perf_counter(), time.process_time()
          run()
          wall[name].append(time.perf_counter() - started)
          cpu[name].append(time.process_time() - cpu_started)
  squared = np.asarray(full.squared_grad_norm)
  step_size = np.asarray(full.step_size)
  floor = squared[:-1] < 1e-26
  halvings = -np.log2(step_size[floor & (step_size > 0)]) if floor.any() else np.array([])
  shipped_call = statistics.median(wall["shipped"])
  rows = []
  for name in cases:
    ran = int(early.iterations) if name.startswith("grad_tol") else steps
    seconds = statistics.median(wall[name])
    rows.append(
      dict(
        case=name,
        steps=steps,
        iterations=ran,
        ms_per_iteration=1e3 * seconds / ran,
        cpu_ms_per_iteration=1e3 * statistics.median(cpu[name]) / ran,
        x_shipped_call=seconds / shipped_call,
      )
    )
  payload = dict(
    dims=list(DIMS),
    start=dict(seed=START_SEED, std=START_STD),
    minres_iterations=50,
    repeats=repeats,
    final_squared_grad_norm=float(squared[-1]),
    iterations_to_grad_tol=int(early.iterations),
    halvings_after_floor=float(np.median(halvings)) if halvings.size else None,
    rows=rows,
  )
  print(
    common.table(
      rows,
      [
        "case",
        "steps",
        "iterations",
        "ms_per_iteration",
        "cpu_ms_per_iteration",
        "x_shipped_call",
      ],
    )
  )
  print(
    f"grad_tol {GRAD_TOL:g}: {payload['iterations_to_grad_tol']} of {steps} iterations ran; "
    f"halvings per iteration at the floor: {payload['halvings_after_floor']}"
  )
  print(f"wrote {common.write('landscape', payload, args.quick)}")
  return payload


if __name__ == "__main__":
  main()

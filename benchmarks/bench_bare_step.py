"""Bare-step efficiency: achieved GFLOP/s of lintraj's GD step (no tracking) over the GFLOP/s of
a plain jitted matmul of the same size, measured side by side, widths 64..512.

The step of a depth-N network of width d costs 3 (N - 1) matmuls of 2 d^3 flops (N - 1 for
the end-to-end product, two per product for the gradient); only those flops are counted. The
step's time is the slope between two :func:`lintraj.gradient_descent` calls with
``record_every = steps`` (two records each) of S and 3S steps, so neither the per-call cost nor
the two records enter it (LAPACK held to one thread, see bench_tracking.py, to steady the records).
The matmul reference is a compiled ``lax.scan`` of S matmuls.

Usage: ``python benchmarks/bench_bare_step.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import lt  # noqa: E402

from lintraj import singular_values as sv  # noqa: E402

WIDTHS = (64, 128, 256, 512)
DEPTH = 4


def matmul_runner(width, count):
  w = jnp.asarray(lt.init.orthogonal(jax.random.PRNGKey(1), (width, width))[0])
  x = jnp.eye(width, dtype=jnp.float32)
  run = jax.jit(lambda x, w: lax.scan(lambda x, _: (x @ w, None), x, None, length=count)[0])
  return lambda: jax.block_until_ready(run(x, w))


def measure(width, quick):
  weights, phi = common.problem(DEPTH, width)
  loss = lt.losses.target(phi)
  flops = 3 * (DEPTH - 1) * 2 * width**3
  steps = max(4, int((0.05 if quick else 0.5) * 150e9 / flops))

  def gd(n):
    return lambda: jax.block_until_ready(
      lt.gradient_descent(weights, loss, lr=common.LR, steps=n, record_every=n)
    )

  runs = dict(
    short=gd(steps), long=gd(3 * steps), matmul=matmul_runner(width, 3 * (DEPTH - 1) * 2 * steps)
  )
  for run in runs.values():
    run()  # compile
  with sv.lapack_single_thread():  # steadier records: they cancel in the slope
    t = common.interleaved(runs, 1 if quick else 3)
  step_seconds = (t["long"] - t["short"]) / (2 * steps)
  gd_gflops = flops / step_seconds / 1e9
  matmul_gflops = 2 * steps * flops / t["matmul"] / 1e9
  return dict(
    depth=DEPTH,
    width=width,
    steps=steps,
    step_ms=step_seconds * 1e3,
    gd_gflops=gd_gflops,
    matmul_gflops=matmul_gflops,
    ratio=gd_gflops / matmul_gflops,
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a fast smoke run (numbers meaningless)")
  args = parser.parse_args(argv)
  rows = [measure(w, args.quick) for w in (WIDTHS[:2] if args.quick else WIDTHS)]
  print(common.table(rows, ["depth", "width", "step_ms", "gd_gflops", "matmul_gflops", "ratio"]))
  print(f"wrote {common.write('bare_step', dict(rows=rows), args.quick)}")
  return rows


if __name__ == "__main__":
  main()

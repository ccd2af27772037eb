"""Compile time vs depth (N = 4..64) with full tracking: the first call of
:func:`lintraj.gradient_descent` minus the second (same shapes, so the second reuses the
compiled program), width 32, record_every 10; and the compile time of
:func:`lintraj.recording.record` alone with each singular-value method.

Usage: ``python benchmarks/bench_compile.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import lt  # noqa: E402

from lintraj import recording, singular_values  # noqa: E402

DEPTHS = (4, 8, 16, 32, 64)
WIDTH = 32


def measure(depth):
  weights, phi = common.problem(depth, WIDTH)
  weights, loss = tuple(jnp.asarray(w) for w in weights), lt.losses.target(phi)
  times = []
  for _ in range(2):
    start = time.perf_counter()
    jax.block_until_ready(
      lt.gradient_descent(weights, loss, lr=common.LR, steps=20, record_every=10)
    )
    times.append(time.perf_counter() - start)
  row = dict(depth=depth, width=WIDTH, compile_s=times[0] - times[1], first_call_s=times[0])
  grads = weights
  for method in singular_values.METHODS:
    jax.clear_caches()  # each method pays its full trace and compile
    fn = jax.jit(
      lambda ws, g, t, m=method: recording.record(ws, jnp.float32(0), g, t, singular_values=m)
    )
    start = time.perf_counter()
    fn.lower(weights, grads, loss.target).compile()
    row[f"record_{method}_s"] = time.perf_counter() - start
  return row


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a fast smoke run (depths 4 and 8)")
  args = parser.parse_args(argv)
  rows = [measure(d) for d in (DEPTHS[:2] if args.quick else DEPTHS)]
  print(
    common.table(
      rows, ["depth", "width", "compile_s", "first_call_s", "record_batched_s", "record_exact_s"]
    )
  )
  print(f"wrote {common.write('compile', dict(rows=rows), args.quick)}")
  return rows


if __name__ == "__main__":
  main()

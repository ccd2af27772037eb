"""The engine's cost per step, this checkout against another commit (no regression check).

Each configuration is a run function on a small problem (float32), timed after its compile as
the median of a few calls; the whole measurement runs in its own process for each checkout, the
processes alternating (old, new, old, new, ...) so that both see the same machine, and the
median over rounds is kept.

Usage: ``python benchmarks/bench_engine.py [--against REV] [--rounds R] [--quick]``; writes
``results/engine.json``. ``REV`` (default ``HEAD~1``) is checked out into a temporary
``git worktree``; functions it lacks are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, statistics, sys, time
import jax, jax.numpy as jnp, numpy as np, optax
import lintraj as lt
quick = {quick!r}

def problem(depth, width):
  ws = lt.init.orthogonal(jax.random.PRNGKey(0), (width,) * (depth + 1))
  phi = np.random.default_rng(0).standard_normal((width, width)) / (2 * np.sqrt(width))
  return ws, lt.losses.target(jnp.asarray(phi, jnp.float32))

def timed(run, steps, repeats=3 if quick else 7):
  jax.block_until_ready(jax.tree_util.tree_leaves(run()._asdict()))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(jax.tree_util.tree_leaves(run()._asdict()))
    times.append(time.perf_counter() - start)
  return statistics.median(times) / steps * 1e6

out = {{}}
steps = 200 if quick else 2000
for depth, width, every in ((4, 16, 1), (4, 16, 10), (8, 64, 10)):
  ws, loss = problem(depth, width)
  out[f"gradient_descent ({{depth}}, {{width}}) every {{every}}"] = timed(
      lambda: lt.gradient_descent(ws, loss, lr=1e-2, steps=steps, record_every=every), steps)
ws, loss = problem(4, 16)
adam = optax.adam(1e-3)
out["train adam (4, 16) every 10"] = timed(
    lambda: lt.train(ws, loss, adam, steps=steps, record_every=10), steps)
phi = np.random.default_rng(0).standard_normal((1, 128)); phi /= np.linalg.norm(phi)
bws, lrs, _ = lt.sweep.grid(
    "balanced", (128, 32, 32, 1), std=[1e-2, 1e-1], lr=np.geomspace(1e-3, 3e-2, 32))
target = lt.losses.target(jnp.asarray(phi, jnp.float32))
out["batch_gradient_descent 64 lanes (128, 32, 32, 1) every 100"] = timed(
    lambda: lt.batch_gradient_descent(bws, target, lr=lrs, steps=steps, record_every=100),
    steps * 64)
out["gradient_flow (4, 16) 51 records"] = timed(
    lambda: lt.gradient_flow(ws, loss, time=5.0, n_records=51), 51)
print(json.dumps(out))
"""


def measure(source: str, quick: bool) -> dict:
  env = dict(os.environ, PYTHONPATH=source)
  result = subprocess.run(
    [sys.executable, "-c", CHILD.format(quick=quick)],
    cwd=source,
    env=env,
    capture_output=True,
    text=True,
    check=True,
  )
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--against", default="HEAD~1", help="the git revision to compare with")
  parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each checkout")
  parser.add_argument("--quick", action="store_true", help="a fast smoke run (numbers meaningless)")
  args = parser.parse_args(argv)
  rounds = 1 if args.quick else args.rounds
  with tempfile.TemporaryDirectory() as folder:
    old = os.path.join(folder, "old")
    subprocess.run(
      ["git", "worktree", "add", "-q", "--detach", old, args.against], cwd=ROOT, check=True
    )
    try:
      results = {"old": [], "new": []}
      for _ in range(rounds):
        results["old"].append(measure(old, args.quick))
        results["new"].append(measure(ROOT, args.quick))
    finally:
      subprocess.run(["git", "worktree", "remove", "--force", old], cwd=ROOT, check=True)
  rows = []
  for config in results["new"][0]:
    new = statistics.median(r[config] for r in results["new"])
    olds = [r[config] for r in results["old"] if config in r]
    old_us = statistics.median(olds) if olds else None
    rows.append(
      dict(
        config=config,
        us_per_step_old=old_us,
        us_per_step_new=new,
        new_over_old=None if old_us is None else new / old_us,
      )
    )
  print(f"against {args.against}, {rounds} alternating rounds, each checkout in its own process")
  print(common.table(rows, ["config", "us_per_step_old", "us_per_step_new", "new_over_old"]))
  path = common.write("engine", dict(rows=rows, against=args.against, rounds=rounds), args.quick)
  print(f"wrote {path}")
  return rows


if __name__ == "__main__":
  main()

"""Memory: peak resident memory (ru_maxrss) of a run with record_every = 1000 in a fresh
subprocess, for 10^4, 10^5 and 10^6 steps (depth 4, width 16), against a subprocess that only
compiles and runs 1000 steps. What the records take is computed from their shapes.

Usage: ``python benchmarks/bench_memory.py [--quick]`` (quick: 10^3 and 10^4 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

RECORD_EVERY = 1000
CHILD = """
import json, resource, sys, time
sys.path.insert(0, {here!r})
import jax, common
from common import lt
steps = int(sys.argv[1])
weights, phi = common.problem(4, 16)
start = time.perf_counter()
traj = lt.gradient_descent(weights, lt.losses.target(phi), lr=common.LR, steps=steps,
                           record_every={every})
jax.block_until_ready(traj)
seconds = time.perf_counter() - start
record_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(traj._replace(final=None)))
print(json.dumps(dict(steps=steps, peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss /
1024,
                      record_kib=record_bytes / 1024, seconds=seconds)))
"""


def child(steps: int) -> dict:
  code = CHILD.format(here=os.path.dirname(os.path.abspath(__file__)), every=RECORD_EVERY)
  out = subprocess.run(
    [sys.executable, "-c", code, str(steps)], capture_output=True, text=True, check=True
  )
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="10^3 and 10^4 steps only")
  args = parser.parse_args(argv)
  counts = (RECORD_EVERY, 10**4) if args.quick else (RECORD_EVERY, 10**4, 10**5, 10**6)
  rows = [child(n) for n in counts]
  for row in rows:
    row["growth_mib"] = row["peak_rss_mib"] - rows[0]["peak_rss_mib"]
  print(common.table(rows, ["steps", "peak_rss_mib", "growth_mib", "record_kib", "seconds"]))
  print(f"wrote {common.write('memory', dict(rows=rows, record_every=RECORD_EVERY), args.quick)}")
  return rows


if __name__ == "__main__":
  main()

"""Minibatch SGD steps per second: lintraj against the PyTorch loop a researcher writes.

The problem (issue 12): a regression with m = 4096 examples, d_0 = 128, a depth-4 network of
width 64 with one output (dims ``128, 64, 64, 64, 1``), float32, loss
``1/(2b) ||W X_b^T - Y_b^T||^2`` on each minibatch, batch sizes 1, 32 and m (full batch).

- lintraj: ``lt.gradient_descent(..., batch_size=b, sampling=S, key=...)``, ``record_every =
  steps`` (two records); a step's time is the slope between calls of S and 3S steps, so neither
  the per-call cost nor the records enter it. ``sampling="shuffle"`` (a fresh permutation per
  epoch) and ``"sequential"`` (no sampling work) side by side show what sampling costs.
- PyTorch (its own process): a ``torch.randperm(m)`` per epoch, ``X[idx]`` for each batch (what a
  ``DataLoader(shuffle=True)`` over a tensor dataset does, without its worker machinery), forward,
  ``backward``, ``torch.optim.SGD.step``; timed over the same steps, the slope the same way.

Rounds alternate (lintraj, then a fresh PyTorch process) and the median is kept. Usage:
``python benchmarks/bench_sgd.py [--quick] [--rounds R]``; writes ``results/sgd.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import lt  # noqa: E402

M, DIMS, LR = 4096, (128, 64, 64, 64, 1), 1e-3
BATCHES = (1, 32, M)


def data():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((M, DIMS[0])).astype(np.float32)
  y = (x @ rng.standard_normal((DIMS[0], DIMS[-1])) / np.sqrt(DIMS[0])).astype(np.float32)
  ws = lt.init.balanced(jax.random.PRNGKey(0), DIMS, std=0.5)
  return x, y, tuple(np.asarray(w) for w in ws)


def steps_for(b, quick):
  """Steps of the short call: about 0.1 s (quick: 0.02 s) of PyTorch work at 2 CPUs."""
  per_step = 2e-4 if b == 1 else 3e-4 if b == 32 else 6e-3
  return max(20, int((0.02 if quick else 0.1) / per_step))


TORCH = r"""
import json, sys, time
import numpy as np, torch
quick, steps_of = {quick!r}, {steps!r}
d = np.load({path!r})
x, y = torch.tensor(d["x"]), torch.tensor(d["y"])
m = x.shape[0]

def run(b, steps):
  ws = [torch.tensor(d[f"w{{j}}"], requires_grad=True) for j in range(int(d["depth"]))]
  opt = torch.optim.SGD(ws, lr={lr!r})
  order, pos = torch.randperm(m), 0
  start = time.perf_counter()
  for _ in range(steps):
    if pos + b > m:
      order, pos = torch.randperm(m), 0
    idx = order[pos:pos + b]
    pos += b
    xb, yb = x[idx], y[idx]
    out = xb.T
    for w in ws:
      out = w @ out
    loss = 0.5 * ((out - yb.T) ** 2).sum() / b
    opt.zero_grad()
    loss.backward()
    opt.step()
  return time.perf_counter() - start

out = {{}}
for b, s in steps_of.items():
  run(int(b), 5)
  out[b] = (run(int(b), 3 * s) - run(int(b), s)) / (2 * s)
print(json.dumps(out))
"""


def calibrated(call, steps, seconds):
  """Steps of the short lintraj call, about ``seconds`` of work (both lengths then compiled)."""
  call(steps)
  start = time.perf_counter()
  call(steps)
  steps = max(steps, int(steps * seconds / (time.perf_counter() - start)))
  call(steps), call(3 * steps)
  return steps


def lintraj_runner(loss, ws, b, sampling):
  kw = {} if b is None else dict(batch_size=b, sampling=sampling, key=jax.random.PRNGKey(1))

  def call(n):
    traj = lt.gradient_descent(ws, loss, lr=LR, steps=n, record_every=n, **kw)
    jax.block_until_ready(traj.final)

  return call


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--rounds", type=int, default=None)
  args = parser.parse_args()
  rounds = args.rounds or (2 if args.quick else 5)
  x, y, ws = data()
  loss = lt.losses.regression(x, y)
  steps = {b: steps_for(b, args.quick) for b in BATCHES}
  path = os.path.join(common.RESULTS, "sgd_problem.npz")
  os.makedirs(common.RESULTS, exist_ok=True)
  np.savez(path, x=x, y=y, depth=len(ws), **{f"w{j}": w for j, w in enumerate(ws)})
  child = TORCH.format(
    quick=args.quick, steps={str(b): s for b, s in steps.items()}, path=path, lr=LR
  )

  configs = {
    (b, s): lintraj_runner(loss, ws, b, s) for b in BATCHES for s in ("shuffle", "sequential")
  }
  configs[(M, "full batch")] = lintraj_runner(loss, ws, None, None)
  ours_steps = {
    key: calibrated(call, steps[key[0]], 0.05 if args.quick else 0.25)
    for key, call in configs.items()
  }
  ours = {key: [] for key in configs}
  theirs = {b: [] for b in BATCHES}
  for _ in range(rounds):
    for (b, s), call in configs.items():
      n = ours_steps[(b, s)]
      t = common.interleaved({"short": lambda: call(n), "long": lambda: call(3 * n)}, 1)
      ours[(b, s)].append((t["long"] - t["short"]) / (2 * n))
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    for b, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
      theirs[int(b)].append(seconds)
  os.remove(path)

  rows = []
  for b in BATCHES:
    torch_step = statistics.median(theirs[b])
    shuffle = statistics.median(ours[(b, "shuffle")])
    sequential = statistics.median(ours[(b, "sequential")])
    row = dict(
      batch_size=b,
      torch_steps_per_s=1 / torch_step,
      lintraj_steps_per_s=1 / shuffle,
      speedup=torch_step / shuffle,
      shuffle_over_sequential=shuffle / sequential,
    )
    if b == M:  # full-batch GD, which regression evaluates from X^T X and X^T Y
      row["shuffle_over_full_batch_gd"] = shuffle / statistics.median(ours[(M, "full batch")])
    rows.append(row)
  columns = [
    "batch_size",
    "torch_steps_per_s",
    "lintraj_steps_per_s",
    "speedup",
    "shuffle_over_sequential",
    "shuffle_over_full_batch_gd",
  ]
  print(common.table(rows, columns))
  print("wrote", common.write("sgd", dict(rows=rows, rounds=rounds, torch_steps=steps), args.quick))


if __name__ == "__main__":
  main()

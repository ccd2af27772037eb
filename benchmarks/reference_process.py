"""A reference loop (``reference_numpy`` or ``reference_torch``) in a process of its own, on a
fixed number of threads, measured on request: no JAX in it, so XLA's threads cannot contend
with it, and the thread count is set before NumPy or torch start.

Protocol: one JSON request per line on stdin, ``{"problem": path.npz, "lr": lr, "steps": S,
"record_every": k, "seconds": T}`` (the ``.npz`` holds ``phi`` and ``w0, w1, ...``); the first
request for a problem warms the loop up; each answer is one JSON line on stdout,
``{"seconds": t, "steps": n}``: one sample of about ``T`` seconds (repeated calls of ``S``
steps). :class:`Reference` is the parent's side.

Usage (what :class:`Reference` runs): ``python benchmarks/reference_process.py --impl numpy
--threads 1 [--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class Reference:
  """The parent's handle on one reference process: ``sample(problem, lr, steps, record_every,
  seconds) -> steps/s`` (blocks while the child measures; the parent's threads are idle)."""

  def __init__(self, impl: str, threads: int, device: str = "cpu"):
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARIABLES})
    self.name = f"{impl}, {threads} thread{'s' if threads > 1 else ''}" + (
      f" ({device})" if device != "cpu" else ""
    )
    self.column = f"x_{impl}_{threads}t" + (f"_{device}" if device != "cpu" else "")
    self.process = subprocess.Popen(
      [sys.executable, __file__, "--impl", impl, "--threads", str(threads), "--device", device],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      env=env,
      text=True,
    )

  def sample(self, problem: str, lr: float, steps: int, record_every: int, seconds: float) -> float:
    request = dict(problem=problem, lr=lr, steps=steps, record_every=record_every, seconds=seconds)
    self.process.stdin.write(json.dumps(request) + "\n")
    self.process.stdin.flush()
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError(f"reference process {self.name!r} exited ({self.process.wait()})")
    answer = json.loads(line)
    return answer["steps"] / answer["seconds"]

  def close(self):
    self.process.stdin.close()
    self.process.wait()


def _serve(impl: str, threads: int, device: str):
  import numpy as np

  sys.path.insert(0, HERE)
  if impl == "torch":
    import reference_torch as reference
    import torch

    torch.set_num_threads(threads)
    run = lambda ws, phi, **kw: reference.run(ws, phi, device=device, **kw)
  else:
    import reference_numpy as reference

    run = reference.run
  warm = set()
  for line in sys.stdin:
    request = json.loads(line)
    with np.load(request["problem"]) as data:
      phi = data["phi"]
      weights = tuple(data[f"w{j}"] for j in range(len(data.files) - 1))
    call = lambda: run(
      weights, phi, lr=request["lr"], steps=request["steps"], record_every=request["record_every"]
    )
    key = (request["problem"], request["steps"], request["record_every"])
    if key not in warm:
      call()
      warm.add(key)
    started = time.perf_counter()
    call()
    once = time.perf_counter() - started
    reps = max(1, int(round(request["seconds"] / max(once, 1e-6))))
    started = time.perf_counter()
    for _ in range(reps):
      call()
    seconds = time.perf_counter() - started
    print(json.dumps(dict(seconds=seconds, steps=reps * request["steps"])), flush=True)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--impl", choices=("numpy", "torch"), required=True)
  parser.add_argument("--threads", type=int, required=True)
  parser.add_argument("--device", default="cpu")
  args = parser.parse_args()
  _serve(args.impl, args.threads, args.device)

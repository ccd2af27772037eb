"""Sweep throughput: B trajectories of the Arora et al. 2019 Figure 1 shape, in trajectory-steps/s.

Three ways to run the same B gradient-descent runs (float32, balanced init over a grid of init
scales x learning rates, one target, the same metrics recorded every ``record_every`` steps):

- ``lintraj batched``: one ``lt.batch_gradient_descent`` call (one compiled loop, vmapped lanes);
- ``lintraj one by one``: ``lt.gradient_descent`` lane after lane (compiled once, reused);
- ``torch one by one``: the PyTorch eager loop of ``reference_torch.py``, lane after lane, with
  torch's default threads and on one thread (``torch.set_num_threads(1)``).

Achieved throughput: ``weights_gbs`` counts the weights read and written once per lane-step
(``2 P`` float32 values, ``P`` the parameters of one network: a lower bound on the traffic, the
backward pass reads them again), against a streaming bandwidth measured in the same run
(``x = a x + b`` over float32 arrays in one compiled ``fori_loop``, read and write counted; and
NumPy's in-place passes over 256 MiB for comparison):
``stream_gbs_same`` on an array the size of the sweep's weights (the cache level they live in),
``stream_gbs_dram`` on 256 MiB.

The one-by-one loops do the same work per lane whatever B is, so they are timed on the first
few lanes and reported per trajectory-step. Also measured: the cost of ``progress=True`` on the
batched call (its own interleaved on/off pairs, more of them: the difference is small). Repetitions
are interleaved and the median kept (the machine is shared).

Usage: ``python benchmarks/bench_sweep.py [--quick] [--device gpu]``; writes
``results/sweep.json`` (``sweep.gpu.json`` on a GPU, at B = 256 to 8192 lanes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import reference_torch  # noqa: E402

import lintraj as lt  # noqa: E402

DIMS = {"N=3": (128, 32, 32, 1), "N=8": (128,) + (32,) * 7 + (1,)}
LANES = (64, 256)
LRS = np.geomspace(1e-3, 3e-2, 16)
GPU_LANES = (256, 512, 1024, 2048, 4096, 8192)
DRAM_BYTES = 256 * 2**20


def stream_gbs(n_bytes: int, repeats: int) -> float:
  """GB/s of ``x = a x + b`` over ``n_bytes`` of float32 (one read and one write per element per
  pass), in one compiled ``fori_loop`` of at least 16 passes lasting at least 0.2 s (so that the
  fixed cost of a call, the copy of its input and the output's first touch, weighs little)."""
  x = jnp.ones((max(1, n_bytes // 4),), jnp.float32)

  @jax.jit
  def passes(x, count):
    return lax.fori_loop(0, count, lambda _, x: 0.999 * x + 0.001, x)

  timed = lambda count: lambda: jax.block_until_ready(passes(x, count))
  count = 16
  while common.interleaved({"c": timed(count)}, 1)["c"] < 0.2:  # the count is traced
    count *= 4
  seconds = common.interleaved({"c": timed(count)}, repeats)["c"]
  return 2 * x.size * 4 * count / seconds / 1e9


def numpy_stream_gbs(n_bytes: int, repeats: int) -> float:
  """The same passes in NumPy, in place (``multiply`` then ``add``: two reads and two writes)."""
  x = np.ones(max(1, n_bytes // 4), np.float32)

  def five():
    for _ in range(5):
      np.multiply(x, 0.999, out=x)
      np.add(x, 0.001, out=x)

  return 2 * 2 * x.nbytes * 5 / common.interleaved({"n": five}, repeats)["n"] / 1e9


def sweep_problem(dims, lanes):
  """``lanes`` runs: 16 learning rates x ``lanes / 16`` balanced-init scales, and a unit target."""
  stds = np.geomspace(1e-3, 1e-1, lanes // len(LRS))
  weights, lrs, _ = lt.sweep.grid("balanced", dims, std=stds, lr=LRS)
  phi = np.random.default_rng(0).standard_normal((dims[-1], dims[0])).astype(np.float32)
  return weights, lrs, phi / np.linalg.norm(phi)


def _ratio(rate, reference):
  """``lintraj batched`` over ``reference``, None when the reference was not run."""
  return rate["lintraj batched"] / rate[reference] if reference in rate else None


def measure(
  name, dims, lanes, steps, record_every, repeats, progress_repeats, sequential_lanes, torch_lanes
):
  weights, lrs, phi = sweep_problem(dims, lanes)
  loss = lt.losses.target(phi)
  lane = lambda b: tuple(w[b] for w in weights)
  batched = lambda progress=False: lt.batch_gradient_descent(
    weights, loss, lr=lrs, steps=steps, record_every=record_every, progress=progress
  )
  start = time.perf_counter()
  batched()
  first_call = time.perf_counter() - start
  lt.gradient_descent(
    lane(0), loss, lr=lrs[0], steps=steps, record_every=record_every
  )  # compile once
  if torch_lanes:
    reference_torch.run(
      lane(0), phi, lr=float(lrs[0]), steps=record_every, record_every=record_every
    )  # warm up

  def one_by_one():
    for b in range(sequential_lanes):
      traj = lt.gradient_descent(lane(b), loss, lr=lrs[b], steps=steps, record_every=record_every)
      jax.block_until_ready(traj.loss)

  def torch_one_by_one(threads=None):
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
      for b in range(torch_lanes):
        reference_torch.run(lane(b), phi, lr=float(lrs[b]), steps=steps, record_every=record_every)
    finally:
      torch.set_num_threads(default)

  runs = {"batched": batched, "one by one": one_by_one}
  if torch_lanes:
    runs.update(torch=torch_one_by_one, **{"torch 1t": lambda: torch_one_by_one(threads=1)})
  seconds = common.interleaved(runs, repeats)
  bar = common.interleaved({"off": batched, "on": lambda: batched(True)}, progress_repeats)
  params = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
  stream_same = stream_gbs(lanes * params * 4, repeats)
  rate = {
    "lintraj batched": lanes * steps / seconds["batched"],
    "lintraj one by one": sequential_lanes * steps / seconds["one by one"],
  }
  if torch_lanes:
    rate["torch one by one"] = torch_lanes * steps / seconds["torch"]
    rate["torch one by one, 1 thread"] = torch_lanes * steps / seconds["torch 1t"]
  return dict(
    config=name,
    dims=list(dims),
    lanes=lanes,
    steps=steps,
    record_every=record_every,
    seconds_batched=seconds["batched"],
    seconds_batched_first_call=first_call,
    progress_overhead=bar["on"] / bar["off"] - 1,
    progress_repeats=progress_repeats,
    sequential_lanes_timed=sequential_lanes,
    torch_lanes_timed=torch_lanes,
    steps_per_s={k: float(v) for k, v in rate.items()},
    x_torch=_ratio(rate, "torch one by one"),
    x_torch_1t=_ratio(rate, "torch one by one, 1 thread"),
    x_one_by_one=rate["lintraj batched"] / rate["lintraj one by one"],
    params_per_lane=params,
    weights_gbs=rate["lintraj batched"] * 2 * params * 4 / 1e9,
    stream_gbs_same=stream_same,
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (a smoke run)")
  parser.add_argument(
    "--no-torch",
    action="store_true",
    help="skip the PyTorch one-by-one loops (in this process, under load they take minutes)",
  )
  common.add_device_argument(parser)
  args = parser.parse_args(argv)
  common.require_device(args.device)
  steps, record_every, repeats, progress_repeats = (
    (200, 50, 1, 1) if args.quick else (1000, 100, 3, 9)
  )
  import torch

  lane_counts = GPU_LANES if args.device == "gpu" else LANES
  if args.quick:
    lane_counts = lane_counts[:1]
  stream_dram = stream_gbs(DRAM_BYTES // (16 if args.quick else 1), repeats)
  numpy_dram = numpy_stream_gbs(DRAM_BYTES // (16 if args.quick else 1), repeats)
  rows = []
  for name, dims in DIMS.items():
    for lanes in lane_counts:
      row = measure(
        name,
        dims,
        lanes,
        steps,
        record_every,
        repeats,
        progress_repeats,
        sequential_lanes=8,
        torch_lanes=0 if args.no_torch else 2,
      )
      rows.append(row)
      print(
        f"{name} B={lanes}: batched {row['steps_per_s']['lintraj batched']:,.0f} steps/s, "
        f"x torch {row['x_torch']} (1 thread: {row['x_torch_1t']}), "
        f"x one by one {row['x_one_by_one']:.1f}, "
        f"progress {100 * row['progress_overhead']:+.1f}%, "
        f"weights {row['weights_gbs']:.1f} GB/s (stream {row['stream_gbs_same']:.1f})",
        file=sys.stderr,
      )
  path = common.write(
    common.result_name("sweep", args.device),
    dict(
      stream_gbs_dram=stream_dram,
      numpy_stream_gbs_dram=numpy_dram,
      torch=torch.__version__,
      torch_threads=torch.get_num_threads(),
      devices=[str(d) for d in jax.devices()],
      rows=rows,
    ),
    args.quick,
  )
  table = [
    dict(
      config=f"{r['config']} B={r['lanes']}",
      batched=r["steps_per_s"]["lintraj batched"],
      one_by_one=r["steps_per_s"]["lintraj one by one"],
      torch=r["steps_per_s"].get("torch one by one"),
      torch_1t=r["steps_per_s"].get("torch one by one, 1 thread"),
      x_torch=r["x_torch"],
      x_torch_1t=r["x_torch_1t"],
      x_one_by_one=r["x_one_by_one"],
      first_call_s=r["seconds_batched_first_call"],
      progress_pct=100 * r["progress_overhead"],
      weights_gbs=r["weights_gbs"],
      stream_gbs_same=r["stream_gbs_same"],
    )
    for r in rows
  ]
  print(
    common.table(
      table,
      [
        "config",
        "batched",
        "one_by_one",
        "torch",
        "torch_1t",
        "x_torch",
        "x_torch_1t",
        "x_one_by_one",
        "first_call_s",
        "progress_pct",
        "weights_gbs",
        "stream_gbs_same",
      ],
    )
  )
  print(f"streaming bandwidth, 256 MiB: {stream_dram:.1f} GB/s (NumPy in place {numpy_dram:.1f})")
  print(f"trajectory-steps/s, {steps} steps, record_every {record_every}; wrote {path}")


if __name__ == "__main__":
  main()

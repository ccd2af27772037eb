"""Tracking throughput: steps/s of gradient descent recording every metric, against the loops
researchers write (PyTorch eager, NumPy), and every singular-value candidate lintraj considered.

Rows, all measured side by side in one run (repetitions interleaved, median kept):

- ``lintraj``: :func:`lintraj.gradient_descent` as shipped (default ``singular_values="batched"``;
  every run holds the OpenBLAS behind jaxlib's LAPACK to one thread,
  :func:`lintraj.singular_values.lapack_single_thread`, entered in :func:`lintraj._engine.drive`).
- ``lintraj, OpenBLAS default threads``: the same call with that hold disabled
  (``lintraj._engine.lapack_single_thread`` replaced by :func:`contextlib.nullcontext` for this row
  only): what the previous default cost, where XLA's threads and OpenBLAS's contend.
- ``floor``: the limit of exact per-step singular values, from two parts measured in the same
  run: plain GD steps in one compiled scan (no record), and the record's singular values alone
  (every layer and the end-to-end matrix, one batched LAPACK call per shape as a run makes it,
  OpenBLAS on one thread); rate ``1 / (t_step + t_svds / record_every)``. ``x floor``: a row's rate
  over it (1: nothing but the step and the SVDs).
- ``numpy, T thread(s)``, ``torch, T thread(s)``: :mod:`reference_numpy`, :mod:`reference_torch`,
  each in its own process (:mod:`reference_process`: no JAX, so no XLA threads, in it; the thread
  count set through ``OMP/OPENBLAS/MKL_NUM_THREADS`` and ``torch.set_num_threads`` before the
  loop starts), on T = 1 and 2 threads. A reference measures its sample while this process
  waits; the rounds interleave all rows. ``--device gpu`` adds ``torch, 1 thread (cuda)``.
- ``compile_s`` (``lintraj`` rows): the first call's time minus a steady call's: what a notebook
  session pays once per shape.
- ``cand: <name>`` (LAPACK on one thread, as the shipped runs hold it, so that thread contention
  does not drown the algorithms' differences): one compiled scan (this file's
  :func:`candidate_runner`, the same loss, update and :func:`lintraj.recording.record` fields) with
  the singular values computed by candidate ``<name>``: ``exact`` (one LAPACK SVD per matrix),
  ``batched`` (the library default: equal shapes in batched calls of up to 8), ``gram``
  (``sqrt(eigvalsh(W^T W))``, the Gram balancedness already needs), ``tracked`` (stateful prototype,
  see :func:`_track_one`: Rayleigh-Ritz from the previous record's right singular vectors, one
  simultaneous first-order Jacobi correction, Newton-Schulz re-orthonormalisation, an exact SVD
  re-sync every 50 records; no error control). Their ``max err`` column is the largest ``|sigma -
  sigma_exact| / sigma_max`` over every record and matrix, against ``cand: exact`` on the same
  weights.

Usage: ``python benchmarks/bench_tracking.py [--quick] [--device gpu]`` (``results/tracking.json``;
``tracking.gpu.json`` on a GPU).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import importlib.util
import os
import statistics
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import lt  # noqa: E402
from reference_process import Reference  # noqa: E402

from lintraj import (
  _engine,  # noqa: E402
  recording,  # noqa: E402
)
from lintraj import singular_values as sv  # noqa: E402


@contextlib.contextmanager
def openblas_default_threads():
  """Inside the block, lintraj's runs leave the OpenBLAS behind jaxlib's LAPACK on its default
  threads (the behaviour before every run held it to one thread)."""
  held = _engine.lapack_single_thread
  _engine.lapack_single_thread = contextlib.nullcontext
  try:
    yield
  finally:
    _engine.lapack_single_thread = held


CONFIGS = ((4, 16), (8, 64), (8, 128), (16, 32))
RECORD_EVERY = (1, 10)
RESYNC = 50


# ---- singular-value candidates: f(matrices, state, resync) -> (values, state) ----------------


def _exact(matrices, state, resync):
  return sv.singular_values(matrices, "exact"), state


def _batched(matrices, state, resync):
  return sv.singular_values(matrices, "batched"), state


def _gram(matrices, state, resync):
  out = []
  for m in matrices:
    m = m if m.shape[0] >= m.shape[1] else m.T
    out.append(jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(m.T @ m)[::-1], 0.0)))
  return tuple(out), state


def _tall(m):
  return m if m.shape[0] >= m.shape[1] else m.T


def tracked_init(matrices):
  """The prototype's state: exact right singular vectors of each (tall-oriented) matrix."""
  return tuple(jnp.linalg.svd(_tall(m), full_matrices=False)[2].T for m in matrices)


def _track_one(m, v):
  """Values and refreshed vectors from the previous vectors ``v`` (a few matmuls).

  With ``b = m v`` and ``c = b^T b``, every pair of columns whose coupling is small against its
  gap (``|c_ik| <= 0.1 |c_kk - c_ii|``) is rotated at once by the first-order Jacobi angle
  ``c_ik / (c_kk - c_ii)``; pairs inside a cluster are left mixed (their values differ by at most
  the cluster's spread). ``v`` is re-orthonormalised by one Newton-Schulz step and the values are
  the column norms of ``m v``. No error control: the exact re-sync every RESYNC records bounds
  how stale the vectors get.
  """
  b = m @ v
  c = b.T @ b
  lam = jnp.diag(c)
  gap = lam[None, :] - lam[:, None]
  separated = jnp.abs(c) <= 0.1 * jnp.abs(gap)
  v = v + v @ jnp.where(separated, c / jnp.where(separated, gap, 1.0), 0.0)
  v = v @ (1.5 * jnp.eye(v.shape[1], dtype=v.dtype) - 0.5 * v.T @ v)
  return -jnp.sort(-jnp.linalg.norm(m @ v, axis=0)), v


def _tracked(matrices, state, resync):
  tall = tuple(_tall(m) for m in matrices)

  def exact(_):
    outs = [jnp.linalg.svd(m, full_matrices=False) for m in tall]
    return tuple(s for _, s, _ in outs), tuple(vt.T for *_, vt in outs)

  def track(_):
    pairs = [_track_one(m, v) for m, v in zip(tall, state)]
    return tuple(s for s, _ in pairs), tuple(v for _, v in pairs)

  return lax.cond(resync, exact, track, None)


CANDIDATES = dict(exact=_exact, batched=_batched, gram=_gram, tracked=_tracked)


def candidate_runner(singular_values_fn):
  """A jitted ``run(weights, loss, lr, state, steps=, record_every=) -> (records, state)``."""
  value_and_grad = jax.value_and_grad(lambda ws, loss: loss(lt.end_to_end(ws)))

  def record(ws, value, grads, loss, state, index):
    fields = (
      recording.record(ws, value, grads, loss.target) if singular_values_fn is _batched else None
    )
    if fields is None:
      fields = dict(
        loss=value,
        balancedness=lt.metrics.balancedness(ws),
        deficiency_margin=lt.metrics.deficiency_margin(ws, loss.target),
        grad_norm=jnp.sqrt(sum(jnp.sum(g**2) for g in grads)),
      )
      values, state = singular_values_fn(
        tuple(ws) + (lt.end_to_end(ws),), state, index % RESYNC == 0
      )
      fields["layer_singular_values"], fields["end_to_end_singular_values"] = (
        values[:-1],
        values[-1],
      )
    return fields, state

  @functools.partial(jax.jit, static_argnames=("steps", "record_every"))
  def run(weights, loss, lr, state, steps, record_every):
    update = lambda ws, gs: tuple(w - lr * g for w, g in zip(ws, gs))

    def step(ws, _):
      return update(ws, value_and_grad(ws, loss)[1]), None

    def block(carry, index):
      ws, state = carry
      value, grads = value_and_grad(ws, loss)
      rec, state = record(ws, value, grads, loss, state, index)
      ws, _ = lax.scan(step, update(ws, grads), None, length=record_every - 1)
      return (ws, state), rec

    (_, state), recs = lax.scan(block, (weights, state), jnp.arange(steps // record_every))
    return recs, state

  return run


def max_error(recs, exact) -> float:
  """Largest ``|sigma - sigma_exact| / sigma_max`` over records and matrices."""
  pairs = list(zip(recs["layer_singular_values"], exact["layer_singular_values"]))
  pairs.append((recs["end_to_end_singular_values"], exact["end_to_end_singular_values"]))
  return max(
    float(
      np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.max(np.asarray(b), axis=-1, keepdims=True))
    )
    for a, b in pairs
  )


def floor_runners(weights, loss, lr):
  """Zero-argument timers of the floor's two parts: ``STEP_BLOCK`` plain GD steps (no record) in
  one compiled scan, and ``SVD_BLOCK`` times the record's singular values (every layer and the
  end-to-end matrix, :func:`lintraj.singular_values.singular_values` as a run computes them) in
  another; each part's input depends on the previous iteration so that nothing is hoisted."""
  value_and_grad = jax.value_and_grad(lambda ws: loss(lt.end_to_end(ws)))

  @jax.jit
  def steps(ws):
    body = lambda ws, _: (tuple(w - lr * g for w, g in zip(ws, value_and_grad(ws)[1])), None)
    return lax.scan(body, ws, None, length=STEP_BLOCK)[0]

  @jax.jit
  def svds(matrices):
    def body(shift, _):
      values = sv.singular_values(tuple(m + shift for m in matrices))
      return shift + 1e-30 * values[0][0], None

    return lax.scan(body, jnp.zeros((), matrices[0].dtype), None, length=SVD_BLOCK)[0]

  matrices = tuple(weights) + (lt.end_to_end(weights),)
  run_steps = lambda: jax.block_until_ready(steps(weights))
  run_svds = lambda: jax.block_until_ready(svds(matrices))
  run_steps(), run_svds()  # compile
  return run_steps, run_svds


STEP_BLOCK, SVD_BLOCK = 50, 20


def measure(depth, width, record_every, quick, references, workdir):
  weights, phi = common.problem(depth, width)
  problem = os.path.join(workdir, f"problem_{depth}_{width}.npz")
  np.savez(problem, phi=phi, **{f"w{j}": w for j, w in enumerate(weights)})
  jweights, loss = tuple(jnp.asarray(w) for w in weights), lt.losses.target(phi)
  lr = jnp.asarray(common.LR, jnp.float32)
  jax_steps = record_every * 10  # per call; a sample repeats calls to last about `target`
  ref_steps = record_every * 3
  runs, steps_of, errors = {}, {}, {}
  contexts = collections.defaultdict(lambda: contextlib.nullcontext)  # entered once per sample

  outputs = {}
  for name, fn in CANDIDATES.items():
    runner = candidate_runner(fn)
    state = tracked_init(jweights + (lt.end_to_end(jweights),)) if fn is _tracked else ()
    call = functools.partial(
      runner, jweights, loss, lr, state, steps=jax_steps, record_every=record_every
    )
    outputs[name] = jax.block_until_ready(call()[0])  # compiles, and keeps the records
    runs[f"cand: {name}"] = lambda call=call: jax.block_until_ready(call())
    contexts[f"cand: {name}"] = sv.lapack_single_thread
    steps_of[f"cand: {name}"] = jax_steps
  for name in CANDIDATES:
    errors[f"cand: {name}"] = max_error(outputs[name], outputs["exact"])
  runs["floor: steps"], runs["floor: svds"] = floor_runners(jweights, loss, lr)
  steps_of["floor: steps"], steps_of["floor: svds"] = STEP_BLOCK, SVD_BLOCK
  contexts["floor: svds"] = sv.lapack_single_thread

  # One lintraj call should last about 0.3 s, so that its fixed per-call cost (argument checks,
  # tracing shapes) weighs on its rate about as it would on a researcher's long run.
  with sv.lapack_single_thread():
    per_step = common.interleaved({"b": runs["cand: batched"]}, 1)["b"] / jax_steps
  lintraj_steps = jax_steps if quick else record_every * max(10, int(0.3 / per_step / record_every))

  def lintraj_run():
    jax.block_until_ready(
      lt.gradient_descent(
        jweights, loss, lr=common.LR, steps=lintraj_steps, record_every=record_every
      )
    )

  first_call = common.interleaved({"first": lintraj_run}, 1)["first"]  # compiles
  runs["lintraj"], steps_of["lintraj"] = lintraj_run, lintraj_steps
  default_threads = "lintraj, OpenBLAS default threads"
  runs[default_threads], steps_of[default_threads] = lintraj_run, lintraj_steps
  contexts[default_threads] = openblas_default_threads

  # Each sample runs an implementation `reps` times so that it lasts about `target` seconds; a
  # reference measures its own sample in its process while this one waits.
  target = 0.02 if quick else 0.15

  def sample(name, n):
    with contexts[name]():
      for _ in range(n):
        runs[name]()

  reps = {}
  for name in runs:
    once = common.interleaved({name: lambda name=name: sample(name, 1)}, 1)[name]
    reps[name] = max(1, int(round(target / max(once, 1e-6))))
  rates = collections.defaultdict(list)
  for _ in range(1 if quick else 3):
    seconds = common.interleaved(
      {name: functools.partial(sample, name, reps[name]) for name in runs}, 1
    )
    for name in runs:
      rates[name].append(reps[name] * steps_of[name] / seconds[name])
    for ref in references:
      rates[ref.name].append(ref.sample(problem, common.LR, ref_steps, record_every, target))
  rate = {name: statistics.median(r) for name, r in rates.items()}
  step_s, svd_s = 1 / rate.pop("floor: steps"), 1 / rate.pop("floor: svds")
  rate["floor"] = 1 / (step_s + svd_s / record_every)
  rows = []
  first = ["lintraj", "floor", "lintraj, OpenBLAS default threads"] + [r.name for r in references]
  for name in sorted(rate, key=lambda n: (first + [n]).index(n)):
    row = dict(
      depth=depth,
      width=width,
      record_every=record_every,
      impl=name,
      steps_per_s=rate[name],
      max_err=errors.get(name),
    )
    if name == "lintraj":
      row["first_call_s"] = first_call
      row["compile_s"] = first_call - lintraj_steps / rate[name]
    if name == "floor":
      row["step_us"], row["svds_us"] = 1e6 * step_s, 1e6 * svd_s
    row["x_floor"] = rate[name] / rate["floor"]
    for ref in references:
      row[ref.column] = rate[name] / rate[ref.name]
    rows.append(row)
  return rows


REFERENCE_THREADS = (1, 2)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--quick",
    action="store_true",
    help="a fast smoke run of depth 4 width 16 only (numbers meaningless)",
  )
  parser.add_argument("--configs", default=None, help="e.g. 4x16,8x128 (default: all)")
  parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
  common.add_device_argument(parser)
  args = parser.parse_args(argv)
  common.require_device(args.device)
  torch = not args.no_torch and importlib.util.find_spec("torch") is not None
  configs = (
    (CONFIGS[:1] if args.quick else CONFIGS)
    if args.configs is None
    else tuple(tuple(int(x) for x in c.split("x")) for c in args.configs.split(","))
  )
  references = [
    Reference(impl, threads)
    for impl in (("torch", "numpy") if torch else ("numpy",))
    for threads in REFERENCE_THREADS
  ]
  if torch and args.device == "gpu":
    references.append(Reference("torch", 1, device="cuda"))
  rows = []
  try:
    with tempfile.TemporaryDirectory() as workdir:
      for depth, width in configs:
        for record_every in RECORD_EVERY:
          rows += measure(depth, width, record_every, args.quick, references, workdir)
          print(f"measured depth {depth} width {width} record_every {record_every}", flush=True)
  finally:
    for ref in references:
      ref.close()
  columns = (
    ["depth", "width", "record_every", "impl", "steps_per_s", "compile_s", "x_floor"]
    + [ref.column for ref in references]
    + ["max_err"]
  )
  print(common.table(rows, columns))
  path = common.write(
    common.result_name("tracking", args.device),
    dict(rows=rows, torch=torch, references=[ref.name for ref in references]),
    args.quick,
  )
  print(f"wrote {path}")
  return rows


if __name__ == "__main__":
  main()

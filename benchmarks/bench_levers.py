r"""Where the time of a tracked step goes at a small size, and what cheap levers give: full tracking
at depth 4, width 16, float32, record_every 1 (the size where per-operation overhead of XLA's CPU
runtime, not arithmetic, sets the pace), each group of rows measured side by side in one run
(repetitions interleaved, median kept) against the shipped ``lt.gradient_descent`` of the same
group (``x shipped``: its time over the shipped row's, below 1 is faster).

Groups:

- ``record``: the shipped record; the same loop recording loss, balancedness, deficiency margin and
  gradient norm but no singular values (zeros in their place); recording the loss only. Their
  differences are what the singular values and the other metrics cost.
- ``singular values``: how the five :math:`16 \times 16` matrices of a record (four layers, the
  end-to-end matrix) reach LAPACK: one batched ``gesdd`` call (shipped), one call per matrix
  (``singular_values="exact"``), one batched call of ``gesvd`` (LAPACK's QR driver,
  ``lax.linalg.SvdAlgorithm.QR``), two batched ``gesdd`` calls of 3 and 2 matrices (two
  independent calls that XLA may run on both cores); ``the same again (control)`` is the shipped
  path compiled a second time: its distance from 1 is the noise of the comparison.
- ``xla flags``: the shipped run at (4, 16) and (8, 128) in a fresh process per ``XLA_FLAGS``
  setting (set before jax starts), the processes taken in turn (order rotated each round), four
  rounds; ``none (control)`` is the default a second time (the noise). lintraj sets no flags;
  these rows say whether a user should.
- ``loop bookkeeping``: the shipped loop, whose per-step freeze of stopped or diverged networks
  (:func:`lintraj._engine._advance`) takes the update under ``lax.cond``, against the previous
  one, which computed the update and kept it or not with a ``jnp.where`` on every weight (the
  records are bitwise identical, checked by :func:`check_bookkeeping` in every run), at
  record_every 1 and 10.

In-process variants replace a module attribute (e.g. ``lintraj.singular_values.singular_values``)
while they trace, and each uses its own number of steps, so that each compiles its own program.

Usage: ``python benchmarks/bench_levers.py [--quick] [--check]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import lt  # noqa: E402

from lintraj import _engine, recording  # noqa: E402
from lintraj import singular_values as sv  # noqa: E402

DEPTH, WIDTH = 4, 16
FLAGS = {
  "none (default)": "",
  "none (control)": "",
  **{
    flag: flag
    for flag in (
      "--xla_cpu_enable_concurrency_optimized_scheduler=false",
      "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    )
  },
  "--xla_cpu_use_xnnpack=false": "--xla_cpu_use_xnnpack=false",
  "--xla_cpu_experimental_ynn_fusion_type=": "--xla_cpu_experimental_ynn_fusion_type=",
  "--xla_cpu_use_thunk_runtime=false": "--xla_cpu_use_thunk_runtime=false",
}


@contextlib.contextmanager
def patched(module, **attributes):
  """Inside the block, ``module``'s named attributes are replaced (restored on exit)."""
  old = {name: getattr(module, name) for name in attributes}
  for name, value in attributes.items():
    setattr(module, name, value)
  try:
    yield
  finally:
    for name, value in old.items():
      setattr(module, name, value)


# ---- record variants (same fields and shapes as the shipped record) --------------------------

_shipped_record = recording.record


def _no_singular_values(matrices, method="batched"):
  """Zeros in place of the singular values (what the rest of the record costs)."""
  return tuple(jnp.zeros(min(m.shape[-2:]), m.dtype) for m in matrices)


def record_loss_only(weights, loss_value, grads, target, *, singular_values="batched"):
  """The loss and zeros in place of every other field (what the loop costs without the metrics)."""
  zero = jnp.zeros((), loss_value.dtype)
  return dict(
    loss=loss_value,
    balancedness=zero,
    deficiency_margin=zero,
    grad_norm=zero,
    layer_singular_values=tuple(jnp.zeros(min(w.shape), w.dtype) for w in weights),
    end_to_end_singular_values=jnp.zeros(
      min(weights[0].shape[1], weights[-1].shape[0]), loss_value.dtype
    ),
  )


# ---- singular-value variants -----------------------------------------------------------------


def _stacked(matrices, algorithm, sizes):
  """Equal-shaped square matrices in batched calls of the given sizes."""
  out, start = [], 0
  for size in sizes:
    values = lax.linalg.svd(
      jnp.stack(matrices[start : start + size]),
      full_matrices=False,
      compute_uv=False,
      algorithm=algorithm,
    )
    out += [values[i] for i in range(size)]
    start += size
  return tuple(out)


def svd_qr(matrices, method="batched"):
  """One batched call of LAPACK's QR driver (``gesvd``) for all the (equal-shaped) matrices."""
  return _stacked(tuple(matrices), lax.linalg.SvdAlgorithm.QR, (len(matrices),))


def svd_two_batches(matrices, method="batched"):
  """Two batched ``gesdd`` calls, of the first half (rounded up) and the rest."""
  n = len(matrices)
  return _stacked(tuple(matrices), lax.linalg.SvdAlgorithm.DEFAULT, ((n + 1) // 2, n // 2))


# ---- loop bookkeeping variant ----------------------------------------------------------------


def advance_with_select(update, lane, value, grads, t, stop_at_loss, active, loss):
  """:func:`lintraj._engine._advance` as it was before: the update always computed, then kept or
  not by a ``jnp.where`` on every leaf (same results)."""
  running = active & (lane.diverged < 0) & (lane.stopped < 0)
  diverged = jnp.where(running & ~jnp.isfinite(value), t, lane.diverged)
  stopped = jnp.where(running & (value <= stop_at_loss), t, lane.stopped)
  new_weights, new_opt_state = update(lane.weights, lane.opt_state, grads, value, loss)
  moving = running & (diverged < 0) & (stopped < 0)
  keep = lambda old, new: jnp.where(moving, new, old)
  return _engine.LaneState(
    jax.tree_util.tree_map(keep, lane.weights, new_weights),
    jax.tree_util.tree_map(keep, lane.opt_state, new_opt_state),
    diverged,
    stopped,
  )


def _problem(depth=DEPTH, width=WIDTH):
  weights, phi = common.problem(depth, width)
  return tuple(jnp.asarray(w) for w in weights), lt.losses.target(phi)


def variant_run(weights, loss, steps, record_every, patches=(), method="batched"):
  """A zero-argument run of ``lt.gradient_descent`` with the ``(module, attrs)`` patches active."""

  def run():
    with contextlib.ExitStack() as stack:
      for module, attrs in patches:
        stack.enter_context(patched(module, **attrs))
      return jax.block_until_ready(
        lt.gradient_descent(
          weights,
          loss,
          lr=common.LR,
          steps=steps,
          record_every=record_every,
          singular_values=method,
        )
      )

  return run


_programs = itertools.count()


def measure_group(group, variants, steps, record_every, quick):
  """Rows of one group: ``variants`` maps a lever's name to ``(patches, method)``; the first is
  the shipped path. Every variant of the script gets its own number of steps, hence its own
  compiled program (jit's cache does not see a patched module attribute)."""
  weights, loss = _problem()
  runs, steps_of = {}, {}
  for name, (patches, method) in variants.items():
    n = steps + next(_programs) * record_every
    runs[name], steps_of[name] = variant_run(weights, loss, n, record_every, patches, method), n
    runs[name]()  # compile
  seconds = common.interleaved(runs, 1 if quick else 9)
  us = {name: seconds[name] / steps_of[name] * 1e6 for name in runs}
  shipped = next(iter(variants))
  return [
    dict(
      group=group,
      config=f"({DEPTH}, {WIDTH})",
      lever=name,
      record_every=record_every,
      us_per_step=us[name],
      x_shipped=us[name] / us[shipped],
    )
    for name in variants
  ]


CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, {bench!r})
import bench_levers
out = {{}}
for depth, width, steps in {configs!r}:
  weights, loss = bench_levers._problem(depth, width)
  run = bench_levers.variant_run(weights, loss, steps, 1)
  run()
  times = []
  for _ in range({repeats}):
    start = time.perf_counter(); run(); times.append(time.perf_counter() - start)
  out[f"({{depth}}, {{width}})"] = statistics.median(times) / steps * 1e6
print(json.dumps(out))
"""


def measure_flags(steps, quick):
  """The shipped run at (4, 16) and (8, 128), record_every 1, in a fresh process per XLA_FLAGS
  setting; the processes are taken in turn (the order rotated every round), several rounds, the
  median kept. The default runs twice (``none (control)``: its spread is the noise)."""
  flags = dict(list(FLAGS.items())[:2]) if quick else FLAGS
  configs = ((DEPTH, WIDTH, steps),) + (() if quick else ((8, 128, 30),))
  code = CHILD.format(
    bench=os.path.dirname(os.path.abspath(__file__)), configs=configs, repeats=1 if quick else 5
  )
  times = {name: [] for name in flags}
  names = list(flags)
  for round_ in range(1 if quick else 4):
    for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
      env = dict(os.environ, XLA_FLAGS=flags[name])
      done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
      if done.returncode == 0:
        times[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
  rows = []
  for depth, width, _ in configs:
    config = f"({depth}, {width})"
    base = statistics.median(t[config] for t in times["none (default)"])
    for name, ts in times.items():
      us = statistics.median(t[config] for t in ts) if ts else None
      rows.append(
        dict(
          group="xla flags",
          config=config,
          lever=name,
          record_every=1,
          us_per_step=us,
          x_shipped=None if us is None else us / base,
          note=None if ts else "rejected by XLA",
        )
      )
  return rows


def check_bookkeeping():
  """The records of the shipped loop and of :func:`advance_with_select` are bitwise equal
  (including a diverging run); raises AssertionError otherwise."""
  weights, loss = _problem()
  for lr, steps, every in ((common.LR, 300, 1), (common.LR, 300, 7), (5.0, 50, 1)):
    a = jax.block_until_ready(
      lt.gradient_descent(weights, loss, lr=lr, steps=steps, record_every=every)
    )
    _engine._segment.clear_cache()  # so that the patched loop compiles its own
    with patched(_engine, _advance=advance_with_select):
      b = lt.gradient_descent(weights, loss, lr=lr, steps=steps, record_every=every)
    _engine._segment.clear_cache()
    n = steps // every + 1
    for x, y in zip(jax.tree_util.tree_leaves(a[1:7]), jax.tree_util.tree_leaves(b[1:7])):
      np.testing.assert_array_equal(np.asarray(x)[:n], np.asarray(y)[:n])
    assert a.diverged_step == b.diverged_step
  return True


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a fast smoke run (numbers meaningless)")
  parser.add_argument(
    "--check",
    action="store_true",
    help="only check that the loop-bookkeeping variant records the same",
  )
  args = parser.parse_args(argv)
  if args.check:
    print("records equal:", check_bookkeeping())
    return []
  steps = 200 if args.quick else 2000
  rows = []
  with sv.lapack_single_thread():  # as every run holds it (lintraj._engine.drive)
    rows += measure_group(
      "record",
      {
        "shipped record": ((), "batched"),
        "no singular values": (((sv, dict(singular_values=_no_singular_values)),), "batched"),
        "loss only": (((recording, dict(record=record_loss_only)),), "batched"),
      },
      steps,
      1,
      args.quick,
    )
    rows += measure_group(
      "singular values",
      {
        "one batched gesdd call (shipped)": ((), "batched"),
        "the same again (control)": ((), "batched"),
        "one gesdd call per matrix (exact)": ((), "exact"),
        "one batched gesvd (QR) call": (((sv, dict(singular_values=svd_qr)),), "batched"),
        "two batched gesdd calls (3 + 2)": (
          ((sv, dict(singular_values=svd_two_batches)),),
          "batched",
        ),
      },
      steps,
      1,
      args.quick,
    )
    for every in (1, 10):
      rows += measure_group(
        "loop bookkeeping",
        {
          "lax.cond freeze (shipped)": ((), "batched"),
          "jnp.where freeze (before)": (
            ((_engine, dict(_advance=advance_with_select)),),
            "batched",
          ),
        },
        steps * every,
        every,
        args.quick,
      )
  rows += measure_flags(steps, args.quick)
  print(
    common.table(
      rows, ["group", "config", "lever", "record_every", "us_per_step", "x_shipped", "note"]
    )
  )
  path = common.write(
    "levers",
    dict(rows=rows, depth=DEPTH, width=WIDTH, bookkeeping_records_equal=check_bookkeeping()),
    args.quick,
  )
  print(f"wrote {path}")
  return rows


if __name__ == "__main__":
  main()

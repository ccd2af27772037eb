"""Run every benchmark (each in its own process) and regenerate benchmarks/README.md from
benchmarks/results/*.json.

Usage: ``python benchmarks/run_all.py [--quick] [--readme-only] [--only NAME,...] [--device gpu]``.
A --quick run writes ``results/*.quick.json`` and leaves README.md alone. ``--device gpu`` runs the
tracking and sweep benchmarks on the GPU (``results/*.gpu.json``, README section "GPU"); it
refuses, measuring nothing, where JAX sees no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

SCRIPTS = (
  "bench_tracking",
  "bench_bare_step",
  "bench_compile",
  "bench_memory",
  "bench_sweep",
  "bench_levers",
  "bench_landscape",
)
GPU_SCRIPTS = ("bench_tracking", "bench_sweep")
RESULT_OF = dict(
  bench_tracking="tracking",
  bench_bare_step="bare_step",
  bench_compile="compile",
  bench_memory="memory",
  bench_sweep="sweep",
  bench_levers="levers",
  bench_landscape="landscape",
)


def load(name):
  path = os.path.join(common.RESULTS, f"{name}.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _reference_columns(rows):
  """The ``x_<impl>_<T>t`` ratio columns present in ``rows``, in a fixed order."""
  present = {k for r in rows for k in r if k.startswith("x_") and k != "x_floor"}
  return sorted(present, key=lambda k: ("numpy" in k, "cuda" in k, k))


def tracking_section(res, title="## 1. Tracking throughput"):
  rows = res["rows"]
  out = [
    title,
    "",
    "Steps/s of gradient descent recording loss, balancedness, deficiency margin, gradient norm "
    "and every layer's and the end-to-end singular values (float32, equal widths, "
    "orthogonal init). `x torch 1t` / `x torch 2t` / `x numpy 1t` / `x numpy 2t`: ratio to the "
    "PyTorch eager loop (`reference_torch.py`) and the NumPy loop (`reference_numpy.py`) on 1 "
    "and 2 threads, each in a process of its own (`reference_process.py`: no JAX in it; threads "
    "set before it starts), measured in the same run, rounds interleaved. `floor`: the GD step "
    "alone plus the record's singular values alone (one batched LAPACK call per shape, as a run "
    "makes them), measured in the same run: the limit of exact per-step singular values; "
    "`x floor` a row's rate over it. `compile_s`: the `lintraj` row's first call minus a steady "
    "call (paid once per shape in a session). "
    "`lintraj` is `lt.gradient_descent` as shipped (it holds the OpenBLAS behind jaxlib's LAPACK "
    "to one thread while its loop runs); `lintraj, OpenBLAS default threads` the same call "
    "with that hold disabled (the previous default); `cand: *` rows "
    "are the singular-value candidates in one compiled scan (`bench_tracking.py`), `max err` "
    "their largest `|sigma - sigma_exact| / sigma_max` against `cand: exact` over the run.",
    "",
  ]
  for every in sorted({r["record_every"] for r in rows}):
    out += [f"### record_every = {every}", ""]
    sub = [
      dict(r, config=f"({r['depth']}, {r['width']})") for r in rows if r["record_every"] == every
    ]
    out += [
      common.table(
        sub,
        ["config", "impl", "steps_per_s", "compile_s", "x_floor"]
        + _reference_columns(rows)
        + ["max_err"],
      ),
      "",
    ]
  return out


def goals(tracking, bare, compile_):
  out = ["## Goals of issue 6, as measured above", ""]
  if tracking:
    rows = {(r["depth"], r["width"], r["record_every"], r["impl"]): r for r in tracking["rows"]}
    # The shipped `lintraj` row against the references on one thread, each in its own process: on
    # a shared 2-core machine their second thread measures the machine's load as much as the loop
    # (see "What the tables say"), so the goals are judged on the 1-thread columns only.
    pairings = (
      (
        "x_torch_1t",
        "x_numpy_1t",
        "the PyTorch loop on one thread",
        "the PyTorch and NumPy loops on one thread",
      ),
    )
    for x_torch, x_numpy, torch_ref, both_refs in pairings:
      for cfg, want in (((4, 16), 10), ((8, 128), 3)):
        r = rows.get(cfg + (1, "lintraj"), {}).get(x_torch)
        if r is not None:
          out.append(
            f"- Full tracking, record_every=1, {cfg}: `lintraj` {r:.3g}x {torch_ref} "
            f"(goal >= {want}x): {'met' if r >= want else 'NOT met'}."
          )
      slower = sorted(
        f"{(r['depth'], r['width'])} k={r['record_every']} vs {ref} ({r[key]:.3g}x)"
        for r in tracking["rows"]
        if r["impl"] == "lintraj"
        for ref, key in (("torch", x_torch), ("numpy", x_numpy))
        if r.get(key) is not None and r[key] < 1
      )
      out.append(
        f"- Never slower than {both_refs}, at every benchmarked size and record_every: "
        + ("met." if not slower else "NOT met, slower at " + "; ".join(slower) + ".")
      )
  if bare:
    wide = [r for r in bare["rows"] if r["width"] >= 128]
    if wide:
      low = min(r["ratio"] for r in wide)
      out.append(
        f"- Bare step >= 70% of matmul throughput at widths >= 128: lowest {low:.0%}: "
        f"{'met' if low >= 0.7 else 'NOT met'}."
      )
  if compile_:
    d32 = [r for r in compile_["rows"] if r["depth"] == 32]
    if d32:
      c = d32[0]["compile_s"]
      out.append(
        f"- Compile <= 2 s at depth 32 with full tracking: {c:.2f} s: "
        f"{'met' if c <= 2 else 'NOT met'}."
      )
  return out + [""]


def _rate(tracking, depth, width, every, impl):
  """Steps/s of one row of the tracking table, or None."""
  key = (depth, width, every, impl)
  return next(
    (
      r["steps_per_s"]
      for r in tracking["rows"]
      if (r["depth"], r["width"], r["record_every"], r["impl"]) == key
    ),
    None,
  )


def _lever(levers, group, lever, every=1):
  """One row of the levers table (``{}`` when absent)."""
  key = (group, lever, every)
  return next((r for r in levers["rows"] if (r["group"], r["lever"], r["record_every"]) == key), {})


def _flag_verdict(flags) -> str:
  """Which flags beat the default by more than twice the control's distance from 1 (at least 5%)
  at every measured size, in this run."""
  configs = {r.get("config", "(4, 16)") for r in flags}
  noise = max(
    [
      abs(1 - r["x_shipped"])
      for r in flags
      if r["lever"] == "none (control)" and r["x_shipped"] is not None
    ]
    + [0.025]
  )
  names = {r["lever"] for r in flags if r["lever"] != "none (control)"}
  faster = sorted(
    n
    for n in names
    if all(
      r["x_shipped"] is not None and r["x_shipped"] < 1 - 2 * noise
      for r in flags
      if r["lever"] == n
    )
    and len([r for r in flags if r["lever"] == n]) == len(configs)
  )
  if not faster:
    return (
      f"No flag beat the default by more than twice that ({2 * noise:.0%}) at every size "
      "in this run: none is worth recommending."
    )
  return (
    "Beyond twice that noise at every size in this run: "
    + ", ".join(f"`{n}`" for n in faster)
    + " (one run; repeat before recommending it)."
  )


def what_the_tables_say(tracking, levers):
  """The README's reading of the tables: computed from the JSON, except the figures marked as
  from earlier runs (kept as written, with the run they come from)."""
  out = ["## What the tables say", ""]
  if tracking:
    configs = sorted({(r["depth"], r["width"]) for r in tracking["rows"]})
    gains = []
    for every in sorted({r["record_every"] for r in tracking["rows"]}):
      for depth, width in configs:
        new, old = (
          _rate(tracking, depth, width, every, impl)
          for impl in ("lintraj", "lintraj, OpenBLAS default threads")
        )
        if new and old:
          gains.append(f"{(depth, width)} k={every}: {new / old:.3g}x")
    if gains:
      out.append(
        "- Holding the OpenBLAS behind jaxlib's LAPACK to one thread during a run (shipped: "
        "the `lintraj` rows; `lintraj, OpenBLAS default threads` is the previous default) "
        "multiplies the rate by: "
        + "; ".join(gains)
        + ". On this shared 2-core CPU, OpenBLAS's threads inside each SVD call contend "
        "with XLA's, how much depends on what else runs: at (8, 128) the hold gave 6.65x at "
        "record_every=1 and 22.1x at 10 in a run under load earlier the same day, and about "
        "1.1-1.5x on an idle machine."
      )
    floor = [
      f"{(r['depth'], r['width'])} k={r['record_every']}: {r['x_floor']:.2f}"
      for r in tracking["rows"]
      if r["impl"] == "lintraj" and r.get("x_floor") is not None
    ]
    if floor:
      out.append(
        "- How close a run is to the limit of exact per-step singular values (`lintraj` over "
        "`floor`, the GD step alone plus the record's SVDs alone, measured in the same run): "
        + "; ".join(floor)
        + ". What is left is the loop, the other metrics (balancedness, deficiency margin, "
        "gradient norm) and the per-call bookkeeping."
      )
    one = {
      (r["depth"], r["width"]): r
      for r in tracking["rows"]
      if r["impl"] == "lintraj" and r["record_every"] == 1
    }
    if any("x_torch_1t" in r for r in one.values()):
      spread = [
        two / single
        for impl in ("torch", "numpy")
        for k in sorted({r["record_every"] for r in tracking["rows"]})
        for d, w in configs
        for two, single in [
          (
            _rate(tracking, d, w, k, f"{impl}, 2 threads"),
            _rate(tracking, d, w, k, f"{impl}, 1 thread"),
          )
        ]
        if two and single
      ]
      out.append(
        "- Why the ratios to PyTorch published before (4.74x at (8, 128) and 10.3x at (4, 16), "
        "record_every=1) did not reproduce (issue 15 measured 1.0-1.4x and 3.4-6x side by "
        "side): that table's torch loop ran in lintraj's process on its default threads, and in "
        "that run it managed 34.5 steps/s at (8, 128) against 93 on one thread: the ratio "
        "measured thread contention on 2 cores, not torch. Each reference now runs in a process "
        "of its own on a fixed thread count. In this run, `lintraj` over the torch loop on one "
        "thread at record_every=1: "
        + "; ".join(f"{c}: {r['x_torch_1t']:.2f}x" for c, r in one.items())
        + "; over the NumPy loop on one thread: "
        + "; ".join(f"{c}: {r['x_numpy_1t']:.2f}x" for c, r in one.items())
        + ". A reference's second thread changed its rate by "
        + f"{min(spread):.2g}x to {max(spread):.2g}x in this run: on a shared 2-core machine with "
        "other jobs running a second thread oversubscribes the cores and the BLAS threads "
        "spin, so the 2-thread columns measure the machine's load as much as the loop; quote "
        "the 1-thread ones."
      )
    errs = {r["impl"]: r["max_err"] for r in tracking["rows"] if r.get("max_err") is not None}
    gram = [
      f"{(d, w)} k={k}: {g / b:.2f}x"
      for k in sorted({r["record_every"] for r in tracking["rows"]})
      for d, w in configs
      for g, b in [
        (_rate(tracking, d, w, k, "cand: gram"), _rate(tracking, d, w, k, "cand: batched"))
      ]
      if g and b
    ]
    out.append(
      "- The `cand: *` rows differ only in how the singular values are computed. `gram` "
      "(eigvalsh of the Gram matrix) against `batched` in this run: "
      + "; ".join(gram)
      + ". Its error on zero singular values was 2.1e-4 sigma_max in float32 (measured "
      "2026-11-23 on the rank-deficient balanced problem of `tests/test_tracking.py`, not "
      "a column of this table; the orthogonal init here has none, hence its small "
      "`max err`), so it misses the 1e-5 bar wherever it is faster; the stateful `tracked` "
      "prototype is "
      "the fastest at record_every=1 but misses the 1e-5 bar"
      + (
        f" (`max err` up to {max(v for k, v in errs.items() if 'tracked' in k):.2g})"
        if any("tracked" in k for k in errs)
        else ""
      )
      + " when clusters of equal singular values split, so it is not shipped. `batched` "
      "(the default) against `exact` (one call per matrix) is often within this machine's "
      "noise."
    )
  if levers:
    shipped = _lever(levers, "record", "shipped record").get("us_per_step")
    no_sv = _lever(levers, "record", "no singular values").get("us_per_step")
    loss_only = _lever(levers, "record", "loss only").get("us_per_step")
    if shipped and no_sv and loss_only:
      out.append(
        f"- Where a step goes at (4, 16), record_every=1 (section 6): {shipped:.0f} us per "
        f"step shipped, {no_sv:.0f} us without the singular values (so the five 16 x 16 "
        f"SVDs, about {shipped - no_sv:.0f} us, are the largest part; a microbenchmark "
        f"while this was written: about 10 us per 16 x 16 matrix in XLA's batched LAPACK "
        f"call, 16 us per `numpy.linalg.svd` call), "
        f"{loss_only:.0f} us recording the loss only (the GD step, the loop and the other "
        f"metrics)."
      )
    sv_rows = [r for r in levers["rows"] if r["group"] == "singular values" and r["x_shipped"] != 1]
    if sv_rows:
      out.append(
        "- Singular-value levers at (4, 16), time over the shipped path in this run: "
        + "; ".join(f"{r['lever']}: {r['x_shipped']:.2f}" for r in sv_rows)
        + ". The control row is the shipped path compiled twice: its distance from 1 is "
        "the noise. Earlier side-by-side comparisons while `bench_levers.py` was written: "
        "LAPACK's QR driver (`gesvd`) at 0.97 to 1.02 of the shipped time in six (at (4, 16) "
        "twice, (8, 64), (8, 128) twice, (16, 32)) and 0.91 in the script's first full run; "
        "two half batches at 0.96 ((4, 16)) and 1.07 ((8, 128)), and 0.94 in that first "
        "run. No repeatable speed-up beyond the noise, so `lintraj/singular_values.py` keeps "
        "one batched `gesdd` call per shape. A 16 x 16 SVD costs what LAPACK's call costs, "
        "and an SVD written in XLA operations would pay XLA's per-operation cost many times "
        "over (XLA's Jacobi SVD is not implemented on CPU)."
      )
    flags = [
      r for r in levers["rows"] if r["group"] == "xla flags" and r["lever"] != "none (default)"
    ]
    if flags:
      by_config = {}
      for r in flags:
        by_config.setdefault(r.get("config", "(4, 16)"), []).append(
          f"`{r['lever']}`: {r['x_shipped']:.2f}"
          if r["x_shipped"] is not None
          else f"`{r['lever']}`: rejected"
        )
      out.append(
        "- XLA flags (a fresh process each, `XLA_FLAGS` set before jax starts), time over "
        "the default's: "
        + "; ".join(f"at {c}: " + ", ".join(v) for c, v in by_config.items())
        + ". `none (control)` is the default again, so its distance from 1 is the noise. "
        + _flag_verdict(flags)
        + " An earlier run of the same five flags while this script was written gave 1.00 "
        "to 1.08 at (4, 16) and, at (8, 128), 0.97 to 1.02 but 1.44 for "
        "`--xla_cpu_use_xnnpack=false` and 1.29 for `--xla_cpu_use_thunk_runtime=false`. "
        "lintraj sets no flags."
      )
    select = [_lever(levers, "loop bookkeeping", "jnp.where freeze (before)", k) for k in (1, 10)]
    if all(select):
      out.append(
        "- The largest lever found is not in the SVDs but in the loop: freezing stopped or "
        "diverged networks (`lintraj._engine._advance`) now takes the update under "
        "`lax.cond`; the previous code computed it and kept it or not with a `jnp.where` on "
        f"every weight at every step, which takes {select[0]['x_shipped']:.2f} of the shipped "
        f"time at record_every=1 and {select[1]['x_shipped']:.2f} at record_every=10 in this "
        "run (records bitwise equal; while this was written the `lax.cond` version measured "
        "0.71 to 0.84 of the `jnp.where` one at record_every=1 and 0.80 to 0.81 at 10). "
        "Batched runs are unaffected: under `vmap` a `lax.cond` becomes a select."
      )
  out += [
    "- `lintraj` rows include `gradient_descent`'s fixed per-call cost (argument checks, "
    "shape tracing) and the loop's divergence and stopping bookkeeping; the `cand: *` rows "
    "have neither.",
    "",
  ]
  return out


def sweep_section(sweep, title):
  rows = [dict(r, lanes_x_steps_per_s=r["steps_per_s"]["lintraj batched"]) for r in sweep["rows"]]
  dram = sweep.get("stream_gbs_dram")
  out = [
    title,
    "",
    "Trajectory-steps per second of `lt.batch_gradient_descent` for the Figure 1 shapes "
    "(float32, records every 100 steps), against the same runs one by one with lintraj and "
    "with a PyTorch eager loop (default threads and one thread, in this process; blank where "
    "the run used `--no-torch`: in this process, under load, that loop measures the contention "
    "with XLA's threads more than torch), and the cost "
    "of the progress bar (`benchmarks/bench_sweep.py`). `weights_gbs`: the weights read and "
    "written once per lane-step (2 x parameters x 4 bytes, a lower bound on the traffic) at "
    "that rate; `stream_gbs_same`: a streaming `x = a x + b` over an array the size of the "
    "sweep's weights, measured in the same run (the cache level those weights live in)"
    + (f"; on 256 MiB (main memory) it ran at {dram:.1f} GB/s" if dram else "")
    + (
      f" (NumPy's in-place passes: {sweep['numpy_stream_gbs_dram']:.1f} GB/s)."
      if sweep.get("numpy_stream_gbs_dram")
      else "."
    ),
    "",
    common.table(
      rows,
      [
        "config",
        "lanes",
        "steps",
        "lanes_x_steps_per_s",
        "x_torch",
        "x_torch_1t",
        "x_one_by_one",
        "progress_overhead",
        "weights_gbs",
        "stream_gbs_same",
      ],
    ),
    "",
  ]
  if all("weights_gbs" in r for r in sweep["rows"]):
    same = [r["weights_gbs"] / r["stream_gbs_same"] for r in sweep["rows"]]
    out += [
      "At these shapes a sweep moves its weights (the lower bound above) at "
      + ", ".join(f"{r['config']} B={r['lanes']}: {x:.0%}" for r, x in zip(sweep["rows"], same))
      + " of the streaming rate of an array of their size"
      + (
        f" ({min(r['weights_gbs'] for r in sweep['rows']) / dram:.0%} to "
        f"{max(r['weights_gbs'] for r in sweep['rows']) / dram:.0%} of the 256 MiB one)"
        if dram
        else ""
      )
      + ": "
      + (
        "far below the rate at which their cache level streams, so what limits a sweep step "
        "here is not moving the weights but the per-operation cost of small matmuls and the "
        "loop (an inference: the backward pass reads the weights again, so the real traffic "
        "is a small multiple of this bound)."
        if max(same) < 0.5
        else "near the bandwidth limit at the largest."
      ),
      "",
    ]
  return out


def landscape_section(res):
  return [
    "## 8. Newton-MR on the 16-4 autoencoder",
    "",
    f"`lt.landscape.newton_mr` (Krylov dimension {res['minres_iterations']}, float64) from one "
    f"Gaussian start of the critical-points study's autoencoder {tuple(res['dims'])}, "
    f"{res['rows'][0]['steps']} iterations, {res['repeats']} interleaved repeats, median "
    "(`bench_landscape.py`). `cpu_ms_per_iteration` is this process's CPU time (all threads, "
    "spinning ones included). `OpenBLAS default threads (before)` is the call without the hold "
    "of LAPACK's OpenBLAS to one thread (the behaviour before); `grad_tol` stops at the first "
    f"iterate with squared gradient norm below it ({res['iterations_to_grad_tol']} iterations "
    "here; per iteration that ran, and the whole call against a full shipped call).",
    "",
    common.table(
      res["rows"],
      [
        "case",
        "steps",
        "iterations",
        "ms_per_iteration",
        "cpu_ms_per_iteration",
        "x_shipped_call",
      ],
    ),
    "",
    "The anomaly of issue 15 (1.8 to 87 ms per iteration for identical calls, 49-51 ms in one "
    "process and 1.8-5.1 ms in another): the least-squares solve of each iteration "
    "(`jnp.linalg.lstsq` on the 51 x 50 tridiagonal system) calls LAPACK through jaxlib, "
    "whose OpenBLAS starts threads that spin and contend with XLA's on the 2 cores; how badly "
    "depends on what else runs, hence the spread between processes. Not denormals (XLA's "
    "compiled code flushes them to zero: a jitted `1e-300 * 1e-10` in float64 returns 0), not a "
    "retrace (the loss is a pytree with a module-level function), not the line search: once "
    "`||g||^2` reaches its rounding floor the search halves the step "
    f"{res['halvings_after_floor']:.0f} times per iteration (each a gradient, cheap against the "
    "50 Hessian-vector products), accepting a step too small to move the point. "
    "`newton_mr` and `damped_newton` now hold the OpenBLAS to one thread as every run does, "
    "and `grad_tol=` ends the search (one `lax.while_loop`) before those wasted iterations."
    if res.get("halvings_after_floor")
    else "",
    "",
  ]


def gpu_section():
  tracking, sweep = load("tracking.gpu"), load("sweep.gpu")
  out = ["## 7. GPU", ""]
  if not tracking and not sweep:
    return out + [
      "Not measured yet: no GPU was available to the sessions that ran these. On a machine "
      "with an NVIDIA GPU and a CUDA jaxlib, `python benchmarks/run_all.py --device gpu` "
      "measures the tracking table and the sweep throughput at B = 256 to 8192 lanes "
      "(`results/*.gpu.json`) and regenerates this section; without a GPU it refuses and "
      "measures nothing.",
      "",
    ]
  some = tracking or sweep
  out += [
    f"Measured on {', '.join(sorted(set(some['machine']['devices'])))} (jax "
    f"{some['machine']['jax']}), at {some['machine']['time']}, by "
    "`python benchmarks/run_all.py --device gpu`.",
    "",
  ]
  if tracking:
    out += tracking_section(tracking, "### GPU: tracking throughput")
  if sweep:
    out += sweep_section(sweep, "### GPU: sweeps")
  return out


def readme():
  tracking, bare, compile_, memory, sweep, levers, landscape = (load(RESULT_OF[s]) for s in SCRIPTS)
  some = next((r for r in (tracking, bare, compile_, memory) if r), None)
  out = [
    "# lintraj benchmarks",
    "",
    "Generated by `python benchmarks/run_all.py` from `benchmarks/results/*.json`; "
    "do not edit by hand.",
    'Torch is optional (`pip install -e ".[bench]"`; a CPU build is fine).',
    "",
    "**Absolute times vary**: these machines are shared (2 CPU cores, other jobs running), so "
    "only ratios measured side by side in one run mean much: every script interleaves the "
    "repetitions of the implementations it compares and keeps the median. Each script records "
    "when it ran (its JSON's `machine.time`); a section may come from a later run than "
    "another.",
    "",
  ]
  if some:
    m = some["machine"]
    out += [
      f"Measured on: {m['processor']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, "
      f"jax {m['jax']} ({m['backend']}), numpy {m['numpy']}, at {m['time']}"
      + (
        f", load average {m['load_average'][0]:.1f} at the end of the run."
        if m.get("load_average")
        else "."
      ),
      "",
    ]
  out += goals(tracking, bare, compile_)
  out += what_the_tables_say(tracking, levers)
  if tracking:
    out += tracking_section(tracking)
  if bare:
    out += [
      "## 2. Bare-step efficiency",
      "",
      "GFLOP/s of `lt.gradient_descent`'s step (3 (N-1) matmuls of 2 d^3 flops counted; the "
      "slope between runs of S and 3S steps) over a compiled chain of plain matmuls of the "
      "same size, measured side by side.",
      "",
      common.table(
        bare["rows"], ["depth", "width", "step_ms", "gd_gflops", "matmul_gflops", "ratio"]
      ),
      "",
    ]
  if compile_:
    out += [
      "## 3. Compile time vs depth",
      "",
      "First call minus second call of `lt.gradient_descent` (width 32, record_every 10, full "
      "tracking), and the compile time of `record` alone with each singular-value method.",
      "",
      common.table(
        compile_["rows"],
        ["depth", "width", "compile_s", "first_call_s", "record_batched_s", "record_exact_s"],
      ),
      "",
    ]
  if memory:
    out += [
      "## 4. Memory",
      "",
      f"Peak resident memory (ru_maxrss) of one run in a fresh process, depth 4 width 16, "
      f"record_every {memory['record_every']}; `growth` is against the 1000-step run, "
      "`record_kib` what the records take.",
      "",
      common.table(
        memory["rows"], ["steps", "peak_rss_mib", "growth_mib", "record_kib", "seconds"]
      ),
      "",
    ]
  if sweep:
    out += sweep_section(sweep, "## 5. Sweeps")
  if levers:
    out += [
      "## 6. Levers at small sizes",
      "",
      "Time per step of full tracking (float32), mostly at depth 4, width 16, each group "
      "measured side "
      "by side against the shipped `lt.gradient_descent` (`x shipped` < 1: faster; "
      "`bench_levers.py` says what each row changes). `record`: where the time goes; "
      "`singular values`: how the five 16 x 16 matrices reach LAPACK; `loop bookkeeping`: "
      "the per-step freeze of stopped or diverged networks as `lax.cond` (shipped) or as the "
      "previous `jnp.where` on every weight (records bitwise "
      f"equal: {levers.get('bookkeeping_records_equal')}); `xla flags`: a fresh process per "
      "`XLA_FLAGS` value.",
      "",
      common.table(
        levers["rows"],
        ["group", "config", "lever", "record_every", "us_per_step", "x_shipped", "note"],
      ),
      "",
    ]
  out += gpu_section()
  if landscape:
    out += landscape_section(landscape)
  with open(os.path.join(HERE, "README.md"), "w") as f:
    f.write("\n".join(out))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--quick", action="store_true", help="smoke-run every script; README untouched"
  )
  parser.add_argument("--readme-only", action="store_true", help="only regenerate README.md")
  parser.add_argument("--only", default=None, help="comma-separated scripts, e.g. bench_sweep")
  common.add_device_argument(parser)
  args = parser.parse_args(argv)
  scripts = SCRIPTS if args.device == "cpu" else GPU_SCRIPTS
  if args.only:
    scripts = tuple(s for s in scripts if s in args.only.split(","))
  if args.device == "gpu" and not args.readme_only:
    common.require_device("gpu")  # exits, measuring nothing, without a GPU
  if not args.readme_only:
    for script in scripts:
      print(f"== {script}", flush=True)
      subprocess.run(
        [sys.executable, os.path.join(HERE, f"{script}.py")]
        + (["--quick"] if args.quick else [])
        + (["--device", "gpu"] if args.device == "gpu" else []),
        check=True,
      )
  if not args.quick:
    readme()
    print(f"wrote {os.path.join(HERE, 'README.md')}")


if __name__ == "__main__":
  main()

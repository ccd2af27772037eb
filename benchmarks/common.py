"""Shared setup of the benchmarks: the problem every implementation solves, timing, JSON output.

The problem: full-batch gradient descent on :math:`\\tfrac12\\|W_N \\cdots W_1 - \\Phi\\|_F^2` with
equal widths, scaled-orthogonal layers and a Gaussian target of spectral norm about 1, recording
loss, balancedness, deficiency margin, gradient norm and every layer's and the end-to-end
singular values. The machine is shared, so absolute times vary: every ratio is measured side by
side in one run, repetitions interleaved, and the median kept.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lintraj as lt  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
LR = 1e-2


def problem(depth: int, width: int, dtype=np.float32, seed: int = 0):
  """``(weights, phi)`` as NumPy arrays: ``depth`` orthogonal ``width x width`` layers and a
  target."""
  weights = lt.init.orthogonal(jax.random.PRNGKey(seed), (width,) * (depth + 1), dtype=jnp.float32)
  rng = np.random.default_rng(seed)
  phi = rng.standard_normal((width, width)) / (2.0 * np.sqrt(width))
  return tuple(np.asarray(w, dtype) for w in weights), phi.astype(dtype)


def interleaved(runs: dict, repeats: int) -> dict:
  """Median seconds of each zero-argument callable, the repetitions interleaved (a, b, c, a, b,
  c...)."""
  times = {name: [] for name in runs}
  for _ in range(repeats):
    for name, run in runs.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(ts) for name, ts in times.items()}


def machine() -> dict:
  """What the numbers were measured on."""
  return dict(
    platform=platform.platform(),
    processor=platform.processor() or platform.machine(),
    cpus=os.cpu_count(),
    python=platform.python_version(),
    jax=jax.__version__,
    backend=jax.default_backend(),
    devices=[d.device_kind for d in jax.devices()],
    numpy=np.__version__,
    time=time.strftime("%Y-%m-%d %H:%M:%S"),
    load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
  )


def add_device_argument(parser):
  """``--device cpu|gpu`` on a script's argument parser."""
  parser.add_argument(
    "--device",
    choices=("cpu", "gpu"),
    default="cpu",
    help="where lintraj runs (gpu: results/<name>.gpu.json; refused without a GPU)",
  )


def require_device(device: str):
  """Run JAX on ``device``: ``cpu`` pins it to the CPU (before its first use); ``gpu`` exits with a
  message (status 1) where JAX sees no GPU, so that no CPU number is ever filed as a GPU one."""
  if device == "cpu":
    jax.config.update("jax_platforms", "cpu")
    return
  try:
    gpus = jax.devices("gpu")
  except RuntimeError:
    gpus = []
  if not gpus:
    sys.exit(
      "--device gpu: JAX sees no GPU here (devices: "
      + ", ".join(str(d) for d in jax.devices())
      + "). Run it on a machine with an NVIDIA GPU and a CUDA jaxlib "
      '(pip install -U "jax[cuda12]"); nothing was measured.'
    )


def result_name(name: str, device: str) -> str:
  """The results file of a benchmark on ``device``: ``name`` on the CPU, ``name.gpu`` on a GPU."""
  return name if device == "cpu" else f"{name}.gpu"


def write(name: str, payload: dict, quick: bool):
  """Write ``results/<name>.json`` (``<name>.quick.json`` for a --quick run) and return its path."""
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, f"{name}{'.quick' if quick else ''}.json")
  with open(path, "w") as f:
    json.dump(dict(machine=machine(), quick=quick, **payload), f, indent=1)
  return path


def table(rows: list[dict], columns: list[str]) -> str:
  """A Markdown table of ``rows`` (dicts) with the given columns."""

  def fmt(v):
    if isinstance(v, float):
      return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)

  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
  return "\n".join(lines)

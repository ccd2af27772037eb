"""Saving and loading trajectories: one ``.npz`` of arrays with JSON metadata, no pickle."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import jax
import numpy as np

from lintraj.trajectory import Trajectory

__all__ = ["save", "load"]

_METADATA_KEY = "__metadata__"


def _versions():
  import lintraj
  return {"lintraj": lintraj.__version__, "jax": jax.__version__, "numpy": np.__version__}


def save(path, trajectory: Trajectory, **metadata) -> str:
  r"""Write a trajectory (single or batched) and JSON-serialisable metadata to ``path`` (.npz).

  Arrays keep their dtype and values bit for bit; tuple fields are stored entry by entry. The
  file is written to a temporary name and renamed, so a crash never leaves a half-written file.
  Versions of lintraj, jax and numpy are added to the metadata.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt, tempfile, os
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 2, 1), std=0.5)
    >>> traj = lt.gradient_descent(ws, lt.losses.target(jnp.ones((1, 2))), lr=0.1, steps=10)
    >>> path = lt.save(os.path.join(tempfile.mkdtemp(), "run.npz"), traj, lr=0.1)
    >>> loaded, meta = lt.load(path)
    >>> bool((loaded.loss == traj.loss).all()), meta["lr"]
    (True, 0.1)
  """
  path = os.fspath(path)
  arrays, fields = {}, {}
  for name, value in trajectory._asdict().items():
    if isinstance(value, tuple):
      fields[name] = {"tuple": len(value)}
      arrays.update({f"{name}/{i}": np.asarray(v) for i, v in enumerate(value)})
    elif value is None:
      fields[name] = {"none": True}
    else:
      fields[name] = {"array": True}
      arrays[name] = np.asarray(value)
  try:
    meta_json = json.dumps({"fields": fields, "metadata": metadata, "versions": _versions()})
  except TypeError as err:
    raise ValueError(f"metadata must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from None
  arrays[_METADATA_KEY] = np.frombuffer(meta_json.encode(), dtype=np.uint8)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def load(path):
  """Read a file written by :func:`save`: returns ``(trajectory, metadata)``.

  Arrays come back as NumPy arrays, bit-identical to what was saved. A truncated, corrupted
  or foreign file raises ``ValueError`` saying so.
  """
  path = os.fspath(path)
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
    header = json.loads(arrays.pop(_METADATA_KEY).tobytes().decode())
  except FileNotFoundError:
    raise
  except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as err:
    raise ValueError(f"{path} is not a readable lintraj trajectory file (truncated or corrupted?): {err}") from None
  values = {}
  for name, kind in header["fields"].items():
    if "tuple" in kind:
      values[name] = tuple(arrays[f"{name}/{i}"] for i in range(kind["tuple"]))
    elif "none" in kind:
      values[name] = None
    else:
      value = arrays[name]
      values[name] = value.item() if name == "diverged_step" and value.ndim == 0 else value
  return Trajectory(**values), header["metadata"]

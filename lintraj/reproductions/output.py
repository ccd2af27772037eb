"""What every reproduction writes: its figure (PNG, and PDF on request) and its numbers (JSON, CSV).

Matplotlib is imported here, lazily: reproductions sit above the core and the core never imports
them (``pip install 'lintraj[plot]'``).
"""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np

from lintraj.plotting import pyplot

__all__ = ["pyplot", "jsonable", "check_readable", "write_outputs", "cap_marker"]

# PNGs for the README and notebooks: readable, and small enough to commit.
PNG_DPI = 100


def jsonable(value):
  """``value`` with NumPy/JAX arrays and scalars turned into lists and Python numbers (NaN and
  infinities as None), so that ``json.dump`` writes strict JSON.

  Example:
    >>> jsonable({"a": np.array([1.0, np.nan]), "b": (np.int32(2), "x")})
    {'a': [1.0, None], 'b': [2, 'x']}
  """
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
    array = np.asarray(value)
    return jsonable(array.tolist()) if array.ndim else jsonable(array.item())
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, (np.floating, np.integer, np.bool_)):
    return jsonable(value.item())
  return value


def _write_csv(path, table: dict):
  columns = list(table)
  rows = zip(*(np.asarray(table[c]).tolist() for c in columns))
  with open(path, "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)


def check_readable(fig):
  """ValueError unless the figure has a title and every panel with data has a title and labelled
  axes.

  Example:
    >>> fig = pyplot().figure()
    >>> ax = fig.add_subplot(); _ = ax.plot([0, 1])
    >>> check_readable(fig)
    Traceback (most recent call last):
    ...
    ValueError: panel 0 of figure 'untitled' has no title, x label, y label; label every panel.
    >>> pyplot().close(fig)
  """
  title = fig.get_suptitle()
  for i, ax in enumerate(fig.axes):
    if not ax.has_data() or ax.get_label() == "<colorbar>":
      continue
    missing = [
      what
      for what, text in (
        ("title", ax.get_title()),
        ("x label", ax.get_xlabel()),
        ("y label", ax.get_ylabel()),
      )
      if not text
    ]
    if missing:
      raise ValueError(
        f"panel {i} of figure {title or 'untitled'!r} has no {', '.join(missing)}; "
        "label every panel."
      )
  if not title:
    raise ValueError("the figure has no title (fig.suptitle naming the paper and figure).")


def write_outputs(
  name: str, out_dir, fig, results: dict, *, tables: dict | None = None, pdf: bool = False
) -> dict:
  """Write ``NAME.png`` (and ``NAME.pdf``), ``NAME.json`` (``results``) and one ``NAME-TABLE.csv``
  per entry of ``tables`` (a dict of equal-length columns) into ``out_dir``; close the figure.

  The figure must first pass :func:`check_readable`.

  Returns:
    ``results`` with ``files``: the paths written, keyed ``png``, ``pdf``, ``json`` and
    ``csv/TABLE``.
  """
  check_readable(fig)
  os.makedirs(out_dir, exist_ok=True)
  files = {"png": os.path.join(out_dir, f"{name}.png")}
  fig.savefig(files["png"], dpi=PNG_DPI)
  if pdf:
    files["pdf"] = os.path.join(out_dir, f"{name}.pdf")
    fig.savefig(files["pdf"])
  pyplot().close(fig)
  for table_name, table in (tables or {}).items():
    files[f"csv/{table_name}"] = os.path.join(out_dir, f"{name}-{table_name}.csv")
    _write_csv(files[f"csv/{table_name}"], table)
  files["json"] = os.path.join(out_dir, f"{name}.json")
  results = dict(results, files=files)
  with open(files["json"], "w") as f:
    json.dump(jsonable(results), f, indent=1)
  return results


def cap_marker(ax, xs, cap, **kwargs):
  """Mark ``xs`` at height ``cap`` with open triangles: runs that did not converge within the
  cap."""
  if len(xs):
    ax.scatter(xs, np.full(len(xs), cap), marker="^", facecolors="none", **kwargs)

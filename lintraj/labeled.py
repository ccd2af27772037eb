r"""Labeled sweep results: a grid's table and its batched trajectory as pandas or xarray objects.

A sweep is a table of lane coordinates (``lt.sweep.grid``'s ``std``, ``lr``, ``seed``, or any
columns of one value per lane) by records. :func:`to_dataframe` gives one row per lane with
summary columns; :func:`to_dataset` gives every record, dims ``lane`` x ``record``, with the
table's columns as coordinates. pandas and xarray are optional: ``pip install 'lintraj[labeled]'``.
"""

from __future__ import annotations

import importlib

import numpy as np

__all__ = ["to_dataframe", "to_dataset"]

SUMMARY_COLUMNS = ("final_loss", "min_loss", "stopped_step", "diverged_step", "steps_to_threshold")


def _require(module: str):
  try:
    return importlib.import_module(module)
  except ImportError:
    raise ValueError(
      f"lintraj.labeled needs {module}, which is not installed; install it with "
      "pip install 'lintraj[labeled]'."
    ) from None


def _check(table, trajectory) -> tuple[dict, np.ndarray]:
  """The table as NumPy columns and the loss records ``(B, T)``, or ValueError."""
  loss = np.asarray(getattr(trajectory, "loss", None))
  if loss.ndim != 2 or getattr(trajectory, "stopped_step", None) is None:
    raise ValueError(
      "trajectory must be a batched lintraj.Trajectory (loss of shape (B, T)), e.g. "
      f"from lt.batch_gradient_descent; got loss of shape {loss.shape}."
    )
  if not isinstance(table, dict) or not table:
    raise ValueError(
      "table must be a non-empty dict of columns, one value per lane, e.g. the "
      f"table of lt.sweep.grid; got {type(table).__name__}."
    )
  columns = {}
  for name, values in table.items():
    values = np.asarray(values)
    if values.shape != loss.shape[:1]:
      raise ValueError(
        f"table column {name!r} has shape {values.shape} but the trajectory has "
        f"{loss.shape[0]} lanes; give one value per lane (the table of the same "
        "grid)."
      )
    if name in SUMMARY_COLUMNS or name in ("lane", "record", "step"):
      raise ValueError(
        f"table column {name!r} clashes with a column lintraj.labeled adds; rename it."
      )
    columns[name] = values
  return columns, loss


def to_dataframe(table: dict, trajectory, *, threshold: float | None = None):
  r"""One row per lane: the table's columns, then a summary of the lane's run.

  Summary columns: ``final_loss`` (the last record, :math:`L(t_{T-1})`; NaN if the lane
  diverged), ``min_loss`` (:math:`\min_t L(t)` over the finite records), ``stopped_step`` and
  ``diverged_step`` (``-1``: never), and with ``threshold`` given ``steps_to_threshold``, the
  first recorded step with :math:`L(t) \le` ``threshold`` (``-1``: none; a multiple of
  ``record_every``, unlike ``stopped_step``, which is exact).

  Args:
    table: columns of one value per lane, e.g. the table of :func:`lintraj.sweep.grid` (arrays
      or lists, as :func:`lintraj.load` returns them from the metadata).
    trajectory: the batched :class:`lintraj.Trajectory` of the same lanes.
    threshold: a loss level for ``steps_to_threshold``, or None.

  Returns:
    A ``pandas.DataFrame`` indexed by ``lane``.

  Example:
    >>> import numpy as np, lintraj as lt
    >>> ws, lrs, table = lt.sweep.grid("balanced", (2, 3, 1), std=[0.5], lr=[0.05, 0.1])
    >>> traj = lt.batch_gradient_descent(ws, lt.losses.target(np.array([[1.0, 0.5]])), lr=lrs,
    ...                                  steps=200, record_every=10, stop_at_loss=1e-4)
    >>> df = lt.labeled.to_dataframe(table, traj, threshold=1e-3)
    >>> df[["lr", "stopped_step", "steps_to_threshold"]].to_dict("list")
    {'lr': [0.05, 0.1], 'stopped_step': [83, 41], 'steps_to_threshold': [70, 40]}

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Figure 1 (iterations to
    convergence per init scale and learning rate: the table this gives).
  """
  columns, loss = _check(table, trajectory)
  pd = _require("pandas")
  summary = {
    "final_loss": loss[:, -1],
    "min_loss": np.fmin.reduce(loss, axis=1),
    "stopped_step": np.asarray(trajectory.stopped_step),
    "diverged_step": np.asarray(trajectory.diverged_step),
  }
  if threshold is not None:
    below = loss <= float(threshold)
    step = np.asarray(trajectory.step)
    first = step[np.arange(len(loss)), below.argmax(axis=1)]
    summary["steps_to_threshold"] = np.where(below.any(axis=1), first, -1)
  return pd.DataFrame({**columns, **summary}, index=pd.RangeIndex(len(loss), name="lane"))


def to_dataset(table: dict, trajectory):
  r"""Every record of a sweep as an ``xarray.Dataset``, dims ``lane`` x ``record``.

  Data variables: ``loss``, ``balancedness``, ``deficiency_margin``, ``grad_norm`` (and
  ``sharpness``, ``min_hessian_eigenvalue`` when tracked) on ``(lane, record)``;
  ``layer_singular_values`` on ``(lane, record, layer, layer_sv)`` (layer ``j = 1..N``, its
  :math:`\min(d_j, d_{j-1})` values descending, NaN-padded to the widest layer);
  ``end_to_end_singular_values`` on ``(lane, record, end_to_end_sv)``; ``stopped_step`` and
  ``diverged_step`` on ``lane``. Coordinates: the table's columns on ``lane``, ``step`` on
  ``record``. The final weights stay in ``trajectory.final``.

  Args:
    table: columns of one value per lane, e.g. the table of :func:`lintraj.sweep.grid`.
    trajectory: the batched :class:`lintraj.Trajectory` of the same lanes.

  Returns:
    An ``xarray.Dataset``; e.g. ``ds.loss.where(ds.lr == 0.1, drop=True)`` or
    ``ds.set_index(lane=["std", "lr", "seed"]).loss.unstack("lane")`` for a
    ``std x lr x seed x record`` array.

  Example:
    >>> import numpy as np, lintraj as lt
    >>> ws, lrs, table = lt.sweep.grid("balanced", (2, 3, 1), std=[0.5], lr=[0.05, 0.1])
    >>> traj = lt.batch_gradient_descent(ws, lt.losses.target(np.array([[1.0, 0.5]])), lr=lrs,
    ...                                  steps=20, record_every=10)
    >>> ds = lt.labeled.to_dataset(table, traj)
    >>> dict(ds.sizes), ds.step.values.tolist(), ds.layer.values.tolist()
    ({'lane': 2, 'record': 3, 'layer': 2, 'layer_sv': 2, 'end_to_end_sv': 1}, [0, 10, 20], [1, 2])

  References:
    Hoyer, Hamman. xarray: N-D labeled arrays and datasets in Python. Journal of Open Research
    Software 5(1), 2017 (the data model).
  """
  columns, _ = _check(table, trajectory)
  xr = _require("xarray")
  step = np.asarray(trajectory.step)
  if np.any(step != step[:1]):
    raise ValueError(
      "the lanes of trajectory record at different steps; give one batched run's trajectory."
    )
  layers = [np.asarray(s) for s in trajectory.layer_singular_values]
  widest = max(s.shape[-1] for s in layers)
  padded = np.stack(
    [
      np.pad(s, ((0, 0), (0, 0), (0, widest - s.shape[-1])), constant_values=np.nan) for s in layers
    ],
    axis=2,
  )
  per_record = ("lane", "record")
  data = {
    name: (per_record, np.asarray(getattr(trajectory, name)))
    for name in (
      "loss",
      "balancedness",
      "deficiency_margin",
      "grad_norm",
      "sharpness",
      "min_hessian_eigenvalue",
    )
    if getattr(trajectory, name) is not None
  }
  data["layer_singular_values"] = (per_record + ("layer", "layer_sv"), padded)
  data["end_to_end_singular_values"] = (
    per_record + ("end_to_end_sv",),
    np.asarray(trajectory.end_to_end_singular_values),
  )
  data.update(
    {
      name: ("lane", np.asarray(getattr(trajectory, name)))
      for name in ("stopped_step", "diverged_step")
    }
  )
  coords = {name: ("lane", values) for name, values in columns.items()}
  coords.update(step=("record", step[0]), layer=("layer", np.arange(1, len(layers) + 1)))
  return xr.Dataset(data, coords=coords)

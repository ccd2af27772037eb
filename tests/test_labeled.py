"""lintraj.labeled: a grid's table and batched trajectory as a pandas DataFrame, xarray Dataset."""

import sys

import numpy as np
import pytest

import lintraj as lt
from lintraj import labeled

pd = pytest.importorskip("pandas")
xr = pytest.importorskip("xarray")


@pytest.fixture(scope="module")
def sweep():
  """Six lanes (3, 2, 1) x 2 stds x 3 lrs: some stop, the largest lr diverges, some do neither."""
  ws, lrs, table = lt.sweep.grid("gaussian", (3, 2, 1), std=[0.3, 0.6], lr=[0.01, 0.3, 5.0])
  target = lt.losses.target(np.array([[1.0, 0.2, 0.5]]))
  traj = lt.batch_gradient_descent(ws, target, lr=lrs, steps=60, record_every=4, stop_at_loss=0.02)
  return table, traj


def test_dataframe_rows_are_lanes_with_their_summary(sweep):
  table, traj = sweep
  df = labeled.to_dataframe(table, traj, threshold=0.05)
  assert df.index.name == "lane" and list(df.index) == list(range(6))
  assert list(df.columns) == ["std", "lr", "seed", *labeled.SUMMARY_COLUMNS]
  assert np.any(df.stopped_step >= 0) and np.any(df.diverged_step >= 0)
  assert np.any((df.stopped_step < 0) & (df.diverged_step < 0))
  for b in range(6):  # against a plain loop over each lane's records
    row, losses, steps = df.loc[b], traj.loss[b], traj.step[b]
    assert [row[k] for k in ("std", "lr", "seed")] == [table[k][b] for k in ("std", "lr", "seed")]
    finite = [x for x in losses.tolist() if np.isfinite(x)]
    assert row["min_loss"] == min(finite)
    np.testing.assert_equal(row["final_loss"], losses[-1])
    below = [int(s) for s, x in zip(steps, losses) if x <= 0.05]
    assert row["steps_to_threshold"] == (below[0] if below else -1)
    assert row["stopped_step"] == traj.stopped_step[b]
    assert row["diverged_step"] == traj.diverged_step[b]
  diverged = df.diverged_step >= 0
  assert df.final_loss[diverged].isna().all() and df.final_loss[~diverged].notna().all()
  assert "steps_to_threshold" not in labeled.to_dataframe(table, traj).columns


def test_dataset_has_every_record_labeled_by_the_grid(sweep):
  table, traj = sweep
  ds = labeled.to_dataset(table, traj)
  assert dict(ds.sizes) == {"lane": 6, "record": 16, "layer": 2, "layer_sv": 2, "end_to_end_sv": 1}
  np.testing.assert_array_equal(ds.step, np.arange(0, 61, 4))
  for name in ("std", "lr", "seed"):
    np.testing.assert_array_equal(ds[name], table[name])
  np.testing.assert_array_equal(ds.loss, traj.loss)
  picked = ds.loss.where((ds["std"] == 0.6) & (ds["lr"] == 0.3), drop=True)
  np.testing.assert_array_equal(picked.squeeze("lane"), traj.loss[4])
  layer_svs = ds.layer_singular_values  # layer 1 is 2x3 (two values), layer 2 is 1x2 (one)
  np.testing.assert_array_equal(layer_svs.sel(layer=1), traj.layer_singular_values[0])
  np.testing.assert_array_equal(layer_svs.sel(layer=2)[..., :1], traj.layer_singular_values[1])
  assert np.isnan(layer_svs.sel(layer=2)[..., 1]).all()
  np.testing.assert_array_equal(ds.end_to_end_singular_values, traj.end_to_end_singular_values)
  np.testing.assert_array_equal(ds.stopped_step, traj.stopped_step)
  assert "sharpness" not in ds
  sharpness = np.arange(96.0).reshape(6, 16)  # a tracked metric, as track=("sharpness",) records it
  tracked = labeled.to_dataset(table, traj._replace(sharpness=sharpness))
  np.testing.assert_array_equal(tracked.sharpness, sharpness)
  grid = ds.set_index(lane=["std", "lr", "seed"]).loss.unstack("lane")
  assert grid.sizes == {"record": 16, "std": 2, "lr": 3, "seed": 1}


def test_round_trip_through_save_and_load(sweep, tmp_path):
  """The table travels as lists in lt.save's metadata (JSON) and reloads to equal objects."""
  table, traj = sweep
  path = lt.save(tmp_path / "sweep.npz", traj, table={k: v.tolist() for k, v in table.items()})
  loaded, meta = lt.load(path)
  pd.testing.assert_frame_equal(
    labeled.to_dataframe(meta["table"], loaded, threshold=0.05),
    labeled.to_dataframe(table, traj, threshold=0.05),
  )
  xr.testing.assert_identical(
    labeled.to_dataset(meta["table"], loaded), labeled.to_dataset(table, traj)
  )


@pytest.mark.parametrize(
  "make, match",
  [
    (lambda t, tr: (dict(t, std=t["std"][:3]), tr), "one value per lane"),
    (lambda t, tr: ({}, tr), "non-empty dict"),
    (lambda t, tr: (dict(t, final_loss=t["lr"]), tr), "clashes"),
    (lambda t, tr: (t, lt.sweep.lane(tr, 0)), "batched"),
  ],
)
def test_bad_input(sweep, make, match):
  table, traj = make(*sweep)
  for convert in (labeled.to_dataframe, labeled.to_dataset):
    with pytest.raises(ValueError, match=match):
      convert(table, traj)


@pytest.mark.parametrize("module, convert", [("pandas", "to_dataframe"), ("xarray", "to_dataset")])
def test_missing_extra_names_the_install(sweep, monkeypatch, module, convert):
  monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
  with pytest.raises(ValueError, match=r"pip install 'lintraj\[labeled\]'"):
    getattr(labeled, convert)(*sweep)

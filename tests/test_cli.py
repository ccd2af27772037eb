"""The `lintraj run` command: writes a loadable trajectory, a summary and a figure."""

import json
import os

import numpy as np
import pytest

import lintraj as lt
from lintraj.cli import main


def test_run_writes_trajectory_summary_and_figure(tmp_path, capsys):
  out = tmp_path / "run"
  code = main(
    [
      "run",
      "--dims",
      "6,4,4,1",
      "--std",
      "0.1",
      "--lr",
      "0.05",
      "--steps",
      "300",
      "--record-every",
      "10",
      "--out",
      str(out),
    ]
  )
  assert code == 0
  traj, meta = lt.load(out / "trajectory.npz")
  assert meta["dims"] == [6, 4, 4, 1] and meta["lr"] == 0.05 and meta["steps"] == 300
  assert traj.loss.shape == (31,) and traj.loss[-1] < traj.loss[0]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["loss_final"] == pytest.approx(float(traj.loss[-1]), rel=1e-5)  # step 300 recorded
  assert (out / "trajectory.png").stat().st_size > 10_000
  assert "loss_final" in capsys.readouterr().out


def test_run_with_target_file_in_float64(tmp_path):
  phi = np.arange(6.0).reshape(2, 3) / 10
  np.save(tmp_path / "phi.npy", phi)
  out = tmp_path / "run64"
  assert (
    main(
      [
        "run",
        "--dims",
        "3,5,2",
        "--target",
        str(tmp_path / "phi.npy"),
        "--std",
        "0.5",
        "--lr",
        "0.2",
        "--steps",
        "3000",
        "--record-every",
        "100",
        "--x64",
        "--sharpness-every",
        "10",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  traj, _ = lt.load(out / "trajectory.npz")
  assert traj.loss.dtype == np.float64 and traj.final[0].dtype == np.float64
  np.testing.assert_allclose(lt.end_to_end(tuple(traj.final)), phi, atol=1e-5)
  assert np.isfinite(traj.sharpness[::10]).all() and np.isnan(traj.sharpness[1::10]).all()
  summary = json.loads((out / "summary.json").read_text())
  assert summary["sharpness_final"] == float(traj.sharpness[-1]) < summary["two_over_lr"] == 2 / 0.2
  assert (out / "sharpness.png").stat().st_size > 10_000


def test_run_reports_bad_input(tmp_path, capsys):
  assert main(["run", "--dims", "4,2,3", "--std", "0.1", "--out", str(tmp_path / "x")]) == 2
  assert "bottleneck" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "x" / "trajectory.npz")
  assert (
    main(["run", "--dims", "4,2,1", "--sharpness-every", "-1", "--out", str(tmp_path / "y")]) == 2
  )
  assert "--sharpness-every" in capsys.readouterr().err


def test_run_with_minibatch_sgd_is_seeded_and_recorded(tmp_path):
  """--batch-size/--sampling/--examples train with SGD on a regression of M Gaussian samples;
  --seed is the SGD key too: the same seed gives the same run, another seed another one."""

  def run(name, seed, sampling="shuffle"):
    args = ["run", "--dims", "4,3,2", "--std", "0.5", "--lr", "0.05", "--steps", "60"]
    args += ["--record-every", "10", "--batch-size", "8", "--sampling", sampling]
    args += ["--examples", "32", "--seed", str(seed), "--out", str(tmp_path / name)]
    assert main(args) == 0
    return lt.load(tmp_path / name / "trajectory.npz")

  (a, meta), (b, _), (c, _) = run("a", 0), run("b", 0), run("c", 1)
  assert meta["batch_size"] == 8 and meta["sampling"] == "shuffle" and meta["examples"] == 32
  assert a.minibatch_loss is not None and np.isfinite(a.minibatch_loss[:-1]).all()
  for x, y in zip(a.final, b.final):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.loss, c.loss)
  assert a.loss[-1] < a.loss[0]
  sequential, _ = run("d", 0, "sequential")
  assert not np.array_equal(sequential.final[0], a.final[0])

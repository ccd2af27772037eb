"""batch_gradient_descent, grids and device sharding against single runs and a NumPy reference."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt
from lintraj import _runtime, recording
from tests import numpy_reference as ref
from tests import sharded_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("loss", "balancedness", "deficiency_margin", "grad_norm", "end_to_end_singular_values")


def _problem(dims, lanes, seed=0):
  rng = np.random.default_rng(seed)
  ws = tuple(
    rng.normal(size=(lanes, d_out, d_in)) * 0.6 / np.sqrt(max(dims))
    for d_in, d_out in zip(dims[:-1], dims[1:])
  )
  phi = rng.normal(size=(dims[-1], dims[0]))
  return ws, phi / np.linalg.norm(phi)


def _leaves(traj):
  return {
    f"{name}/{i}": np.asarray(leaf)
    for name, value in traj._asdict().items()
    for i, leaf in enumerate(jax.tree_util.tree_leaves(value))
  }


def _assert_same_lane(batched: lt.Trajectory, single: lt.Trajectory, rtol):
  assert (
    batched.diverged_step == single.diverged_step and batched.stopped_step == single.stopped_step
  )
  np.testing.assert_array_equal(batched.step, single.step)
  for name in FIELDS:
    np.testing.assert_allclose(
      getattr(batched, name),
      getattr(single, name),
      rtol=rtol,
      atol=1e-300,
      equal_nan=True,
      err_msg=name,
    )
  for a, b in zip(
    batched.layer_singular_values + batched.final,
    single.layer_singular_values + single.final,
    strict=True,
  ):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-300, equal_nan=True)


def test_batched_equals_single_runs_lane_by_lane(x64):
  """Per-lane learning rates and targets, one lane diverging, one stopping, steps % k != 0."""
  ws, _ = _problem((4, 5, 3, 2), lanes=5)
  ws[0][4] *= 8.0  # a far-from-balanced lane that diverges at lr 0.3
  targets = [_problem((4, 5, 3, 2), 1, seed=s)[1] for s in range(5)]
  lrs = np.array([0.01, 0.05, 0.1, 0.2, 0.3])
  stop = np.array([-np.inf, 0.3, -np.inf, -np.inf, -np.inf])
  losses = [lt.losses.target(t) for t in targets]
  traj = lt.batch_gradient_descent(ws, losses, lr=lrs, steps=53, record_every=5, stop_at_loss=stop)
  assert traj.loss.shape == (5, 53 // 5 + 1) and traj.step.shape == (5, 11)
  assert traj.diverged_step[4] >= 0 and traj.stopped_step[1] >= 0
  for b in range(5):
    single = lt.gradient_descent(
      tuple(w[b] for w in ws),
      losses[b],
      lr=lrs[b],
      steps=53,
      record_every=5,
      stop_at_loss=None if np.isinf(stop[b]) else stop[b],
    )
    _assert_same_lane(lt.sweep.lane(traj, b), single, rtol=1e-12)


def test_stopped_step_and_frozen_lanes_match_numpy_reference(x64):
  """Thresholds placed between the NumPy losses at steps s-1 and s must stop each lane at s."""
  dims, steps = (3, 4, 4, 2), 40
  ws, phi = _problem(dims, lanes=4, seed=3)
  lrs = np.array([0.05, 0.1, 0.15, 0.2])
  wanted = np.array([31, 17, 9, 25])
  stop = np.empty(4)
  for b in range(4):
    records, _ = ref.gradient_descent([w[b] for w in ws], phi, lrs[b], steps, 1)
    losses = np.array([r["loss"] for r in records])
    assert np.all(np.diff(losses) < 0)
    stop[b] = np.sqrt(losses[wanted[b] - 1] * losses[wanted[b]])
  traj = lt.batch_gradient_descent(
    ws, lt.losses.target(phi), lr=lrs, steps=steps, record_every=2, stop_at_loss=stop
  )
  np.testing.assert_array_equal(traj.stopped_step, wanted)
  np.testing.assert_array_equal(traj.diverged_step, -1)
  for b in range(4):
    records, final = ref.gradient_descent([w[b] for w in ws], phi, lrs[b], int(wanted[b]), 1)
    for w, w_ref in zip(traj.final, final):
      np.testing.assert_allclose(w[b], w_ref, rtol=1e-12)
    frozen = np.arange(0, steps + 1, 2) >= wanted[b]  # records at or after the stop repeat
    np.testing.assert_array_equal(traj.loss[b, frozen], traj.loss[b, frozen][0])
    np.testing.assert_allclose(traj.loss[b, frozen][0], records[-1]["loss"], rtol=1e-12)
    earlier = [
      r["loss"] for r in ref.gradient_descent([w[b] for w in ws], phi, lrs[b], steps, 2)[0]
    ]
    np.testing.assert_allclose(traj.loss[b, ~frozen], np.asarray(earlier)[~frozen], rtol=1e-12)


def test_loop_ends_once_every_lane_has_stopped():
  """10^7 steps allowed; every lane stops within ~200, and the loop stops computing there (the loss
  is evaluated a few hundred times per lane, counted on the host, not 10^7 times)."""
  ws, phi = _problem((3, 4, 2), lanes=3)
  evaluations = []

  def counted_loss(w):
    jax.debug.callback(lambda: evaluations.append(1))
    return 0.5 * jnp.sum((w - phi) ** 2)

  traj = lt.batch_gradient_descent(
    ws, counted_loss, lr=[0.2, 0.3, 0.4], steps=10**7, record_every=10**6, stop_at_loss=1e-4
  )
  jax.effects_barrier()
  assert 0 < len(evaluations) < 10**4
  assert np.all((traj.stopped_step > 0) & (traj.stopped_step < 1000))
  assert np.all(traj.loss[:, 1:] == traj.loss[:, -1:])  # records after the stop repeat the last one


def test_chunks_equal_separate_runs_bit_for_bit_and_unchunked_to_rounding(x64, compiles):
  ws, phi = _problem((5, 6, 4, 3), lanes=10, seed=1)
  lrs = np.geomspace(0.01, 0.4, 10)
  kwargs = dict(steps=30, record_every=4, stop_at_loss=1e-3)
  loss = lt.losses.target(phi)
  before = compiles("_segment")
  chunked = lt.batch_gradient_descent(ws, loss, lr=lrs, lanes_per_device=4, **kwargs)
  assert compiles("_segment") == before + 1  # three chunks, one program
  parts = [
    lt.batch_gradient_descent(
      tuple(w[lo:hi] for w in ws), loss, lr=lrs[lo:hi], lanes_per_device=4, **kwargs
    )
    for lo, hi in ((0, 4), (4, 8), (8, 10))
  ]
  joined = {k: np.concatenate([_leaves(p)[k] for p in parts]) for k in _leaves(chunked)}
  for key, value in _leaves(chunked).items():
    np.testing.assert_array_equal(value, joined[key], err_msg=key)
  whole = lt.batch_gradient_descent(ws, loss, lr=lrs, **kwargs)
  np.testing.assert_array_equal(whole.stopped_step, chunked.stopped_step)
  for key, value in _leaves(whole).items():
    np.testing.assert_allclose(value, _leaves(chunked)[key], rtol=1e-12, atol=1e-300, err_msg=key)


def test_no_recompile_for_new_targets_lrs_or_thresholds(compiles):
  ws, phi = _problem((4, 3, 2), lanes=6)
  kwargs = dict(steps=9, record_every=3)
  lt.batch_gradient_descent(ws, lt.losses.target(phi), lr=0.1, stop_at_loss=1e-3, **kwargs)
  before = compiles("_segment")
  lt.batch_gradient_descent(
    tuple(2 * w for w in ws),
    lt.losses.target(-phi),
    lr=np.linspace(0.01, 0.1, 6),
    stop_at_loss=0.5,
    **kwargs,
  )
  lt.batch_gradient_descent(ws, lt.losses.target(phi / 2), lr=0.3, **kwargs)
  assert compiles("_segment") == before


def test_memory_estimate_refuses_before_compiling(monkeypatch, compiles):
  ws, phi = _problem((4, 3, 2), lanes=64)
  loss = lt.losses.target(phi)
  per_lane = recording.record_bytes(
    tuple(jnp.asarray(w[0], jnp.float32) for w in ws), loss, recording.Schedule(40, 4)
  )
  traj = lt.batch_gradient_descent(ws, loss, lr=0.1, steps=40, record_every=4)
  recorded = sum(
    x.nbytes
    for name in (
      "loss",
      "balancedness",
      "deficiency_margin",
      "grad_norm",
      "layer_singular_values",
      "end_to_end_singular_values",
    )
    for x in jax.tree_util.tree_leaves(getattr(traj, name))
  )
  assert per_lane * 64 == recorded
  before = compiles("_segment")
  with pytest.raises(ValueError, match=r"GiB.*record_every.*lanes_per_device"):
    lt.batch_gradient_descent(ws, loss, lr=0.1, steps=2**31 - 1, record_every=1)
  with pytest.raises(ValueError, match="GiB"):
    lt.gradient_descent(tuple(w[0] for w in ws), loss, lr=0.1, steps=2**31 - 1)
  monkeypatch.setattr(_runtime, "available_bytes", lambda device: (10 * per_lane, "test memory"))
  with pytest.raises(ValueError, match="test memory"):  # 64 lanes on the host do not fit ...
    lt.batch_gradient_descent(ws, loss, lr=0.1, steps=40, record_every=4, lanes_per_device=1)
  lt.batch_gradient_descent(
    tuple(w[:3] for w in ws), loss, lr=0.1, steps=40, record_every=4, lanes_per_device=1
  )
  assert compiles("_segment") == before + 1  # ... only the run that fits compiled


def test_grid_lays_out_std_lr_seed_and_shares_inits():
  ws, lrs, table = lt.sweep.grid(
    "gaussian", (6, 5, 2), std=[0.1, 0.4], lr=[1e-3, 1e-2, 1e-1], seeds=[3, 4]
  )
  assert [w.shape for w in ws] == [(12, 5, 6), (12, 2, 5)]
  np.testing.assert_array_equal(lrs, table["lr"])
  np.testing.assert_array_equal(table["std"], np.repeat([0.1, 0.4], 6))
  np.testing.assert_array_equal(table["lr"], np.tile(np.repeat([1e-3, 1e-2, 1e-1], 2), 2))
  np.testing.assert_array_equal(table["seed"], np.tile([3, 4], 6))
  expected = lt.init.gaussian(jax.random.fold_in(jax.random.PRNGKey(4), 1), (6, 5, 2), std=0.4)
  for b in np.flatnonzero((table["std"] == 0.4) & (table["seed"] == 4)):
    for w, e in zip(ws, expected):
      np.testing.assert_array_equal(w[b], e)
  assert not np.array_equal(ws[0][0], ws[0][1])  # seeds differ
  assert not np.allclose(ws[0][0] / 0.1, ws[0][6] / 0.4)  # independent draws per std ...
  common, _, _ = lt.sweep.grid(
    "gaussian", (6, 5, 2), std=[0.1, 0.4], lr=[1e-3], seeds=[3], draws="common"
  )
  np.testing.assert_allclose(
    common[0][0] / 0.1, common[0][1] / 0.4, rtol=1e-6
  )  # ... or one draw rescaled
  with pytest.raises(ValueError, match="draws"):
    lt.sweep.grid("gaussian", (6, 5, 2), std=[0.1], lr=[1e-3], draws="shared")
  balanced, _, _ = lt.sweep.grid("balanced", (6, 5, 5, 2), std=[0.3], lr=[0.1], seeds=[0, 1, 2])
  for b in range(3):
    assert float(lt.metrics.balancedness(tuple(w[b] for w in balanced))) < 1e-5


def test_figure1_style_sweep_picks_fastest_lr_per_std():
  ws, lrs, table = lt.sweep.grid(
    "balanced", (8, 4, 4, 1), std=[0.05, 0.3], lr=[0.02, 0.1, 0.3, 2.5]
  )
  phi = _problem((8, 4, 4, 1), 1)[1]
  traj = lt.batch_gradient_descent(
    ws, lt.losses.target(phi), lr=lrs, steps=3000, record_every=100, stop_at_loss=1e-5
  )
  best = lt.sweep.fastest(table, traj)
  np.testing.assert_array_equal(best["std"], [0.05, 0.3])
  for i, s in enumerate(best["std"]):
    lanes = np.flatnonzero((table["std"] == s) & (traj.stopped_step >= 0))
    winner = lanes[np.argmin(traj.stopped_step[lanes])]
    assert best["steps"][i] == traj.stopped_step[winner] and best["lr"][i] == table["lr"][winner]
  assert np.all(traj.diverged_step[table["lr"] == 2.5] >= 0)


def test_lane_extracts_single_run_types():
  ws, phi = _problem((3, 4, 2), lanes=2)
  traj = lt.batch_gradient_descent(ws, lt.losses.target(phi), lr=[0.1, 50.0], steps=20)
  calm, wild = lt.sweep.lane(traj, 0), lt.sweep.lane(traj, 1)
  assert calm.diverged_step is None and isinstance(wild.diverged_step, int)
  assert calm.loss.shape == (21,) and calm.final[0].shape == (4, 3)
  assert np.all(np.isnan(wild.loss[wild.diverged_step :]))


@pytest.mark.parametrize(
  "change,match",
  [
    (dict(weights=(np.ones((3, 4)),)), "shape"),
    (dict(weights=(np.ones((2, 4, 3)), np.ones((3, 2, 4)))), "same B"),
    (dict(weights=(np.ones((2, 4, 3)), np.ones((2, 2, 5)))), "do not chain"),
    (dict(lr=np.ones(3)), "one per lane"),
    (dict(lr=[0.1, -0.1]), "lr must be"),
    (dict(lr="fast"), "lr must be"),
    (dict(stop_at_loss=np.nan), "stop_at_loss"),
    (dict(stop_at_loss=np.ones(5)), "one per lane"),
    (dict(loss=[lt.losses.target(np.ones((2, 3)))]), "2 lanes"),
    (dict(lanes_per_device=0), "lanes_per_device"),
    (dict(devices=[]), "devices"),
  ],
)
def test_bad_input_raises_before_tracing(change, match, compiles):
  kwargs = (
    dict(
      weights=(np.ones((2, 4, 3)), np.ones((2, 2, 4))),
      loss=lt.losses.target(np.ones((2, 3))),
      lr=0.1,
      steps=5,
    )
    | change
  )
  before = compiles("_segment")
  with pytest.raises(ValueError, match=match):
    lt.batch_gradient_descent(kwargs.pop("weights"), kwargs.pop("loss"), **kwargs)
  assert compiles("_segment") == before


def test_sharded_over_four_devices_equals_one_device(tmp_path):
  """Same lanes per device (lanes_per_device): bit for bit; default layout: equal to rounding."""
  out = tmp_path / "sharded.npz"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  done = subprocess.run(
    [sys.executable, "-m", "tests.sharded_check", str(out), "4"],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  sharded = dict(np.load(out))
  assert int(sharded.pop("devices/available")) == 8
  assert set(sharded.pop("devices/spanned").tolist()) == {4}
  single = sharded_check.cases()
  assert sorted(sharded) == sorted(single)
  for key, value in single.items():
    if key.startswith("shared_default/"):  # 3 lanes per device there, 10 here
      np.testing.assert_allclose(
        sharded[key], value, rtol=1e-12, atol=1e-300, equal_nan=True, err_msg=key
      )
    else:
      np.testing.assert_array_equal(sharded[key], value, err_msg=key)
  stopped, diverged = single["shared_bs2/stopped_step/0"], single["shared_bs2/diverged_step/0"]
  assert np.any(stopped >= 0) and np.any(diverged >= 0) and np.any((stopped < 0) & (diverged < 0))


def test_staged_search_drops_exact_fixed_points_and_keeps_the_others():
  """A depth-6 Gaussian init of std 1e-6 is an exact float32 fixed point (every update rounds
  away): the staged search drops its lanes after the first stage instead of running them to the
  cap. The moving std's answer equals single GD runs (its fastest learning rate and step)."""
  dims, lrs = (16, 8, 8, 8, 8, 8, 1), [0.03, 0.1]
  phi = _problem(dims, 3)[1].astype(np.float32)
  phi = phi / np.linalg.norm(phi)
  loss = lt.losses.target(phi)
  best, lane_steps = lt.sweep.fastest_iterations(
    "gaussian", dims, loss, stds=[1e-6, 0.4], lrs=lrs, caps=[100, 5000], threshold=1e-4
  )
  assert best["fixed"].tolist() == [2, 0] and best["steps"][0] == -1 and best["diverged"][1] == 1
  ws, _, _ = lt.sweep.grid("gaussian", dims, std=[1e-6, 0.4], lr=lrs, seeds=[0])
  single = [
    lt.gradient_descent(
      tuple(w[2 + i] for w in ws), loss, lr=lr, steps=5000, record_every=50, stop_at_loss=1e-4
    ).stopped_step
    for i, lr in enumerate(lrs)
  ]
  assert best["steps"][1] == min(s for s in single if s is not None) > 100
  assert lane_steps < 2 * 100 + 2 * 5000


def test_staged_search_keeps_lanes_that_move_slowly():
  """Only bit-for-bit unchanged lanes leave as fixed points: a small depth-3 init moves by about
  2e-3 in its first 20 steps and converges at step 148 (a tolerance in place of the exact
  comparison would drop it)."""
  dims = (16, 8, 8, 1)
  phi = _problem(dims, 3)[1].astype(np.float32)
  loss = lt.losses.target(phi / np.linalg.norm(phi))
  best, _ = lt.sweep.fastest_iterations(
    "gaussian", dims, loss, stds=[0.01], lrs=[0.3], caps=[20, 5000], threshold=1e-4
  )
  ws, _, _ = lt.sweep.grid("gaussian", dims, std=[0.01], lr=[0.3], seeds=[0])
  single = lt.gradient_descent(
    tuple(w[0] for w in ws), loss, lr=0.3, steps=5000, record_every=50, stop_at_loss=1e-4
  )
  assert best["fixed"].tolist() == [0] and single.stopped_step > 20
  assert best["steps"].tolist() == [single.stopped_step]


def test_staged_search_over_inits_and_seeds_matches_single_runs():
  """Two inits and two seeds share each stage's batched call (in chunks of 3 lanes): every
  (init, std, seed) gets the fewest steps of its own learning rates, as single GD runs from the
  same independent draws give them, and the seeds' draws differ."""
  dims, stds, lrs, seeds = (8, 6, 6, 1), [0.05, 0.3], [0.05, 0.2], [0, 1]
  phi = _problem(dims, 1)[1].astype(np.float32)
  loss = lt.losses.target(phi)
  best, _ = lt.sweep.fastest_iterations(
    ("gaussian", "balanced"),
    dims,
    loss,
    stds=stds,
    lrs=lrs,
    caps=[30, 3000],
    threshold=1e-4,
    seeds=seeds,
    lanes_per_device=3,
  )
  rows = list(zip(best["init"].tolist(), best["std"].tolist(), best["seed"].tolist()))
  assert rows == sorted((i, s, k) for i in ("balanced", "gaussian") for s in stds for k in seeds)
  for init in ("gaussian", "balanced"):
    ws, lr, table = lt.sweep.grid(init, dims, std=stds, lr=lrs, seeds=seeds)
    assert not np.array_equal(ws[0][0], ws[0][1])  # lanes 0, 1: the same std and lr, two seeds
    for std in stds:
      for seed in seeds:
        lanes = np.flatnonzero((table["std"] == std) & (table["seed"] == seed))
        single = [
          lt.gradient_descent(
            tuple(w[b] for w in ws),
            loss,
            lr=lr[b],
            steps=3000,
            record_every=100,
            stop_at_loss=1e-4,
          ).stopped_step
          for b in lanes
        ]
        done = [s for s in single if s is not None]
        assert done, (init, std, seed)
        assert best["steps"][rows.index((init, std, seed))] == min(done), (init, std, seed)


def test_stack_makes_lanes_of_networks_and_refuses_unequal_shapes():
  nets = [lt.init.gaussian(jax.random.PRNGKey(k), (3, 4, 2), std=0.1) for k in range(3)]
  batch = lt.sweep.stack(nets)
  for k, net in enumerate(nets):
    for w_batch, w in zip(batch, net):
      np.testing.assert_array_equal(w_batch[k], w)
  with pytest.raises(ValueError, match="same layer shapes"):
    lt.sweep.stack([nets[0], lt.init.gaussian(jax.random.PRNGKey(0), (3, 5, 2), std=0.1)])
  with pytest.raises(ValueError, match="at least one network"):
    lt.sweep.stack([])


def test_fastest_iterations_refuses_the_old_single_seed_with_the_fix():
  loss = lt.losses.target(jnp.array([[1.0, 0.5]]))
  with pytest.raises(ValueError, match=r"seeds=\(3,\)"):
    lt.sweep.fastest_iterations(
      "balanced", (2, 3, 1), loss, stds=[0.5], lrs=[0.1], caps=[10], threshold=1e-4, seed=3
    )

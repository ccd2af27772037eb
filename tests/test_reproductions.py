"""Each reproduction's qualitative claim, asserted on its quick-mode numbers, plus the registry and
the `lintraj reproduce` command. A regression in the engine breaks these, not just a picture.

Every quick run happens once (module-scoped fixtures); some go through the command line and read
the numbers back from the JSON it wrote, so the CLI and the output files are tested on the way.
"""

import json
import math

import numpy as np
import pytest

from lintraj import reproductions
from lintraj.cli import main
from lintraj.reproductions import (
  acceleration,
  arora2019_fig1,
  deep_matrix_factorization,
  minibatch_sgd,
  saxe_modes,
)


def _strict_json(path):
  def reject(constant):
    raise ValueError(f"{path} holds {constant}, which is not strict JSON")

  with open(path) as f:
    return json.load(f, parse_constant=reject)


def _via_cli(name, out, *extra):
  assert main(["reproduce", name, "--quick", "--out", str(out), "--no-progress", *extra]) == 0
  return _strict_json(out / f"{name}.json")


@pytest.fixture(scope="module")
def fig1(tmp_path_factory):
  return reproductions.run("arora2019-fig1", quick=True, out_dir=tmp_path_factory.mktemp("fig1"))


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
  return _via_cli("residual-failure", tmp_path_factory.mktemp("residual"), "--pdf")


@pytest.fixture(scope="module")
def rate(tmp_path_factory):
  return _via_cli("convergence-rate", tmp_path_factory.mktemp("rate"))


@pytest.fixture(scope="module")
def accel(tmp_path_factory):
  return reproductions.run("acceleration", quick=True, out_dir=tmp_path_factory.mktemp("accel"))


@pytest.fixture(scope="module")
def saxe(tmp_path_factory):
  return reproductions.run("saxe-modes", quick=True, out_dir=tmp_path_factory.mktemp("saxe"))


@pytest.fixture(scope="module")
def dmf(tmp_path_factory):
  return _via_cli("deep-matrix-factorization", tmp_path_factory.mktemp("dmf"))


@pytest.fixture(scope="module")
def sgd(tmp_path_factory):
  return _via_cli("minibatch-sgd", tmp_path_factory.mktemp("sgd"))


# ------------------------------------------------------------------------------------ registry, CLI


def test_registry_names_resolve_to_run_functions():
  assert {
    "arora2019-fig1",
    "convergence-rate",
    "acceleration",
    "saxe-modes",
    "residual-failure",
    "deep-matrix-factorization",
    "minibatch-sgd",
    "sgd-stability",
    "implicit-regularization-norms",
    "whitening-generalization",
  } <= set(reproductions.names())
  for name in reproductions.names():
    assert callable(reproductions.get(name)), name


def test_registry_rejects_unknown_names_and_options(tmp_path):
  with pytest.raises(ValueError, match="no reproduction named 'fig9'.*arora2019-fig1"):
    reproductions.describe("fig9")
  with pytest.raises(ValueError, match="takes no option data"):
    reproductions.run("residual-failure", quick=True, out_dir=tmp_path, data="x.csv")
  assert not list(tmp_path.iterdir())


def test_cli_lists_and_reports_errors(capsys, tmp_path):
  assert main(["reproduce", "--list"]) == 0
  listed = capsys.readouterr().out
  assert all(name in listed for name in reproductions.names())
  assert main(["reproduce", "no-such-figure"]) == 2
  assert "no reproduction named" in capsys.readouterr().err
  assert main(["reproduce", "saxe-modes", "--data", str(tmp_path / "x.csv")]) == 2
  assert "takes no option data" in capsys.readouterr().err


def test_cli_writes_figure_pdf_numbers_and_tables(residual):
  files = residual["files"]
  for kind in ("png", "pdf"):
    with open(files[kind], "rb") as f:
      assert len(f.read()) > 10_000, kind
  with open(files["csv/escape"]) as f:
    header, *rows = f.read().splitlines()
  assert header.split(",") == ["perturbation", "escape_step_depth2", "escape_step_depth4"]
  assert [int(row.split(",")[1]) for row in rows] == residual["escape"]["2"]


# ------------------------------------------------------------------------- arora2019-fig1 (Figure
# 1)


def _converged(sweep, seeds):
  """The stds at which at least ``seeds`` seeds converged."""
  return {s for s, k in zip(sweep["std"], sweep["converged"]) if k >= seeds}


def test_fig1_balanced_converges_at_every_std_gaussian_only_in_a_band(fig1):
  stds, seeds = fig1["protocol"]["stds"], len(fig1["seeds"])
  assert seeds >= 3 and len(set(fig1["seeds"])) == seeds
  bands = {}
  for depth in fig1["protocol"]["depths"]:
    balanced, gaussian = (fig1["sweeps"][f"{init}/N={depth}"] for init in ("balanced", "gaussian"))
    assert _converged(balanced, seeds) == set(stds), depth  # every std, every seed
    bands[depth] = _converged(gaussian, 1)  # any seed
    assert min(stds) not in bands[depth] and max(stds) not in bands[depth], (depth, bands[depth])
    assert _converged(gaussian, seeds), f"Gaussian init converged for all seeds nowhere at {depth}"
  assert bands[8] < bands[3]  # narrower for the deeper network


def test_fig1_seeds_are_independent_draws_and_the_spread_is_theirs(fig1):
  """Every seed is searched on its own (an independent draw per std and seed): the iterations
  differ between seeds, and median / min / max are those of the seeds that converged."""
  differ = False
  for sweep in fig1["sweeps"].values():
    for steps, k, median, low, high in zip(
      sweep["steps"], sweep["converged"], sweep["median"], sweep["min"], sweep["max"]
    ):
      done = [s for s in steps if s >= 0]
      assert len(steps) == len(fig1["seeds"]) and k == len(done)
      assert (median, low, high) == (
        (float(np.median(done)), min(done), max(done)) if done else (None, None, None)
      )
      differ |= len(set(done)) > 1
  assert differ
  # Balanced inits converge whether or not the init has a deficiency margin (about half do).
  margins = np.array([fig1["sweeps"][f"balanced/N={d}"]["margin"] for d in (3, 8)])
  assert (margins > 0).any() and (margins < 0).any()


def test_fig1_fastest_lr_is_a_grid_point_and_steps_below_cap(fig1):
  cap = fig1["protocol"]["caps"][-1]
  for sweep in fig1["sweeps"].values():
    for lrs, steps in zip(sweep["lr"], sweep["steps"]):
      for lr, n in zip(lrs, steps):
        assert (n < 0 and math.isnan(lr)) or (0 < n <= cap and lr in fig1["protocol"]["lrs"])


def test_fig1_panel_c_balancedness_persists_while_weights_grow(fig1):
  c = fig1["panel_c"]
  assert c["seeds"] == fig1["seeds"] and all(c["converged"])
  threshold = fig1["protocol"]["threshold"]
  for seed in range(len(c["seeds"])):
    initial, peak = c["balancedness_initial"][seed], c["balancedness_max"][seed]
    assert c["final_loss"][seed] <= threshold
    assert peak <= 1.01 * initial
    assert c["min_gram_norm_initial"][seed] < initial < 0.01 * c["min_gram_norm_final"][seed]


def test_fig1_target_is_unit_and_data_path_whitens_a_real_data_set(tmp_path):
  sklearn = pytest.importorskip("sklearn.datasets")
  x, y = sklearn.load_diabetes(return_X_y=True)
  path = tmp_path / "diabetes.csv"
  np.savetxt(
    path,
    np.column_stack([x, y]),
    delimiter=",",
    header=",".join(f"f{i}" for i in range(10)) + ",y",
    comments="",
  )
  xs, ys = arora2019_fig1.read_csv(path)
  np.testing.assert_array_equal(xs, x)
  phi, source = arora2019_fig1.target(128, data=path)
  assert source["whitened_features"] == 10 and phi.shape == (1, 10)
  # Independent check: Phi is the least-squares solution in PCA-whitened coordinates, normalised.
  centred = x - x.mean(0)
  eigvals, eigvecs = np.linalg.eigh(centred.T @ centred / len(x))
  white = centred @ eigvecs / np.sqrt(eigvals)
  coef = np.linalg.lstsq(white, y - y.mean(), rcond=None)[0]
  np.testing.assert_allclose(np.abs(phi[0]), np.abs(coef) / np.linalg.norm(coef), atol=1e-6)
  unit, _ = arora2019_fig1.target(128)
  assert unit.shape == (1, 128) and abs(np.linalg.norm(unit) - 1) < 1e-12


def test_fig1_cli_with_real_data(tmp_path):
  sklearn = pytest.importorskip("sklearn.datasets")
  x, y = sklearn.load_diabetes(return_X_y=True)
  np.savetxt(tmp_path / "diabetes.csv", np.column_stack([x, y]), delimiter=",")
  res = _via_cli("arora2019-fig1", tmp_path / "out", "--data", str(tmp_path / "diabetes.csv"))
  assert res["target"]["kind"] == "csv" and res["target"]["samples"] == 442
  seeds = len(res["seeds"])
  for depth in res["protocol"]["depths"]:  # at std 1e-4 one depth-8 seed needs more than 3000
    converged = res["sweeps"][f"balanced/N={depth}"]["converged"]
    assert converged[0] >= 1 and converged[1:] == [seeds] * 4, depth


def test_fig1_rejects_bad_csv(tmp_path):
  (tmp_path / "bad.csv").write_text("a,b\n1,x\n")
  with pytest.raises(ValueError, match="numbers only"):
    arora2019_fig1.read_csv(tmp_path / "bad.csv")
  with pytest.raises(ValueError, match="quick or full"):
    arora2019_fig1.protocol(quick=True, full=True)


# -------------------------------------------------------------------------------- convergence-rate


def test_rate_loss_stays_below_theorem1_line_and_margin_is_kept(rate):
  for depth, stats in rate["depths"].items():
    assert stats["below_bound"], depth
    assert stats["min_margin"] >= rate["margin"] - 1e-9, depth
    assert stats["empirical_rate"] > stats["bound_rate"], depth


def test_rate_matches_linearisation_and_bound_is_conservative(rate):
  for depth, stats in rate["depths"].items():
    assert stats["empirical_rate"] == pytest.approx(stats["asymptotic_rate"], rel=0.05), depth
    check = stats["theorem1"]
    assert (
      check["has_margin"]
      and check["is_balanced"]
      and not check["lr_ok"]
      and check["lr"] > check["max_lr"]
    )
    assert stats["iterations_at_max_lr"] > 1000 * stats["iterations"] > 0, depth


# ------------------------------------------------------------------------------------ acceleration


def test_acceleration_depth_helps_l4_not_l2(accel):
  deep = [d for d in map(str, accel["protocol"]["depths"]) if d != "1"]
  for d in deep:
    assert accel["p"]["4"]["depths"][d]["speedup"] > 1.5, d
    assert accel["p"]["2"]["depths"][d]["speedup"] <= 1.0, d


def test_acceleration_network_follows_end_to_end_rule(accel):
  """Quick mode measured flow gaps (largest |network loss - end-to-end rule loss| over the first
  1000 steps, relative to the initial excess loss) of 0.0104 (l4) and 0.0715 (l2) at depth 2; the
  bounds are 1.3x and 1.12x these. What they rule out (measured with the rule at the wrong depth
  against the depth-2 network): depth 3 gives 0.030 (l4) and 0.53 (l2), depth 1 (no
  preconditioning) 0.005 and 0.50, so l4 alone does not tell depth 1 from 2 but l2 does. They do
  not rule out a rule 10% faster (0.006, 0.015): gradient descent on the layers runs ahead of the
  Euler steps of the rule by O(lr^2) per step, and that is most of the measured gap."""
  bounds = {"4": 0.0135, "2": 0.08}
  for p, bound in bounds.items():
    for d, stats in accel["p"][p]["depths"].items():
      if d != "1":
        assert stats["flow_gap"] < bound, (p, d, stats["flow_gap"])


def test_acceleration_tuned_gd_stays_converged(accel):
  """GD's rule (the first step below the threshold) and the optimizers' (the step from which it
  stays below through the hold) pick the same learning rate when the tuned GD run stays below:
  measured in quick mode, the largest excess loss after the first step below is 0.990-0.9998 of
  the threshold's through step 3000, at every p and depth."""
  for p in ("4", "2"):
    for d, stats in accel["p"][p]["depths"].items():
      assert stats["rebound"] <= 1.0, (p, d, stats["rebound"])


def _best_deep(accel, p="4"):
  return min(s["iterations"] for d, s in accel["p"][p]["depths"].items() if d != "1")


def test_acceleration_adaptive_optimizers_against_depth(accel):
  """Arora, Cohen, Hazan report depth-2/3 GD beating tuned AdaGrad and AdaDelta on l4; measured
  here in quick mode (best deep GD: 194 iterations, depth 2; GD depth 1: 707):
  AdaGrad 16 iterations on the data as drawn (its per-coordinate steps undo the input scales, which
  lie along the axes) but 450 on the same data rotated, where GD is unchanged; AdaDelta 409 and
  535, slower than depth on both. AdaDelta's first step below the threshold comes sooner (10 and 65
  iterations, at learning rates 562 and 178), but those runs then grow without bound (excess loss
  about 1e208 times the threshold's): only the rule that asks a run to stay below makes depth beat
  AdaDelta. Bounds, as fractions of the best deep GD: AdaGrad on the data as drawn < 0.2 (measured
  0.08); AdaGrad rotated and AdaDelta > 1.5 (2.3, 2.1, 2.8); AdaDelta's first step below < 0.5
  (0.05, 0.34). Against depth-1 GD the quick and default runs differ (quick: every optimizer
  faster; default: only AdaGrad on the data as drawn), so that is not asserted."""
  opt = accel["p"]["4"]["optimizers"]
  deep = _best_deep(accel)
  assert 0 < opt["adagrad"]["features"]["iterations"] < 0.2 * deep
  assert opt["adagrad"]["rotated"]["iterations"] > 1.5 * deep
  for basis in ("features", "rotated"):
    adadelta = opt["adadelta"][basis]
    assert adadelta["iterations"] > 1.5 * deep, basis
    assert 0 < adadelta["first_crossing"]["iterations"] < 0.5 * deep, basis
    assert adadelta["first_crossing"]["rebound"] > 1e3, basis


def test_acceleration_optimizer_learning_rates_are_tuned(accel):
  """Each optimizer's learning rate is the fastest of its grid, checked by an independent run
  (lt.batch_train at the tuned rate and its two grid neighbours, every step recorded, settling
  step recomputed here): the tuned one settles at the reported step, its neighbours later. Quick
  mode tuned AdaGrad to 1.78 (data as drawn) and 1.0 (rotated), AdaDelta to 1.78 and 1.78, all
  inside the grid 1e-3..1e4."""
  import jax
  import jax.numpy as jnp
  import optax

  import lintraj as lt
  from lintraj import losses

  protocol = accel["protocol"]
  grid, cap = list(protocol["optimizer_lrs"]), protocol["caps"][-1]
  row = accel["p"]["4"]
  x, y = acceleration.regression_data(protocol["samples"], protocol["features"], protocol["noise"])
  q = acceleration.rotation(protocol["features"])
  with jax.enable_x64(True):
    w0 = protocol["init_std"] * np.asarray(
      jax.random.normal(jax.random.PRNGKey(accel["seed"]), (1, protocol["features"]), jnp.float64)
    )
    for basis, (inputs, start) in {"features": (x, w0), "rotated": (x @ q, w0 @ q)}.items():
      loss = losses.lp_regression(inputs, y, 4)
      for name, factory in (("adagrad", optax.adagrad), ("adadelta", optax.adadelta)):
        stats = row["optimizers"][name][basis]
        i = grid.index(stats["lr"])
        assert 0 < i < len(grid) - 1, (name, basis)
        lrs = np.array(grid[i - 1 : i + 2])
        traj = lt.batch_train(
          (np.repeat(start[None], 3, 0),),
          loss,
          factory,
          hyperparams={"learning_rate": lrs},
          steps=2 * cap,
        )
        above = ~(np.asarray(traj.loss) <= row["threshold"])
        settled = [int(np.flatnonzero(a)[-1]) + 1 if a.any() else 0 for a in above]
        assert settled[1] == stats["iterations"], (name, basis, settled)
        assert settled[0] > settled[1] and settled[2] > settled[1], (name, basis, settled)


def test_acceleration_rotation_leaves_gd_and_not_adagrad():
  """The rotated problem (inputs x Q, start w0 Q) has the same GD trajectory at every depth (a
  balanced network's layers rotate with w) but not the same AdaGrad trajectory: measured, GD's
  losses agree to 2.4e-15 and 4.4e-15 relative at depths 1 and 2 over 300 steps, AdaGrad's differ
  by up to a factor 12.8 (median 36%)."""
  import jax
  import jax.numpy as jnp
  import optax

  import lintraj as lt
  from lintraj import losses

  x, y = acceleration.regression_data(100, 6, 0.5)
  q = acceleration.rotation(6)
  w0 = 0.01 * np.random.default_rng(0).standard_normal((1, 6))
  with jax.enable_x64(True):
    runs = {}
    for basis, (inputs, start) in {"features": (x, w0), "rotated": (x @ q, w0 @ q)}.items():
      loss = losses.lp_regression(inputs, y, 4)
      for depth in (1, 2):
        dims = (6,) + (4,) * (depth - 1) + (1,)
        ws = lt.init.balanced(None, dims, end_to_end=start, dtype=jnp.float64)
        runs[basis, depth] = np.asarray(lt.gradient_descent(ws, loss, lr=0.2, steps=300).loss)
      runs[basis, "adagrad"] = np.asarray(
        lt.train((jnp.asarray(start),), loss, optax.adagrad(1.0), steps=300).loss
      )
  for depth in (1, 2):
    np.testing.assert_allclose(runs["rotated", depth], runs["features", depth], rtol=1e-12)
  gap = np.abs(runs["rotated", "adagrad"] / runs["features", "adagrad"] - 1)
  assert np.max(gap) > 0.1


def test_lp_minimum_is_stationary_and_below_nearby_points():
  x, y = acceleration.regression_data(100, 4, 0.5)
  w, value = acceleration.lp_minimum(x, y, 4)
  residual = x @ w - y
  np.testing.assert_allclose(x.T @ residual**3 / len(y), 0, atol=1e-10)
  rng = np.random.default_rng(1)
  for _ in range(5):
    v = w + 1e-2 * rng.standard_normal(w.shape)
    assert np.sum((x @ v - y) ** 4) / (4 * len(y)) > value


# -------------------------------------------------------------------------------------- saxe-modes


def test_saxe_modes_follow_exact_solution(saxe):
  for depth, stats in saxe["depths"].items():
    assert max(stats["mode_error"]) < 0.05, depth
    np.testing.assert_allclose(stats["half_time"], stats["half_time_theory"], rtol=0.03)


def test_saxe_depth2_time_to_learn_is_linear_in_inverse_strength(saxe):
  assert saxe["depth2_fit"]["r2"] > 0.99 and saxe["depth2_fit"]["slope"] > 0
  s = np.asarray(saxe["protocol"]["strengths"])
  u0 = saxe["protocol"]["u0"]
  # GD's measured half-times against Saxe et al.'s closed form for depth 2 (not the module's
  # interpolation of its own exact solution); measured within 0.73% in quick mode.
  np.testing.assert_allclose(
    saxe["depths"]["2"]["half_time"], np.log((s - u0) / u0) / (2 * s), rtol=0.015
  )


def test_saxe_small_gaussian_slows_with_depth_orthogonal_does_not(saxe):
  gaussian = saxe["steps_to_learn"]["small Gaussian"]
  orthogonal = saxe["steps_to_learn"]["orthogonal"]
  learned = [s for s in gaussian if s >= 0]
  assert learned == sorted(learned) and gaussian[0] >= 0
  assert gaussian[-1] < 0 or gaussian[-1] > 5 * orthogonal[-1]
  assert min(orthogonal) > 0 and max(orthogonal) < 2 * min(orthogonal)


def test_half_time_interpolates():
  t = np.linspace(0, 1, 11)
  np.testing.assert_allclose(
    saxe_modes.half_time(t, np.stack([t, 2 * t], 1), np.array([1.0, 4.0])), [0.5, 1.0]
  )


# -------------------------------------------------------------------------------- residual-failure


def test_residual_claim5_floor_holds_and_pd_target_converges(residual):
  """The floor against NumPy: half the squared distance from the target to the cone of positive
  semidefinite matrices (eigh projection), which the runs approach to 1e-6: a floor set too high
  or too low fails one of the two bounds."""
  p = residual["protocol"]
  target = np.diag(p["eigenvalues"] + [-p["negative"]])
  eigenvalues = np.linalg.eigvalsh(target)
  floor = 0.5 * np.sum(np.minimum(eigenvalues, 0) ** 2)
  assert residual["floor"] == pytest.approx(floor, rel=1e-12)
  closest = min(v for per_lr in residual["min_loss"].values() for v in per_lr.values())
  assert closest <= floor * (1 + 1e-6)
  for depth, per_lr in residual["min_loss"].items():
    for lr, value in per_lr.items():
      assert value >= floor * (1 - 1e-12), (depth, lr)
      assert residual["final_loss_pd"][depth][lr] < 1e-12, (depth, lr)


def test_residual_escape_is_logarithmic_at_depth2_and_slower_at_depth4(residual):
  depth2, depth4 = np.asarray(residual["escape"]["2"]), np.asarray(residual["escape"]["4"])
  assert np.all(depth2 > 0)
  sizes = np.asarray(residual["protocol"]["perturbations"])
  per_decade = np.diff(depth2) / np.diff(np.log10(1 / sizes))
  np.testing.assert_allclose(per_decade, per_decade.mean(), rtol=0.1)
  assert np.all((depth4 < 0) | (depth4 > 5 * depth2))


# ---------------------------------------------------------------------- deep-matrix-factorization


def test_dmf_depth_separates_top_singular_values_more_sharply(dmf):
  depths = [str(d) for d in dmf["protocol"]["depths"]]
  stats = [dmf["depths"][d] for d in depths]
  for s in stats:
    assert s["train_loss"] < 1e-3 and s["diverged_step"] is None
  separation = [s["separation"] for s in stats]
  erank = [s["effective_rank"] for s in stats]
  error = [s["test_error"] for s in stats]
  assert separation == sorted(separation) and separation[-1] > 5 * separation[0]
  assert erank == sorted(erank, reverse=True)
  assert error == sorted(error, reverse=True) and error[-1] < 0.5 * error[0]


def test_dmf_test_error_against_observations(dmf):
  """Panel (e), the paper's plot, in its units (MSE over all entries, ||M||_F = n): the nuclear
  norm baseline is converged (ADMM residual and duality gap), depths >= 2 and the baseline beat
  depth 1, errors fall with the number of observations, depths 3 and 4 beat the nuclear norm
  with the most observations. Thresholds from the quick run (float32, seeds 0 and 1)."""
  sweep, p = dmf["sweep"], dmf["protocol"]
  nuclear = sweep["nuclear"]
  assert np.max(nuclear["residual"]) <= 1e-5 and np.max(nuclear["gap"]) < 1e-4  # measured 3e-5
  mean = {k: np.mean(np.asarray(v), axis=1) for k, v in sweep["paper_test_error"].items()}
  for name in ("2", "3", "4", "nuclear"):
    assert mean[name][-1] < 0.1 * mean["1"][-1], name  # measured ratios 0.0002 .. 0.05
    assert mean[name][-1] < 0.1 * mean[name][0], name  # falls with observations
  for name in ("3", "4"):
    assert mean[name][-1] < 0.2 * mean["nuclear"][-1], name
  # depth 1 from a tiny init moves only the observed entries: its error is the unobserved share
  # of ||M||_F^2, here recomputed from the problem itself
  for i, count in enumerate(sweep["observed"]):
    for j, seed in enumerate(p["sweep_seeds"]):
      m, mask = deep_matrix_factorization.completion_problem(p["size"], p["rank"], count, seed)
      share = np.sum(m[~mask] ** 2) / np.sum(m**2)
      assert sweep["paper_test_error"]["1"][i][j] == pytest.approx(share, rel=1e-3)
  for stats in dmf["depths"].values():  # the same unit conversion on the main runs
    assert stats["paper_units"]["c"] == pytest.approx(p["size"] / np.sqrt(p["rank"]))


def test_effective_rank_and_completion_problem():
  assert deep_matrix_factorization.effective_rank(np.array([2.0, 2.0, 2.0, 0.0])) == pytest.approx(
    3.0
  )
  assert deep_matrix_factorization.effective_rank(np.array([1.0, 0.0])) == pytest.approx(1.0)
  m, mask = deep_matrix_factorization.completion_problem(20, 3, 150, seed=4)
  assert (
    np.linalg.matrix_rank(m) == 3
    and mask.sum() == 150
    and np.linalg.norm(m) == pytest.approx(np.sqrt(3))
  )
  with pytest.raises(ValueError, match="observed"):
    deep_matrix_factorization.completion_problem(3, 1, 10)


# ---------------------------------------------------------------------------------- minibatch-sgd


def test_minibatch_sgd_run_is_float64_with_its_seeds_and_timed_runs_equal_their_lanes(sgd):
  assert sgd["precision"] == "float64" and sgd["seeds"] == sgd["protocol"]["seeds"] == 3
  for name, entry in sgd["batch_sizes"].items():
    assert entry["timed_vs_lane_gap"] < 1e-9, name  # measured: 4e-16 at most
    assert entry["seconds"] > 0, name


def test_minibatch_sgd_small_batches_lead_per_epoch_then_stall_at_their_floor(sgd):
  """Quick mode measured, after 1 epoch, excess loss 0.018 / 0.50 / 1.47 at b = 1 / 16 / m; tails
  (last quarter of 20 epochs) 0.011 / 0.00067 / 0.84; GD at the same lr is highest after 20
  epochs, GD at its own lr 0.2 far lower."""
  runs = {int(k): v for k, v in sgd["batch_sizes"].items() if k != "gd_lr"}
  sizes = sorted(runs)
  m = sgd["protocol"]["examples"]
  assert sizes[0] == 1 and sizes[-1] == m and len(sizes) >= 3
  after_one = [runs[b]["excess_epoch1"]["mean"] for b in sizes]
  assert after_one == sorted(after_one) and after_one[0] < 0.1 * after_one[-1]
  middle = sizes[1]
  assert runs[middle]["excess_tail"]["mean"] < 0.25 * runs[1]["excess_tail"]["mean"]
  assert runs[middle]["excess_tail"]["max"] < runs[1]["excess_tail"]["min"]
  gd = runs[m]["excess_final"]["min"]
  assert all(runs[b]["excess_final"]["max"] < gd for b in sizes[:-1])
  # GD at lr 0.2: measured 0.0053 vs 0.81 at lr 0.005 (0.007-0.011 of it over run seeds 0-3).
  assert (
    sgd["batch_sizes"]["gd_lr"]["excess_final"]["mean"] < 0.05 * runs[m]["excess_final"]["mean"]
  )
  # An epoch of b = 1 is m steps, of GD one: measured 5.0 ms vs 0.24 ms per epoch.
  assert runs[1]["seconds_per_epoch"] > 3 * runs[m]["seconds_per_epoch"]


def test_minibatch_sgd_sequential_on_sorted_data_is_worse_shuffle_once_is_close(sgd):
  """Quick mode measured tail excess loss (b = 4, 3 seeds): sequential 28x shuffle, every seed's
  sequential at least 25x every seed's shuffled; shuffle_once 0.69x; with replacement 3.2x. Over
  run seeds 0-3 (data, inits and keys): sequential 23-28x (every seed at least 21x), shuffle_once
  0.62-1.19x, with replacement 2.7-3.4x."""
  s = sgd["sampling"]
  assert s["sequential_min_over_shuffle_max"] > 5
  assert s["sequential_over_shuffle"] > 5
  assert 0.5 < s["shuffle_once_over_shuffle"] < 2
  assert s["with_replacement_over_shuffle"] > 1.5
  low, high = s["sequential"]["last_epoch_range"]
  assert high > 5 * low  # the sorted pass's excursion within every epoch


def test_minibatch_sgd_loses_balance_where_gd_keeps_it(sgd):
  """From the same balanced inits (imbalance ~1e-16), quick mode measured final imbalance 0.73-0.75
  for SGD with b = 4 vs 0.0034-0.0040 for GD at the same lr and steps (181x at least; 160-192x
  over run seeds 0-3); GD reaches the least-squares solution, where the margin is sigma_min of
  it."""
  bal = sgd["balancedness"]
  assert bal["initial"] < 1e-12
  assert bal["ratio_min"] > 10
  assert max(bal["gd_excess_final"]) < 1e-10
  # ||W - Phi|| (measured 3e-8 at most) is the square root of the excess loss ~1e-15
  np.testing.assert_allclose(bal["gd_margin_final"], bal["sigma_min"], rtol=1e-6)
  assert 0 < min(bal["sgd_margin_final"]) and max(bal["sgd_margin_final"]) < bal["sigma_min"]
  runs = {int(k): v for k, v in sgd["batch_sizes"].items() if k != "gd_lr"}
  imbalance = [runs[b]["balancedness_final"]["mean"] for b in sorted(runs)]
  assert imbalance == sorted(imbalance, reverse=True)  # smaller batches, larger imbalance


def test_minibatch_sgd_data_is_sorted_by_its_label():
  p = minibatch_sgd.protocol(quick=True)
  x, y, phi = minibatch_sgd.sorted_regression(p, seed=3)
  assert np.all(np.diff(y[:, 0]) >= 0) and x.shape == (p["examples"], p["d0"])
  residual = y - x @ phi.T
  assert abs(np.std(residual) - p["noise"]) < 0.1  # the label noise, unchanged by the sorting
  with pytest.raises(ValueError, match="must divide"):
    minibatch_sgd._settings(p, 3, "shuffle", 0.01, None)

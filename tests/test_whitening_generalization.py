"""The whitening-generalization reproduction's claims (Wadia et al. 2021) on its quick-mode
numbers, float64. References are independent of the engine: NumPy least squares, the closed-form
common shift of the centred high-dimensional case, the closed-form Newton iterates."""

import sys
import warnings

import numpy as np
import pytest

from lintraj import reproductions
from lintraj.reproductions import whitening_generalization as wg


@pytest.fixture(scope="module")
def wgr(tmp_path_factory):
  out = tmp_path_factory.mktemp("wg")
  return reproductions.run("whitening-generalization", quick=True, out_dir=out)


def test_run_is_float64_with_its_seeds_and_writes_its_files(wgr):
  assert wgr["precision"] == "float64" and wgr["seeds"] == 3
  assert {"png", "json", "csv/sweep"} <= set(wgr["files"])


def test_uncentred_whitening_on_all_points_keeps_every_test_prediction_at_zero(wgr):
  """d_0 = n_train + n_test, whitened on all points without centring: X X^T = N I, the test
  inputs are orthogonal to every training input, so the linear model from zero predicts 0 at every
  test point at every record (measured: exactly 0.0), while it fits the training set (loss below
  1e-20). Fails if the whitening were fitted on the training set only (test points would not be
  orthogonal) or if GD left the span of the training inputs."""
  r = wgr["high_dim"]["uncentred/N=1"]
  assert r["columns"] == 32 and np.all(r["gram_error"] < 1e-10)
  assert np.all(r["final_train_loss"] < 1e-20)
  scale = np.abs(r["test_labels"]).max()
  assert np.all(r["max_abs_prediction"] <= 1e-12 * scale)
  np.testing.assert_allclose(r["relative_test_loss"], 1.0, rtol=1e-12)


def test_centred_whitening_moves_test_predictions_by_one_shift_set_by_the_label_mean(wgr):
  """Centred PCA whitening (lt.fit_whitening) on all N = 32 points: X X^T = N I - 1 1^T, and the
  linear model's test predictions are, at every record and every test point, -S_k with
  S_k = n ybar / (N - n) (1 - (1 - lr (N - n) / n)^k): one common shift, a function of the
  training labels' mean alone (measured: spread exactly 0.0, closed form within 2e-13). A wrong
  exponent, learning rate or sign in the closed form, or an engine step that is off, fails."""
  r = wgr["high_dim"]["all/N=1"]
  assert r["columns"] == 31 and np.all(r["gram_error"] < 1e-10)
  assert np.all(r["spread"] <= 1e-12)
  got = r["predictions"]  # (lanes, records, test points)
  np.testing.assert_allclose(
    got, np.broadcast_to(r["shift_predicted"][..., None], got.shape), atol=1e-10, rtol=0
  )
  ybar, final = r["train_label_mean"], got[:, -1, 0]
  np.testing.assert_allclose(final, -16 * ybar / (32 - 16), rtol=1e-8)
  assert np.all(np.abs(np.diff(got[:, :, 0], axis=1)).max(axis=1) > 0)  # it does move


def test_deep_networks_in_the_high_dimensional_case_do_no_better_than_a_constant(wgr):
  """Depth 3 from small balanced inits on the same whitened-on-all points: the predictions now
  vary across test points (through the random init), but their test loss is no better than
  predicting 0 (mean relative test loss >= 0.8; measured 1.09-1.14), while the linear model on raw
  inputs of the same sizes reaches one at least 3x lower (measured 0.10-0.20)."""
  deep = wgr["high_dim"]["all/N=3"]
  assert np.all(deep["final_train_loss"] < 1e-6)
  assert np.all(deep["final_spread"] > 1e-3)
  assert np.mean(deep["relative_test_loss"]) >= 0.8
  raw = wgr["sweep"]["raw/N=1/n=16"]
  assert np.mean(deep["relative_test_loss"]) > 3 * np.mean(raw["final"])


def test_newton_follows_gd_on_whitened_inputs_and_its_closed_form(wgr):
  """Newton's method (damping 0, lr 0.5) on raw inputs and GD at lr 0.5 on inputs whitened by the
  training second moment predict the same at every test point at every step (measured 2e-14), and
  both equal the closed form (1 - (1 - lr)^k) x_t w* (w* NumPy least squares). GD on the raw
  inputs does not (it differs by more than 0.1): the equality is not a property of every
  optimizer."""
  nw = wgr["newton"]
  scale = np.abs(nw["closed_form"]).max()
  assert nw["max_difference"] <= 1e-10 * scale
  assert nw["max_difference_closed_form"] <= 1e-10 * scale
  assert np.abs(nw["plain_gd"] - nw["newton"]).max() > 0.1


def test_damping_trades_training_speed_for_test_loss(wgr):
  """Damped Newton (lr 1) for 200 steps, lambda = 0 to 10: the steps to 99% of the training
  decrease grow with lambda (1 at lambda = 0; not within 200 at 10) and the training loss after 200
  steps is higher at lambda = 10, while the test loss is lower at lambda = 10 than at 0 for every
  seed (measured 0.15-0.51 vs 0.28-0.92)."""
  dm = wgr["newton"]["damping"]
  assert dm["damping"][0] == 0 and dm["damping"][-1] == 10
  steps = np.where(dm["steps_to_99"] >= 0, dm["steps_to_99"], 10**9)
  assert np.all(steps[0] == 1) and np.all(np.diff(np.median(steps, axis=1)) >= 0)
  assert np.all(dm["relative_train_loss"][-1] > dm["relative_train_loss"][0])
  assert np.all(dm["relative_test_loss"][-1] < dm["relative_test_loss"][0])


def test_whitening_fitted_on_train_converges_to_centred_least_squares(wgr):
  """Finding (the [U] of docs/theory.md, "Generalization"): fitted on the training set only, the
  linear model from zero converges to exactly the test predictions of minimum-norm least squares
  on the centred raw inputs (NumPy lstsq), below and above d_0: nothing a least-squares fit of the
  centred inputs uses is lost. Whitened on all points in the high-dimensional case it is not."""
  for n in wgr["protocol"]["n_train"]:
    r = wgr["sweep"][f"train/N=1/n={n}"]
    np.testing.assert_allclose(r["final"], r["centred_least_squares"], rtol=1e-8)
  r = wgr["sweep"]["all/N=1/n=16"]
  assert np.all(r["final"] > 2 * r["centred_least_squares"])


def test_digits_whitened_on_all_points_are_classified_by_one_shared_prediction(wgr):
  """scikit-learn's digits, n_train = n_test = 16 (32 points in 64 pixels, whitened on all of
  them): every test image gets the same 10 outputs (spread below 1e-10), so the accuracy is the
  share of one class in the test set (measured 0-12.5%), where raw and train-whitened inputs give
  38-81%."""
  pytest.importorskip("sklearn")
  got = wgr["digits"]
  assert np.all(got["all/n=16"]["high_dimensional"])
  assert np.all(got["all/n=16"]["spread"] < 1e-10)
  assert np.mean(got["all/n=16"]["accuracy"]) <= 0.2
  assert np.mean(got["raw/n=16"]["accuracy"]) > 2 * np.mean(got["all/n=16"]["accuracy"]) + 0.2


def test_early_stopping_keeps_the_best_record_of_a_rising_held_out_loss(wgr):
  """n_train = d_0 with noisy labels: the held-out loss rises after its best record (final above
  1.5x the best for every seed) while the training loss keeps falling; patience stops the run
  after the best record, which it keeps (same step and held-out loss as the full run's minimum)."""
  es = wgr["early_stopping"]
  assert np.all(es["final_validation"] > 1.5 * es["best_validation"])
  assert np.all(np.diff(es["train_loss"], axis=1) <= 1e-15)
  np.testing.assert_array_equal(es["patience_best_step"], es["best_step"])
  assert np.all(es["best_step"] < es["patience_stopped_step"])
  assert np.all(es["patience_stopped_step"] < wgr["protocol"]["early_steps"])
  np.testing.assert_allclose(es["patience_best_validation"], es["best_validation"], rtol=1e-10)


def test_whitening_helpers_against_numpy(x64):
  """uncentred_whitening whitens the second moment (X_w^T X_w / m = I); on at most d_0 points the
  whitened points are orthogonal with equal norms (X_w X_w^T = m I); centred whitening of m <= d_0
  + 1 points gives X_w X_w^T = m I - 1 1^T; padding adds zero columns."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((50, 6)) @ rng.standard_normal((6, 6)) + 3.0
  w = np.asarray(wg.uncentred_whitening(x)(x))
  np.testing.assert_allclose(w.T @ w / 50, np.eye(6), atol=1e-10)
  np.testing.assert_allclose(w @ np.linalg.pinv(w) @ x, x, atol=1e-8)  # no direction dropped
  few = rng.standard_normal((5, 8)) + 1.0
  a, b = wg.transformed("uncentred", few[:3], few[3:], width=10)
  both = np.concatenate([a, b])
  assert both.shape == (5, 10) and np.all(both[:, 8:] == 0)
  np.testing.assert_allclose(both @ both.T, 5 * np.eye(5), atol=1e-10)
  a, b = wg.transformed("all", few[:3], few[3:])
  both = np.concatenate([a, b])
  np.testing.assert_allclose(both @ both.T, 5 * np.eye(5) - 1, atol=1e-10)
  np.testing.assert_allclose(wg.common_shift(0.3, 4, 10, 0.5, [0, 1]), [0, -0.2 * 0.75], rtol=1e-14)


def test_without_scikit_learn_the_digits_part_is_skipped_with_a_message(monkeypatch):
  monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import raises ImportError
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert wg.load_digits() is None
  assert any("pip install 'lintraj[data]'" in str(w.message) for w in caught)

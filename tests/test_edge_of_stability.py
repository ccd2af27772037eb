"""The edge-of-stability study: its claims asserted on its quick-mode numbers (read back from the
JSON that `lintraj reproduce edge-of-stability --quick` writes), against references computed here
independently: S_min from the dense jax.hessian at balanced and unbalanced global minima, the
stability bound 2/lr, the sharpness ||J||^2 = sum_i prod_{j != i} w_j^2 of a scalar chain at a
minimum, the gradient-flow solution from np.roots, and the dense jax.hessian at a run's final
weights.
"""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lintraj import reproductions, theory
from lintraj.cli import main
from lintraj.reproductions import edge_of_stability as eos


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  out = tmp_path_factory.mktemp("eos")
  assert (
    main(["reproduce", "edge-of-stability", "--quick", "--out", str(out), "--no-progress"]) == 0
  )

  def reject(constant):
    raise ValueError(f"the JSON holds {constant}, which is not strict JSON")

  with open(out / "edge-of-stability.json") as f:
    return json.load(f, parse_constant=reject)


def _scalar_problems(study):
  return [key for key in study["lanes"] if key != "matrix"]


def _all_lanes(study):
  return [(problem, row) for problem, rows in study["lanes"].items() for row in rows]


def _flow_sharpness(magnitudes, phi):
  """GFS sharpness by np.roots: the largest real root x of prod_i (w_i^2 + x) = phi^2, then sum
  phi^2 / (w_i^2 + x)."""
  a = np.asarray(magnitudes, float) ** 2
  coefficients = np.poly(-a)
  coefficients[-1] -= phi**2
  roots = np.roots(coefficients)
  x = max(r.real for r in roots if abs(r.imag) < 1e-9 and r.real > -a.min())
  return float(np.sum(phi**2 / (a + x)))


def _dense_sharpness(weights, target):
  flat, unravel = ravel_pytree(tuple(jnp.asarray(w, jnp.float64) for w in weights))

  def loss(theta):
    layers = unravel(theta)
    product = layers[0]
    for w in layers[1:]:
      product = w @ product
    return 0.5 * jnp.sum((product - jnp.asarray(target, jnp.float64)) ** 2)

  return float(np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(loss))(flat)))[-1])


def test_registered_and_writes_figure_numbers_and_table(study):
  assert "edge-of-stability" in reproductions.names()
  assert reproductions.describe("edge-of-stability").options == ("pdf", "seed", "progress")
  files = study["files"]
  with open(files["png"], "rb") as f:
    assert len(f.read()) > 10_000
  with open(files["csv/lanes"]) as f:
    header, *rows = f.read().splitlines()
  assert header.split(",")[:5] == ["problem", "start", "fraction", "lr", "outcome"]
  assert len(rows) == study["checks"]["lanes"] == sum(len(r) for r in study["lanes"].values())
  assert study["quick"]


def _balanced_minimum(target, dims):
  """A balanced global minimum of 1/2 ||W_N ... W_1 - target||^2 built from the target's SVD
  (each layer carries S^(1/N) on the leading block)."""
  u, sigma, vt = np.linalg.svd(np.asarray(target, float), full_matrices=False)
  depth, r = len(dims) - 1, len(sigma)
  root = np.diag(sigma ** (1 / depth))
  layers = []
  for j in range(depth):
    w = np.zeros((dims[j + 1], dims[j]))
    if j == 0:
      w[:r] = root @ vt
    elif j == depth - 1:
      w[:, :r] = u @ root
    else:
      w[:r, :r] = root
    layers.append(w)
  return layers


def test_s_min_is_the_sharpness_of_the_flattest_global_minimum(study, x64):
  """S_min against the dense jax.hessian: equal at a balanced global minimum, and below the
  sharpness of every unbalanced global minimum tried (random rescalings keeping the product).
  A wrong exponent or factor in the closed form misses the dense value."""
  rng = np.random.default_rng(0)
  phi = study["protocol"]["phi"]
  problems = [(p, np.array([[phi]]), (1,) * (int(p[2:]) + 1)) for p in _scalar_problems(study)]
  problems.append(("matrix", np.asarray(study["target"]), study["protocol"]["matrix_dims"]))
  for problem, target, dims in problems:
    layers = _balanced_minimum(target, dims)
    s_min = study["s_min"][problem]
    assert _dense_sharpness(layers, target) == pytest.approx(s_min, rel=1e-10), problem
    for _ in range(3):
      scales = np.exp(rng.normal(0, 0.3, len(layers) - 1))
      scales = np.append(scales, 1 / np.prod(scales))  # W_j -> a_j W_j with prod a_j = 1
      other = [a * w for a, w in zip(scales, layers, strict=True)]
      assert _dense_sharpness(other, target) > s_min * (1 + 1e-6), problem


def test_every_converged_lane_lies_between_s_min_and_two_over_lr(study):
  converged = [(p, row) for p, row in _all_lanes(study) if row["outcome"] == "converged"]
  assert len(converged) >= 10
  for problem, row in converged:
    assert row["final_loss"] <= 1e-12
    assert row["two_over_lr"] == pytest.approx(2 / row["lr"], rel=1e-14)
    assert row["final_sharpness"] <= row["two_over_lr"] * (1 + 1e-6), (
      problem,
      row["start"],
      row["fraction"],
    )
    assert row["final_sharpness"] >= study["s_min"][problem] * (1 - 1e-9), (
      problem,
      row["start"],
      row["fraction"],
    )


def test_no_lane_converges_above_two_over_s_min(study):
  above = [(p, row) for p, row in _all_lanes(study) if row["fraction"] > 1]
  assert above
  for problem, row in above:
    assert row["outcome"] != "converged" and row["tail_loss"][0] > 1e-3, (
      problem,
      row["start"],
      row["fraction"],
    )
  assert study["checks"]["converged_above_flattest_edge"] == 0


def test_balanced_scalar_starts_sharpen_to_the_flattest_minimum(study):
  for problem in _scalar_problems(study):
    s_min = study["s_min"][problem]
    for row in study["lanes"][problem]:
      if row["start"] == "balanced" and row["fraction"] < 1:
        assert row["outcome"] == "converged"
        assert row["final_sharpness"] == pytest.approx(s_min, rel=1e-9)
        assert row["initial_sharpness"] < 0.05 * s_min  # progressive sharpening from a small start
        assert row["gfs_initial"] == pytest.approx(s_min, rel=1e-9)


def test_unbalanced_starts_self_balance_to_just_below_the_edge(study):
  phi, (big, small) = study["protocol"]["phi"], study["protocol"]["unbalanced_start"]
  for problem in _scalar_problems(study):
    depth = int(problem[2:])
    flow = _flow_sharpness([big] + [small] * (depth - 1), phi)
    window = 0
    for row in study["lanes"][problem]:
      if row["start"] != "unbalanced" or row["fraction"] > 1:
        continue
      assert row["gfs_initial"] == pytest.approx(flow, rel=1e-9)
      assert row["outcome"] == "converged"
      if row["two_over_lr"] < flow:  # the gradient-flow minimum is too sharp for this lr
        window += 1
        assert 0.98 <= row["final_sharpness_over_edge"] <= 1 + 1e-9, row["fraction"]
        assert row["steps_above_edge"] > 0 and row["loss_increases"] > 0  # non-monotone loss
        assert row["final_balancedness"] < 0.9 * row["initial_balancedness"]
      else:  # GD lands at most 2% flatter than gradient flow would
        assert 0.98 * flow <= row["final_sharpness"] <= flow * (1 + 1e-9), row["fraction"]
    assert window >= 2, problem
  matrix = study["checks"]["self_balancing"]["matrix"]
  done = [r for r, o in zip(matrix["final_over_edge"], matrix["outcomes"]) if o == "converged"]
  assert done and all(0.98 <= r <= 1 + 1e-9 for r in done)


def test_scalar_sharpness_matches_closed_forms_at_the_final_weights(study):
  phi = study["protocol"]["phi"]
  for problem in _scalar_problems(study):
    if int(problem[2:]) >= 3:  # GD never raised the GFS sharpness (at depth 2 a catapult step can)
      assert study["checks"]["gfs_max_relative_increase"][problem] <= 1e-12
      assert not study["checks"]["gfs_raised"][problem]
    for row in study["lanes"][problem]:
      w = np.array([layer[0][0] for layer in row["final_weights"]])
      if row["outcome"] == "converged":
        jacobian = np.prod(w) / w  # d(w_N...w_1)/dw_i at the minimum
        assert row["final_sharpness"] == pytest.approx(np.sum(jacobian**2), rel=1e-6)
        assert row["gfs_final"] == pytest.approx(_flow_sharpness(np.abs(w), phi), rel=1e-6)


def test_dense_hessian_at_the_final_point_of_an_edge_lane(study, x64):
  phi = study["protocol"]["phi"]
  depth = study["protocol"]["showcase_depth"]
  scalar = next(
    row
    for row in study["lanes"][f"N={depth}"]
    if row["start"] == "unbalanced" and row["fraction"] == 0.9
  )
  matrix = next(
    row
    for row in study["lanes"]["matrix"]
    if row["start"] == "unbalanced" and row["fraction"] == 0.8
  )
  for row, target in ((scalar, [[phi]]), (matrix, study["target"])):
    dense = _dense_sharpness(row["final_weights"], target)
    assert row["final_sharpness"] == pytest.approx(dense, rel=1e-11)
    assert 0.98 * row["two_over_lr"] < dense <= row["two_over_lr"]


def test_orbits_straddle_the_edge_and_their_two_step_mean_sits_above_it(study):
  orbits = [(p, row) for p, row in _all_lanes(study) if row["outcome"] == "period-2"]
  assert orbits
  for problem, row in orbits:
    low, high = row["tail_sharpness"]
    assert low < row["two_over_lr"] < high, (problem, row["fraction"])
    assert 1.0 < row["tail_two_step_mean_over_edge"] < 1.2
    if problem != "matrix" and row["start"] == "unbalanced":
      assert (
        row["final_balancedness"] < 1e-10
      )  # the scalar layers end exactly balanced (up to signs)
  edge = study["showcase"]["unbalanced/0.9"]
  low, high = edge["unstable_phase_sharpness_over_edge"]
  assert low < 0.5 and high > 1.5  # the iterates' sharpness swings far around 2/lr ...
  assert (
    0.98 < edge["unstable_phase_two_step_mean_over_edge"][1] < 1.01
  )  # ... its two-step mean hovers at it


def test_gradient_flow_sharpness_matches_np_roots():
  rng = np.random.default_rng(0)
  magnitudes = rng.uniform(0.05, 3.0, size=(20, 4))
  expected = [_flow_sharpness(m, 1.7) for m in magnitudes]
  np.testing.assert_allclose(theory.gradient_flow_sharpness(magnitudes, 1.7), expected, rtol=1e-10)
  assert theory.flattest_sharpness(4, 1.7) == pytest.approx(
    float(theory.gradient_flow_sharpness(np.full(4, 0.3), 1.7))
  )


def test_gradient_flow_sharpness_below_one_depth_one_and_float32():
  """phi < 1 (the root s of prod_i (a_i + s) = phi^2 is near phi^{2/N} < 1 for small starts, so a
  bracket that is not above it misses), depth 1 (the loss 1/2 (w - phi)^2 has Hessian 1 at its
  minimum), and float32 magnitudes (a run's layer_singular_values), squared in float64."""
  rng = np.random.default_rng(1)
  magnitudes = np.vstack([np.full(4, 0.1), rng.uniform(0.02, 0.6, size=(3, 4))])
  np.testing.assert_allclose(
    theory.gradient_flow_sharpness(magnitudes, 0.5),
    [_flow_sharpness(m, 0.5) for m in magnitudes],
    rtol=1e-10,
  )
  assert float(theory.gradient_flow_sharpness(np.full(4, 0.1), 0.5)) == pytest.approx(
    4 * 0.5**1.5, rel=1e-12
  )  # balanced start: S_min = N phi^{2 - 2/N}
  np.testing.assert_allclose(theory.gradient_flow_sharpness([[0.3], [5.0]], 2.0), [1.0, 1.0])
  single = np.float32(rng.uniform(0.05, 3.0, size=(5, 4)))
  np.testing.assert_allclose(
    theory.gradient_flow_sharpness(single, 1.7),
    [_flow_sharpness(m.astype(np.float64), 1.7) for m in single],
    rtol=1e-10,
  )


def test_gradient_flow_sharpness_of_nan_and_infinite_rows_without_warnings():
  """A diverged lane (NaN or infinite magnitudes) gives NaN or inf, quietly; the other rows are
  unaffected."""
  magnitudes = np.array([[np.nan, 1.0], [np.inf, 1.0], [0.3, 0.3]])
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    got = theory.gradient_flow_sharpness(magnitudes, 2.0)
  assert np.isnan(got[0]) and got[1] == np.inf
  assert got[2] == pytest.approx(2 * 2.0)  # balanced depth 2: S_min = N phi^{2 - 2/N}


@pytest.mark.parametrize(
  "call, match",
  [
    (lambda: theory.gradient_flow_sharpness([0.3, 0.3], 0.0), r"^phi must be a positive"),
    (lambda: theory.gradient_flow_sharpness(0.3, 2.0), r"^magnitudes must have a last axis of N"),
    (
      lambda: theory.gradient_flow_sharpness(np.zeros((3, 0)), 2.0),
      r"^magnitudes must have a last axis of N >= 1 layer magnitudes; got shape \(3, 0\)",
    ),
    (lambda: theory.flattest_sharpness(2, -1.0), r"^sigma_max must be a positive"),
    (lambda: theory.flattest_sharpness(0, 1.0), r"^depth must be an integer >= 1"),
  ],
)
def test_sharpness_closed_forms_reject_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_classify_tail():
  ones = np.ones(40)
  assert eos.classify_tail(ones * 1e-13, ones, ones, False) == ("converged", 1)
  assert eos.classify_tail(ones, ones, ones * 1e-9, False) == ("stalled", 1)
  assert eos.classify_tail(np.tile([1.0, 2.0, 3.0, 4.0], 10), ones, ones, False) == ("period-4", 4)
  assert eos.classify_tail(np.geomspace(1, 1e-6, 400), np.ones(400), np.ones(400), False) == (
    "converging",
    0,
  )
  assert eos.classify_tail(ones, ones, ones, True) == ("diverged", 0)

"""Minimum nuclear norm completion by singular value thresholding (lintraj/nuclear.py), in float64
against independent references: M itself when every entry is observed; the 2x2 matrix with a
missing corner, whose minimum nuclear norm completion is ``clip(b c / a, -|a|, |a|)`` (derived
below and checked by a bounded 1-D minimisation of the NumPy-SVD nuclear norm); the same 1-D
minimisation of the tau-regularised objective that plain SVT solves; a NumPy transcription of the
iteration of Cai, Candès, Shen (2010) with the paper's defaults; exact recovery of a random rank-2
matrix."""

import jax
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from lintraj.nuclear import min_nuclear_norm_completion, shrink

CORNER = np.array([[True, True], [True, False]])


def _corner(a, b, c):
  return np.array([[a, b], [c, np.nan]])


def _nuclear(x):
  return np.linalg.svd(x, compute_uv=False).sum()


def _brute_force(a, b, c, tau=None):
  """The missing corner minimising ||X||_* (or tau ||X||_* + ||X||_F^2 / 2): a bounded scalar
  minimisation of a convex function of one variable, nuclear norm by NumPy's SVD."""
  matrix = lambda x: np.array([[a, b], [c, x]])
  objective = (
    (lambda x: _nuclear(matrix(x)))
    if tau is None
    else (lambda x: tau * _nuclear(matrix(x)) + 0.5 * np.sum(matrix(x) ** 2))
  )
  bound = 10 * (abs(a) + abs(b) + abs(c))
  found = minimize_scalar(
    objective, bounds=(-bound, bound), method="bounded", options={"xatol": 1e-12}
  )
  assert found.success
  return found.x


def _closed_form(a, b, c):
  """||X||_*^2 = ||X||_F^2 + 2 |det X| for 2x2, so the corner x minimises x^2 + 2 |a x - b c|:
  the kink x = b c / a when |b c| <= a^2 (rank 1), else the smooth minimum x = sign(b c / a) |a|
  (full rank)."""
  return float(np.clip(b * c / a, -abs(a), abs(a)))


RANK_ONE = [(2.0, 1.0, 1.5), (-1.5, 0.5, 2.0), (1.0, -0.7, 1.2)]  # |b c| < a^2
FULL_RANK = [(1.0, 2.0, 3.0), (0.5, -2.0, 1.0), (-1.0, 1.5, 1.0)]  # |b c| > a^2


@pytest.mark.parametrize("abc", RANK_ONE + FULL_RANK)
def test_closed_form_agrees_with_brute_force(abc):
  assert _brute_force(*abc) == pytest.approx(_closed_form(*abc), abs=1e-7)


def test_fully_observed_returns_the_matrix(x64):
  m = np.random.default_rng(0).normal(size=(5, 4))
  result = min_nuclear_norm_completion(np.ones((5, 4), bool), m, tol=1e-12)
  np.testing.assert_allclose(result.completed, m, atol=1e-10)
  assert float(result.residual) <= 1e-12 and int(result.rounds) == 1


def _kink_threshold(a, b, c):
  """The tau beyond which the tau-problem's solution is the rank-1 completion x0 = b c / a: 0 must
  lie between tau N'(x0-) + x0 and tau N'(x0+) + x0, N(x0) = ||X||_* = ||X||_F at the kink and
  N'(x0+-) = (x0 +- |a|) / N(x0), so tau >= |x0| N(x0) / (|a| - |x0|)."""
  x0 = b * c / a
  return abs(x0) * np.sqrt(a**2 + b**2 + c**2 + x0**2) / (abs(a) - abs(x0))


@pytest.mark.parametrize("abc", RANK_ONE + FULL_RANK + [(2.0, 1.0, 3.0)])
def test_corner_plain_svt_solves_the_tau_problem(x64, abc):
  result = min_nuclear_norm_completion(CORNER, _corner(*abc), tol=1e-11, max_iters=5000)
  tau = 5 * 2.0  # the default 5 sqrt(n_1 n_2)
  assert float(result.completed[1, 1]) == pytest.approx(_brute_force(*abc, tau=tau), abs=1e-6)
  np.testing.assert_allclose(np.asarray(result.completed)[CORNER], _corner(*abc)[CORNER], atol=1e-9)


@pytest.mark.parametrize("abc", RANK_ONE)
def test_rank_one_corner_is_exact_once_tau_passes_its_threshold(x64, abc):
  """In the recovery regime the tau-problem has the min-nuclear-norm solution itself, for tau
  large enough (thresholds 1.7, 2.1, 10.0 here; the default tau is 10)."""
  threshold = _kink_threshold(*abc)
  run = lambda tau: min_nuclear_norm_completion(
    CORNER, _corner(*abc), tau=tau, tol=1e-11, max_iters=5000
  )
  above, below = run(2 * threshold), run(threshold / 2)
  assert float(above.completed[1, 1]) == pytest.approx(_closed_form(*abc), abs=1e-8)
  assert np.linalg.svd(above.completed, compute_uv=False)[1] < 1e-8  # rank 1
  assert abs(float(below.completed[1, 1]) - _closed_form(*abc)) > 1e-3
  assert np.linalg.svd(below.completed, compute_uv=False)[1] > 1e-3  # full rank


@pytest.mark.parametrize("abc", RANK_ONE + FULL_RANK)
def test_corner_exact_option_gives_the_min_nuclear_norm_completion(x64, abc):
  closed = _closed_form(*abc)
  exact = min_nuclear_norm_completion(
    CORNER, _corner(*abc), tau=1.0, tol=1e-11, max_iters=5000, exact=True
  )  # tau = 1 is below every threshold of RANK_ONE: the rounds, not tau, do the work
  assert float(exact.completed[1, 1]) == pytest.approx(closed, abs=1e-7)
  assert _nuclear(np.asarray(exact.completed)) == pytest.approx(
    _nuclear(np.array([[abc[0], abc[1]], [abc[2], closed]])), abs=1e-7
  )
  assert int(exact.rounds) > 1 and int(exact.iterations) < 5000


@pytest.mark.parametrize("abc", FULL_RANK)
def test_full_rank_corner_gap_shrinks_with_tau(x64, abc):
  closed = _closed_form(*abc)
  run = lambda tau: min_nuclear_norm_completion(
    CORNER, _corner(*abc), tau=tau, tol=1e-11, max_iters=5000
  )
  gaps = [abs(float(run(tau).completed[1, 1]) - closed) for tau in (10.0, 100.0)]
  assert gaps[0] > 0.05  # the documented difference at the default tau: 0.33, 0.12, 0.20
  assert gaps[1] < gaps[0] / 4


def _paper_svt(mask, m, iterations):
  """Cai, Candès, Shen (2010), Section 5.1.1, transcribed in NumPy float64."""
  n1, n2 = m.shape
  tau, delta = 5 * np.sqrt(n1 * n2), 1.2 * n1 * n2 / mask.sum()
  pm = np.where(mask, m, 0.0)
  k0 = np.ceil(tau / (delta * np.linalg.norm(pm, 2)))
  y = k0 * delta * pm
  for _ in range(iterations):
    u, s, vt = np.linalg.svd(y, full_matrices=False)
    x = u @ np.diag(np.maximum(s - tau, 0.0)) @ vt
    y = y + delta * np.where(mask, m - x, 0.0)
  return x


def test_iterates_follow_the_papers_algorithm_and_defaults(x64):
  rng = np.random.default_rng(1)
  m = rng.normal(size=(6, 2)) @ rng.normal(size=(2, 5))
  mask = rng.random((6, 5)) < 0.6
  for k in (1, 7, 30):
    result = min_nuclear_norm_completion(mask, m, tol=0.0, max_iters=k)
    assert int(result.iterations) == k
    np.testing.assert_allclose(result.completed, _paper_svt(mask, m, k), atol=1e-10)


def _low_rank(n=40, rank=2, fraction=0.5, seed=0):
  rng = np.random.default_rng(seed)
  m = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, n))
  mask = np.zeros(n * n, bool)
  mask[rng.permutation(n * n)[: int(fraction * n * n)]] = True
  return mask.reshape(n, n), m


def test_recovers_a_random_low_rank_matrix(x64):
  mask, m = _low_rank()
  result = min_nuclear_norm_completion(mask, np.where(mask, m, np.nan), tol=1e-6)
  error = np.linalg.norm(result.completed - m) / np.linalg.norm(m)
  assert error < 1e-4  # measured 1.8e-6 after 360 iterations
  assert np.linalg.norm(np.where(mask, 0, m)) / np.linalg.norm(m) > 0.5  # zero fill is far off
  s = np.linalg.svd(result.completed, compute_uv=False)
  assert s[1] > 0.5 * np.linalg.svd(m, compute_uv=False)[1]
  assert s[2] < 1e-10 * s[0]  # rank 2 exactly (measured 1e-16 relative)


def test_stopping_rule_and_residual(x64):
  mask, m = _low_rank(n=20, fraction=0.7, seed=0)
  pm = np.where(mask, m, 0.0)
  residuals = []
  for k in (5, 20, 80):
    result = min_nuclear_norm_completion(mask, m, tol=0.0, max_iters=k)
    assert int(result.iterations) == k
    residuals.append(float(result.residual))
  assert residuals[0] > residuals[1] > residuals[2]
  for exact in (False, True):
    result = min_nuclear_norm_completion(mask, m, tol=1e-5, max_iters=2000, exact=exact)
    x = np.asarray(result.completed)
    recomputed = np.linalg.norm(np.where(mask, x - m, 0.0)) / np.linalg.norm(pm)
    assert float(result.residual) == pytest.approx(recomputed, rel=1e-10)
    assert recomputed <= 1e-5 and 1 < int(result.iterations) < 2000
    # one iteration fewer: the rule had not fired yet (plain), or the budget binds (both)
    short = min_nuclear_norm_completion(
      mask, m, tol=1e-5, max_iters=int(result.iterations) - 1, exact=exact
    )
    assert int(short.iterations) == int(result.iterations) - 1
    if not exact:
      assert float(short.residual) > 1e-5
  capped = min_nuclear_norm_completion(mask, m, tol=1e-12, max_iters=7, exact=True)
  assert int(capped.iterations) == 7


def test_scaling_values_and_tau_together_scales_the_completion(x64):
  mask, m = _low_rank(n=8, rank=1, fraction=0.7, seed=2)
  base = min_nuclear_norm_completion(mask, m, tol=1e-8)
  scaled = min_nuclear_norm_completion(mask, 1e3 * m, tau=1e3 * 5 * 8, tol=1e-8)
  np.testing.assert_allclose(
    scaled.completed, 1e3 * np.asarray(base.completed), rtol=1e-9, atol=1e-9
  )
  assert int(scaled.iterations) == int(base.iterations)


def test_jit_matches_eager_and_zero_observations(x64):
  mask, m = _low_rank(n=8, rank=1, fraction=0.7, seed=2)
  eager = min_nuclear_norm_completion(mask, m, tol=1e-8)
  jitted = jax.jit(min_nuclear_norm_completion)(mask, m, tol=1e-8)
  np.testing.assert_allclose(jitted.completed, eager.completed, atol=1e-12)
  assert int(jitted.iterations) == int(eager.iterations)
  zero = min_nuclear_norm_completion(mask, np.zeros((8, 8)))
  assert np.all(np.asarray(zero.completed) == 0) and float(zero.residual) == 0.0


def test_shrink_soft_thresholds_singular_values(x64):
  rng = np.random.default_rng(4)
  u, _ = np.linalg.qr(rng.normal(size=(5, 3)))
  v, _ = np.linalg.qr(rng.normal(size=(4, 3)))
  y = u @ np.diag([5.0, 2.0, 0.5]) @ v.T
  np.testing.assert_allclose(shrink(y, 1.0), u @ np.diag([4.0, 1.0, 0.0]) @ v.T, atol=1e-12)


def test_float32_by_default():
  result = min_nuclear_norm_completion(CORNER, _corner(2.0, 1.0, 1.5), tol=1e-5)
  assert result.completed.dtype == np.float32
  assert float(result.completed[1, 1]) == pytest.approx(0.75, abs=1e-3)


GOOD_MASK, GOOD_VALUES = CORNER, _corner(2.0, 1.0, 1.5)


@pytest.mark.parametrize(
  "change, match",
  [
    ({"values": np.ones(4), "mask": np.ones(4, bool)}, r"values must be a non-empty \(n_1, n_2\)"),
    ({"values": np.ones((0, 3)), "mask": np.ones((0, 3), bool)}, "non-empty"),
    ({"mask": np.ones((2, 3), bool)}, r"mask \(2, 3\) and values \(2, 2\) must have the same"),
    ({"mask": np.array([["a", "b"], ["c", "d"]])}, "mask must be booleans"),
    ({"mask": np.array([[1.0, 0.5], [1.0, 0.0]])}, "must hold only 0 and 1"),
    ({"mask": np.zeros((2, 2), bool)}, "mask observes no entry"),
    ({"values": np.array([[1.0, np.inf], [1.0, 0.0]])}, "non-finite .* observed entries"),
    ({"values": np.array([[1j, 1.0], [1.0, 0.0]])}, "real numeric matrix"),
    ({"tau": 0.0}, "tau must be a positive finite number"),
    ({"delta": -1.0}, "delta must be a positive finite number"),
    ({"tol": float("nan")}, "tol must be a finite number >= 0"),
    ({"max_iters": 0}, r"max_iters must be an integer >= 1"),
    ({"max_iters": 2.5}, "max_iters must be an integer"),
    ({"exact": "yes"}, "exact must be True or False"),
  ],
)
def test_bad_input_is_refused_with_the_fix(change, match):
  arguments = {"mask": GOOD_MASK, "values": GOOD_VALUES, **change}
  with pytest.raises(ValueError, match=match):
    min_nuclear_norm_completion(arguments.pop("mask"), arguments.pop("values"), **arguments)


def test_integer_mask_and_values_and_nan_where_unobserved_are_accepted(x64):
  result = min_nuclear_norm_completion(
    CORNER.astype(int), np.array([[2, 1], [3, 7]]), tol=1e-9, exact=True
  )
  assert float(result.completed[1, 1]) == pytest.approx(1.5, abs=1e-7)  # 1 * 3 / 2, 7 unread


# ------------------------------------------------------------------------------- method="admm"


@pytest.mark.parametrize("abc", RANK_ONE + FULL_RANK)
def test_admm_corner_is_the_min_nuclear_norm_completion(x64, abc):
  """No tau bias: the closed form in both regimes, with a duality gap that certifies it."""
  result = min_nuclear_norm_completion(
    CORNER, _corner(*abc), method="admm", tol=1e-10, max_iters=5000
  )
  assert float(result.completed[1, 1]) == pytest.approx(_closed_form(*abc), abs=1e-7)
  assert 0 <= float(result.gap) < 1e-7 and float(result.residual) <= 1e-10
  assert int(result.rounds) == 1 and int(result.iterations) < 5000


def _completion_problem(n, rank, observed, seed):
  """The ground truth and mask of deep_matrix_factorization.completion_problem, copied so that
  the reference values below stay tied to these matrices."""
  rng = np.random.default_rng(seed)
  m = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, n))
  m *= np.sqrt(rank) / np.linalg.norm(m)
  mask = np.zeros(n * n, bool)
  mask[rng.choice(n * n, observed, replace=False)] = True
  return m, mask.reshape(n, n)


# The least nuclear norm of two completions outside the recovery regime (the minimiser is full
# rank, 34% and 71% relative error), by an independent convex solver: cvxpy 1.9.3 with SCS 3.3.1,
# eps 1e-9, normNuc(X) subject to the observed entries.
SCS_REFERENCE = {(30, 3, 300, 0): 2.8381945006541724, (30, 3, 200, 1): 2.2603205189149627}


@pytest.mark.parametrize("problem", sorted(SCS_REFERENCE))
def test_admm_agrees_with_an_independent_convex_solver(x64, problem):
  m, mask = _completion_problem(*problem)
  reference = SCS_REFERENCE[problem]
  result = min_nuclear_norm_completion(mask, m, method="admm", tol=1e-7, max_iters=5000)
  feasible = np.where(mask, m, np.asarray(result.completed))
  upper = _nuclear(feasible)  # any feasible matrix bounds the minimum from above
  assert upper == pytest.approx(reference, rel=1e-6)  # measured: 1e-8 .. 1e-7
  assert float(result.residual) <= 1e-7 and float(result.gap) < 1e-5
  assert upper * (1 - float(result.gap)) <= reference * (1 + 1e-8)  # the certified interval
  # plain SVT with its defaults is far from it within the same budget (the reason for "admm")
  svt = min_nuclear_norm_completion(mask, m, tol=1e-7, max_iters=int(result.iterations))
  assert float(svt.residual) > 1e-3 and float(svt.gap) > 1e-2


def test_duality_gap_brackets_the_minimum_before_convergence(x64):
  m, mask = _completion_problem(30, 3, 300, 0)
  reference = SCS_REFERENCE[(30, 3, 300, 0)]
  for k in (3, 20, 60):
    for method in ("admm", "svt"):
      result = min_nuclear_norm_completion(mask, m, method=method, tol=0.0, max_iters=k)
      upper = _nuclear(np.where(mask, m, np.asarray(result.completed)))
      gap = float(result.gap)
      assert 0 < gap < 1 and upper * (1 - gap) <= reference <= upper, (k, method)


def test_admm_recovers_a_random_low_rank_matrix_and_is_scale_free(x64):
  mask, m = _low_rank()
  result = min_nuclear_norm_completion(mask, m, method="admm", tol=1e-8, max_iters=3000)
  assert np.linalg.norm(result.completed - m) / np.linalg.norm(m) < 1e-6
  scaled = min_nuclear_norm_completion(mask, 1e3 * m, method="admm", tol=1e-8, max_iters=3000)
  np.testing.assert_allclose(scaled.completed, 1e3 * np.asarray(result.completed), atol=1e-8)
  assert int(scaled.iterations) == int(result.iterations)


@pytest.mark.parametrize(
  "change, match",
  [
    ({"method": "cvx"}, 'method must be "svt" or "admm"'),
    ({"method": "admm", "delta": 1.0}, 'delta and exact are options of method="svt"'),
    ({"method": "admm", "exact": True}, 'delta and exact are options of method="svt"'),
    ({"method": "admm", "tau": -1.0}, "tau must be a positive finite number"),
  ],
)
def test_admm_bad_input_is_refused_with_the_fix(change, match):
  with pytest.raises(ValueError, match=match):
    min_nuclear_norm_completion(GOOD_MASK, GOOD_VALUES, **change)

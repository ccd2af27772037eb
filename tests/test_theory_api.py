"""Tests of lintraj.theory's API: formulas against NumPy references, shapes, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lintraj as lt
from lintraj import theory

# --- theorem1, iterations_bound, check_theorem1 ---------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_theorem1_matches_the_formulas(x64, depth):
  rng = np.random.default_rng(depth)
  phi, c = rng.standard_normal((2, 3)), 0.37
  norm, n = np.linalg.norm(phi), depth
  bounds = theory.theorem1(phi, c, depth)
  np.testing.assert_allclose(
    bounds.max_balancedness, c**2 / (256 * n**3 * norm ** (2 * (n - 1) / n))
  )
  np.testing.assert_allclose(
    bounds.max_lr, c ** ((4 * n - 2) / n) / (6144 * n**3 * norm ** ((6 * n - 4) / n))
  )
  np.testing.assert_allclose(bounds.rate, c ** (2 * (n - 1) / n))
  jitted = jax.jit(theory.theorem1, static_argnums=2)(jnp.asarray(phi), c, depth)
  np.testing.assert_allclose(jnp.stack(jitted), jnp.stack(bounds))


def test_iterations_bound_matches_the_formula(x64):
  assert float(theory.iterations_bound(2.0, 1e-6, 0.01, 0.5, 3)) == pytest.approx(
    math.log(2e6) / (0.01 * 0.5 ** (4 / 3))
  )
  assert float(theory.iterations_bound(1e-7, 1e-6, 0.01, 0.5, 3)) == 0.0


@pytest.mark.parametrize(
  "call, match",
  [
    (lambda: theory.theorem1(np.eye(2), 0.0, 2), "margin"),
    (lambda: theory.theorem1(np.eye(2), -1.0, 2), "margin"),
    (lambda: theory.theorem1(np.ones(3), 0.5, 2), "target"),
    (lambda: theory.theorem1(np.eye(2), 0.5, 0), "depth"),
    (lambda: theory.theorem1(np.eye(2), 0.5, True), "depth"),
    (lambda: theory.theorem1(np.eye(2), 0.5, 2.0), "depth"),
    (lambda: theory.iterations_bound(1.0, 0.0, 0.1, 0.5, 2), "eps"),
    (lambda: theory.iterations_bound(1.0, 1e-3, -0.1, 0.5, 2), "lr"),
    (lambda: theory.iterations_bound(-1.0, 1e-3, 0.1, 0.5, 2), "loss0"),
    (lambda: theory.iterations_bound(1.0, 1e-3, 0.1, 0.0, 2), "margin"),
  ],
)
def test_bounds_reject_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_check_theorem1_reports_each_condition(x64):
  phi = jnp.diag(jnp.array([1.2, 0.9]))
  good = theory.check_theorem1(lt.init.residual((2, 2, 2)), phi, 1e-9)
  assert good.holds and good.no_bottleneck and good.has_margin and good.is_balanced and good.lr_ok
  bounds = theory.theorem1(phi, good.margin, 2)
  assert good.max_lr == pytest.approx(float(bounds.max_lr))
  assert good.margin == pytest.approx(0.9 - math.sqrt(0.2**2 + 0.1**2))
  assert good.loss == pytest.approx(0.5 * (0.2**2 + 0.1**2))
  assert good.iterations == math.ceil(
    float(theory.iterations_bound(good.loss, 1e-5, 1e-9, good.margin, 2))
  )

  assert not theory.check_theorem1(lt.init.residual((2, 2, 2)), phi, 1.0).lr_ok
  unbalanced = (2 * jnp.eye(2), 0.5 * jnp.eye(2))  # same end-to-end matrix, imbalance 3.75 sqrt(2)
  check = theory.check_theorem1(unbalanced, phi, 1e-9)
  assert check.has_margin and not check.is_balanced and not check.holds and check.iterations is None
  far = theory.check_theorem1(lt.init.residual((2, 2, 2)), -phi, 1e-9)
  assert not far.has_margin and math.isnan(far.max_lr) and not far.holds and far.iterations is None
  bottleneck = theory.check_theorem1((jnp.ones((1, 2)), jnp.ones((2, 1))), phi, 1e-9)
  assert not bottleneck.no_bottleneck and not bottleneck.holds


def test_check_theorem1_rejects_bad_input():
  ws = lt.init.residual((2, 2, 2))
  with pytest.raises(ValueError, match="target has shape"):
    theory.check_theorem1(ws, np.ones((3, 2)), 1e-3)
  with pytest.raises(ValueError, match="lr"):
    theory.check_theorem1(ws, np.eye(2), 0.0)
  with pytest.raises(ValueError, match="eps"):
    theory.check_theorem1(ws, np.eye(2), 1e-3, eps=0.0)


# --- end_to_end_velocity, singular_value_velocity
# --------------------------------------------------


def numpy_fractional_power(psd, power):
  """PSD matrix power by NumPy eigh (an independent reference): eigenvalues below 1e-12 of the
  largest count as 0 (as rounding noise of a Gram matrix), and 0^0 = 1."""
  eigenvalues, vectors = np.linalg.eigh(psd)
  eigenvalues = np.where(eigenvalues > 1e-12 * max(eigenvalues.max(), 1e-300), eigenvalues, 0.0)
  return (vectors * eigenvalues**power) @ vectors.T


def numpy_end_to_end_velocity(w, grad, depth):
  return -sum(
    numpy_fractional_power(w @ w.T, (j - 1) / depth)
    @ grad
    @ numpy_fractional_power(w.T @ w, (depth - j) / depth)
    for j in range(1, depth + 1)
  )


@settings(max_examples=15, deadline=None)
@given(
  rows=st.integers(1, 3),
  cols=st.integers(1, 3),
  depth=st.integers(1, 6),
  seed=st.integers(0, 2**16),
)
def test_end_to_end_velocity_matches_numpy(rows, cols, depth, seed):
  """Against the definition with eigh-based fractional powers, at random W (rank min(rows, cols):
  one Gram matrix is rank-deficient whenever rows != cols)."""
  rng = np.random.default_rng(seed)
  w, grad = rng.standard_normal((rows, cols)), rng.standard_normal((rows, cols))
  with jax.enable_x64(True):
    got = np.asarray(theory.end_to_end_velocity(jnp.asarray(w), jnp.asarray(grad), depth))
  np.testing.assert_allclose(got, numpy_end_to_end_velocity(w, grad, depth), rtol=1e-8, atol=1e-9)


def test_end_to_end_velocity_special_cases(x64):
  rng = np.random.default_rng(0)
  w, grad = jnp.asarray(rng.standard_normal((3, 2))), jnp.asarray(rng.standard_normal((3, 2)))
  np.testing.assert_allclose(theory.end_to_end_velocity(w, grad, 1), -grad, atol=1e-14)
  root_left = numpy_fractional_power(np.asarray(w @ w.T), 0.5)
  root_right = numpy_fractional_power(np.asarray(w.T @ w), 0.5)
  np.testing.assert_allclose(
    theory.end_to_end_velocity(w, grad, 2), -(root_left @ grad + grad @ root_right), atol=1e-12
  )
  zero = theory.end_to_end_velocity(
    jnp.zeros((3, 2)), grad, 3
  )  # every term has a positive power of 0
  np.testing.assert_array_equal(zero, jnp.zeros((3, 2)))
  # exactly rank-deficient W: the null-space blocks are exactly those of the definition
  w = jnp.asarray(np.outer([1.0, 2.0, 0.0], [0.0, 3.0]))
  np.testing.assert_allclose(
    theory.end_to_end_velocity(w, grad, 4),
    numpy_end_to_end_velocity(np.asarray(w), np.asarray(grad), 4),
    atol=1e-12,
  )


def test_singular_value_velocity_matches_numpy(x64):
  rng = np.random.default_rng(1)
  for shape, depth in (((3, 5), 2), ((4, 2), 3), ((3, 3), 5)):
    w, grad = rng.standard_normal(shape), rng.standard_normal(shape)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    expected = -depth * s ** (2 - 2 / depth) * np.einsum("ir,ij,rj->r", u, grad, vt)
    got = theory.singular_value_velocity(jnp.asarray(w), jnp.asarray(grad), depth)
    assert got.shape == (min(shape),)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize(
  "call, match",
  [
    (lambda: theory.end_to_end_velocity(jnp.ones(3), jnp.ones(3), 2), "2-D"),
    (lambda: theory.end_to_end_velocity(jnp.ones((2, 3)), jnp.ones((3, 2)), 2), "grad has shape"),
    (lambda: theory.end_to_end_velocity(jnp.ones((2, 3)), jnp.ones((2, 3)), 0), "depth"),
    (lambda: theory.end_to_end_velocity(jnp.ones((2, 3), int), jnp.ones((2, 3)), 2), "floating"),
    (
      lambda: theory.singular_value_velocity(jnp.ones((2, 3)), jnp.ones((2, 2)), 2),
      "grad has shape",
    ),
    (
      lambda: theory.end_to_end_flow((jnp.ones((1, 2)),), lambda w: jnp.sum(w), 2, lr=0.1, steps=2),
      "end-to-end matrix",
    ),
    (
      lambda: theory.end_to_end_flow(jnp.ones((1, 2)), lambda w: jnp.sum(w), 2, lr=0.0, steps=2),
      "lr",
    ),
    (
      lambda: theory.end_to_end_flow(jnp.ones((1, 2)), lambda w: jnp.sum(w), 2, lr=0.1, steps=-1),
      "steps",
    ),
    (
      lambda: theory.end_to_end_flow(
        jnp.ones((1, 2)), lt.losses.target(jnp.ones((2, 2))), 2, lr=0.1, steps=2
      ),
      "target",
    ),
  ],
)
def test_velocities_and_flow_reject_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# --- end_to_end_flow ------------------------------------------------------------------------------


def test_end_to_end_flow_is_euler_steps_of_the_rule(x64):
  rng = np.random.default_rng(2)
  phi, w0 = rng.standard_normal((2, 3)), 0.3 * rng.standard_normal((2, 3))
  traj = theory.end_to_end_flow(
    jnp.asarray(w0), lt.losses.target(phi), 3, lr=0.05, steps=6, record_every=2
  )
  w = w0
  for _ in range(6):
    w = w + 0.05 * numpy_end_to_end_velocity(w, w - phi, 3)
  np.testing.assert_allclose(traj.final[0], w, rtol=1e-10)
  np.testing.assert_array_equal(traj.step, [0, 2, 4, 6])
  np.testing.assert_allclose(
    traj.end_to_end_singular_values[-1], np.linalg.svd(w, compute_uv=False), rtol=1e-10
  )
  assert float(traj.balancedness.max()) == 0.0
  np.testing.assert_allclose(
    traj.deficiency_margin[0], np.linalg.svd(phi, compute_uv=False)[-1] - np.linalg.norm(w0 - phi)
  )


# --- mode_strength --------------------------------------------------------------------------------


def numpy_mode_rk4(t_end, s, u0, depth, steps=20_000):
  """Classical RK4 on du/dt = N u^{2-2/N} (s - u) with fixed tiny steps, vectorised over cases."""
  u, h = np.array(u0, float), np.asarray(t_end, float) / steps
  f = lambda u: depth * np.abs(u) ** (2 - 2 / depth) * (s - u)
  for _ in range(steps):
    k1 = f(u)
    k2 = f(u + h / 2 * k1)
    k3 = f(u + h / 2 * k2)
    k4 = f(u + h * k3)
    u = u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
  return u


def numpy_time_to_reach(u, s, u0, depth, nodes=200):
  """t(u) = int_{u0}^{u} dv / (N v^{2-2/N} (s - v)) for u0 < u < s, by Gauss-Legendre quadrature in
  y = logit(v / s), where the integrand is sigmoid(y)^{2/N - 1} / (N s^{2 - 2/N})."""
  x, weights = np.polynomial.legendre.leggauss(nodes)
  lo, hi = np.log(u0 / (s - u0)), np.log(u / (s - u))
  y = (hi - lo) / 2 * x + (hi + lo) / 2
  sigmoid = 1 / (1 + np.exp(-y))
  return (
    (hi - lo) / 2 * np.sum(weights * sigmoid ** (2 / depth - 1)) / (depth * s ** (2 - 2 / depth))
  )


def test_mode_strength_depth_2_matches_the_closed_form(x64):
  t = np.linspace(0, 5, 11)[:, None]
  s = np.array([0.5, 1.0, 3.0])[None, :]
  u0 = 0.02
  # The closed form of docs/theory.md, "Exact dynamics".
  expected = s * np.exp(2 * s * t) / (np.exp(2 * s * t) - 1 + s / u0)
  np.testing.assert_allclose(theory.mode_strength(t, s, u0, 2), expected, rtol=1e-12)
  np.testing.assert_allclose(theory.mode_strength(t, 0.0, u0, 2), u0 / (1 + 2 * u0 * t), rtol=1e-12)
  np.testing.assert_allclose(
    theory.mode_strength(t, s, u0, 1), s + (u0 - s) * np.exp(-t), rtol=1e-12
  )


def test_mode_strength_deep_matches_rk4_and_quadrature_to_1e_8(x64):
  """Depths 3, 4, 6, u0 below and above s, against a NumPy RK4 reference with 20000 steps, and
  the inverse: mode_strength(t(u)) = u with t(u) by 200-node Gauss-Legendre quadrature."""
  cases = [
    (depth, s, u0) for depth in (3, 4, 6) for s in (0.5, 1.0, 2.0) for u0 in (0.01, 0.3, 4.0)
  ]
  depth, s, u0 = (np.array(x, float) for x in zip(*cases))
  t_end = 5.0
  reference = numpy_mode_rk4(t_end, s, u0, depth)
  for n in (3, 4, 6):
    pick = depth == n
    times, strengths, starts = [np.full(pick.sum(), t_end)], [s[pick]], [u0[pick]]
    expected = [reference[pick]]
    for s_, u0_ in ((1.0, 1e-3), (2.0, 0.05)):
      targets = np.array([0.01, 0.3, 0.5, 0.9, 0.999999]) * s_
      targets = targets[targets > u0_]
      times.append([numpy_time_to_reach(u, s_, u0_, n) for u in targets])
      strengths.append(np.full(len(targets), s_))
      starts.append(np.full(len(targets), u0_))
      expected.append(targets)
    got = theory.mode_strength(
      *(jnp.asarray(np.concatenate(x)) for x in (times, strengths, starts)), n
    )
    assert np.all(
      np.abs(np.asarray(got) - np.concatenate(expected)) <= 1e-8 * np.concatenate(strengths)
    )


def test_mode_strength_edge_cases_and_shapes(x64):
  t = jnp.linspace(0.0, 3.0, 7)
  assert theory.mode_strength(t[:, None], jnp.array([[1.0, 2.0]]), 0.1, 3).shape == (7, 2)
  np.testing.assert_array_equal(theory.mode_strength(t, 1.0, 0.0, 4), np.zeros(7))  # stays at 0
  np.testing.assert_allclose(theory.mode_strength(t, 1.5, 1.5, 4), np.full(7, 1.5))  # fixed point
  p = 2 - 2 / 3
  np.testing.assert_allclose(
    theory.mode_strength(t, 0.0, 0.7, 3), (0.7**-p + 3 * p * t) ** (-1 / p), rtol=1e-12
  )  # s = 0: closed form decay
  np.testing.assert_allclose(
    theory.mode_strength(jnp.array([0.0, 1e6]), 1.0, 0.2, 4), [0.2, 1.0], rtol=1e-12
  )
  assert theory.mode_strength(1.0, 1.0, 0.1, 3).shape == ()


def test_mode_strength_is_jittable_and_does_not_retrace(x64, compiles):
  f = jax.jit(lambda t, s: theory.mode_strength(t, s, 0.1, 3))
  np.testing.assert_allclose(
    f(jnp.ones(4), jnp.ones(4)), theory.mode_strength(jnp.ones(4), 1.0, 0.1, 3)
  )
  theory.mode_strength(jnp.ones(5), jnp.ones(5), 0.1, 3)
  size = compiles("_mode_strength")
  theory.mode_strength(2 * jnp.ones(5), 3 * jnp.ones(5), 0.2, 3)
  assert compiles("_mode_strength") == size


def test_mode_strength_float32():
  got = theory.mode_strength(jnp.array([0.0, 1.0, 10.0]), 1.0, 0.1, 3)
  assert got.dtype == jnp.float32
  with jax.enable_x64(True):
    expected = theory.mode_strength(jnp.array([0.0, 1.0, 10.0]), 1.0, 0.1, 3)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize(
  "args, match",
  [
    ((-1.0, 1.0, 0.1, 3), "t must be"),
    ((1.0, -1.0, 0.1, 3), "s must be"),
    ((1.0, 1.0, float("nan"), 3), "u0 must be"),
    ((1.0, 1.0, 0.1, 0), "depth"),
  ],
)
def test_mode_strength_rejects_bad_input(args, match):
  with pytest.raises(ValueError, match=match):
    theory.mode_strength(*args)

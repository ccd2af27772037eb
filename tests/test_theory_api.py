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
  # A float32 margin (deficiency_margin of float32 weights) with x64 on: computed in float64.
  c32 = float(np.float32(c))
  single = theory.theorem1(phi, np.float32(c), depth)
  np.testing.assert_allclose(
    single.max_lr, c32 ** ((4 * n - 2) / n) / (6144 * n**3 * norm ** ((6 * n - 4) / n)), rtol=1e-13
  )
  np.testing.assert_allclose(single.rate, c32 ** (2 * (n - 1) / n), rtol=1e-13)


def test_iterations_bound_matches_the_formula(x64):
  assert float(theory.iterations_bound(2.0, 1e-6, 0.01, 0.5, 3)) == pytest.approx(
    math.log(2e6) / (0.01 * 0.5 ** (4 / 3))
  )
  assert float(theory.iterations_bound(1e-7, 1e-6, 0.01, 0.5, 3)) == 0.0
  assert float(theory.iterations_bound(0.0, 1e-6, 0.01, 0.5, 3)) == 0.0  # already at the minimum
  # A float32 margin (deficiency_margin of float32 weights) with x64 on: the rate in float64.
  c = float(np.float32(0.37))
  assert float(theory.iterations_bound(2.0, 1e-6, 0.01, np.float32(0.37), 3)) == pytest.approx(
    math.log(2e6) / (0.01 * c ** (4 / 3)), rel=1e-13
  )


@pytest.mark.parametrize(
  "call, match",
  [
    (
      lambda: theory.theorem1(np.eye(2), 0.0, 2),
      r"^margin must be positive and finite; got 0\.0\. Theorem 1 needs a deficiency margin c > 0 "
      r"\(lintraj\.metrics\.deficiency_margin\)\.$",
    ),
    (
      lambda: theory.theorem1(np.eye(2), None, 2),
      r"^margin must be positive and finite; got None\.",
    ),
    (lambda: theory.theorem1(np.eye(2), -1.0, 2), r"^margin must be positive"),
    (
      lambda: theory.theorem1(np.ones(3), 0.5, 2),
      r"^target must be a \(d_N, d_0\) matrix Phi; got shape \(3,\)\. Reshape a vector to "
      r"\(1, d_0\)\.$",
    ),
    (
      lambda: theory.theorem1(np.array([[np.nan]]), 0.5, 2),
      r"^target has non-finite entries \(NaN or inf\)",
    ),
    (lambda: theory.theorem1(np.eye(2), 0.5, 0), r"^depth must be an integer >= 1"),
    (lambda: theory.theorem1(np.eye(2), 0.5, True), "depth"),
    (lambda: theory.theorem1(np.eye(2), 0.5, 2.0), "depth"),
    (
      lambda: theory.iterations_bound(1.0, 0.0, 0.1, 0.5, 2),
      r"^eps must be positive and finite; got 0\.0\.$",  # the margin's hint is for the margin
    ),
    (lambda: theory.iterations_bound(1.0, None, 0.1, 0.5, 2), r"^eps must be positive and finite"),
    (lambda: theory.iterations_bound(1.0, 1e-3, -0.1, 0.5, 2), r"^lr must be positive and finite"),
    (
      lambda: theory.iterations_bound(-1.0, 1e-3, 0.1, 0.5, 2),
      r"^loss0 must be a finite number >= 0",
    ),
    (lambda: theory.iterations_bound(np.inf, 1e-3, 0.1, 0.5, 2), r"^loss0 must be a finite"),
    (
      lambda: theory.iterations_bound(1.0, 1e-3, 0.1, 0.0, 2),
      r"^margin must be positive and finite",
    ),
    (lambda: theory.iterations_bound(1.0, 1e-3, 0.1, 0.5, 0), r"^depth must be an integer >= 1"),
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
  c = good.margin  # depth 2, ||Phi||_F = 1.5: the closed forms of Theorem 1
  assert good.max_balancedness == pytest.approx(c**2 / (256 * 8 * 1.5))
  assert good.rate == pytest.approx(c) and good.balancedness == 0.0
  assert (good.lr, good.eps) == (1e-9, 1e-5)  # the lr checked and the default eps, reported
  coarse = theory.check_theorem1(lt.init.residual((2, 2, 2)), phi, 1e-9, eps=1e-3)
  assert coarse.eps == 1e-3 and coarse.iterations == math.ceil(
    math.log(coarse.loss / 1e-3) / (1e-9 * c)
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
  with pytest.raises(ValueError, match=r"^lr must be a positive finite number"):
    theory.check_theorem1(ws, np.eye(2), 0.0)
  with pytest.raises(ValueError, match=r"^eps must be a positive finite number"):
    theory.check_theorem1(ws, np.eye(2), 1e-3, eps=0.0)
  # dims (2, 4, 3): W_{1:2} is (3, 2); the message gives (d_N, d_0), not a hidden width
  wide = (jnp.ones((4, 2)), jnp.ones((3, 4)))
  with pytest.raises(
    ValueError,
    match=r"^target has shape \(2, 3\) but the end-to-end matrix of these weights has shape "
    r"\(3, 2\) \(d_N, d_0\)\.$",
  ):
    theory.check_theorem1(wide, np.ones((2, 3)), 1e-3)


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


@pytest.mark.parametrize("velocity", ["end_to_end_velocity", "singular_value_velocity"])
def test_velocities_name_the_bad_matrix(velocity):
  """The message names the argument that is not a 2-D floating matrix (w or grad) and the fix."""
  f = getattr(theory, velocity)
  with pytest.raises(ValueError, match=r"^w must be a 2-D floating matrix .* lintraj.end_to_end"):
    f(jnp.ones(3), jnp.ones((1, 3)), 2)
  with pytest.raises(ValueError, match=r"^grad must be a 2-D floating matrix \(the end-to-end"):
    f(jnp.ones((1, 3)), jnp.ones((1, 3), int), 2)


def test_end_to_end_flow_and_velocity_messages_name_the_argument_and_the_fix():
  with pytest.raises(ValueError, match=r"^w0 must be the end-to-end matrix, not a tuple of layers"):
    theory.end_to_end_flow([jnp.ones((1, 2))], lambda w: jnp.sum(w), 2, lr=0.1, steps=2)
  with pytest.raises(ValueError, match=r"^w0 must be a 2-D floating matrix"):
    theory.end_to_end_flow(jnp.ones(2), lambda w: jnp.sum(w), 2, lr=0.1, steps=2)
  with pytest.raises(ValueError, match=r"pass the gradient of the loss at w \(same shape\)\.$"):
    theory.end_to_end_velocity(jnp.ones((2, 3)), jnp.ones((3, 2)), 2)


def test_end_to_end_velocity_float32_with_x64_enabled_cuts_float32_rounding(x64):
  """A float32 rank-1 W = sigma u v^T (its SVD has float32 rounding noise, about 1e-8 sigma, in
  place of the zero singular value) against the definition in closed form: (W W^T)^p = sigma^{2p}
  u u^T for p > 0 and I for p = 0, so the velocity is
  -sigma^{2(N-1)/N} (G P_v + P_u G + (N - 2) P_u G P_v). The noise must count as 0 at float32's
  threshold (kept, it would add (noise / sigma)^{2/N}, about 2e-3 relative at N = 6, to the
  off-diagonal blocks), and float32 stays float32 although x64 is on. sigma = 100: a threshold
  without the factor sigma_max, or divided by it, keeps the noise too."""
  rng = np.random.default_rng(3)
  u, v = rng.standard_normal(3), rng.standard_normal(2)
  u, v, sigma, depth = u / np.linalg.norm(u), v / np.linalg.norm(v), 100.0, 6
  w32 = np.float32(sigma * np.outer(u, v))
  g32 = np.float32(rng.standard_normal((3, 2)))
  assert np.linalg.svd(w32, compute_uv=False)[1] > 0  # the rounding noise the test is about
  got = theory.end_to_end_velocity(jnp.asarray(w32), jnp.asarray(g32), depth)
  assert got.dtype == jnp.float32
  g, p_u, p_v = g32.astype(np.float64), np.outer(u, u), np.outer(v, v)
  expected = -(sigma ** (2 * (depth - 1) / depth)) * (
    g @ p_v + p_u @ g + (depth - 2) * p_u @ g @ p_v
  )
  np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


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


def test_end_to_end_flow_records_every_step_by_default(x64):
  phi, w0 = np.array([[1.0, 0.5]]), np.array([[0.1, 0.0]])
  traj = theory.end_to_end_flow(jnp.asarray(w0), lt.losses.target(phi), 1, lr=0.1, steps=3)
  np.testing.assert_array_equal(traj.step, [0, 1, 2, 3])
  # depth 1: the rule is GD on W, W(t) = phi + 0.9^t (W(0) - phi)
  expected = [0.5 * 0.81**t * np.sum((w0 - phi) ** 2) for t in range(4)]
  np.testing.assert_allclose(traj.loss, expected, rtol=1e-12)


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


def test_mode_strength_float32_with_x64_enabled_stays_float32(x64):
  """Float32 inputs with Python numbers give float32 (the dtype is that of the arrays; Python
  numbers give the default, float64), and agree with float64 to float32 rounding."""
  t = np.array([0.0, 1.0, 10.0])
  expected = theory.mode_strength(t, 1.0, 0.1, 3)
  assert expected.dtype == jnp.float64
  for s, u0 in ((1.0, 0.1), (np.float32(1.0), np.float32(0.1))):
    got = theory.mode_strength(np.float32(t), s, u0, 3)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert theory.mode_strength(1.0, np.float32(1.0), 0.1, 3).dtype == jnp.float32
  assert theory.mode_strength(1.0, 1.0, np.float32(0.1), 3).dtype == jnp.float32
  # integers are the numbers they are (steps as times, integer singular values)
  got = theory.mode_strength(np.arange(3), 2, 1, 3)
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(got, theory.mode_strength(np.arange(3.0), 2.0, 1.0, 3), rtol=1e-15)
  assert got[0] == 1.0


def test_mode_strength_pads_to_a_power_of_two_of_at_least_8(x64, compiles):
  """Sizes 1 to 8 share one compilation (depth 5: no other test compiles it)."""
  theory.mode_strength(jnp.ones(3), 1.0, 0.1, 5)
  size = compiles("_mode_strength")
  for n in (1, 7, 8):
    theory.mode_strength(jnp.ones(n), 1.0, 0.1, 5)
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

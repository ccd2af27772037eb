"""lintraj.landscape against independent references: finite differences of the NumPy gradient,
dense eigvalsh, closed forms at the origin, the analytic autoencoder critical points."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import lintraj as lt
from lintraj import landscape
from lintraj.reproductions import landscape_studies
from tests import numpy_reference as ref


def _flat(ws):
  """The flattened weights, built independently of jax.flatten_util: W_1 row-major, then W_2, ..."""
  return np.concatenate([np.asarray(w, np.float64).ravel() for w in ws])


def _unflat(theta, shapes):
  out, start = [], 0
  for shape in shapes:
    size = shape[0] * shape[1]
    out.append(theta[start : start + size].reshape(shape))
    start += size
  return out


def _numpy_gradient(theta, shapes, grad_end_to_end):
  """The network gradient from the formula of docs/theory.md, "Notation" (tests/numpy_reference.py),
  flattened."""
  ws = _unflat(theta, shapes)
  return _flat(ref.layer_gradients(ws, grad_end_to_end(ref.product(ws, 1, len(ws)))))


def _finite_difference_hessian(ws, grad_end_to_end, h=1e-5):
  shapes = [w.shape for w in ws]
  theta = _flat(ws)
  columns = []
  for a in range(theta.size):
    step = np.zeros_like(theta)
    step[a] = h
    columns.append(
      (
        _numpy_gradient(theta + step, shapes, grad_end_to_end)
        - _numpy_gradient(theta - step, shapes, grad_end_to_end)
      )
      / (2 * h)
    )
  hess = np.stack(columns, axis=1)
  return (hess + hess.T) / 2


def _network(dims, seed=0, std=0.7):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  ws = lt.init.gaussian(k1, dims, std=std)
  return ws, jax.random.normal(k2, (dims[-1], dims[0]))


def _covariance(eigenvalues, seed=0):
  n = len(eigenvalues)
  rotation = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))[0]
  return (rotation * np.asarray(eigenvalues)[None, :]) @ rotation.T


# ----------------------------------------------------------------------------- Hessian, hvp


@pytest.mark.parametrize("dims", [(3, 4, 2), (2, 3, 3, 2)])
def test_hessian_matches_finite_differences_of_numpy_gradient(x64, dims):
  ws, phi = _network(dims)
  phi_np = np.asarray(phi)
  expected = _finite_difference_hessian(ws, lambda w: w - phi_np)
  got = np.asarray(landscape.hessian(ws, lt.losses.target(phi)))
  assert got.shape == (expected.shape[0],) * 2
  np.testing.assert_allclose(got, expected, atol=1e-9 * np.abs(expected).max())


def test_autoencoder_hessian_matches_finite_differences(x64):
  ws, _ = _network((4, 2, 2, 4), seed=3)
  cov = _covariance([2.0, 1.0, 0.5, 0.2])
  # L^1(W) = 1/2 tr((I - W) Sigma (I - W)^T) has gradient (W - I) Sigma.
  expected = _finite_difference_hessian(ws, lambda w: (w - np.eye(4)) @ cov)
  got = np.asarray(landscape.hessian(ws, landscape.autoencoder_loss(cov)))
  np.testing.assert_allclose(got, expected, atol=1e-9 * np.abs(expected).max())


def test_hvp_matches_dense_hessian_for_flat_and_tuple_vectors(x64):
  ws, phi = _network((3, 4, 2), seed=1)
  loss = lt.losses.target(phi)
  dense = np.asarray(landscape.hessian(ws, loss))
  v = np.random.default_rng(0).normal(size=dense.shape[0])
  np.testing.assert_allclose(
    landscape.hvp(ws, loss, jnp.asarray(v)), dense @ v, rtol=1e-10, atol=1e-12
  )
  as_tuple = landscape.hvp(
    ws, loss, tuple(jnp.asarray(x) for x in _unflat(v, [w.shape for w in ws]))
  )
  np.testing.assert_allclose(_flat(as_tuple), dense @ v, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- Lanczos


def test_lanczos_top_and_bottom_five_match_dense_eigvalsh(x64):
  ws, phi = _network((6, 5, 4, 3), seed=1)  # P = 62, m = 45 < P
  loss = lt.losses.target(phi)
  dense = np.linalg.eigvalsh(np.asarray(landscape.hessian(ws, loss)))
  top = landscape.top_eigenvalues(ws, loss, 5, num_iterations=45)
  bottom = landscape.bottom_eigenvalues(ws, loss, 5, num_iterations=45)
  np.testing.assert_allclose(top, dense[::-1][:5], rtol=0, atol=1e-8)
  np.testing.assert_allclose(bottom, dense[:5], rtol=0, atol=1e-8)
  np.testing.assert_allclose(
    landscape.top_eigenvalues(ws, loss, 5, method="dense"), dense[::-1][:5], rtol=1e-12
  )


def test_lanczos_recovers_multiplicities_at_the_depth2_origin_by_restarting(x64):
  # docs/theory.md, "Landscape facts": at zero weights of depth 2 the Hessian has eigenvalues
  # -+ sigma_i(Phi), here each with multiplicity 2 (the hidden width): one Krylov space holds one
  # copy, restarts find the rest.
  phi = jnp.diag(jnp.array([3.0, 2.0, 1.0]))
  origin = (jnp.zeros((2, 3)), jnp.zeros((3, 2)))
  loss = lt.losses.target(phi)
  np.testing.assert_allclose(
    landscape.top_eigenvalues(origin, loss, 6, num_iterations=12), [3, 3, 2, 2, 1, 1], atol=1e-10
  )
  np.testing.assert_allclose(
    landscape.bottom_eigenvalues(origin, loss, 2, num_iterations=12), [-3, -3], atol=1e-10
  )


def test_lanczos_on_a_zero_hessian_is_finite_and_zero(x64):
  origin = tuple(jnp.zeros((2, 2)) for _ in range(3))  # depth 3: H = 0
  values = landscape.top_eigenvalues(origin, lt.losses.target(jnp.eye(2)), 3, num_iterations=6)
  np.testing.assert_array_equal(values, np.zeros(3))


def test_sharpness_is_jittable_matches_dense_and_does_not_retrace(x64, compiles):
  ws, phi = _network((5, 4, 3), seed=2)
  loss = lt.losses.target(phi)
  dense_top = np.linalg.eigvalsh(np.asarray(landscape.hessian(ws, loss)))[-1]
  jitted = jax.jit(lambda w, f: landscape.sharpness(w, f))
  np.testing.assert_allclose(jitted(ws, loss), dense_top, rtol=1e-10)
  landscape.sharpness(ws, loss)
  traces = compiles("_ritz_values")
  other, phi2 = _network((5, 4, 3), seed=5)
  landscape.sharpness(other, lt.losses.target(phi2))
  assert compiles("_ritz_values") == traces


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_sharpness_at_a_balanced_global_minimum_is_n_sigma_max_to_the_2_minus_2_over_n(x64, depth):
  # At zero residual H = J^T J, whose nonzero spectrum is the end-to-end preconditioner's
  # (docs/theory.md, "Implicit acceleration"): sum_j sigma_r^{2(N-j)/N} sigma_r'^{2(j-1)/N},
  # largest N sigma_1^{2(N-1)/N}.
  phi = jnp.asarray(np.diag([2.0, 0.7, 0.3]) + 0.1 * np.random.default_rng(0).normal(size=(3, 3)))
  sigma_max = np.linalg.svd(np.asarray(phi), compute_uv=False)[0]
  ws = lt.init.balanced(None, (3,) + (4,) * (depth - 1) + (3,), end_to_end=phi)
  expected = depth * sigma_max ** (2 - 2 / depth)
  assert float(landscape.sharpness(ws, lt.losses.target(phi))) == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------- classify


def test_classify_origin_depth2_is_a_strict_saddle_with_the_closed_form_index(x64):
  phi = jnp.diag(jnp.array([1.0, 0.5]))
  out = landscape.classify((jnp.zeros((3, 2)), jnp.zeros((2, 3))), lt.losses.target(phi))
  # eigenvalues -+ sigma_i, each hidden-width (3) times, and 12 - 12 = 0 zeros
  assert out.verdict == "strict saddle"
  assert int(out.num_negative) == 6 and out.index == pytest.approx(6 / 12)
  assert float(out.min_eigenvalue) == pytest.approx(-1.0, abs=1e-12)


@pytest.mark.parametrize("depth", [3, 4])
def test_classify_origin_depth3_and_4_is_a_non_strict_saddle(x64, depth):
  phi = jnp.diag(jnp.array([1.0, 0.5]))
  out = landscape.classify(tuple(jnp.zeros((2, 2)) for _ in range(depth)), lt.losses.target(phi))
  assert out.verdict == "non-strict saddle"
  assert int(out.num_negative) == 0 and int(out.num_near_zero) == 4 * depth
  assert float(out.probe_decrease) > 0


@pytest.mark.parametrize("depth", [2, 3])
def test_classify_global_minima_and_non_critical_points(x64, depth):
  phi = jnp.array([[1.0, 0.3], [-0.2, 0.7]])
  dims = (2,) * (depth + 1)
  minimum = lt.init.balanced(None, dims, end_to_end=phi)
  out = landscape.classify(minimum, lt.losses.target(phi))
  assert (
    out.verdict == "minimum" and int(out.num_negative) == 0 and float(out.squared_grad_norm) < 1e-20
  )
  assert float(out.probe_decrease) <= 0
  moved = tuple(w + 0.1 for w in minimum)
  assert landscape.classify(moved, lt.losses.target(phi)).verdict == "not critical"


@pytest.mark.parametrize("depth", [2, 3])
def test_autoencoder_critical_points_are_critical_with_the_analytic_loss_and_index(x64, depth):
  n, hidden = 5, 2
  eigenvalues = np.array([2.0, 1.4, 0.9, 0.5, 0.2])
  cov = _covariance(eigenvalues, seed=depth)
  points = landscape.autoencoder_critical_points(cov, hidden, depth)
  expected_sets = [s for r in range(hidden + 1) for s in itertools.combinations(range(n), r)]
  assert [tuple(np.nonzero(c)[0]) for c in points.components] == expected_sets
  # End-to-end map = projection onto span(e_I); loss by an independent NumPy evaluation.
  for k, subset in enumerate(expected_sets):
    ws = [np.asarray(w[k], np.float64) for w in points.weights]
    e2e = ref.product(ws, 1, depth)
    basis = np.linalg.eigh(cov)[1][:, ::-1][:, list(subset)]
    np.testing.assert_allclose(e2e, basis @ basis.T, atol=1e-12)
    residual = np.eye(n) - e2e
    numpy_loss = 0.5 * np.trace(residual @ cov @ residual.T)
    # Convention: with the 1/2 in front the loss is 1/2 (tr Sigma - sum_I lambda_i), i.e.
    # docs/theory.md, "Landscape facts": tr Sigma - sum_I lambda_i for E||x - Wx||^2, without
    # the 1/2.
    assert 2 * numpy_loss == pytest.approx(
      eigenvalues.sum() - eigenvalues[list(subset)].sum(), abs=1e-12
    )
    assert float(points.loss[k]) == pytest.approx(numpy_loss, abs=1e-12)
  found = landscape.classify(points.weights, landscape.autoencoder_loss(cov))
  assert np.max(found.squared_grad_norm) < 1e-20
  np.testing.assert_array_equal(
    found.num_negative, points.num_negative
  )  # the dense Hessian's index
  sizes = points.components.sum(axis=1)
  top = np.array(
    [all(c[:s]) for c, s in zip(points.components, sizes)]
  )  # I = the top |I| directions
  assert list(found.verdict[top & (sizes == hidden)]) == ["minimum"]
  expected_small = "non-strict saddle" if depth >= 3 else "strict saddle"
  assert set(found.verdict[top & (sizes < hidden)]) == {expected_small}
  assert set(found.verdict[~top]) == {"strict saddle"}


def test_autoencoder_loss_equals_regression_of_the_data_on_itself(x64):
  x = np.random.default_rng(0).normal(size=(50, 4))
  w = np.random.default_rng(1).normal(size=(4, 4))
  expected = lt.losses.regression(x, x)(jnp.asarray(w))
  got = landscape.autoencoder_loss(x.T @ x / 50)(jnp.asarray(w))
  assert float(got) == pytest.approx(float(expected), rel=1e-12)


# ----------------------------------------------------------------------------- finders


def _near_saddle(depth, seed=0, noise=1e-3):
  """A strict saddle of a small autoencoder (I = {0, 2}: index > 0) and a start next to it."""
  cov = _covariance([2.0, 1.4, 0.9, 0.5], seed=1)
  points = landscape.autoencoder_critical_points(cov, 2, depth)
  k = [tuple(np.nonzero(c)[0]) for c in points.components].index((0, 2))
  keys = jax.random.split(jax.random.PRNGKey(seed), depth)
  start = tuple(
    w[k] + noise * jax.random.normal(key, w[k].shape) for w, key in zip(points.weights, keys)
  )
  return points, k, start, landscape.autoencoder_loss(cov)


@pytest.mark.parametrize(
  "finder, settings",
  [
    (landscape.gradient_norm_descent, dict(steps=1000)),
    (landscape.newton_mr, dict(steps=15)),
    (landscape.damped_newton, dict(steps=40, lr=1.0)),
  ],
)
def test_each_finder_recovers_a_known_saddle_from_a_nearby_start(x64, finder, settings):
  points, k, start, loss = _near_saddle(depth=2)
  assert points.num_negative[k] > 0
  out = finder(start, loss, **settings)
  assert out.loss.shape == out.squared_grad_norm.shape == (settings["steps"] + 1,)
  assert out.step_size.shape == (settings["steps"],)
  assert float(out.squared_grad_norm[0]) > 1e-8 and float(out.squared_grad_norm[-1]) < 1e-10
  e2e = np.asarray(lt.end_to_end(out.point))
  target = np.asarray(lt.end_to_end(tuple(w[k] for w in points.weights)))
  assert np.linalg.norm(e2e - target) < 1e-4
  assert float(out.loss[-1]) == pytest.approx(float(points.loss[k]), abs=1e-8)
  assert int(landscape.classify(out.point, loss).num_negative) == points.num_negative[k]
  assert int(out.iterations) == settings["steps"]


def _numpy_squared_grad_norm(ws, cov):
  """||grad||^2 of the autoencoder loss 1/2 tr((I - W) cov (I - W)^T), from the NumPy gradient
  (dL/dW = (W - I) cov)."""
  cov = np.asarray(cov)
  theta = _flat(ws)
  g = _numpy_gradient(theta, [w.shape for w in ws], lambda w: (w - np.eye(len(cov))) @ cov)
  return float(g @ g)


def test_newton_mr_stops_at_the_first_iterate_below_grad_tol_and_counts_the_iterations(x64):
  """With grad_tol the search stops at the first iterate whose squared gradient norm (checked here
  with the NumPy gradient) is below it: the run of `iterations - 1` steps is still above it, the
  stopped point is below it, and every later entry repeats the stopped point with step 0."""
  cov = _covariance([2.0, 1.4, 0.9, 0.5], seed=1)
  _, _, start, loss = _near_saddle(depth=2)
  tol, steps = 1e-10, 12  # ||g||^2 along the way: 1e-4, 4e-10, 1e-17, then the floor 1e-24
  out = landscape.newton_mr(start, loss, steps=steps, grad_tol=tol)
  ran = int(out.iterations)
  assert 1 < ran < steps
  assert _numpy_squared_grad_norm(out.point, cov) < tol
  before = landscape.newton_mr(start, loss, steps=ran - 1)
  assert _numpy_squared_grad_norm(before.point, cov) >= tol
  np.testing.assert_allclose(_flat(out.point), _flat(before.point), atol=1e-3)
  np.testing.assert_array_equal(out.step_size[ran:], 0.0)
  assert np.all(np.asarray(out.step_size[:ran]) > 0)
  np.testing.assert_array_equal(out.squared_grad_norm[ran:], out.squared_grad_norm[ran])
  np.testing.assert_array_equal(out.loss[ran:], out.loss[ran])
  free = landscape.newton_mr(start, loss, steps=steps)  # no tolerance: every step runs
  assert int(free.iterations) == steps and float(free.squared_grad_norm[-1]) < tol


def test_newton_mr_at_depth3_and_vmapped_over_starts(x64):
  points, k, start, loss = _near_saddle(depth=3)
  starts = tuple(jnp.stack([w, w * (1 + 1e-3)]) for w in start)
  out = jax.vmap(lambda ws: landscape.newton_mr(ws, loss, steps=15))(starts)
  assert out.squared_grad_norm.shape == (2, 16)
  assert np.all(np.asarray(out.squared_grad_norm[:, -1]) < 1e-10)
  np.testing.assert_allclose(out.loss[:, -1], points.loss[k], atol=1e-8)
  early = jax.vmap(lambda ws: landscape.newton_mr(ws, loss, steps=15, grad_tol=1e-12))(starts)
  ran = np.asarray(early.iterations)
  assert ran.shape == (2,) and np.all(ran < 15)
  for lane in range(2):
    squared = np.asarray(early.squared_grad_norm[lane])
    assert squared[ran[lane]] < 1e-12 and np.all(squared[: ran[lane]] >= 1e-12)


def test_gradient_norm_descent_stalls_at_a_gradient_flat_point_and_the_diagnostic_flags_it(x64):
  def tilted(w):  # linear along w_11: grad (1, w_12), H = diag(0, 1)
    return w[0, 0] + 0.5 * w[0, 1] ** 2

  out = landscape.gradient_norm_descent((jnp.array([[0.0, 0.3]]),), tilted, steps=100)
  assert float(out.squared_grad_norm[-1]) == pytest.approx(1.0, abs=1e-12)  # stuck, not critical
  assert abs(float(out.point[0][0, 1])) < 1e-6
  flat = landscape.gradient_flatness(out.point, tilted)
  assert bool(flat.gradient_flat) and float(flat.ratio) < 1e-6
  # A true critical point is not gradient-flat, a generic point has a ratio of order 1.
  phi = jnp.array([[1.0, 0.5]])
  assert not bool(
    landscape.gradient_flatness(
      lt.init.balanced(None, (2, 2, 1), end_to_end=phi), lt.losses.target(phi)
    ).gradient_flat
  )
  ws, _ = _network((2, 2, 1), seed=4)
  assert float(landscape.gradient_flatness(ws, lt.losses.target(phi)).ratio) > 1e-2


# ----------------------------------------------------------------------------- saddle escape


def test_perturbed_gd_escapes_the_exact_origin_where_gd_stays(x64):
  phi = jnp.diag(jnp.array([1.0, 0.5]))
  origin = tuple(jnp.zeros((2, 2)) for _ in range(3))
  loss = lt.losses.target(phi)
  stuck = lt.train(origin, loss, optax.sgd(0.1), steps=1000, record_every=1000)
  assert float(stuck.loss[-1]) == float(stuck.loss[0])
  pgd = landscape.perturbed_gradient_descent(0.1, radius=0.1, grad_threshold=1e-3, wait=50)
  escaped = lt.train(origin, loss, pgd, steps=1000, record_every=1000)
  assert float(escaped.loss[-1]) < 0.5 * float(escaped.loss[0])


def test_perturbed_gd_update_is_a_ball_sample_only_when_the_gradient_is_small(x64):
  pgd = landscape.perturbed_gradient_descent(0.1, radius=0.2, grad_threshold=1e-2, wait=3)
  params = (jnp.zeros((2, 3)), jnp.zeros((1, 2)))
  state = pgd.init(params)
  small = (jnp.full((2, 3), 1e-4), jnp.zeros((1, 2)))
  updates, state = pgd.update(small, state, params)
  noise = _flat(updates) + 0.1 * _flat(small)
  assert 0 < np.linalg.norm(noise) <= 0.2
  updates, state = pgd.update(small, state, params)  # within `wait`: plain GD
  np.testing.assert_allclose(_flat(updates), -0.1 * _flat(small), rtol=1e-12)
  large = (jnp.ones((2, 3)), jnp.ones((1, 2)))
  for _ in range(4):
    updates, state = pgd.update(large, state, params)
    np.testing.assert_allclose(_flat(updates), -0.1 * _flat(large), rtol=1e-12)


def test_saddle_free_newton_step_matches_numpy_and_escapes_the_strict_saddle(x64):
  phi = jnp.diag(jnp.array([1.0, 0.5]))
  loss = lt.losses.target(phi)
  ws, _ = _network((2, 2, 2), seed=6, std=0.05)
  sfn = landscape.saddle_free_newton(0.5, damping=1e-2)
  value_fn = lambda v: loss(lt.end_to_end(v))
  grads = jax.grad(value_fn)(ws)
  updates, _ = sfn.update(grads, sfn.init(ws), ws, value_fn=value_fn)
  hess = _finite_difference_hessian(ws, lambda w: w - np.asarray(phi))
  values, vectors = np.linalg.eigh(hess)
  expected = -0.5 * vectors @ ((vectors.T @ _flat(grads)) / (np.abs(values) + 1e-2))
  np.testing.assert_allclose(_flat(updates), expected, rtol=1e-6, atol=1e-10)
  traj = lt.train(ws, loss, sfn, steps=40, record_every=40)
  assert float(traj.loss[-1]) < 1e-6


# ----------------------------------------------------------------------------- studies and bad
# input


def test_study_matches_found_points_to_the_nearest_analytic_point(x64):
  cov = _covariance([2.0, 1.4, 0.9, 0.5], seed=1)
  points = landscape.autoencoder_critical_points(cov, 2, 3)
  keys = jax.random.split(jax.random.PRNGKey(5), len(points.weights))
  moved = tuple(
    w + 1e-3 * jax.random.normal(key, w.shape, w.dtype) for w, key in zip(points.weights, keys)
  )
  nearest, distance = landscape_studies._nearest_analytic(points, moved)
  np.testing.assert_array_equal(nearest, np.arange(len(points.loss)))
  expected = np.linalg.norm(
    np.asarray(lt.end_to_end(moved)) - np.asarray(lt.end_to_end(points.weights)), axis=(1, 2)
  )
  np.testing.assert_allclose(
    distance, expected, rtol=1e-6
  )  # the end-to-end distance, by its definition


@pytest.mark.parametrize(
  "call, match",
  [
    (lambda ws, loss: landscape.top_eigenvalues(ws, loss, 0), "k must be"),
    (lambda ws, loss: landscape.top_eigenvalues(ws, loss, 2, method="power"), "method must be"),
    (lambda ws, loss: landscape.hvp(ws, loss, jnp.ones(3)), "flat vector of shape"),
    (lambda ws, loss: landscape.classify(ws, loss, grad_tol=-1.0), "grad_tol"),
    (lambda ws, loss: landscape.newton_mr(ws, loss, steps=-1), "steps must be"),
    (lambda ws, loss: landscape.newton_mr(ws, loss, steps=5, grad_tol=-1.0), "grad_tol"),
    (
      lambda ws, loss: landscape.damped_newton(ws, loss, steps=5, lr=2.0),
      "fraction of the Newton step",
    ),
    (lambda ws, loss: landscape.autoencoder_critical_points(np.eye(2), 1, 1), "depth must be"),
    (lambda ws, loss: landscape.autoencoder_loss(np.array([[1.0, 2.0], [0.0, 1.0]])), "symmetric"),
    (lambda ws, loss: landscape.autoencoder_loss(np.diag([1.0, -1.0])), "positive semidefinite"),
    (
      lambda ws, loss: landscape.hessian((jnp.ones((2, 2)), jnp.ones((3, 3))), loss),
      "do not chain",
    ),
    (
      lambda ws, loss: landscape.saddle_free_newton().update(ws, optax.EmptyState(), ws),
      "needs the weights and the loss",
    ),
    (lambda ws, loss: landscape.saddle_free_newton(loss), "no longer takes the loss"),
  ],
)
def test_bad_input_raises_value_error(call, match):
  ws = (jnp.ones((2, 2)), jnp.ones((2, 2)))
  with pytest.raises(ValueError, match=match):
    call(ws, lt.losses.target(jnp.eye(2)))


@pytest.mark.parametrize("m", [3, 8])
def test_newton_mr_step_is_the_minres_iterate(x64, m):
  """One Newton-MR step is alpha p with p = argmin over the Krylov space K_m(H, g) of ||H p + g||
  (minimum norm), built here independently in NumPy: an orthonormal basis of [g, Hg, ..., H^{m-1} g]
  from jax.hessian, then lstsq (m = P = 8: the pseudo-inverse step -H^+ g, as MINRES-QLP)."""
  ws = (jnp.array([[0.7, -0.2], [0.1, 0.4]]), jnp.array([[0.3, 0.5], [-0.6, 0.2]]))
  loss = lt.losses.target(jnp.array([[1.0, 0.2], [0.4, -0.8]]))
  flat, unravel = ravel_pytree(ws)
  f = lambda x: loss(lt.end_to_end(unravel(x)))
  g, h = np.asarray(jax.grad(f)(flat)), np.asarray(jax.hessian(f)(flat))
  krylov = np.stack([np.linalg.matrix_power(h, i) @ g for i in range(m)], axis=1)
  basis = np.linalg.qr(krylov)[0] if m < len(g) else np.eye(len(g))
  expected = basis @ np.linalg.lstsq(h @ basis, -g, rcond=1e-12)[0]
  out = landscape.newton_mr(ws, loss, steps=1, minres_iterations=m)
  alpha = float(out.step_size[0])
  assert alpha > 0
  taken = (np.asarray(ravel_pytree(out.point)[0]) - np.asarray(flat)) / alpha
  np.testing.assert_allclose(taken, expected, rtol=1e-7, atol=1e-9 * np.linalg.norm(expected))


@pytest.mark.parametrize(
  "finder, steps",
  [(landscape.gradient_norm_descent, 1500), (landscape.damped_newton, 80)],
  ids=["gradient_norm_descent", "damped_newton"],
)
def test_every_finder_stops_below_grad_tol_and_counts_the_iterations(x64, finder, steps):
  """As newton_mr: the stopped point is below the tolerance by the NumPy gradient, the run of
  `iterations - 1` steps is not, later entries repeat the stopped point with step 0, and without
  a tolerance every step runs."""
  cov = _covariance([2.0, 1.4, 0.9, 0.5], seed=1)
  _, _, start, loss = _near_saddle(depth=2)
  tol = 1e-10
  out = finder(start, loss, steps=steps, grad_tol=tol)
  ran = int(out.iterations)
  assert 1 < ran < steps
  assert _numpy_squared_grad_norm(out.point, cov) < tol
  before = finder(start, loss, steps=ran - 1)
  assert _numpy_squared_grad_norm(before.point, cov) >= tol
  np.testing.assert_array_equal(out.step_size[ran:], 0.0)
  np.testing.assert_array_equal(out.squared_grad_norm[ran:], out.squared_grad_norm[ran])
  np.testing.assert_array_equal(out.loss[ran:], out.loss[ran])
  free = finder(start, loss, steps=steps)
  assert int(free.iterations) == steps and float(free.step_size[-1]) >= 0

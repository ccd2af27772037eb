"""Losses and whitening against closed forms and NumPy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt


def test_target_loss_is_half_squared_distance(x64):
  phi, w = np.random.default_rng(0).normal(size=(2, 3, 4))
  loss = lt.losses.target(phi)
  assert float(loss(w)) == pytest.approx(0.5 * np.sum((w - phi) ** 2), rel=1e-14)
  np.testing.assert_array_equal(loss.target, phi)
  assert loss.name == "target"
  with pytest.raises(ValueError, match="^phi has non-finite"):
    lt.losses.target([[1.0, np.nan]])


def test_a_loss_is_named_by_its_argument_its_function_or_custom():
  def mine(w):
    return jnp.sum(w)

  assert lt.losses.Loss(mine).name == "mine"
  assert lt.losses.Loss(mine, name="given").name == "given"
  assert lt.losses.Loss(functools.partial(mine)).name == "custom"  # a partial has no __name__
  assert lt.losses.as_loss(mine).name == "mine"
  with pytest.raises(ValueError, match=r"got int\. For a target matrix use lintraj.losses.target"):
    lt.losses.as_loss(3)


def test_regression_loss_and_least_squares_target(x64):
  rng = np.random.default_rng(1)
  x, y, w = rng.normal(size=(40, 5)), rng.normal(size=(40, 3)), rng.normal(size=(3, 5))
  loss = lt.losses.regression(x, y)
  assert float(loss(w)) == pytest.approx(np.sum((w @ x.T - y.T) ** 2) / 80, rel=1e-13)
  w_star = np.linalg.lstsq(x, y, rcond=None)[0].T
  np.testing.assert_allclose(loss.target, w_star, rtol=1e-10)
  np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(w_star)), 0.0, atol=1e-12)


@pytest.mark.parametrize("p", [1.5, 2.0, 4.0])
def test_lp_regression_normalisation(x64, p):
  rng = np.random.default_rng(2)
  x, y, w = rng.normal(size=(30, 4)), rng.normal(size=(30, 2)), rng.normal(size=(2, 4))
  loss = lt.losses.lp_regression(x, y, p)
  assert float(loss(w)) == pytest.approx(np.sum(np.abs(w @ x.T - y.T) ** p) / (p * 30), rel=1e-12)
  assert (loss.target is None) == (p != 2)
  if p == 2:
    assert float(loss(w)) == pytest.approx(float(lt.losses.regression(x, y)(w)), rel=1e-13)


def test_matrix_completion_reads_only_observed_entries(x64):
  rng = np.random.default_rng(3)
  mask = rng.random((6, 5)) < 0.4
  values, w = rng.normal(size=(2, 6, 5))
  loss = lt.losses.matrix_completion(mask, np.where(mask, values, np.nan))
  assert float(loss(w)) == pytest.approx(0.5 * np.sum(mask * (w - values) ** 2), rel=1e-13)
  full = lt.losses.matrix_completion(np.ones((6, 5), bool), values)
  assert float(full(w)) == pytest.approx(float(lt.losses.target(values)(w)), rel=1e-14)


def test_whitened_regression_equals_target_plus_constant(x64):
  rng = np.random.default_rng(4)
  m = 200
  x = rng.normal(size=(m, 6)) @ rng.normal(size=(6, 6)) + 3.0
  y = x @ rng.normal(size=(6, 2)) + 0.1 * rng.normal(size=(m, 2)) + 1.0
  xw, phi = lt.whiten(x, y)
  np.testing.assert_allclose(np.asarray(xw).T @ np.asarray(xw) / m, np.eye(6), atol=1e-10)
  np.testing.assert_allclose(np.asarray(xw).mean(axis=0), 0.0, atol=1e-10)
  constant = np.sum(y**2) / (2 * m) - 0.5 * np.sum(np.asarray(phi) ** 2)
  regression, target = lt.losses.regression(xw, y), lt.losses.target(phi)
  for w in rng.normal(size=(4, 2, 6)):
    assert float(regression(w)) == pytest.approx(float(target(w)) + constant, rel=1e-11)


def test_whiten_drops_degenerate_directions(x64):
  rng = np.random.default_rng(5)
  x = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 5))  # rank 3 in 5 dimensions
  xw, phi = lt.whiten(x, rng.normal(size=50))
  assert xw.shape == (50, 3) and phi.shape == (1, 3)
  np.testing.assert_allclose(np.asarray(xw).T @ np.asarray(xw) / 50, np.eye(3), atol=1e-9)


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: lt.losses.target(np.ones(3)), "matrix"),
    (lambda: lt.losses.regression(np.ones((4, 2)), np.ones(5)), "rows like x"),
    (lambda: lt.losses.lp_regression(np.ones((4, 2)), np.ones(4), 0.5), "p must be"),
    (lambda: lt.losses.matrix_completion(np.ones((2, 2), bool), np.ones((2, 3))), "same"),
    (lambda: lt.whiten(np.ones((5, 2)), np.ones(5)), "zero variance"),
  ],
)
def test_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_whiten_drops_rounding_level_directions_in_float32():
  rng = np.random.default_rng(3)
  base = rng.normal(size=(60, 3)).astype(np.float32)
  x = np.concatenate([base, base[:, :1] + base[:, 1:2]], axis=1)  # rank 3 in 4 columns
  xw, phi = lt.whiten(jnp.asarray(x), jnp.asarray(base[:, 0]))
  assert xw.shape == (60, 3) and phi.shape == (1, 3)
  with jax.enable_x64(True):
    assert lt.whiten(jnp.asarray(x, jnp.float64), jnp.asarray(base[:, 0], jnp.float64))[
      0
    ].shape == (60, 3)
  with pytest.raises(ValueError, match="zero variance"):
    lt.whiten(jnp.full((40, 2), 0.1, jnp.float32), jnp.ones(40, jnp.float32))


# ------------------------------------------------- the autoencoder loss and per-lane stacking


def _covariance(n=4, seed=7):
  x = np.random.default_rng(seed).normal(size=(3 * n, n)) @ np.diag(np.arange(1.0, n + 1))
  return x.T @ x / (3 * n)


def test_autoencoder_loss_is_half_the_trace_of_the_residual_covariance(x64):
  """tr((I - W) S (I - W)^T) / 2 by NumPy, at a non-symmetric W and a non-diagonal S (a loss
  without the 1/2, with W^T, or with I + W fails); the dtype follows W, not the identity."""
  cov, w = _covariance(), np.random.default_rng(8).normal(size=(4, 4))
  residual = np.eye(4) - w
  loss = lt.losses.autoencoder_loss(cov)
  assert float(loss(jnp.asarray(w))) == pytest.approx(0.5 * np.trace(residual @ cov @ residual.T))
  assert loss.target is None and loss.name == "autoencoder" and loss.examples is None
  np.testing.assert_array_equal(loss.data, cov)
  single = lt.losses.autoencoder_loss(cov.astype(np.float32))(jnp.asarray(w, jnp.float32))
  assert single.dtype == jnp.float32


@pytest.mark.parametrize(
  "cov,match",
  [
    (lambda: np.ones((2, 3)), r"square \(n, n\).*\(2, 3\)"),
    (lambda: np.ones((2, 2, 2)), r"square \(n, n\).*\(2, 2, 2\)"),
    # asymmetry and negative eigenvalues are measured relative to the largest entry (1000 here):
    (
      lambda: 1e3 * np.eye(2) + np.array([[0, 2e-3], [0, 0]]),
      r"^cov must be symmetric; symmetrise it with \(cov \+ cov.T\) / 2\.$",
    ),
    (
      lambda: np.diag([1e3, -2e-3]),
      r"^cov must be positive semidefinite \(a covariance, e.g. x.T @ x / m\)\.$",
    ),
    (lambda: np.diag([1.0, np.nan]), "^cov has non-finite"),
  ],
)
def test_covariance_refused_with_the_fix(cov, match):
  with pytest.raises(ValueError, match=match):
    lt.losses.check_covariance(cov())


def test_covariance_tolerances_are_relative_to_the_largest_entry(x64):
  """Just inside each tolerance (1e-6 of the largest entry) is accepted, just outside refused."""
  for size, ok in ((0.9e-3, True), (1.1e-3, False)):
    cov = 1e3 * np.eye(2) + np.array([[0, size], [0, 0]])  # asymmetry 1.1e-6 or 0.9e-6 relative
    if ok:
      np.testing.assert_array_equal(lt.losses.check_covariance(cov), cov)
    else:
      with pytest.raises(ValueError, match="symmetric"):
        lt.losses.check_covariance(cov)
  for eig, ok in ((-0.9e-3, True), (-1.1e-3, False)):
    cov = np.diag([1e3, eig])
    if ok:
      np.testing.assert_array_equal(lt.losses.check_covariance(cov), cov)
    else:
      with pytest.raises(ValueError, match="semidefinite"):
        lt.losses.check_covariance(cov)
  np.testing.assert_array_equal(lt.losses.check_covariance(np.zeros((3, 3))), 0.0)


def test_stack_losses_stacks_each_lanes_data_and_target(x64):
  """Lane b of the stacked loss is loss b, data and target (vmapped over the lane axis)."""
  rng = np.random.default_rng(9)
  xs, ys = rng.normal(size=(3, 6, 4)), rng.normal(size=(3, 6, 2))
  each = [lt.losses.regression(x, y) for x, y in zip(xs, ys)]
  stacked = lt.losses.stack_losses(each)
  assert stacked.name == "regression" and stacked.examples == each[0].examples
  np.testing.assert_array_equal(stacked.target, np.stack([loss.target for loss in each]))
  w = rng.normal(size=(3, 2, 4))
  got = jax.vmap(lambda loss, v: loss(v))(stacked, jnp.asarray(w))
  np.testing.assert_allclose(got, [float(loss(v)) for loss, v in zip(each, w)], rtol=1e-13)
  no_target = lt.losses.stack_losses(
    [lt.losses.autoencoder_loss(_covariance(seed=s)) for s in (1, 2)]
  )
  assert no_target.target is None and no_target.data.shape == (2, 4, 4)


def _weighted(w, d):
  return jnp.sum(d * w)


@pytest.mark.parametrize(
  "losses,match",
  [
    (lambda: [], "^loss is an empty sequence; give one loss per lane"),
    (
      lambda: [lt.losses.target(np.ones((2, 3))), lt.losses.target(np.ones((3, 2)))],
      r"lane 0 is Loss\(target.*lane 1 is",
    ),
    (
      lambda: [lt.losses.target(np.ones((2, 2))), lt.losses.autoencoder_loss(np.eye(2))],
      r"differ in kind or shapes.*needs one function with same-shaped data \(e.g. "
      r"lt.losses.target of same-shaped targets\)\.$",
    ),
    (
      lambda: [
        lt.losses.Loss(_weighted, data=np.ones((2, 2)), examples=True),
        lt.losses.Loss(_weighted, data=np.ones((2, 2))),  # the same, without examples
      ],
      "differ in kind or shapes",
    ),
  ],
)
def test_stack_losses_refuses_lanes_that_differ(losses, match):
  with pytest.raises(ValueError, match=match):
    lt.losses.stack_losses(losses())


# ------------------------------------------ examples, minibatches, dtypes and refusals of each loss


def test_matrix_completion_minibatch_scales_the_batch_sum_by_m_over_b(x64):
  """A minibatch of b of the m observed entries (row-major order) is m/b times half the batch's
  squared error, so its mean over batches is the full loss; NumPy, not the loss's formula."""
  rng = np.random.default_rng(10)
  mask = rng.random((4, 5)) < 0.5
  values, w = rng.normal(size=(2, 4, 5))
  loss = lt.losses.matrix_completion(mask, values)
  m = int(mask.sum())
  assert loss.n_examples == m and loss.name == "matrix_completion" and loss.target is None
  index = np.array([0, 2, m - 1])
  rows, cols = np.nonzero(mask)
  expected = 0.5 * np.sum((w[rows, cols] - values[rows, cols])[index] ** 2) * m / 3
  assert float(loss.minibatch(jnp.asarray(index))(w)) == pytest.approx(expected, rel=1e-13)
  single = lt.losses.matrix_completion(mask, values.astype(np.float32))
  assert single(jnp.asarray(w, jnp.float32)).dtype == jnp.float32
  lanes = lt.losses.stack_losses([single, single])  # the count of entries is stored, not weak
  got = jax.vmap(lambda loss, v: loss(v))(lanes, jnp.asarray(np.stack([w, w]), jnp.float32))
  assert got.dtype == jnp.float32


def test_lp_regression_examples_p_bounds_and_dtype(x64):
  """p = 1 (the least convex p) is allowed, p = 0 is refused naming p; a minibatch is the loss on
  those rows; p is stored in x's dtype (float32 data stay float32 with x64 on)."""
  rng = np.random.default_rng(11)
  x, y, w = rng.normal(size=(9, 3)), rng.normal(size=(9, 2)), rng.normal(size=(2, 3))
  one = lt.losses.lp_regression(x, y, 1.0)
  assert float(one(w)) == pytest.approx(np.sum(np.abs(w @ x.T - y.T)) / 9, rel=1e-13)
  with pytest.raises(ValueError, match="^p must be a positive"):
    lt.losses.lp_regression(x, y, 0.0)
  loss = lt.losses.lp_regression(x, y, 3.0)
  assert loss.name == "lp_regression" and loss.n_examples == 9
  rows = np.array([1, 4, 8])
  got = float(loss.minibatch(jnp.asarray(rows))(w))
  assert got == pytest.approx(np.sum(np.abs(w @ x[rows].T - y[rows].T) ** 3) / 9, rel=1e-13)
  single = lt.losses.lp_regression(x.astype(np.float32), y.astype(np.float32), 3.0)
  assert single.data[2].dtype == jnp.float32


@pytest.mark.parametrize(
  "call,match",
  [
    (
      lambda: lt.losses.matrix_completion(np.zeros((2, 2), bool), np.ones((2, 2))),
      "^mask observes no entry",
    ),
    (
      lambda: lt.losses.matrix_completion(np.ones((2, 2), bool), [[1, np.nan], [1, 1]]),
      "^values has non-finite",
    ),
    (
      lambda: lt.losses.matrix_sensing(np.ones((2, 3)), np.ones(2)),
      r"For a single measurement pass a\[None\]\.$",
    ),
    (lambda: lt.losses.matrix_sensing(np.ones((0, 2, 3)), np.ones(0)), r"^a holds no .*\(m = 0\)"),
    (
      lambda: lt.losses.matrix_sensing(np.ones((3, 2, 2)), np.ones((3, 1))),
      r"got shape \(3, 1\) \(flatten it with y.reshape\(-1\)\)\.",
    ),
    (lambda: lt.losses.matrix_sensing(np.ones((3, 2, 2)), np.ones(4)), r"got shape \(4,\)\.$"),
    (lambda: lt.losses.split(_key0(), np.ones(3), [1, np.nan, 1], 1), "^y has non-finite"),
    (lambda: lt.losses.split(_key0(), 1.0, np.ones(3), 1), "one row per example"),
  ],
)
def test_loss_data_refused_with_the_fix(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def _key0():
  return jax.random.PRNGKey(0)


def test_matrix_sensing_measurements_take_the_sensing_matrices_dtype(x64):
  a = np.random.default_rng(12).normal(size=(5, 2, 2)).astype(np.float32)
  loss = lt.losses.matrix_sensing(a, np.ones(5))  # float64 measurements
  assert loss.name == "matrix_sensing"
  assert loss.data[1].dtype == jnp.float32
  assert loss(jnp.ones((2, 2), jnp.float32)).dtype == jnp.float32


def test_split_of_the_fewest_examples_and_of_vectors():
  """m = 2 with n_test = 1 is the smallest split; 1-D x (one number per example) is allowed."""
  (x_tr, y_tr), (x_te, y_te) = lt.losses.split(_key0(), np.array([1.0, 2.0]), [3.0, 4.0], 1)
  assert x_tr.shape == x_te.shape == (1,)
  assert {(float(x_tr[0]), float(y_tr[0])), (float(x_te[0]), float(y_te[0]))} == {(1, 3), (2, 4)}


def test_regression_examples_names_and_dtypes(x64):
  """The rows are the examples (a minibatch is the loss on those rows, NumPy); y takes x's dtype;
  the repr names the loss and its target's shape."""
  rng = np.random.default_rng(13)
  x, y, w = rng.normal(size=(7, 3)), rng.normal(size=(7, 2)), rng.normal(size=(2, 3))
  loss = lt.losses.regression(x, y)
  assert loss.name == "regression" and loss.n_examples == 7
  rows = np.array([0, 5, 6])
  expected = 0.5 * np.sum((w @ x[rows].T - y[rows].T) ** 2) / 3
  assert float(loss.minibatch(jnp.asarray(rows))(w)) == pytest.approx(expected, rel=1e-13)
  assert lt.losses.regression(x.astype(np.float32), y).data[1].dtype == jnp.float32
  assert repr(loss) == "Loss(regression, target shape=(2, 3))"
  assert repr(lt.losses.autoencoder_loss(np.eye(2))) == "Loss(autoencoder, target shape=None)"


@pytest.mark.parametrize(
  "x,y,match",
  [
    (lambda: [[np.nan, 1.0]], lambda: [1.0], "^x has non-finite"),
    (lambda: [[1.0, 1.0]], lambda: [np.inf], "^y has non-finite"),
    (lambda: np.ones(4), lambda: np.ones(4), r"^x must be \(m, d_0\).*shape \(4,\)"),
    (lambda: np.ones((4, 2)), lambda: np.ones(3), r"m = 4 rows like x; got shape \(3, 1\)"),
  ],
)
def test_regression_data_refused_with_the_fix(x, y, match):
  with pytest.raises(ValueError, match=match):
    lt.losses.regression(x(), y())


def test_check_loss_traces_the_end_to_end_shape_of_the_widths():
  """Widths (d_0, ..., d_N) give a (d_N, d_0) end-to-end matrix: a loss that only accepts that
  shape passes, and fails on the transposed widths."""
  strict = lambda w: jnp.sum(w - jnp.ones((2, 3)))  # (2, 3) only
  assert lt.losses.check_loss(strict, (3, 4, 2)).fn is strict
  with pytest.raises(ValueError, match=r"cannot be traced by JAX on a \(3, 2\) end-to-end"):
    lt.losses.check_loss(strict, (2, 4, 3))
  lanes = (np.ones((5, 4, 3), np.float32), np.ones((5, 2, 4), np.float32))  # a lane axis first
  assert lt.losses.check_loss(strict, lanes).fn is strict
  with pytest.raises(
    ValueError, match=r"^check_loss needs the widths \(d_0, ..., d_N\) or the weights "
  ):
    lt.losses.check_loss(strict, ())


def test_check_loss_traces_in_the_weights_dtype(x64):
  """float32 weights with x64 on are traced as float32 (a loss that is real only in float32)."""
  real_in_float32 = lambda w: jnp.sum(w) if w.dtype == jnp.float32 else jnp.sum(w).astype(int)
  weights = (np.ones((4, 3), np.float32), np.ones((2, 4), np.float32))
  assert lt.losses.check_loss(real_in_float32, weights).fn is real_in_float32
  with pytest.raises(ValueError, match="real scalar; got dtype int"):
    lt.losses.check_loss(real_in_float32, [w.astype(np.float64) for w in weights])


_SHARE = r"^the per-example data arrays must share a leading example axis \(one row per example\); "


@pytest.mark.parametrize(
  "data,examples,match",
  [
    (
      lambda: (np.ones((3, 2)), np.ones(3)),
      (True,),
      r"^examples= must be True or a pytree of booleans shaped like the loss's data "
      r"\(PyTreeDef\(\(\*, \*\)\)\); got \(True,\)\.$",
    ),
    (
      lambda: (np.ones((3, 2)), np.ones(4)),
      True,
      _SHARE + r"got leading sizes \['3', '4'\]\. Mark only those arrays in examples=\.$",
    ),
    (
      lambda: (np.ones((3, 2)), np.float64(2.0)),
      True,
      _SHARE + r"got leading sizes \['3', 'None'\]",
    ),
    (lambda: (np.float64(2.0),), True, _SHARE + r"got leading sizes \['None'\]"),
    (lambda: (np.ones((3, 2)), np.ones(3)), (False, False), _SHARE + r"got leading sizes \[\]"),
  ],
)
def test_examples_refused_unless_the_marked_arrays_share_their_rows(data, examples, match):
  with pytest.raises(ValueError, match=match):
    lt.losses.Loss(_weighted, data=data(), examples=examples)

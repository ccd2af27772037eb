"""Matrix sensing and the train/test split, against NumPy float64 (tests/numpy_reference.py):
the loss by a Python loop of traces, its gradient by central differences, GD and SGD on a depth-2
network by NumPy iterates, and the split read off ``jax.random.permutation`` of the key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt
from tests import numpy_reference as ref

D_N, D_0 = 3, 4  # non-square, so a transposed A_i cannot pass


def _sensing(seed=0, m=8):
  """Gaussian sensing of a rank-1 (d_N, d_0) matrix, plus noise (the loss is not zero at it)."""
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(m, D_N, D_0))
  w_star = np.outer(rng.normal(size=D_N), rng.normal(size=D_0))
  y = np.einsum("mij,ij->m", a, w_star) + 0.1 * rng.normal(size=m)
  return a, y, rng.normal(size=(D_N, D_0))


def test_matrix_sensing_value_and_dtype(x64):
  a, y, w = _sensing()
  loss = lt.losses.matrix_sensing(a, y)
  assert loss.n_examples == 8 and loss.target is None  # 8 measurements of 12 unknowns
  assert float(loss(w)) == pytest.approx(ref.sensing_loss(a, y, w), rel=1e-13)
  assert loss(jnp.asarray(w)).dtype == jnp.float64


def test_matrix_sensing_target_is_the_unique_minimiser_when_determined(x64):
  a, y, _ = _sensing(m=30)
  loss = lt.losses.matrix_sensing(a, y)
  w_ls = np.linalg.lstsq(a.reshape(30, -1), y, rcond=None)[0].reshape(D_N, D_0)
  np.testing.assert_allclose(loss.target, w_ls, rtol=1e-10)
  np.testing.assert_allclose(ref.sensing_gradient(a, y, w_ls), 0.0, atol=1e-12)
  assert lt.losses.matrix_sensing(a[:12], y[:12]).target is not None  # m = d_N d_0 suffices
  assert lt.losses.matrix_sensing(a[:11], y[:11]).target is None  # underdetermined
  rank_deficient = np.concatenate([a[:6]] * 5)  # 30 matrices spanning only 6 dimensions
  assert lt.losses.matrix_sensing(rank_deficient, y).target is None


def test_matrix_sensing_gradient_is_the_central_difference(x64):
  a, y, w = _sensing(1)
  grad = np.asarray(jax.grad(lt.losses.matrix_sensing(a, y))(jnp.asarray(w)))
  fd = ref.central_differences(lambda v: ref.sensing_loss(a, y, v), w)
  np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-8)
  np.testing.assert_allclose(grad, ref.sensing_gradient(a, y, w), rtol=1e-12)


def test_matrix_sensing_minibatch_is_the_loss_of_those_rows(x64):
  a, y, w = _sensing(2)
  loss = lt.losses.matrix_sensing(a, y)
  rows = np.array([7, 0, 3, 3, 5])
  batch = loss.minibatch(jnp.asarray(rows))
  assert float(batch(w)) == pytest.approx(ref.sensing_loss(a[rows], y[rows], w), rel=1e-13)
  assert float(loss.minibatch(jnp.arange(8))(w)) == pytest.approx(float(loss(w)), rel=1e-14)


def test_gradient_descent_and_sgd_on_matrix_sensing_follow_numpy(x64):
  a, y, _ = _sensing(3, m=20)
  loss = lt.losses.matrix_sensing(a, y)
  ws = lt.init.gaussian(jax.random.PRNGKey(0), (D_0, 5, D_N), std=0.5)
  steps, lr = 40, 0.02
  traj = lt.gradient_descent(ws, loss, lr=lr, steps=steps, record_every=10)
  iterates = ref.gradient_descent_on(ws, lambda w: ref.sensing_gradient(a, y, w), lr, steps)
  expected = [ref.sensing_loss(a, y, ref.product(v, 1, 2)) for v in iterates[::10]]
  np.testing.assert_allclose(traj.loss, expected, rtol=1e-11)
  assert traj.loss[-1] < 0.5 * traj.loss[0]
  for got, want in zip(traj.final, iterates[-1]):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)

  key = jax.random.PRNGKey(5)
  sgd = lt.gradient_descent(
    ws, loss, lr=lr, steps=steps, record_every=10, batch_size=6, sampling="shuffle", key=key
  )
  rows = ref.minibatch_rows("shuffle", key, 20, 6, steps)
  noisy = ref.gradient_descent_on(
    ws, lambda w, r: ref.sensing_gradient(a[r], y[r], w), lr, steps, rows=rows
  )
  for got, want in zip(sgd.final, noisy[-1]):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
  batch_losses = [
    ref.sensing_loss(a[rows[t]], y[rows[t]], ref.product(noisy[t], 1, 2))
    for t in range(0, steps, 10)
  ]
  np.testing.assert_allclose(sgd.minibatch_loss[:-1], batch_losses, rtol=1e-11)
  assert not np.allclose(sgd.final[0], traj.final[0])  # SGD is not GD


@pytest.mark.parametrize(
  "a,y,match",
  [
    (np.ones((D_N, D_0)), np.ones(1), r"a must be \(m, d_N, d_0\).*a\[None\]"),
    (np.ones((0, D_N, D_0)), np.ones(0), "m = 0"),
    (np.ones((5, D_N, D_0)), np.ones(4), r"y must be \(m,\) = \(5,\).*got shape \(4,\)"),
    (np.ones((5, D_N, D_0)), np.ones((5, 1)), r"y.reshape\(-1\)"),
    (np.full((5, D_N, D_0), np.nan), np.ones(5), "a has non-finite"),
    (np.ones((5, D_N, D_0)), [1.0, 2.0, np.inf, 0.0, 0.0], "y has non-finite"),
    (np.ones((5, D_N, D_0)) * 1j, np.ones(5), "a is complex"),
  ],
)
def test_matrix_sensing_bad_input(a, y, match):
  with pytest.raises(ValueError, match=match):
    lt.losses.matrix_sensing(a, y)


def test_matrix_sensing_of_the_wrong_shape_for_the_network_is_a_value_error():
  a, y, _ = _sensing()
  ws = lt.init.gaussian(jax.random.PRNGKey(0), (D_N, 2, D_N), std=0.5)
  with pytest.raises(ValueError, match=r"\(d_N, d_0\) = \(3, 4\).*dims \(4, \.\.\., 3\)"):
    lt.gradient_descent(ws, lt.losses.matrix_sensing(a, y), lr=0.1, steps=2)


def _labelled(m=30):
  """Rows whose first input is their index and whose labels are a function of it: a row found
  in either set must have its own label."""
  rng = np.random.default_rng(4)
  x = rng.normal(size=(m, 3))
  x[:, 0] = np.arange(m)
  y = np.stack([2.0 * x[:, 0] + 0.5, x[:, 1] - x[:, 0]], axis=1)
  return x, y


@pytest.mark.parametrize("labels", ["matrix", "vector"])
def test_split_is_a_keyed_partition_that_keeps_rows_with_their_labels(x64, labels):
  x, y = _labelled()
  y = y if labels == "matrix" else y[:, 0]
  key = jax.random.PRNGKey(3)
  (x_tr, y_tr), (x_te, y_te) = lt.losses.split(key, x, y, n_test=8)
  assert x_tr.shape == (22, 3) and x_te.shape == (8, 3)
  assert y_tr.shape == (22,) + y.shape[1:] and y_te.shape == (8,) + y.shape[1:]
  ids = np.concatenate([x_tr[:, 0], x_te[:, 0]]).astype(int)
  np.testing.assert_array_equal(np.sort(ids), np.arange(30))  # each row exactly once
  for xs, ys in [(x_tr, y_tr), (x_te, y_te)]:
    np.testing.assert_array_equal(xs, x[xs[:, 0].astype(int)])
    np.testing.assert_array_equal(ys, y[xs[:, 0].astype(int)])
  perm = np.asarray(jax.random.permutation(key, 30))  # the documented rule
  np.testing.assert_array_equal(x_te[:, 0], perm[:8])
  np.testing.assert_array_equal(x_tr[:, 0], perm[8:])

  again = lt.losses.split(jax.random.PRNGKey(3), x, y, n_test=8)
  for got, want in zip(jax.tree_util.tree_leaves(again), [x_tr, y_tr, x_te, y_te]):
    np.testing.assert_array_equal(got, want)
  other = lt.losses.split(jax.random.PRNGKey(4), x, y, n_test=8)[1][0]
  assert set(np.asarray(other[:, 0]).astype(int)) != set(ids[22:])


def test_split_also_splits_sensing_measurements(x64):
  a, y, _ = _sensing()
  (a_tr, y_tr), (a_te, y_te) = lt.losses.split(jax.random.key(0), a, y, n_test=3)
  assert a_tr.shape == (5, D_N, D_0) and a_te.shape == (3, D_N, D_0) and y_te.shape == (3,)
  perm = np.asarray(jax.random.permutation(jax.random.key(0), 8))
  np.testing.assert_array_equal(a_te, a[perm[:3]])
  np.testing.assert_array_equal(y_tr, y[perm[3:]])


def _regression_loss(x, y, w):
  return 0.5 * np.sum((w @ x.T - y.T) ** 2) / len(x)


def test_split_test_part_is_the_validation_loss_of_a_run(x64):
  rng = np.random.default_rng(6)
  x = rng.normal(size=(16, 4))
  y = x @ rng.normal(size=(4, 2)) + 1.0 * rng.normal(size=(16, 2))
  train, test = lt.losses.split(jax.random.PRNGKey(0), x, y, n_test=6)
  ws = lt.init.gaussian(jax.random.PRNGKey(1), (4, 5, 2), std=0.3)
  traj = lt.gradient_descent(
    ws,
    lt.losses.regression(*train),
    lr=0.05,
    steps=200,
    record_every=20,
    validation=lt.losses.regression(*test),
  )
  x_tr, y_tr = map(np.asarray, train)
  x_te, y_te = map(np.asarray, test)
  final = ref.product([np.asarray(w) for w in traj.final], 1, 2)
  assert traj.validation_loss[-1] == pytest.approx(_regression_loss(x_te, y_te, final), rel=1e-12)
  best = ref.product([np.asarray(w) for w in traj.best], 1, 2)
  best_record = int(np.flatnonzero(traj.step == traj.best_step)[0])
  assert traj.validation_loss[best_record] == pytest.approx(
    _regression_loss(x_te, y_te, best), rel=1e-12
  )
  grad = lambda w: (w @ x_tr.T - y_tr.T) @ x_tr / len(x_tr)
  iterates = ref.gradient_descent_on(ws, grad, 0.05, 200)[::20]
  expected = [_regression_loss(x_te, y_te, ref.product(v, 1, 2)) for v in iterates]
  np.testing.assert_allclose(traj.validation_loss, expected, rtol=1e-10)
  train_curve = [_regression_loss(x_tr, y_tr, ref.product(v, 1, 2)) for v in iterates]
  np.testing.assert_allclose(traj.loss, train_curve, rtol=1e-10)


def _key0():
  return jax.random.PRNGKey(0)


@pytest.mark.parametrize(
  "key,x,y,n_test,match",
  [
    (_key0, np.ones((5, 2)), np.ones(5), 0, r"from 1 to m - 1 = 4.*got 0"),
    (_key0, np.ones((5, 2)), np.ones(5), 5, r"from 1 to m - 1 = 4.*got 5"),
    (_key0, np.ones((5, 2)), np.ones(5), 0.2, r"n_test=round\(f \* m\)"),
    (_key0, np.ones((5, 2)), np.ones(5), True, "n_test must be an integer"),
    (_key0, np.ones((5, 2)), np.ones(4), 2, r"same m rows.*\(5, 2\) and \(4,\)"),
    (_key0, np.ones((1, 2)), np.ones(1), 1, "at least 2 examples"),
    (_key0, np.full((5, 2), np.nan), np.ones(5), 2, "x has non-finite"),
    (lambda: 0, np.ones((5, 2)), np.ones(5), 2, r"PRNGKey\(0\)"),
  ],
)
def test_split_bad_input(key, x, y, n_test, match):
  # ``key`` makes the key: a JAX array made at collection would start XLA's threads in the
  # process that mutation testing forks from (docs/mutation-testing.md).
  with pytest.raises(ValueError, match=match):
    lt.losses.split(key(), x, y, n_test)

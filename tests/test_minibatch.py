"""Minibatch SGD on every run function: the sampling schemes against a NumPy reference, the
minibatch loss's formula, determinism, batches equal to single runs, checkpoints, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lintraj as lt
from lintraj import _engine, minibatch
from tests import numpy_reference as ref


def _problem(m=12, d0=4, dn=2, dims=(4, 5, 2), seed=0, dtype=jnp.float64):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((m, d0))
  y = x @ rng.standard_normal((d0, dn)) + 0.1 * rng.standard_normal((m, dn))
  ws = lt.init.balanced(jax.random.PRNGKey(seed), dims, std=0.4, dtype=dtype)
  return x, y, ws


def _numpy_sgd(ws, x, y, lr, batches):
  """NumPy SGD on 1/(2b) ||W X_b^T - Y_b^T||^2, one batch of row indices per step."""
  ws = [np.array(w) for w in ws]
  losses = []
  for rows in batches:
    xb, yb = x[rows], y[rows]
    residual = ref.product(ws, 1, len(ws)) @ xb.T - yb.T
    losses.append(0.5 * np.sum(residual**2) / len(rows))
    grads = ref.layer_gradients(ws, residual @ xb / len(rows))
    ws = [w - lr * g for w, g in zip(ws, grads)]
  return ws, np.array(losses)


@pytest.mark.parametrize("scheme", ["shuffle", "shuffle_once", "sequential", "with_replacement"])
@pytest.mark.parametrize("b", [3, 5])  # 5 does not divide m = 12: batches run across epochs
def test_sgd_follows_numpy_sgd_on_the_stream_of_orders(x64, scheme, b):
  x, y, ws = _problem()
  key = jax.random.PRNGKey(7)
  steps, lr = 17, 0.05
  traj = lt.gradient_descent(
    ws,
    lt.losses.regression(x, y),
    lr=lr,
    steps=steps,
    record_every=1,
    batch_size=b,
    sampling=scheme,
    key=key,
  )
  final, batch_losses = _numpy_sgd(ws, x, y, lr, ref.minibatch_rows(scheme, key, 12, b, steps))
  for w, v in zip(traj.final, final):
    np.testing.assert_allclose(w, v, rtol=1e-12, atol=1e-13)
  np.testing.assert_allclose(traj.minibatch_loss[:-1], batch_losses, rtol=1e-12)
  assert np.isnan(traj.minibatch_loss[-1])  # the last record takes no step


def test_every_example_once_per_epoch_and_with_replacement_draws_independently():
  sampling = minibatch.Sampling(4, "shuffle", 12)
  state = minibatch.start(sampling, jax.random.PRNGKey(0))
  rows = []
  for t in range(9):
    index, state = minibatch.indices(sampling, state, t)
    rows.append(np.asarray(index))
  epochs = np.concatenate(rows).reshape(3, 12)
  for epoch in epochs:
    assert sorted(epoch) == list(range(12))
  assert not np.array_equal(epochs[0], epochs[1])  # a new order every epoch
  sampling = minibatch.Sampling(4, "with_replacement", 12)
  state = minibatch.start(sampling, jax.random.PRNGKey(0))
  draws = np.stack([minibatch.indices(sampling, state, t)[0] for t in range(200)])
  assert draws.min() == 0 and draws.max() == 11
  assert any(len(set(d)) < 4 for d in draws)  # with replacement: repeats within a batch happen


def test_full_minibatch_in_data_order_is_full_batch_gd(x64):
  x, y, ws = _problem()
  loss = lt.losses.regression(x, y)
  kwargs = dict(lr=0.05, steps=60, record_every=7)
  full = lt.gradient_descent(ws, loss, **kwargs)
  sgd = lt.gradient_descent(ws, loss, batch_size=12, sampling="sequential", **kwargs)
  np.testing.assert_allclose(sgd.loss, full.loss, rtol=1e-13)
  for a, b in zip(sgd.final, full.final):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
  assert full.minibatch_loss is None
  np.testing.assert_allclose(sgd.minibatch_loss[:-1], full.loss[:-1], rtol=1e-13)


def test_same_key_same_run_and_train_with_sgd_equals_gradient_descent(x64):
  x, y, ws = _problem()
  loss = lt.losses.regression(x, y)
  kwargs = dict(steps=40, record_every=4, batch_size=5, key=jax.random.PRNGKey(3))
  a = lt.gradient_descent(ws, loss, lr=0.05, **kwargs)
  b = lt.gradient_descent(ws, loss, lr=0.05, **kwargs)
  np.testing.assert_array_equal(a.loss, b.loss)
  other = lt.gradient_descent(ws, loss, lr=0.05, **dict(kwargs, key=jax.random.PRNGKey(4)))
  assert not np.allclose(other.loss[1:], a.loss[1:])
  trained = lt.train(ws, loss, optax.sgd(0.05), **kwargs)
  np.testing.assert_allclose(trained.loss, a.loss, rtol=1e-13)


@pytest.mark.parametrize("scheme", minibatch.SAMPLINGS)
def test_batched_sgd_lanes_equal_single_runs_with_their_keys(x64, scheme):
  x, y, _ = _problem()
  ws, lrs, _ = lt.sweep.grid("balanced", (4, 5, 2), std=[0.3, 0.5], lr=[0.02, 0.06])
  loss = lt.losses.regression(x, y)
  key = jax.random.PRNGKey(5)
  kwargs = dict(steps=30, record_every=3, batch_size=5, sampling=scheme)
  batch = lt.batch_gradient_descent(ws, loss, lr=lrs, key=key, **kwargs)
  keys = jax.random.split(key, 4)
  given = lt.batch_gradient_descent(ws, loss, lr=lrs, key=keys, **kwargs)
  np.testing.assert_array_equal(given.loss, batch.loss)
  trained = lt.batch_train(
    ws, loss, optax.sgd, hyperparams={"learning_rate": lrs}, key=key, **kwargs
  )
  for i in range(4):
    one = lt.gradient_descent(tuple(w[i] for w in ws), loss, lr=lrs[i], key=keys[i], **kwargs)
    np.testing.assert_allclose(batch.loss[i], one.loss, rtol=1e-12)
    np.testing.assert_allclose(batch.minibatch_loss[i], one.minibatch_loss, rtol=1e-12)
    np.testing.assert_allclose(trained.loss[i], one.loss, rtol=1e-12)


def test_stop_at_loss_is_checked_at_records_on_the_full_loss(x64):
  x, y, ws = _problem()
  loss = lt.losses.regression(x, y)
  kwargs = dict(lr=0.05, steps=400, batch_size=4, key=jax.random.PRNGKey(0))
  free = lt.gradient_descent(ws, loss, record_every=10, **kwargs)
  threshold = float(free.loss[20]) * 1.0001
  stopped = lt.gradient_descent(ws, loss, record_every=10, stop_at_loss=threshold, **kwargs)
  first = int(np.argmax(free.loss <= threshold))
  assert stopped.stopped_step == 10 * first  # a record's step, where the full loss first passes
  np.testing.assert_array_equal(stopped.loss[: first + 1], free.loss[: first + 1])


def test_matrix_completion_minibatches_estimate_the_loss_without_bias(x64):
  rng = np.random.default_rng(0)
  mask = rng.uniform(size=(5, 6)) < 0.5
  values = rng.standard_normal((5, 6))
  loss = lt.losses.matrix_completion(mask, values)
  w = jnp.asarray(rng.standard_normal((5, 6)))
  m = int(mask.sum())
  assert loss.n_examples == m
  np.testing.assert_allclose(loss(w), 0.5 * np.sum(mask * (np.asarray(w) - values) ** 2))
  singles = [float(loss.minibatch(jnp.array([i]))(w)) for i in range(m)]
  np.testing.assert_allclose(np.mean(singles), loss(w), rtol=1e-12)  # the mean over examples


def test_user_loss_opts_in_with_a_leading_example_axis(x64):
  def mean_abs(w, data):
    x, y, scale = data
    return scale * jnp.mean(jnp.abs(x @ w.T - y))

  x, y, ws = _problem()
  data = (jnp.asarray(x), jnp.asarray(y), jnp.asarray(2.0))
  loss = lt.losses.Loss(mean_abs, data=data, examples=(True, True, False))
  w = lt.end_to_end(ws)
  np.testing.assert_allclose(
    loss.minibatch(jnp.array([1, 4]))(w),
    2 * np.mean(np.abs(x[[1, 4]] @ np.asarray(w).T - y[[1, 4]])),
  )
  traj = lt.gradient_descent(ws, loss, lr=0.01, steps=20, batch_size=3, key=jax.random.PRNGKey(0))
  assert np.all(np.isfinite(traj.loss))
  with pytest.raises(ValueError, match="leading example axis"):
    lt.losses.Loss(mean_abs, data=(jnp.ones((3, 2)), jnp.ones((4, 1)), 1.0), examples=(1, 1, 0))


def test_tracked_sharpness_and_metrics_record_along_sgd(x64):
  x, y, ws = _problem()
  traj = lt.gradient_descent(
    ws,
    lt.losses.regression(x, y),
    lr=0.05,
    steps=20,
    record_every=5,
    batch_size=4,
    key=jax.random.PRNGKey(0),
    track=("sharpness",),
    metrics={"nuclear": lt.metrics.nuclear_norm},
  )
  hessian = jax.hessian(lambda v: lt.losses.regression(x, y)(lt.end_to_end(_unflat(v, ws))))
  top = np.linalg.eigvalsh(np.asarray(hessian(_flat(traj.final))))[-1]
  np.testing.assert_allclose(traj.sharpness[-1], top, rtol=1e-6)
  assert traj.metrics["nuclear"].shape == (5,)


def _flat(ws):
  return jnp.concatenate([jnp.ravel(w) for w in ws])


def _unflat(v, like):
  out, i = [], 0
  for w in like:
    out.append(v[i : i + w.size].reshape(w.shape))
    i += w.size
  return tuple(out)


@pytest.mark.parametrize("kind", ["single", "batch"])
def test_interrupted_sgd_resumes_bit_for_bit(tmp_path, x64, monkeypatch, kind):
  """Interrupted after a few segments (a meter raises), the checkpoint's sampler state carries
  the run on exactly as if it had not stopped."""
  x, y, _ = _problem(m=10)
  loss = lt.losses.regression(x, y)
  ws, lrs, _ = lt.sweep.grid("balanced", (4, 5, 2), std=[0.3, 0.5], lr=[0.03])
  kwargs = dict(steps=300, record_every=3, batch_size=4, key=jax.random.PRNGKey(1))
  if kind == "single":
    run = lambda **k: lt.gradient_descent(tuple(w[0] for w in ws), loss, lr=0.03, **kwargs, **k)
  else:
    run = lambda **k: lt.batch_gradient_descent(ws, loss, lr=lrs, **kwargs, **k)
  uninterrupted = run()

  class Interrupt:
    updates = 0

    def start(self, total, lanes=None, desc=""):
      pass

    def update(self, n, **counts):
      Interrupt.updates += 1
      if Interrupt.updates == 6:
        raise KeyboardInterrupt

    def close(self):
      pass

  monkeypatch.setattr(_engine, "SEGMENT_SECONDS", 1e-4)  # about a record per segment
  path = tmp_path / "sgd.npz"
  with pytest.raises(KeyboardInterrupt):
    run(progress=Interrupt(), checkpoint=path, checkpoint_every=6)
  resumed = lt.resume(path)
  assert resumed.minibatch_loss is not None
  for name, a in uninterrupted._asdict().items():
    for u, v in zip(
      jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(getattr(resumed, name))
    ):
      np.testing.assert_array_equal(u, v, err_msg=name)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(batch_size=4), "has none"),  # a target loss has no examples
    (dict(sampling="sequential"), "pass batch_size"),
    (dict(key=jax.random.PRNGKey(0)), "pass batch_size"),
  ],
)
def test_minibatches_of_a_loss_without_examples_are_refused(kwargs, match):
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 2), std=0.5)
  with pytest.raises(ValueError, match=match):
    lt.gradient_descent(ws, lt.losses.target(jnp.ones((2, 3))), lr=0.1, steps=5, **kwargs)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(batch_size=13, key=jax.random.PRNGKey(0)), "more than the loss's 12 examples"),
    (dict(batch_size=0, key=jax.random.PRNGKey(0)), "batch_size"),
    (dict(batch_size=4), "pass key="),
    (dict(batch_size=4, sampling="random", key=jax.random.PRNGKey(0)), "sampling must be"),
    (dict(batch_size=4, key=0), "key must be one PRNG key"),
  ],
)
def test_bad_minibatch_arguments(kwargs, match):
  x, y, ws = _problem(dtype=jnp.float32)
  with pytest.raises(ValueError, match=match):
    lt.gradient_descent(ws, lt.losses.regression(x, y), lr=0.1, steps=5, **kwargs)


def test_old_lanes_per_device_meaning_of_batch_size_is_caught():
  """batch_size= used to be the lanes per device of a batch; passed that way now (no key, a
  target loss) it is refused with the new name, never silently read as a minibatch size."""
  ws, lrs, _ = lt.sweep.grid("balanced", (3, 2), std=[0.5], lr=[0.1, 0.2])
  with pytest.raises(ValueError, match="lanes_per_device"):
    lt.batch_gradient_descent(ws, lt.losses.target(jnp.ones((2, 3))), lr=lrs, steps=5, batch_size=1)
  x, y, _ = _problem(d0=3, dtype=jnp.float32)
  with pytest.raises(ValueError, match="lanes_per_device"):
    lt.batch_gradient_descent(ws, lt.losses.regression(x, y), lr=lrs, steps=5, batch_size=1)
  with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
    lt.batch_gradient_descent(
      ws,
      lt.losses.regression(x, y),
      lr=lrs,
      steps=5,
      batch_size=2,
      key=jnp.zeros((3, 2), jnp.uint32),
    )


def test_saved_sgd_trajectory_loads_back_exactly(x64, tmp_path):
  """lt.save / lt.load keep the minibatch_loss record, bit for bit."""
  x, y, ws = _problem()
  traj = lt.gradient_descent(
    ws, lt.losses.regression(x, y), lr=0.05, steps=9, record_every=3, batch_size=5,
    key=jax.random.PRNGKey(0),
  )  # fmt: skip
  lt.save(tmp_path / "sgd.npz", traj, batch_size=5)
  loaded, meta = lt.load(tmp_path / "sgd.npz")
  np.testing.assert_array_equal(loaded.minibatch_loss, traj.minibatch_loss)
  assert meta["batch_size"] == 5

"""Sharpness tracked along runs (``track=("sharpness",)``) against jax.hessian and linear stability.

A run's last record is of ``.final``, so chaining runs of ``t`` steps gives the exact weights
behind every ``t``-th step of a longer run with the same arguments.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import lintraj as lt
from lintraj import singular_values

PHI = [[2.0, 0.5, -1.0]]


def _dense_sharpness(weights, phi):
  """Top eigenvalue of jax.hessian of 1/2 ||W_N..W_1 - phi||_F^2 in the flat weights (numpy
  eigvalsh)."""
  flat, unravel = ravel_pytree(tuple(weights))

  def loss(theta):
    product = unravel(theta)[0]
    for w in unravel(theta)[1:]:
      product = w @ product
    return 0.5 * jnp.sum((product - jnp.asarray(phi)) ** 2)

  return float(np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(flat)))[-1])


def _weights(dtype=None):
  return lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 4, 1), std=0.2, dtype=dtype)


def test_sharpness_matches_the_dense_hessian_at_every_tracked_record(x64):
  weights, loss = _weights(jnp.float64), lt.losses.target(jnp.asarray(PHI))
  traj = lt.gradient_descent(
    weights, loss, lr=0.05, steps=120, record_every=10, track=("sharpness",), track_every=3
  )
  tracked = np.arange(len(traj.step)) % 3 == 0
  assert np.all(np.isnan(traj.sharpness[~tracked]))
  ws = weights
  for index in np.flatnonzero(tracked):
    expected = _dense_sharpness(ws, PHI)
    assert abs(float(traj.sharpness[index]) - expected) <= 1e-11 * expected, (index, expected)
    ws = lt.gradient_descent(
      ws, loss, lr=0.05, steps=30, record_every=30
    ).final  # the next tracked step
  # Tracking adds a field and changes no other record.
  plain = lt.gradient_descent(weights, loss, lr=0.05, steps=120, record_every=10)
  assert plain.sharpness is None
  np.testing.assert_array_equal(plain.loss, traj.loss)
  np.testing.assert_array_equal(plain.end_to_end_singular_values, traj.end_to_end_singular_values)


def _scalar_chain(lr_fraction, depth=3, phi=2.0, steps=3000):
  """GD on the scalar chain w_N..w_1 -> phi from a balanced start, lr as a fraction of 2 / S_min,
  where S_min = N phi^(2 - 2/N) is the least sharpness of any global minimum (the balanced one)."""
  flattest = depth * phi ** (2 - 2 / depth)
  lr = lr_fraction * 2 / flattest
  weights = tuple(jnp.full((1, 1), 0.8, jnp.float64) for _ in range(depth))
  traj = lt.gradient_descent(
    weights,
    lt.losses.target(jnp.full((1, 1), phi, jnp.float64)),
    lr=lr,
    steps=steps,
    record_every=100,
    track=("sharpness",),
  )
  return traj, lr, flattest


def test_gd_settles_only_where_sharpness_is_below_two_over_lr(x64):
  """Linear stability: GD converges only to minima with lambda_max <= 2/lr. Every global minimum
  of the scalar chain is at least as sharp as S_min = N phi^(2-2/N) (derived: the Hessian there is
  J J^T with ||J||^2 = sum_i phi^2 / w_i^2, least when all |w_i| are equal), so GD with
  lr < 2/S_min converges, at sharpness S_min < 2/lr, and with lr > 2/S_min it cannot converge."""
  traj, lr, flattest = _scalar_chain(0.9)
  assert traj.loss[-1] < 1e-20
  assert abs(float(traj.sharpness[-1]) - flattest) <= 1e-9 * flattest
  assert float(traj.sharpness[-1]) < 2 / lr
  unstable, lr, _ = _scalar_chain(1.1)
  assert unstable.diverged_step is not None or np.nanmin(unstable.loss[-5:]) > 1e-6


def test_batched_and_train_track_the_same_sharpness(x64):
  weights, loss = _weights(jnp.float64), lt.losses.target(jnp.asarray(PHI))
  single = lt.gradient_descent(
    weights, loss, lr=0.05, steps=60, record_every=10, track=("sharpness",), track_every=2
  )
  batch = lt.batch_gradient_descent(
    tuple(jnp.stack([w, w]) for w in weights),
    loss,
    lr=[0.1, 0.05],
    steps=60,
    record_every=10,
    track="sharpness",
    track_every=2,
  )
  assert batch.sharpness.shape == (2, 7)
  np.testing.assert_allclose(lt.sweep.lane(batch, 1).sharpness, single.sharpness, rtol=1e-12)
  trained = lt.train(
    weights, loss, optax.sgd(0.05), steps=60, record_every=10, track=("sharpness",), track_every=2
  )
  np.testing.assert_allclose(trained.sharpness, single.sharpness, rtol=1e-12)


def test_float32_sharpness_is_close_to_float64():
  weights, loss = _weights(), lt.losses.target(jnp.asarray(PHI))
  traj = lt.gradient_descent(
    weights, loss, lr=0.05, steps=40, record_every=20, track=("sharpness",)
  )
  assert traj.sharpness.dtype == np.float32
  with jax.enable_x64(True):
    ws = lt.gradient_descent(
      tuple(jnp.asarray(w, jnp.float64) for w in weights), loss, lr=0.05, steps=40, record_every=40
    ).final
    expected = _dense_sharpness(ws, PHI)
  assert abs(float(traj.sharpness[-1]) - expected) <= 1e-4 * expected


def test_a_diverging_run_keeps_its_earlier_sharpness():
  weights, loss = _weights(), lt.losses.target(jnp.asarray(PHI))
  traj = lt.gradient_descent(weights, loss, lr=3.0, steps=60, record_every=1, track=("sharpness",))
  assert traj.diverged_step is not None
  assert np.all(np.isfinite(traj.sharpness[: traj.diverged_step]))
  assert np.all(np.isnan(traj.sharpness[traj.diverged_step :]))


def test_saved_and_resumed_runs_keep_the_sharpness(tmp_path):
  weights, loss = _weights(), lt.losses.target(jnp.asarray(PHI))
  path = tmp_path / "ckpt.npz"
  traj = lt.gradient_descent(
    weights,
    loss,
    lr=0.05,
    steps=40,
    record_every=5,
    track=("sharpness",),
    track_every=2,
    checkpoint=path,
    checkpoint_every=10,
  )
  np.testing.assert_array_equal(lt.resume(path).sharpness, traj.sharpness)
  loaded, _ = lt.load(lt.save(tmp_path / "run.npz", traj))
  np.testing.assert_array_equal(loaded.sharpness, traj.sharpness)
  plain, _ = lt.load(
    lt.save(tmp_path / "plain.npz", lt.gradient_descent(weights, loss, lr=0.05, steps=5))
  )
  assert plain.sharpness is None


def test_exact_singular_values_equal_batched(x64):
  weights, loss = _weights(jnp.float64), lt.losses.target(jnp.asarray(PHI))
  runs = [
    lt.gradient_descent(weights, loss, lr=0.05, steps=30, record_every=10, singular_values=method)
    for method in singular_values.METHODS
  ]
  for a, b in zip(runs[0].layer_singular_values, runs[1].layer_singular_values):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)


@pytest.mark.parametrize(
  "kwargs, needle",
  [
    (dict(track=("hessian",)), "'hessian'"),
    (dict(track=3), "track must be a tuple"),
    (dict(track=("sharpness",), track_every=0), "track_every"),
    (dict(singular_values="svd"), "singular-value method"),
  ],
)
def test_bad_tracking_raises_before_tracing(kwargs, needle, compiles):
  weights, loss = _weights(), lt.losses.target(jnp.asarray(PHI))
  compiled = compiles("_segment")
  for run in (
    lambda: lt.gradient_descent(weights, loss, lr=0.1, steps=5, **kwargs),
    lambda: lt.train(weights, loss, optax.sgd(0.1), steps=5, **kwargs),
  ):
    with pytest.raises(ValueError, match=needle):
      run()
  assert compiles("_segment") == compiled


def test_runs_hold_lapack_to_one_thread_and_restore_it():
  controls = singular_values._lapack_thread_controls()
  if controls is None:
    pytest.skip("no scipy OpenBLAS loaded on this platform")
  get, _ = controls
  before, seen = get(), []
  phi = jnp.asarray(PHI, jnp.float32)

  def spied_loss(w):  # reads the thread count on the host while the compiled loop runs
    jax.debug.callback(lambda: seen.append(get()))
    return 0.5 * jnp.sum((w - phi) ** 2)

  lt.gradient_descent(_weights(), spied_loss, lr=0.05, steps=10)
  assert seen and set(seen) == {1}
  assert get() == before


def test_plot_sharpness_needs_a_tracked_single_run():
  pytest.importorskip("matplotlib")
  from lintraj import plotting

  weights, loss = _weights(), lt.losses.target(jnp.asarray(PHI))
  with pytest.raises(ValueError, match="track=\\('sharpness',\\)"):
    plotting.plot_sharpness(lt.gradient_descent(weights, loss, lr=0.05, steps=5), lr=0.05)
  traj = lt.gradient_descent(
    weights, loss, lr=0.05, steps=20, record_every=2, track=("sharpness",), track_every=5
  )
  ax = plotting.plot_sharpness(traj, lr=0.05)
  x, y = ax.lines[0].get_data()
  np.testing.assert_array_equal(x, traj.step[::5])  # only the records where it was computed
  np.testing.assert_array_equal(y, traj.sharpness[::5])
  assert ax.lines[1].get_ydata()[0] == pytest.approx(2 / 0.05)


def test_lapack_hold_nests_and_restores_across_threads():
  controls = singular_values._lapack_thread_controls()
  if controls is None:
    pytest.skip("no scipy OpenBLAS loaded on this platform")
  import threading

  get, _ = controls
  before = get()
  inside, outer_done, seen = threading.Event(), threading.Event(), []

  def other():
    with singular_values.lapack_single_thread():
      inside.set()
      outer_done.wait(10)  # still holding after the main thread's block ended
      seen.append(get())

  worker = threading.Thread(target=other)
  with singular_values.lapack_single_thread():
    worker.start()
    inside.wait(10)
    with singular_values.lapack_single_thread():
      assert get() == 1
    assert get() == 1
  assert get() == 1  # the other thread still holds it
  outer_done.set()
  worker.join(10)
  assert seen == [1] and get() == before


def test_min_hessian_eigenvalue_sees_the_saddle_and_then_the_minimum(x64):
  """Depth 2 from next to the origin, a strict saddle whose Hessian eigenvalues are -+ sigma_i(Phi)
  (docs/theory.md, "Landscape facts"): the bottom eigenvalue starts near -sigma_max = -3 and ends at
  >= 0 (a global minimum); the top one ends at N sigma_max^(2-2/N) = 6 (balanced minimum, from a
  small start). Both match the dense Hessian at every tracked record."""
  phi = jnp.diag(jnp.array([3.0, 1.0]))
  keys = jax.random.split(jax.random.PRNGKey(3), 2)
  weights = tuple(1e-3 * jax.random.normal(key, (2, 2), jnp.float64) for key in keys)
  loss = lt.losses.target(phi)
  traj = lt.gradient_descent(
    weights,
    loss,
    lr=0.05,
    steps=600,
    record_every=20,
    track=("min_hessian_eigenvalue", "sharpness"),
    track_every=5,
  )
  assert abs(float(traj.min_hessian_eigenvalue[0]) + 3.0) < 1e-2
  assert float(traj.min_hessian_eigenvalue[-1]) > -1e-8 and traj.loss[-1] < 1e-20
  assert abs(float(traj.sharpness[-1]) - 6.0) < 1e-4
  ws = weights
  for index in range(0, len(traj.step), 5):
    flat, unravel = ravel_pytree(ws)
    h = np.asarray(jax.hessian(lambda x: loss(lt.end_to_end(unravel(x))))(flat))
    spectrum = np.linalg.eigvalsh(h)
    assert abs(float(traj.min_hessian_eigenvalue[index]) - spectrum[0]) <= 1e-11 * spectrum[-1], (
      index
    )
    assert abs(float(traj.sharpness[index]) - spectrum[-1]) <= 1e-11 * spectrum[-1], index
    ws = lt.gradient_descent(ws, loss, lr=0.05, steps=100, record_every=100).final
  assert np.all(np.isnan(traj.min_hessian_eigenvalue[1::5]))


def test_an_early_stop_keeps_the_tracking_pattern(x64):
  """Once a run stops, its later records repeat the frozen point: tracked metrics at their own
  records (the sharpness of the final weights), NaN between, as in a run that never stopped."""
  weights, loss = _weights(jnp.float64), lt.losses.target(jnp.asarray(PHI))
  traj = lt.gradient_descent(
    weights,
    loss,
    lr=0.05,
    steps=400,
    record_every=2,
    stop_at_loss=1e-3,
    track=("sharpness",),
    track_every=4,
  )
  assert traj.stopped_step is not None and traj.stopped_step < 300
  tracked = np.arange(len(traj.step)) % 4 == 0
  assert np.all(np.isfinite(traj.sharpness[tracked])) and np.all(np.isnan(traj.sharpness[~tracked]))
  after = tracked & (traj.step > traj.stopped_step + 8)
  np.testing.assert_array_equal(traj.sharpness[after], traj.sharpness[after][0])
  assert abs(float(traj.sharpness[after][0]) - _dense_sharpness(traj.final, PHI)) <= 1e-11 * float(
    traj.sharpness[after][0]
  )

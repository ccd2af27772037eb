"""The same features on every run function: user metrics, early stopping, checkpoints and resume
for gradient_descent, train, batch_gradient_descent, batch_train (and metrics and tracking for
gradient_flow), each checked against an independent computation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lintraj as lt
from tests import numpy_reference as ref


def _problem(dims=(3, 4, 2), seed=0, std=0.4, dtype=None):
  ws = lt.init.balanced(jax.random.PRNGKey(seed), dims, std=std, dtype=dtype)
  phi = np.random.default_rng(seed).normal(size=(dims[-1], dims[0]))
  return ws, lt.losses.target(jnp.asarray(phi / np.linalg.norm(phi), ws[0].dtype))


def _frobenius(weights):
  return jnp.sqrt(jnp.sum(lt.end_to_end(weights) ** 2))


METRICS = {"w01": lt.metrics.entry(0, 1), "nuclear": lt.metrics.nuclear_norm, "fro": _frobenius}


def _numpy_gd_metrics(ws, phi, lr, steps, record_every):
  """The three metrics at every record of a NumPy gradient descent (float64)."""
  ws = [np.array(w, np.float64) for w in ws]
  out = {name: [] for name in METRICS}
  for t in range(steps + 1):
    w = ref.product(ws, 1, len(ws))
    if t % record_every == 0:
      out["w01"].append(w[0, 1])
      out["nuclear"].append(np.linalg.svd(w, compute_uv=False).sum())
      out["fro"].append(np.linalg.norm(w))
    grads = ref.layer_gradients(ws, w - phi)
    ws = [w_ - lr * g for w_, g in zip(ws, grads)]
  return {k: np.asarray(v) for k, v in out.items()}


def test_user_metrics_of_gradient_descent_match_numpy(x64):
  ws, loss = _problem()
  traj = lt.gradient_descent(ws, loss, lr=0.2, steps=60, record_every=6, metrics=METRICS)
  want = _numpy_gd_metrics(ws, np.asarray(loss.target), 0.2, 60, 6)
  assert sorted(traj.metrics) == sorted(METRICS)
  for name in METRICS:
    assert traj.metrics[name].shape == (11,)
    np.testing.assert_allclose(traj.metrics[name], want[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_every_run_function_records_the_same_metrics(x64, tmp_path):
  ws, loss = _problem()
  kwargs = dict(steps=40, record_every=5, metrics=METRICS)
  gd = lt.gradient_descent(ws, loss, lr=0.2, **kwargs)
  sgd = lt.train(ws, loss, optax.sgd(0.2), **kwargs)
  batch_ws = tuple(jnp.stack([w, w]) for w in ws)
  batch = lt.batch_gradient_descent(batch_ws, loss, lr=[0.2, 0.1], **kwargs)
  batch_sgd = lt.batch_train(
    batch_ws, loss, optax.sgd, hyperparams={"learning_rate": [0.2, 0.1]}, **kwargs
  )
  single_01 = lt.gradient_descent(ws, loss, lr=0.1, **kwargs)
  for name in METRICS:
    np.testing.assert_allclose(sgd.metrics[name], gd.metrics[name], rtol=1e-12, atol=1e-14)
    assert batch.metrics[name].shape == (2, 9)
    np.testing.assert_array_equal(batch.metrics[name][0], gd.metrics[name])
    np.testing.assert_allclose(batch.metrics[name][1], single_01.metrics[name], rtol=1e-12)
    np.testing.assert_allclose(batch_sgd.metrics[name], batch.metrics[name], rtol=1e-12, atol=1e-14)
  np.testing.assert_array_equal(lt.sweep.lane(batch, 1).metrics["w01"], batch.metrics["w01"][1])
  loaded, _ = lt.load(lt.save(tmp_path / "m.npz", batch))
  for name in METRICS:
    np.testing.assert_array_equal(loaded.metrics[name], batch.metrics[name])
  flow = lt.gradient_flow(ws, loss, time=4.0, n_records=9, metrics=METRICS, rtol=1e-11, atol=1e-13)
  np.testing.assert_allclose(
    flow.metrics["fro"],
    np.linalg.norm(np.asarray(flow.end_to_end_singular_values), axis=1),
    rtol=1e-10,
  )  # sigma's, another path


def test_bad_metrics_are_refused_before_tracing():
  ws, loss = _problem()
  run = lambda metrics: lt.gradient_descent(ws, loss, lr=0.1, steps=2, metrics=metrics)
  with pytest.raises(ValueError, match="must be a dict"):
    run([lt.metrics.nuclear_norm])
  with pytest.raises(ValueError, match="identifiers"):
    run({"a/b": lt.metrics.nuclear_norm})
  with pytest.raises(ValueError, match="function of the weights"):
    run({"x": 3.0})
  with pytest.raises(ValueError, match=r"metrics\['bad'\] failed"):
    run({"bad": lambda ws: ws[0] @ ws[0]})  # shapes (4, 3) @ (4, 3)
  with pytest.raises(ValueError, match="one real array"):
    run({"pair": lambda ws: (ws[0], ws[1])})


def test_train_stops_at_loss_like_gradient_descent():
  ws, loss = _problem()
  gd = lt.gradient_descent(ws, loss, lr=0.2, steps=400, stop_at_loss=1e-4)
  tr = lt.train(ws, loss, optax.sgd(0.2), steps=400, stop_at_loss=1e-4)
  assert gd.stopped_step is not None and tr.stopped_step == gd.stopped_step
  bt = lt.batch_train(
    tuple(jnp.stack([w] * 2) for w in ws),
    loss,
    optax.sgd,
    hyperparams={"learning_rate": [0.2, 0.4]},
    steps=400,
    stop_at_loss=1e-4,
  )
  assert bt.stopped_step[0] == gd.stopped_step and bt.stopped_step[1] < gd.stopped_step


def test_batch_train_lanes_equal_train_with_their_hyperparameters(x64):
  ws, lrs, _ = lt.sweep.grid("balanced", (3, 4, 2), std=[0.4], lr=[0.003, 0.01, 0.03])
  _, loss = _problem()
  traj = lt.batch_train(
    ws,
    loss,
    optax.adam,
    hyperparams={"learning_rate": lrs, "b1": 0.8},
    steps=150,
    record_every=10,
    stop_at_loss=1e-3,
  )
  for b, lr in enumerate(lrs):
    one = lt.train(
      tuple(w[b] for w in ws),
      loss,
      optax.adam(float(lr), b1=0.8),
      steps=150,
      record_every=10,
      stop_at_loss=1e-3,
    )
    np.testing.assert_allclose(traj.loss[b], one.loss, rtol=1e-10, atol=1e-14)
    assert (traj.stopped_step[b] if traj.stopped_step[b] >= 0 else None) == one.stopped_step
  assert (traj.stopped_step >= 0).any()


def test_batch_train_arguments_are_checked():
  ws, lrs, _ = lt.sweep.grid("balanced", (3, 4, 2), std=[0.4], lr=[0.01, 0.03])
  _, loss = _problem()
  run = lambda opt, hp: lt.batch_train(ws, loss, opt, hyperparams=hp, steps=2)
  with pytest.raises(ValueError, match="a function of them"):
    run(optax.adam(1e-2), {"learning_rate": lrs})
  with pytest.raises(ValueError, match="without hyperparams"):
    run(optax.adam, None)
  with pytest.raises(ValueError, match="one per lane"):
    run(optax.adam, {"learning_rate": [0.1, 0.2, 0.3]})
  with pytest.raises(ValueError, match="keyword arguments"):
    run(optax.adam, {"lr": lrs})


@pytest.mark.parametrize("kind", ["train", "batch_train"])
def test_optax_checkpoints_resume_bit_for_bit(kind, tmp_path, x64):
  ws, loss = _problem()
  path = tmp_path / f"{kind}.npz"
  kwargs = dict(steps=30, record_every=3, stop_at_loss=1e-4, metrics={"fro": _frobenius})
  if kind == "train":
    optimizer = optax.adam(1e-2)
    run = lambda **k: lt.train(ws, loss, optimizer, **k)
  else:
    optimizer = optax.adam
    batch_ws = tuple(jnp.stack([w] * 3) for w in ws)
    run = lambda **k: lt.batch_train(
      batch_ws,
      loss,
      optax.adam,
      lanes_per_device=1,
      hyperparams={"learning_rate": [1e-3, 1e-2, 3e-2]},
      **k,
    )
  full = run(**kwargs, checkpoint=path, checkpoint_every=7)
  with pytest.raises(ValueError, match="optimizer"):
    lt.resume(path)
  resumed = lt.resume(path, optimizer=optimizer)
  for a, b in zip(
    jax.tree_util.tree_leaves(full._asdict()),
    jax.tree_util.tree_leaves(resumed._asdict()),
    strict=True,
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_takes_metrics_that_cannot_be_imported(tmp_path):
  ws, loss = _problem()
  path = tmp_path / "m.npz"
  traj = lt.gradient_descent(
    ws,
    loss,
    lr=0.1,
    steps=12,
    checkpoint=path,
    checkpoint_every=5,
    metrics={"nuclear": lt.metrics.nuclear_norm, "w01": lt.metrics.entry(0, 1)},
  )
  with pytest.raises(ValueError, match="metrics=.*'w01'"):
    lt.resume(path)
  again = lt.resume(path, metrics={"w01": lt.metrics.entry(0, 1)})
  np.testing.assert_array_equal(again.metrics["w01"], traj.metrics["w01"])


def test_gradient_flow_tracks_the_sharpness(x64):
  ws, loss = _problem((2, 3, 2), std=0.6)
  traj = lt.gradient_flow(
    ws, loss, time=3.0, n_records=4, track=("sharpness",), rtol=1e-11, atol=1e-13
  )
  flat, unravel = jax.flatten_util.ravel_pytree(tuple(jnp.asarray(w) for w in traj.final))
  hessian = jax.hessian(lambda v: loss(lt.end_to_end(unravel(v))))(flat)
  np.testing.assert_allclose(
    traj.sharpness[-1], np.linalg.eigvalsh(np.asarray(hessian)).max(), rtol=1e-8
  )
  assert np.all(np.isfinite(traj.sharpness))


def test_run_functions_refuse_to_be_traced():
  ws, loss = _problem()
  with pytest.raises(ValueError, match="cannot be traced.*batch_gradient_descent"):
    jax.jit(lambda lr: lt.gradient_descent(ws, loss, lr=lr, steps=3).loss)(0.1)
  with pytest.raises(ValueError, match="cannot be traced"):
    jax.vmap(lambda w: lt.train((w, ws[1]), loss, optax.sgd(0.1), steps=3).loss)(
      jnp.stack([ws[0]] * 2)
    )


def test_trajectory_repr_is_short():
  ws, loss = _problem((64, 64, 1))
  traj = lt.gradient_descent(
    ws, lt.losses.target(jnp.ones((1, 64)) / 8), lr=0.1, steps=20, stop_at_loss=0.3
  )
  text = repr(traj)
  assert len(text) < 400 and "final loss" in text and "stopped_step" in text and "64x64" in text


def test_deprecated_paths_warn_and_work(tmp_path, monkeypatch):
  import importlib
  import sys

  monkeypatch.delitem(sys.modules, "lintraj.trajectory", raising=False)
  with pytest.warns(DeprecationWarning, match="lintraj.recording"):
    old = importlib.import_module("lintraj.trajectory")
  assert old.Trajectory is lt.Trajectory
  monkeypatch.delitem(sys.modules, "lintraj.landscape_studies", raising=False)
  with pytest.warns(DeprecationWarning, match="lintraj.reproductions.landscape_studies"):
    studies = importlib.import_module("lintraj.landscape_studies")
  from lintraj.reproductions import landscape_studies

  assert studies.run_saddles is landscape_studies.run_saddles
  ws, loss = _problem()
  path = tmp_path / "c.npz"
  traj = lt.gradient_descent(ws, loss, lr=0.1, steps=6, checkpoint=path, checkpoint_every=3)
  with pytest.warns(DeprecationWarning, match="lintraj.resume"):
    again = lt.io.resume(path)
  np.testing.assert_array_equal(again.loss, traj.loss)

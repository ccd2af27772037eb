"""The same features on every run function: user metrics, early stopping, checkpoints and resume
for gradient_descent, train, batch_gradient_descent, batch_train (and metrics and tracking for
gradient_flow), each checked against an independent computation."""

import types

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


_FIELDS = (
  "fields loss, balancedness, deficiency_margin, grad_norm, layer_singular_values, "
  "end_to_end_singular_values"
)


def _hand_trajectory(step, loss, **extra):
  """A Trajectory of NumPy arrays written by hand (the repr reads shapes, steps and losses)."""
  none = dict(balancedness=None, deficiency_margin=None, grad_norm=None)
  return lt.Trajectory(
    step=np.asarray(step),
    loss=np.asarray(loss),
    **none,
    layer_singular_values=(),
    end_to_end_singular_values=None,
    final=(np.ones((3, 2)), np.ones((1, 3))),
    **extra,
  )


def test_trajectory_repr_of_every_kind_of_run():
  """The repr of a single, a batched, a continuous-time and an empty trajectory, written out."""
  single = _hand_trajectory(np.array([0, 5, 10], np.int32), [1.0, 0.5, 0.25], stopped_step=10)
  assert repr(single) == (
    f"Trajectory(steps 10; records 3; final loss 0.25; stopped_step 10; {_FIELDS}; "
    "final weights 3x2, 1x3)"
  )
  flow = _hand_trajectory(
    [0.0, 1.5, 2.5],
    [3.0, 2.0, 1.23456789],
    diverged_step=7,
    sharpness=np.ones(3),
    min_hessian_eigenvalue=np.ones(3),
    validation_loss=np.ones(3),
    minibatch_loss=np.ones(3),
    metrics={"fro": np.ones(3), "w01": np.ones(3)},
    best_step=1,
  )
  assert repr(flow) == (
    f"Trajectory(time 2.5; records 3; final loss 1.235; diverged_step 7; {_FIELDS}, sharpness, "
    "min_hessian_eigenvalue, validation_loss, minibatch_loss; metrics fro, w01; best_step 1; "
    "final weights 3x2, 1x3)"
  )
  batch = _hand_trajectory(
    np.tile(np.arange(4, dtype=np.int32) * 3, (2, 1)),
    [[4.0, 3.0, 2.0, 0.25], [4.0, 3.0, 2.0, 0.75]],
    diverged_step=np.array([-1, 2]),
    stopped_step=np.array([0, -1]),  # stopped at step 0 counts
    validation_loss=np.ones((2, 4)),
    best_step=np.array([3, 6]),  # one per lane: not printed
  )
  assert repr(batch) == (
    "Trajectory(steps 9; records 2x4; final loss 0.25..0.75; diverged_step 1/2 lanes; "
    f"stopped_step 1/2 lanes; {_FIELDS}, validation_loss; final weights 3x2, 1x3)"
  )
  lost = _hand_trajectory(np.zeros((2, 2), np.int32), [[1.0, np.nan], [2.0, np.nan]])
  assert "; final loss nan; " in repr(lost)
  empty = _hand_trajectory(np.zeros((0,), np.int32), np.zeros((0,)))
  assert repr(empty) == f"Trajectory(steps 0; records 0; {_FIELDS}; final weights 3x2, 1x3)"


def test_recorder_normalizes_and_refuses_with_the_fix():
  rec = lt.recording.recorder
  assert rec() == lt.recording.Recorder("batched", (), ())
  assert rec("min_hessian_eigenvalue").track == ("min_hessian_eigenvalue",)  # one name
  both = rec(["min_hessian_eigenvalue", "sharpness"], "exact")
  assert both.track == ("sharpness", "min_hessian_eigenvalue") and both.singular_values == "exact"
  fns = {"b": _frobenius, "a": lt.metrics.nuclear_norm}
  assert rec(metrics=fns).metrics == (("b", _frobenius), ("a", lt.metrics.nuclear_norm))
  with pytest.raises(ValueError, match=r"track must be a tuple .*track=\('sharpness',\); got 3\."):
    rec(3)
  with pytest.raises(
    ValueError,
    match=r"besides the default ones \(loss, .*end_to_end_singular_values\); \['sharp'\] is not "
    r"among \('sharpness', 'min_hessian_eigenvalue'\)\. Use e\.g\. track=\('sharpness',\), or "
    r"metrics=\{'name': function\}",
  ):
    rec(("sharpness", "sharp"))
  with pytest.raises(
    ValueError,
    match=r"^metrics must be a dict name -> function\(weights\) -> array, e\.g\. "
    r"metrics=\{'nuclear_norm': lt\.metrics\.nuclear_norm\}; got ",
  ):
    rec(metrics=[_frobenius])
  with pytest.raises(ValueError, match=r"got list\."):
    rec(metrics=[_frobenius])
  for name in ("a b", 1):
    with pytest.raises(
      ValueError, match=rf"metric names must be Python identifiers .*got {name!r}"
    ):
      rec(metrics={name: _frobenius})
  with pytest.raises(
    ValueError, match=r"metrics\['x'\] must be a function of the weights tuple; got"
  ):
    rec(metrics={"x": 3.0})
  with pytest.raises(ValueError, match=r"got float\."):
    rec(metrics={"x": 3.0})
  with pytest.raises(ValueError, match="batched"):
    rec(singular_values="gram")


def test_check_metrics_names_the_metric_and_the_shapes():
  ws = (jnp.ones((4, 3)), jnp.ones((2, 4)))
  check = lambda metrics: lt.recording.check_metrics(lt.recording.recorder(metrics=metrics), ws)
  check({"fro": _frobenius, "first": lambda w: w[0]})  # fine: returns None
  with pytest.raises(
    ValueError,
    match=r"metrics\['bad'\] failed on the weights \(shapes \[\(4, 3\), \(2, 4\)\]\): TypeError: ",
  ):
    check({"fro": _frobenius, "bad": lambda w: w[0] @ w[0]})
  with pytest.raises(
    ValueError,
    match=r"A metric is a jittable function of the weights tuple \(W_1, \.\.\., W_N\)\.$",
  ):
    check({"bad": lambda w: w[0] @ w[0]})
  with pytest.raises(ValueError, match=r"metrics\['pair'\] must return one real array .*got \("):
    check({"pair": lambda w: (w[0], w[1])})
  with pytest.raises(ValueError, match=r"metrics\['z'\] must return one real array"):
    check({"z": lambda w: w[0] * 1j})


def test_record_bytes_counts_every_recorded_field():
  """(2, 3, 1): 4 scalars and 2 + 1 + 1 singular values per record; 2 tracked extremes, user
  metrics of 4 + 1 values and a validation loss add 8 values; float32 (4 bytes) or float64."""
  rec = lt.recording
  both = ("sharpness", "min_hessian_eigenvalue")
  extra = rec.recorder(
    both,
    metrics={"block": lambda w: w[0][:2, :2], "positive": lambda w: jnp.sum(w[0] > 0)},
  )
  for dtype, size in ((jnp.float32, 4), (jnp.float64, 8)):
    with jax.enable_x64(dtype == jnp.float64):
      ws = (jnp.ones((3, 2), dtype), jnp.ones((1, 3), dtype))
      loss, held_out = (
        lt.losses.target(jnp.ones((1, 2), dtype)),
        lt.losses.target(jnp.zeros((1, 2), dtype)),
      )
      for steps, records in ((10, 3), (14, 3), (15, 4), (0, 1)):
        sched = rec.Schedule(steps, 5)
        assert rec.record_bytes(ws, loss, sched) == records * 8 * size
        assert rec.record_bytes(ws, loss, sched, extra, held_out) == records * 16 * size
      assert rec.spec(2.5) == ((), np.dtype(dtype))
      assert rec.spec(3) == ((), np.dtype(np.int64 if dtype == jnp.float64 else np.int32))
      assert rec.spec(np.ones((2, 3))) == ((2, 3), np.dtype(dtype))
      assert rec.spec(jnp.ones(4, jnp.int32)) == ((4,), np.dtype(np.int32))
  with jax.enable_x64(True):  # float32 weights with x64 enabled: float32 records
    # (new shapes: record_shapes caches by shapes and dtypes, not by the x64 flag)
    ws32 = (jnp.ones((4, 2), jnp.float32), jnp.ones((1, 4), jnp.float32))
    loss32 = lt.losses.target(jnp.ones((1, 2), jnp.float32))
    extra32 = rec.recorder(both, metrics={"block": lambda w: w[0][:2, :2]})
    assert rec.record_bytes(ws32, loss32, rec.Schedule(10, 5), extra32, loss32) == 3 * 15 * 4
    no_target = lt.losses.Loss(lambda w: jnp.sum(w**2))  # NaN margins, float32 too
    assert rec.record_bytes(ws32, no_target, rec.Schedule(10, 5)) == 3 * 8 * 4


def test_check_memory_refuses_records_that_do_not_fit(monkeypatch):
  """96 bytes per network (3 records of 32, see the test above); the limit is fraction x free."""
  rec = lt.recording
  ws = (jnp.ones((3, 2)), jnp.ones((1, 3)))
  loss, sched = lt.losses.target(jnp.ones((1, 2))), rec.Schedule(10, 5)
  free = {}
  monkeypatch.setattr(lt._runtime, "available_bytes", lambda d: (free[d.platform], d.platform))
  cpu = jax.devices("cpu")[0]
  check = lambda **k: rec.check_memory(ws, loss, sched, **k)

  free["cpu"] = 600  # 96 x (2 + 3) = 480 = 0.8 x 600
  check(device_lanes=2, host_lanes=3)
  free["cpu"] = 599
  with pytest.raises(
    ValueError,
    match=r"^the records would take 4\.47e-07 GiB \(3 records x 32 bytes per network\) but only "
    r"5\.58e-07 GiB of cpu is free\. ",
  ):
    check(device_lanes=2, host_lanes=3)
  with pytest.raises(ValueError, match=r"larger record_every.* lanes_per_device="):
    check(device_lanes=2, host_lanes=3, devices=[cpu])
  check(device_lanes=2, host_lanes=3, fraction=0.9)
  free["cpu"] = 600
  check(device_lanes=5)  # 480 again
  check(host_lanes=4)  # one device lane by default: 96 x (1 + 4)
  with pytest.raises(ValueError, match="records would take"):
    check(host_lanes=5)
  with pytest.raises(ValueError, match=r"\(3 records x 36 bytes per network\)"):  # + validation
    rec.check_memory(ws, loss, sched, rec.Recorder(), loss, device_lanes=5)
  with monkeypatch.context() as m:  # two devices visible: the default is the first one only
    m.setattr(jax, "devices", lambda *backend: [cpu, cpu])
    check(device_lanes=5)
  with pytest.raises(ValueError, match="records would take"):
    check(device_lanes=3, host_lanes=3)
  free["cpu"] = 840  # two of this process's devices: 96 x (2 x 2 + 3) = 672 = 0.8 x 840
  check(device_lanes=2, host_lanes=3, devices=[cpu, cpu])
  free["cpu"] = 839
  with pytest.raises(ValueError, match="records would take"):
    check(device_lanes=2, host_lanes=3, devices=[cpu, cpu])
  free["cpu"] = None  # unknown: no check
  check(device_lanes=10**6)

  # An accelerator: device lanes against its memory, host lanes against the host's.
  gpu = types.SimpleNamespace(platform="gpu", process_index=jax.process_index())
  elsewhere = types.SimpleNamespace(platform="gpu", process_index=jax.process_index() + 1)
  free.update(gpu=240, cpu=600)  # 96 x 2 = 192 = 0.8 x 240; 96 x 5 = 480 = 0.8 x 600
  with monkeypatch.context() as m:  # on such a machine the default backend is the accelerator
    m.setattr(jax, "local_devices", lambda backend=None: [cpu if backend == "cpu" else gpu])
    check(device_lanes=2, host_lanes=5, devices=[gpu])
    with pytest.raises(ValueError, match=r"of gpu is free"):
      check(device_lanes=3, host_lanes=5, devices=[gpu])
    with pytest.raises(ValueError, match=r"of cpu is free"):
      check(device_lanes=2, host_lanes=6, devices=[gpu])
  free["cpu"] = 240  # another process's accelerator is not counted: the local CPU is
  check(device_lanes=1, host_lanes=1, devices=[elsewhere, cpu])
  with pytest.raises(ValueError, match=r"of cpu is free"):
    check(device_lanes=1, host_lanes=1, devices=[elsewhere, cpu, cpu])


def test_record_dtypes_follow_the_x64_mode_of_each_call():
  """The record's shapes and dtypes are traced once per x64 mode: an integer-valued metric of
  float32 weights is float32 outside x64 and float64 inside, whichever call came first (the
  cache of traced record shapes once ignored the mode)."""
  ws = (jnp.ones((5, 7), jnp.float32), jnp.ones((1, 5), jnp.float32))  # shapes no other test uses
  loss = lt.losses.target(np.ones((1, 7), np.float32))
  metrics = {"positive": lambda ws: jnp.sum(ws[0] > 0)}
  run = lambda: lt.gradient_descent(ws, loss, lr=0.1, steps=2, metrics=metrics)
  assert run().metrics["positive"].dtype == np.float32
  with jax.enable_x64(True):
    assert run().metrics["positive"].dtype == np.float64

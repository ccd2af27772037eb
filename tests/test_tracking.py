"""The tracked singular values against numpy.linalg.svd, at every recorded step of long runs.

A run's first record is of the weights passed in and its last of ``.final``, so chaining runs of
``record_every`` steps gives the exact weights behind every record of a long trajectory.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt
from lintraj import metrics, recording
from lintraj.singular_values import METHODS, singular_values
from tests import numpy_reference as ref

SEGMENTS, RECORD_EVERY = 12, 25  # 300 steps, every record checked


def _problems(dtype):
  """(name, weights, target): zero singular values, a balanced cluster, an orthogonal cluster."""
  key = jax.random.PRNGKey(0)
  phi_wide = 0.5 * jax.random.normal(jax.random.PRNGKey(1), (3, 12), dtype)
  phi_square = jnp.eye(6, dtype=dtype) + 0.3 * jax.random.normal(
    jax.random.PRNGKey(2), (6, 6), dtype
  )
  return [
    # Hidden layers of width 16 hold a rank-3 product: 13 exact zeros each, 9 in W_1.
    ("zeros", lt.init.balanced(key, (12, 16, 16, 16, 3), std=0.3, dtype=dtype), phi_wide),
    # Procedure 1 with an end-to-end matrix of equal singular values: one cluster per layer.
    (
      "balanced cluster",
      lt.init.balanced(key, (6, 6, 6, 6), end_to_end=0.5 * jnp.eye(6, dtype=dtype), dtype=dtype),
      phi_square,
    ),
    ("orthogonal cluster", lt.init.orthogonal(key, (6, 8, 8, 6), dtype=dtype), phi_square),
  ]


def _check_long_run(dtype, rtol, method_note):
  worst = {}
  for name, weights, phi in _problems(dtype):
    loss, err = lt.losses.target(phi), 0.0
    for _ in range(SEGMENTS):
      traj = lt.gradient_descent(
        weights, loss, lr=0.05, steps=RECORD_EVERY, record_every=RECORD_EVERY
      )
      for index, ws in ((0, weights), (-1, traj.final)):
        exact = [np.linalg.svd(np.asarray(w, np.float64), compute_uv=False) for w in ws]
        exact.append(np.linalg.svd(np.asarray(lt.end_to_end(ws), np.float64), compute_uv=False))
        got = [s[index] for s in traj.layer_singular_values] + [
          traj.end_to_end_singular_values[index]
        ]
        for g, e in zip(got, exact):
          assert np.asarray(g).dtype == dtype
          err = max(err, float(np.max(np.abs(np.asarray(g, np.float64) - e)) / e[0]))
      weights = traj.final
    worst[name] = err
    assert err <= rtol, (
      f"{name}: max |sigma - sigma_exact| = {err:.3g} sigma_max > {rtol} ({method_note})"
    )
  return worst


def test_long_runs_match_numpy_float32():
  _check_long_run(np.float32, 1e-5, "float32")


def test_long_runs_match_numpy_float64(x64):
  _check_long_run(np.float64, 1e-10, "float64")


def test_problems_have_zeros_and_clusters():
  """The test problems do contain what they claim (else the accuracy tests prove little)."""
  (_, zeros, _), (_, cluster, _), _ = _problems(np.float32)
  hidden = np.linalg.svd(np.asarray(zeros[1], np.float64), compute_uv=False)
  assert np.sum(hidden < 1e-6 * hidden[0]) == 13
  s = np.linalg.svd(np.asarray(cluster[1], np.float64), compute_uv=False)
  np.testing.assert_allclose(s, s[0], rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_methods_match_numpy_on_mixed_shapes(method, x64):
  rng = np.random.default_rng(0)
  a = rng.standard_normal((5, 7))
  mats = [
    a,
    a.T,
    rng.standard_normal((5, 7)),
    rng.standard_normal((4, 4)),
    np.diag([2.0, 2.0, 2.0, 0.0]),
    rng.standard_normal((7, 5)) @ np.diag([1, 1, 0, 0, 0.0]),
  ]
  got = singular_values([jnp.asarray(m) for m in mats], method)
  for g, m in zip(got, mats):
    e = np.linalg.svd(m, compute_uv=False)
    assert g.shape == e.shape
    np.testing.assert_allclose(np.asarray(g), e, rtol=0, atol=1e-12 * e[0])


def test_batched_equals_exact_under_jit_and_vmap():
  ws = lt.init.gaussian(jax.random.PRNGKey(3), (5, 7, 7, 7, 5), std=0.5)
  exact = singular_values(ws, "exact")
  batched = jax.jit(lambda w: singular_values(w, "batched"))(ws)
  for b, e in zip(batched, exact):
    np.testing.assert_allclose(np.asarray(b), np.asarray(e), rtol=0, atol=1e-6 * float(e[0]))
  stack = tuple(jnp.stack([w, 2 * w]) for w in ws)
  vmapped = jax.vmap(lambda w: singular_values(w, "batched"))(stack)
  for v, e in zip(vmapped, exact):
    np.testing.assert_allclose(np.asarray(v), np.stack([e, 2 * e]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_record_and_metrics_take_the_method(method):
  ws = lt.init.gaussian(jax.random.PRNGKey(4), (3, 5, 5, 2), std=0.7)
  rec = recording.record(ws, jnp.array(1.0), ws, None, singular_values=method)
  layers = metrics.layer_singular_values(ws, method)
  e2e = metrics.end_to_end_singular_values(ws, method)
  for r, m, w in zip(rec["layer_singular_values"], layers, ws):
    np.testing.assert_allclose(
      np.asarray(r), np.linalg.svd(np.asarray(w), compute_uv=False), rtol=1e-5
    )
    np.testing.assert_allclose(np.asarray(m), np.asarray(r), rtol=1e-6)
  np.testing.assert_allclose(
    np.asarray(rec["end_to_end_singular_values"]), np.asarray(e2e), rtol=1e-6
  )
  np.testing.assert_allclose(
    np.asarray(e2e), np.linalg.svd(np.asarray(lt.end_to_end(ws)), compute_uv=False), rtol=1e-5
  )


@pytest.mark.parametrize("bad", ["gram", "Exact", None, 3])
def test_bad_method_raises(bad):
  with pytest.raises(ValueError, match="batched"):
    singular_values([jnp.eye(2)], bad)
  with pytest.raises(ValueError, match="batched"):
    metrics.layer_singular_values((jnp.eye(2),), bad)


def test_tracked_extremes_every_track_every_th_record_match_the_hessian(x64):
  """steps=7, record_every=2: records at steps 0, 2, 4, 6; track_every=3 tracks records 0 and 3
  (steps 0 and 6), NaN at the others; the validation loss and a user metric at every record. All
  against a NumPy gradient descent and the eigenvalues of its finite-difference Hessian."""
  ws = lt.init.balanced(jax.random.PRNGKey(5), (2, 3, 2), std=0.6)
  rng = np.random.default_rng(5)
  phi, held = rng.normal(size=(2, 2)), rng.normal(size=(2, 2))
  traj = lt.gradient_descent(
    ws,
    lt.losses.target(phi),
    lr=0.1,
    steps=7,
    record_every=2,
    track=("min_hessian_eigenvalue", "sharpness"),
    track_every=3,
    validation=lt.losses.target(held),
    metrics={"w10": lambda w: lt.end_to_end(w)[1, 0]},
  )
  w_np = [np.asarray(w) for w in ws]
  at = {}
  for t in range(8):
    at[t] = w_np
    grads = ref.layer_gradients(w_np, ref.product(w_np, 1, len(w_np)) - phi)
    w_np = [w - 0.1 * g for w, g in zip(w_np, grads)]

  def hessian(layers, h=1e-5):  # central differences of the NumPy gradient
    flat = np.concatenate([x.ravel() for x in layers])
    cuts = np.cumsum([x.size for x in layers])[:-1]

    def grad(v):
      parts = [p.reshape(x.shape) for p, x in zip(np.split(v, cuts), layers)]
      return np.concatenate(
        [g.ravel() for g in ref.layer_gradients(parts, ref.product(parts, 1, 2) - phi)]
      )

    cols = [(grad(flat + h * e) - grad(flat - h * e)) / (2 * h) for e in np.eye(flat.size)]
    return np.stack(cols, axis=1)

  np.testing.assert_array_equal(traj.step, [0, 2, 4, 6])
  for record, step in enumerate((0, 2, 4, 6)):
    w = ref.product(at[step], 1, 2)
    np.testing.assert_allclose(traj.validation_loss[record], 0.5 * np.sum((w - held) ** 2))
    np.testing.assert_allclose(traj.metrics["w10"][record], w[1, 0], rtol=1e-12)
    if step in (0, 6):
      eig = np.linalg.eigvalsh(hessian(at[step]))
      np.testing.assert_allclose(traj.sharpness[record], eig[-1], rtol=1e-7)
      np.testing.assert_allclose(traj.min_hessian_eigenvalue[record], eig[0], rtol=1e-7)
    else:
      assert np.isnan(traj.sharpness[record]) and np.isnan(traj.min_hessian_eigenvalue[record])


def _svd_calls(jaxpr):
  """How many SVDs a jaxpr computes (nested jaxprs of jit and the like included)."""
  calls = 0
  for eqn in jaxpr.eqns:
    calls += eqn.primitive.name == "svd"
    for param in eqn.params.values():
      inner = getattr(param, "jaxpr", param)
      if hasattr(inner, "eqns"):
        calls += _svd_calls(inner)
  return calls


def test_record_makes_one_svd_call_per_shape_or_per_matrix():
  """Three 3 x 3 layers and their 3 x 3 product: one batched call (the default), or four."""
  ws = tuple(jnp.eye(3) * (i + 1) for i in range(3))
  calls = lambda **k: _svd_calls(
    jax.make_jaxpr(lambda w: recording.record(w, jnp.float32(0), w, None, **k))(ws).jaxpr
  )
  assert calls() == calls(singular_values="batched") == 1
  assert calls(singular_values="exact") == 4
  loss = lt.losses.Loss(lambda w: jnp.sum(w**2))  # no target: no SVD of it
  point = lambda rec: _svd_calls(
    jax.make_jaxpr(
      lambda w: recording.record_point(w, jnp.float32(0), w, loss, False, 0, rec=rec, track_every=1)
    )(ws).jaxpr
  )
  assert point(recording.Recorder()) == 1 and point(recording.Recorder("exact")) == 4

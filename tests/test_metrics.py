"""lintraj.metrics against NumPy: the ready metrics and the edge cases of the theory quantities.

Found by mutation testing (docs/mutation-testing.md): each check fails on a plausible wrong
version of the metric (another exponent or norm, a dropped mask, a wrong default, a missing
shape check).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt


def _weights(seed=0, dims=(3, 4, 2)):
  rng = np.random.default_rng(seed)
  return tuple(jnp.asarray(rng.normal(size=(dims[j + 1], dims[j]))) for j in range(len(dims) - 1))


def _product(ws):
  out = np.asarray(ws[0])
  for w in ws[1:]:
    out = np.asarray(w) @ out
  return out


def _rank2(x64):
  """A depth-2 net whose (3, 4) end-to-end matrix has rank 2 (one zero singular value)."""
  rng = np.random.default_rng(3)
  return (jnp.asarray(rng.normal(size=(2, 4))), jnp.asarray(rng.normal(size=(3, 2))))


def test_depth_one_has_no_pairs_and_zero_balancedness(x64):
  (w,) = _weights(dims=(3, 2))
  per_pair = lt.metrics.balancedness_per_pair((w.astype(jnp.float32),))
  assert per_pair.shape == (0,) and per_pair.dtype == jnp.float32
  assert float(lt.metrics.balancedness((w,))) == 0.0


def test_end_to_end_deficiency_margin_matches_numpy(x64):
  rng = np.random.default_rng(1)
  w, phi = rng.normal(size=(2, 3)), 3 * rng.normal(size=(2, 3))
  expected = np.linalg.svd(phi, compute_uv=False).min() - np.linalg.norm(w - phi)
  got = lt.metrics.end_to_end_deficiency_margin(jnp.asarray(w), jnp.asarray(phi))
  np.testing.assert_allclose(float(got), expected, rtol=1e-12)


def test_end_to_end_deficiency_margin_refuses_a_target_of_another_shape(x64):
  with pytest.raises(ValueError, match=r"target has shape \(3, 3\); it must be the .* \(2, 3\)"):
    lt.metrics.end_to_end_deficiency_margin(jnp.ones((2, 3)), jnp.ones((3, 3)))


def test_singular_values_default_method_and_bad_method(x64):
  ws = _weights(dims=(3, 4, 4, 2))
  for s, w in zip(lt.metrics.layer_singular_values(ws), ws, strict=True):
    np.testing.assert_allclose(s, np.linalg.svd(np.asarray(w), compute_uv=False), rtol=1e-12)
  expected = np.linalg.svd(_product(ws), compute_uv=False)
  np.testing.assert_allclose(lt.metrics.end_to_end_singular_values(ws), expected, rtol=1e-12)
  with pytest.raises(ValueError):
    lt.metrics.end_to_end_singular_values(ws, method="gram")


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0])
def test_nuclear_and_schatten_norms_match_numpy(x64, p):
  ws = _weights(dims=(5, 4, 3))
  s = np.linalg.svd(_product(ws), compute_uv=False)
  np.testing.assert_allclose(float(lt.metrics.schatten_norm(p)(ws)), (s**p).sum() ** (1 / p))
  np.testing.assert_allclose(float(lt.metrics.nuclear_norm(ws)), s.sum(), rtol=1e-12)


@pytest.mark.parametrize("p", [0, -1.0, "2", True])
def test_schatten_norm_refuses_a_non_positive_p(p):
  with pytest.raises(ValueError, match="p must be a positive number"):
    lt.metrics.schatten_norm(p)


def test_effective_rank_matches_numpy_including_zero_singular_values(x64):
  for ws in (_weights(dims=(5, 4, 3)), _rank2(x64)):
    s = np.linalg.svd(_product(ws), compute_uv=False)
    rho = s[s > 1e-12] / s.sum()
    np.testing.assert_allclose(
      float(lt.metrics.effective_rank(ws)), np.exp(-(rho * np.log(rho)).sum()), rtol=1e-10
    )
  assert float(lt.metrics.effective_rank((jnp.outer(jnp.ones(3), jnp.arange(1.0, 5.0)),))) == (
    pytest.approx(1.0, abs=1e-12)
  )


def test_effective_rank_with_an_exactly_zero_singular_value(x64):
  """A zero singular value adds nothing (0 log 0 = 0), and the inner where keeps log(0) out of
  the gradient (the double-where trick)."""
  ws = (jnp.diag(jnp.array([2.0, 1.0, 0.0])),)
  rho = np.array([2.0, 1.0]) / 3
  expected = np.exp(-(rho * np.log(rho)).sum())
  np.testing.assert_allclose(float(lt.metrics.effective_rank(ws)), expected, rtol=1e-12)
  for point in (ws, _rank2(x64)):
    grads = jax.grad(lt.metrics.effective_rank)(point)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_entry_is_the_entry_of_the_end_to_end_matrix(x64):
  ws = _weights(dims=(3, 4, 2))
  for i, j in [(0, 2), (1, 0), (np.int64(1), np.int64(2))]:
    assert float(lt.metrics.entry(i, j)(ws)) == pytest.approx(_product(ws)[i, j], rel=1e-12)


def test_held_out_error_is_the_rms_error_on_the_masked_entries(x64):
  ws = _weights(dims=(4, 3, 3))
  rng = np.random.default_rng(2)
  values = rng.normal(size=(3, 4))
  mask = np.array([[1, 0, 0, 1], [0, 0, 1, 0], [1, 1, 0, 0]], bool)
  expected = np.sqrt(np.mean((_product(ws) - values)[mask] ** 2))
  for m in (mask, 3 * mask.astype(int)):  # any true value marks one held-out entry
    got = lt.metrics.held_out_error(m, values)(ws)
    np.testing.assert_allclose(float(got), expected, rtol=1e-12)


@pytest.mark.parametrize(
  "mask,values",
  [(np.ones((2, 2), bool), np.ones((2, 3))), (np.zeros((2, 3), bool), np.ones((2, 3)))],
)
def test_held_out_error_refuses_mismatched_shapes_and_an_empty_mask(mask, values):
  with pytest.raises(ValueError, match=r"must have one shape and the mask at least one"):
    lt.metrics.held_out_error(mask, values)


def test_target_alignment_is_the_mode_strength_of_each_singular_pair(x64):
  rng = np.random.default_rng(4)
  target = rng.normal(size=(2, 3))
  ws = _weights(dims=(3, 4, 2))
  u, _, vt = np.linalg.svd(target, full_matrices=False)
  expected = np.abs(np.diag(u.T @ _product(ws) @ vt.T))
  got = lt.metrics.target_alignment(target)(ws)
  assert got.shape == (2,)
  np.testing.assert_allclose(got, expected, rtol=1e-12)

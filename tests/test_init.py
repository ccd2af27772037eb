"""Initializations: Procedure 1 exactness, Gaussian statistics, residual, orthogonal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt

BALANCED_DIMS = [
  (5, 5),
  (6, 3),
  (3, 6),
  (8, 4, 4, 2),
  (4, 9, 6, 7, 3),
  (10, 3, 5, 1),
  (1, 4, 2, 6),
  (7, 7, 7, 7, 7, 7),
]


@pytest.mark.parametrize("dims", BALANCED_DIMS)
def test_balanced_product_and_balancedness_exact_in_float64(x64, dims):
  a = jax.random.normal(jax.random.PRNGKey(1), (dims[-1], dims[0]))
  ws = lt.init.balanced(None, dims, end_to_end=a)
  assert [w.shape for w in ws] == [(dims[j + 1], dims[j]) for j in range(len(dims) - 1)]
  assert ws[0].dtype == jnp.float64
  np.testing.assert_allclose(lt.end_to_end(ws), a, atol=1e-10 * float(jnp.abs(a).max()))
  assert float(lt.metrics.balancedness(ws)) <= 1e-10
  # Every layer's nonzero singular values are the N-th roots of those of the product.
  root = np.linalg.svd(np.asarray(a), compute_uv=False) ** (1 / (len(dims) - 1))
  for w in ws:
    sv = np.linalg.svd(np.asarray(w), compute_uv=False)
    np.testing.assert_allclose(sv[: root.size], root, rtol=1e-10)
    assert np.all(sv[root.size :] <= 1e-12)


def test_balanced_random_end_to_end_has_requested_std(x64):
  dims = (300, 250, 200)
  ws = lt.init.balanced(jax.random.PRNGKey(0), dims, std=0.02)
  a = np.asarray(lt.end_to_end(ws))
  assert abs(a.std() / 0.02 - 1) < 0.02 and abs(a.mean()) < 0.02 * 0.02
  assert float(lt.metrics.balancedness(ws)) <= 1e-12


def test_gaussian_statistics(x64):
  ws = lt.init.gaussian(jax.random.PRNGKey(0), (200, 150, 100), std=0.3)
  for w in ws:
    w = np.asarray(w)
    n = w.size
    assert abs(w.mean()) < 4 * 0.3 / np.sqrt(n)
    assert abs(w.var() / 0.09 - 1) < 4 * np.sqrt(2 / n)
  assert not np.allclose(ws[0][:100, :100], ws[1][:100, :100])


def test_residual_is_identity():
  ws = lt.init.residual((4, 4, 4, 4))
  assert len(ws) == 3 and all(np.array_equal(w, np.eye(4)) for w in ws)
  assert float(lt.metrics.balancedness(ws)) == 0.0


@pytest.mark.parametrize("dims", [(5, 5, 5), (3, 8, 2), (9, 4, 6)])
def test_orthogonal_layers_are_scaled_semi_orthogonal(x64, dims):
  ws = lt.init.orthogonal(jax.random.PRNGKey(2), dims, scale=1.7)
  for w in ws:
    w = np.asarray(w)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    np.testing.assert_allclose(gram, 1.7**2 * np.eye(min(w.shape)), atol=1e-12)


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: lt.init.balanced(jax.random.PRNGKey(0), (4, 2, 3), std=1.0), "bottleneck"),
    (
      lambda: lt.init.balanced(jax.random.PRNGKey(0), (4, 3), std=1.0, end_to_end=np.ones((3, 4))),
      "exactly one",
    ),
    (lambda: lt.init.balanced(jax.random.PRNGKey(0), (4, 3)), "exactly one"),
    (lambda: lt.init.balanced(None, (4, 3), end_to_end=np.ones((4, 3))), "must be"),
    (lambda: lt.init.balanced(None, (4, 3), std=1.0), "PRNG key"),
    (lambda: lt.init.balanced(jax.random.PRNGKey(0), (4,), std=1.0), "at least 2"),
    (lambda: lt.init.gaussian(jax.random.PRNGKey(0), (4, 3), std=-1.0), "std must be"),
    (lambda: lt.init.gaussian(jax.random.PRNGKey(0), (4, 0, 3), std=1.0), ">= 1"),
    (lambda: lt.init.residual((4, 4, 3)), "equal widths"),
    (
      lambda: lt.init.balanced(None, (2, 2), end_to_end=np.array([[np.nan, 1], [0, 1]])),
      "non-finite",
    ),
  ],
)
def test_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_balanced_rank_deficient_end_to_end_has_exactly_zero_null_modes(x64):
  """A rank-1 A at depth 6: rounding-level singular values must not become eps^{1/6} junk."""
  rng = np.random.default_rng(0)
  a = np.outer(rng.normal(size=3), rng.normal(size=5))
  ws = lt.init.balanced(None, (5, 5, 5, 5, 5, 5, 3), end_to_end=a)
  np.testing.assert_allclose(lt.end_to_end(ws), a, atol=1e-12)
  for w in ws:
    sv = np.linalg.svd(np.asarray(w), compute_uv=False)
    assert np.all(sv[1:] <= 1e-12)

"""Initializations: Procedure 1 exactness, Gaussian statistics, residual, orthogonal."""

import warnings

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


# Found by mutation testing (docs/mutation-testing.md): the dtype argument, the layer count and
# shapes of non-square nets, zero scales, the key check and the rank threshold's scaling.

INITS = {
  "balanced": lambda dims, dtype: lt.init.balanced(
    jax.random.PRNGKey(0), dims, std=1.0, dtype=dtype
  ),
  "balanced_end_to_end": lambda dims, dtype: lt.init.balanced(
    None, dims, end_to_end=np.ones((dims[-1], dims[0])), dtype=dtype
  ),
  "gaussian": lambda dims, dtype: lt.init.gaussian(
    jax.random.PRNGKey(0), dims, std=1.0, dtype=dtype
  ),
  "orthogonal": lambda dims, dtype: lt.init.orthogonal(jax.random.PRNGKey(0), dims, dtype=dtype),
  "residual": lambda dims, dtype: lt.init.residual((3, 3, 3, 3), dtype=dtype),
}


@pytest.mark.parametrize("name", INITS)
def test_every_init_returns_the_requested_dtype(x64, name):
  dims = (3, 4, 5, 2)
  assert {w.dtype for w in INITS[name](dims, None)} == {jnp.dtype(jnp.float64)}
  assert {w.dtype for w in INITS[name](dims, jnp.float32)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("name", ["gaussian", "orthogonal"])
@pytest.mark.parametrize("dims", [(3, 4, 5, 2), (6, 2, 7, 7, 1)])
def test_random_inits_have_one_layer_of_shape_d_j_by_d_j_minus_1_per_width(x64, name, dims):
  ws = INITS[name](dims, None)
  assert [w.shape for w in ws] == [(dims[j + 1], dims[j]) for j in range(len(dims) - 1)]


def test_zero_std_and_zero_scale_give_zero_weights(x64):
  key = jax.random.PRNGKey(0)
  for ws in (
    lt.init.gaussian(key, (3, 4, 2), std=0.0),
    lt.init.balanced(key, (3, 4, 2), std=0.0),
    lt.init.orthogonal(key, (3, 4, 2), scale=0.0),
  ):
    assert all(np.array_equal(w, np.zeros(w.shape)) for w in ws)


# Keys are built inside the test (lambdas): a JAX array made at collection time would start
# XLA's threads in the process that mutmut forks every mutant from.
@pytest.mark.parametrize(
  "key,match",
  [
    (lambda: 0, r"one PRNG key.*; got 0\. Split"),
    (
      lambda: np.zeros(2, np.float32),
      r"one PRNG key.*got an array of shape \(2,\) and dtype float32",
    ),
    (lambda: np.zeros(3, np.uint32), r"got an array of shape \(3,\) and dtype uint32"),
    (
      lambda: jax.random.split(jax.random.PRNGKey(0), 3),
      r"got an array of shape \(3, 2\) and dtype uint32",
    ),
    (lambda: jax.random.split(jax.random.key(0), 2), r"one PRNG key.*got an array of shape \(2,\)"),
  ],
)
def test_a_key_that_is_not_one_prng_key_is_refused(key, match):
  with pytest.raises(ValueError, match=match):
    lt.init.gaussian(key(), (3, 4, 2), std=1.0)


def test_typed_and_legacy_keys_are_both_accepted(x64):
  legacy = lt.init.orthogonal(jax.random.PRNGKey(0), (3, 4, 2))
  typed = lt.init.orthogonal(jax.random.key(0), (3, 4, 2))
  assert [w.shape for w in legacy] == [w.shape for w in typed] == [(4, 3), (2, 4)]


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: lt.init.gaussian(jax.random.PRNGKey(0), ("a", 2), std=1.0), "sequence of positive"),
    (
      lambda: lt.init.balanced(None, (4, 5, 3), end_to_end=np.ones((4, 3))),
      r"shape \(4, 3\); it must be \(d_N, d_0\) = \(3, 4\)",
    ),
    (lambda: lt.init.balanced(None, (2, 2), end_to_end=np.full((2, 2), np.nan)), "^end_to_end has"),
    (lambda: lt.init.orthogonal(jax.random.PRNGKey(0), (2, 2), scale=-1.0), "^scale must be"),
  ],
)
def test_error_messages_name_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@pytest.mark.parametrize("scale,dtype", [(1e6, jnp.float64), (1.0, jnp.float32)])
def test_rank_threshold_scales_with_the_matrix_and_its_dtype(x64, scale, dtype):
  """The cut for rounding-level singular values is relative to sigma_max and to the dtype's eps:
  a large rank-1 A, or one in float32, must still give exactly zero null modes at depth 6."""
  rng = np.random.default_rng(0)
  a = scale * np.outer(rng.normal(size=3), rng.normal(size=5))
  ws = lt.init.balanced(None, (5, 5, 5, 5, 5, 5, 3), end_to_end=a, dtype=dtype)
  eps = float(jnp.finfo(dtype).eps)
  for w in ws:
    sv = np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)
    assert np.all(sv[1:] <= 100 * eps * sv[0])


def test_orthogonal_default_scale_is_one(x64):
  for w in lt.init.orthogonal(jax.random.PRNGKey(0), (3, 4, 2)):
    w = np.asarray(w)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    np.testing.assert_allclose(gram, np.eye(min(w.shape)), atol=1e-12)


def test_default_dtype_without_x64_is_float32_without_a_truncation_warning():
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # requesting float64 without x64 warns and truncates
    for name, init in INITS.items():
      assert {w.dtype for w in init((3, 4, 5, 2), None)} == {jnp.dtype(jnp.float32)}, name

"""Statement 7: singular value dynamics of deep matrix factorization (Arora, Cohen, Hu, Luo
2019)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt
from lintraj import theory


def completion_loss(rng, d=6, rank=2, observed=0.6):
  truth = rng.standard_normal((d, rank)) @ rng.standard_normal((rank, d)) / (np.sqrt(rank) * d)
  return lt.losses.matrix_completion(rng.uniform(size=(d, d)) < observed, truth)


@jax.jit
def formula(ws, loss):
  w = lt.end_to_end(ws)
  return theory.singular_value_velocity(w, jax.grad(loss)(w), len(ws))


@jax.jit
def exact_derivative(ws, loss):
  """d/dt of the end-to-end singular values along -grad L^N (jax.jvp)."""
  grads = jax.grad(lambda w: loss(lt.end_to_end(w)))(ws)
  return jax.jvp(
    lt.metrics.end_to_end_singular_values, (ws,), (jax.tree_util.tree_map(jnp.negative, grads),)
  )[1]


def finite_difference_check(ws, loss, h=0.002, candidates=range(10, 95, 10)):
  """Largest |FD - formula| / max|formula| along lintraj.gradient_flow, at the candidate record
  indices where the singular values stay apart (sorted singular values have kinks where two
  cross and large derivatives where two nearly cross, which finite differences cannot resolve)."""
  flow = lt.gradient_flow(ws, loss, time=100 * h, record_every_time=h, rtol=1e-11, atol=1e-13)
  sv = np.asarray(flow.end_to_end_singular_values)
  gaps = (-np.diff(sv, axis=1)).min(axis=1)
  checkpoints = [k for k in candidates if gaps[k - 2 : k + 3].min() > 0.05]
  assert len(checkpoints) >= 3
  worst = 0.0
  for k in checkpoints:
    fd = (sv[k - 2] - 8 * sv[k - 1] + 8 * sv[k + 1] - sv[k + 2]) / (12 * h)  # O(h^4)
    at_k = lt.gradient_flow(ws, loss, time=k * h, n_records=2, rtol=1e-11, atol=1e-13).final
    predicted = np.asarray(formula(at_k, loss))
    worst = max(worst, np.max(np.abs(fd - predicted)) / np.max(np.abs(predicted)))
  return worst, flow


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_singular_value_velocity_matches_the_flow_from_balanced_inits(x64, depth):
  """docs/theory.md, "Deep matrix factorization" (Arora, Cohen, Hu, Luo, NeurIPS 2019, arXiv
  1905.13655, Theorem 3) [P]: "Balanced init, gradient flow: singular values of W_{1:N} move as
  d sigma_r/dt = - N sigma_r^{2-2/N} <grad L^1(W), u_r v_r^T>."

  Matrix completion (6x6 rank-2 truth, ~60% observed, lintraj.losses.matrix_completion), balanced
  init, hidden width 6: the end-to-end singular values recorded by lintraj.gradient_flow (rtol
  1e-11) every h = 0.002, differentiated by the 4th-order central difference, match
  lintraj.theory.singular_value_velocity at the flow's weights to 1e-6 relative (measured worst:
  9e-10, 8e-9, 2e-7 for depths 2, 3, 4), at (at least three of) t = 0.02, 0.04, ..., 0.18 where
  consecutive singular values stay more than 0.05 apart (finite differences cannot resolve
  near-crossings: there the sorted values bend sharply). From an unbalanced init (layer-wise
  Gaussian) the formula is off by more than 1e-2, so the check is not vacuous; the flow keeps
  the balanced init balanced (balancedness < 1e-9).
  """
  rng = np.random.default_rng(depth)
  loss = completion_loss(rng)
  dims = (6,) * (depth + 1)
  balanced = lt.init.balanced(None, dims, end_to_end=0.3 * rng.standard_normal((6, 6)))
  error, flow = finite_difference_check(balanced, loss)
  assert error < 1e-6
  assert float(jnp.max(flow.balancedness)) < 1e-9
  unbalanced = tuple(jnp.asarray(0.9 * rng.standard_normal((6, 6))) for _ in range(depth))
  assert finite_difference_check(unbalanced, loss)[0] > 1e-2


def test_singular_value_velocity_equals_exact_derivative(x64):
  """docs/theory.md, "Deep matrix factorization" [P] (same statement), at the level of one point:
  the exact derivative of lintraj.metrics.end_to_end_singular_values along -grad L^N (jax.jvp)
  equals singular_value_velocity to 1e-9 relative at balanced inits of depths 2..5 with unequal
  widths."""
  rng = np.random.default_rng(11)
  loss = completion_loss(rng, d=4)
  for depth in (2, 3, 4, 5):
    dims = (4,) + tuple(rng.integers(4, 8, depth - 1)) + (4,)
    ws = lt.init.balanced(None, dims, end_to_end=rng.standard_normal((4, 4)))
    exact, predicted = exact_derivative(ws, loss), formula(ws, loss)
    assert float(jnp.max(jnp.abs(exact - predicted))) <= 1e-9 * float(jnp.max(jnp.abs(exact)))

"""Statement 5: the end-to-end rule of balanced networks (Arora, Cohen, Hazan 2018)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt
from lintraj import theory


@jax.jit
def network_velocity(ws, loss):
  """d/dt W_{1:N} under gradient flow on the weights: jvp of end_to_end along -grad L^N."""
  grads = jax.grad(lambda w: loss(lt.end_to_end(w)))(ws)
  return jax.jvp(lt.end_to_end, (ws,), (jax.tree_util.tree_map(jnp.negative, grads),))[1]


def exactly_balanced(rng, dims, rank):
  """Procedure 1 from an exact SVD U diag(s) V^T with s_i = 0 for i >= rank: zero-padded layers
  with exact zeros on the null modes (lintraj.init.balanced would take N-th roots of the ~1e-16
  rounding-noise singular values of a numerically rank-deficient matrix)."""
  depth, r = len(dims) - 1, min(dims[0], dims[-1])
  u = np.linalg.qr(rng.standard_normal((dims[-1], r)))[0]
  v = np.linalg.qr(rng.standard_normal((dims[0], r)))[0]
  root = np.where(np.arange(r) < rank, rng.uniform(0.5, 2.0, r), 0.0) ** (1 / depth)
  ws = []
  for j in range(1, depth + 1):
    w = np.zeros((dims[j], dims[j - 1]))
    if j == 1:
      w[:r, :] = root[:, None] * v.T
    elif j == depth:
      w[:, :r] = u * root[None, :]
    else:
      w[:r, :r] = np.diag(root)
    ws.append(jnp.asarray(w))
  return tuple(ws)


@jax.jit
def rule_velocity(ws, loss):
  w = lt.end_to_end(ws)
  return theory.end_to_end_velocity(w, jax.grad(loss)(w), len(ws))


@pytest.mark.parametrize(
  "dims, rank",
  [((3, 3, 3), 3), ((4, 6, 7, 2), 2), ((5, 8, 6, 9, 3), 1), ((3, 4, 4, 4, 4, 4, 3), 2)],
)
def test_end_to_end_velocity_equals_network_velocity_at_balanced_points(x64, dims, rank):
  """docs/theory.md, "Implicit acceleration", end-to-end rule (Arora, Cohen, Hazan, ICML 2018,
  arXiv 1802.06509, Theorem 1) [P]: "if the weights are balanced (C_j = 0), under gradient flow
  dW/dt = - sum_{j=1..N} (W W^T)^{(j-1)/N} grad L^1(W) (W^T W)^{(N-j)/N}, W = W_{1:N}; it depends on
  depth only, not on hidden widths."

  At balanced inits (Procedure 1, built from an exact SVD) with hidden widths wider than the rank,
  including rank-deficient end-to-end matrices (rank < min(d_0, d_N)), the exact velocity of W_{1:N}
  (jax.jvp of lintraj.end_to_end along -grad L^N) equals lintraj.theory.end_to_end_velocity to 1e-10
  relative. At unbalanced points with the same end-to-end matrix (layer noise of size 0.3) it
  differs by more than 1e-2 relative, so the check is not vacuous.
  """
  rng = np.random.default_rng(sum(dims) + rank)
  d_in, d_out = dims[0], dims[-1]
  loss = lt.losses.target(jnp.asarray(rng.standard_normal((d_out, d_in))))
  ws = exactly_balanced(rng, dims, rank)
  assert float(lt.metrics.balancedness(ws)) < 1e-12
  assert int(np.linalg.matrix_rank(np.asarray(lt.end_to_end(ws)))) == rank
  exact, rule = network_velocity(ws, loss), rule_velocity(ws, loss)
  assert float(jnp.linalg.norm(exact - rule)) <= 1e-10 * float(jnp.linalg.norm(exact))

  noisy = tuple(w + 0.3 * jnp.asarray(rng.standard_normal(w.shape)) for w in ws)
  exact, rule = network_velocity(noisy, loss), rule_velocity(noisy, loss)
  assert float(jnp.linalg.norm(exact - rule)) > 1e-2 * float(jnp.linalg.norm(exact))


def test_gd_end_to_end_trajectory_tracks_end_to_end_flow(x64):
  """docs/theory.md, "Implicit acceleration" [P]: "GD follows it [the end-to-end rule] up to
  O(eta^2)" per step, so over a fixed time t = lr * step the gap between GD on a balanced network
  and Euler steps of the end-to-end rule (lintraj.theory.end_to_end_flow) is O(lr).

  Depth 3, dims (3, 5, 4, 2), balanced init, time 3: the largest gap in the loss and in the
  end-to-end singular values over the run halves when lr halves (ratio in [1.7, 2.3] for
  lr = 0.02 -> 0.01; measured gaps 0.0152, 0.0076, and 0.0038 at lr = 0.005), and it is small
  (< 0.01 of the initial loss 1.58 at lr = 0.01).
  """
  rng = np.random.default_rng(5)
  dims = (3, 5, 4, 2)
  loss = lt.losses.target(jnp.asarray(rng.standard_normal((2, 3))))
  ws = lt.init.balanced(None, dims, end_to_end=0.3 * rng.standard_normal((2, 3)))
  gaps = []
  for lr in (0.02, 0.01):
    steps = int(round(3 / lr))
    gd = lt.gradient_descent(ws, loss, lr=lr, steps=steps, record_every=steps // 30)
    rule = theory.end_to_end_flow(
      lt.end_to_end(ws), loss, 3, lr=lr, steps=steps, record_every=steps // 30
    )
    np.testing.assert_array_equal(gd.step, rule.step)
    gaps.append(
      max(
        float(jnp.max(jnp.abs(gd.loss - rule.loss))),
        float(jnp.max(jnp.abs(gd.end_to_end_singular_values - rule.end_to_end_singular_values))),
      )
    )
  assert float(gd.loss[-1]) < 0.5 * float(gd.loss[0])  # the run moves
  assert 1.7 < gaps[0] / gaps[1] < 2.3, gaps
  assert gaps[-1] < 0.01 * float(gd.loss[0])

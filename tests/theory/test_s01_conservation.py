"""Statement 1: conservation of C_j = W_{j+1}^T W_{j+1} - W_j W_j^T under gradient flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt


def imbalances(ws):
  """C_j = W_{j+1}^T W_{j+1} - W_j W_j^T for j = 1..N-1 (matrices, not norms)."""
  return [b.T @ b - a @ a.T for a, b in zip(ws[:-1], ws[1:])]


def network_loss(loss):
  return lambda ws: loss(lt.end_to_end(ws))


@jax.jit
def flow_derivatives(ws, loss):
  """d/dt C_j and d/dt W_{j+1}^T W_{j+1} along the gradient flow direction -grad L^N."""
  direction = jax.tree_util.tree_map(jnp.negative, jax.grad(network_loss(loss))(ws))
  _, d_imbalance = jax.jvp(imbalances, (ws,), (direction,))
  _, d_outer = jax.jvp(lambda w: [b.T @ b for b in w[1:]], (ws,), (direction,))
  return d_imbalance, d_outer


@pytest.mark.parametrize("dims", [(3, 4, 2), (4, 6, 5, 3), (2, 3, 5, 4, 2)])
def test_conservation_derivative_vanishes_at_unbalanced_points(x64, dims):
  """docs/theory.md, "Implicit acceleration" (Arora, Cohen, Hazan, ICML 2018, arXiv 1802.06509,
  Theorem 1 / proof) [P/D]: "under gradient flow C_j = W_{j+1}^T W_{j+1} - W_j W_j^T is constant,
  at any point."

  d/dt C_j along the flow direction -grad L^N is computed exactly with jax.jvp at random,
  strongly unbalanced points (layer-wise Gaussian init, std 1) and must vanish to 1e-12 relative to
  the size of its two terms d/dt (W_{j+1}^T W_{j+1}) and d/dt (W_j W_j^T), which do not vanish.
  """
  for seed in range(3):
    key_w, key_phi = jax.random.split(jax.random.PRNGKey(seed))
    ws = lt.init.gaussian(key_w, dims, std=1.0)
    loss = lt.losses.target(jax.random.normal(key_phi, (dims[-1], dims[0])))
    d_imbalance, d_outer = flow_derivatives(ws, loss)
    for d_c, d_term in zip(d_imbalance, d_outer):
      scale = float(jnp.linalg.norm(d_term))
      assert scale > 1e-2  # the two terms move: the cancellation is not trivial
      assert float(jnp.linalg.norm(d_c)) <= 1e-12 * scale


def test_gradient_flow_keeps_every_imbalance_constant(x64):
  """docs/theory.md, "Implicit acceleration" [P/D]: C_j is constant under gradient flow.

  lintraj.gradient_flow (Dormand-Prince 5(4), rtol 1e-10) from an unbalanced init runs until
  the loss has dropped by 10 orders of magnitude; every C_j at the end equals C_j at the start
  to 1e-7 relative, and the recorded balancedness stays constant. Gradient descent over the same
  time (lr 0.05) changes C_j by 10^4 times more (its one-step change is O(lr^2), statement 2), so
  the check would catch an integrator that is merely GD in disguise.
  """
  dims = (4, 5, 6, 3)
  key_w, key_phi = jax.random.split(jax.random.PRNGKey(7))
  ws = lt.init.gaussian(key_w, dims, std=0.8)
  loss = lt.losses.target(jax.random.normal(key_phi, (dims[-1], dims[0])))
  flow = lt.gradient_flow(ws, loss, time=40.0, n_records=21, rtol=1e-10, atol=1e-12)
  assert flow.diverged_step is None
  assert float(flow.loss[-1]) < 1e-10 * float(flow.loss[0])
  scale = max(float(jnp.linalg.norm(w)) ** 2 for w in ws)
  flow_drift = max(
    float(jnp.linalg.norm(c1 - c0)) for c0, c1 in zip(imbalances(ws), imbalances(flow.final))
  )
  assert flow_drift <= 1e-7 * scale
  np.testing.assert_allclose(flow.balancedness, flow.balancedness[0], rtol=1e-7)

  gd = lt.gradient_descent(ws, loss, lr=0.05, steps=800, record_every=800)
  gd_drift = max(
    float(jnp.linalg.norm(c1 - c0)) for c0, c1 in zip(imbalances(ws), imbalances(gd.final))
  )
  assert gd_drift > 1e4 * flow_drift

"""Statement 2: the exact one-step change of C_j under gradient descent."""

import jax
import jax.numpy as jnp
import pytest

import lintraj as lt


@pytest.mark.parametrize(
  "dims, lr", [((3, 4, 2), 0.1), ((4, 6, 5, 3), 0.03), ((2, 3, 5, 4, 2), 0.3)]
)
def test_one_gd_step_changes_imbalance_by_lr_squared_term(x64, dims, lr):
  """docs/theory.md, "Implicit acceleration" (Arora, Cohen, Hazan, ICML 2018) [D]: "For one GD step,
  exactly: C_j(t+1) - C_j(t) = eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T), G_j = dL^N/dW_j."

  One step of lintraj.gradient_descent from random unbalanced points; G_j from jax.grad of the
  network loss. The identity holds to 1e-12 relative to the size of the O(eta^2) right-hand side
  (which is not small: the check would see a first-order term).
  """
  for seed in range(2):
    key_w, key_phi = jax.random.split(jax.random.PRNGKey(seed))
    ws = lt.init.gaussian(key_w, dims, std=1.0)
    loss = lt.losses.target(jax.random.normal(key_phi, (dims[-1], dims[0])))
    grads = jax.grad(lambda w: loss(lt.end_to_end(w)))(ws)
    new = lt.gradient_descent(ws, loss, lr=lr, steps=1).final
    for j in range(len(dims) - 2):
      change = (new[j + 1].T @ new[j + 1] - new[j] @ new[j].T) - (
        ws[j + 1].T @ ws[j + 1] - ws[j] @ ws[j].T
      )
      predicted = lr**2 * (grads[j + 1].T @ grads[j + 1] - grads[j] @ grads[j].T)
      scale = float(jnp.linalg.norm(predicted))
      assert scale > 1e-6
      assert float(jnp.linalg.norm(change - predicted)) <= 1e-12 * max(scale, 1.0)

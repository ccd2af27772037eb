"""Statement 9: Claim 4 -- without balancedness GD can fail at every learning rate."""

import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt

LEARNING_RATES = (1e-3, 1e-2, 0.1, 0.5)


def unbalanced(lr, depth, product, overshoot=10.0):
  """The scalar construction of docs/theory.md, "Theorem 2 and Claims": w_1 = K, w_N = product / K
  (middle layers 1), with K^2 = overshoot / lr, so that lr * K^2 = overshoot."""
  k = np.sqrt(overshoot / lr)
  return tuple(jnp.full((1, 1), v) for v in [k] + [1.0] * (depth - 2) + [product / k])


@pytest.mark.parametrize("depth", [2, 3])
def test_claim4_unbalanced_init_with_margin_diverges_for_every_lr(x64, depth):
  """docs/theory.md, "Theorem 2 and Claims", Claim 4 (Arora, Cohen, Golowich, Hu, ICLR 2019,
  Appendix C) [P, construction U]: "without balancedness GD can fail for any eta: an unbalanced init
  with a margin whose loss grows without bound. Scalar sketch [D]: N = 2, Phi = 1, w1 = K,
  w2 = c/K; once eta K^2 is large the product overshoots and diverges, while the balanced init with
  the same product converges."

  Confirmed (the [U] construction works, also at depth 3 with a middle layer 1): for Phi = 1,
  end-to-end product 0.5 (deficiency margin 0.5 > 0) and every lr in {1e-3, 1e-2, 0.1, 0.5},
  the init with K^2 = 10 / lr diverges (lintraj reports diverged_step; the loss first grows by
  more than 1e10), while the balanced init with the same product (lintraj.init.balanced) reaches
  loss < 1e-12 within 30000 steps at the same lr.
  """
  phi = jnp.ones((1, 1))
  loss = lt.losses.target(phi)
  for lr in LEARNING_RATES:
    ws = unbalanced(lr, depth, product=0.5)
    assert float(lt.end_to_end(ws)[0, 0]) == pytest.approx(0.5)
    assert float(lt.metrics.deficiency_margin(ws, phi)) == pytest.approx(0.5)
    assert float(lt.metrics.balancedness(ws)) > 5 / lr
    bad = lt.gradient_descent(ws, loss, lr=lr, steps=200)
    assert bad.diverged_step is not None, lr
    assert float(jnp.nanmax(bad.loss)) > 1e10 * float(bad.loss[0]), lr

    good_init = lt.init.balanced(None, (1,) * (depth + 1), end_to_end=lt.end_to_end(ws))
    assert float(lt.metrics.balancedness(good_init)) < 1e-12
    good = lt.gradient_descent(good_init, loss, lr=lr, steps=30_000, record_every=1000)
    assert good.diverged_step is None and float(good.loss[-1]) < 1e-12, lr

"""The unit conversion between lintraj's deep-matrix-factorization and the paper's code, stated in
lintraj/reproductions/deep_matrix_factorization.py: checked step by step, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt
from lintraj.reproductions import deep_matrix_factorization as dmf


@pytest.mark.parametrize("depth", [2, 3])
def test_paper_step_is_a_scaled_lintraj_step(x64, depth):
  """The paper's loss (mean over observed entries) on the truth scaled to ||M||_F = n, from layers
  c^{1/N} W_j at rate eta_p, equals c^{1/N} times lintraj's run (1/2 sum) from W_j at
  eta = eta_p (2 / |Omega|) c^{2 - 2/N}, at every recorded step. Fails for any other exponent of
  c (2 - 1/N or 2), a missing factor 2, or |Omega| in place of |Omega| / 2."""
  n, r, observed = 8, 2, 30
  truth, mask = dmf.completion_problem(n, r, observed, seed=1)
  c = n / np.linalg.norm(truth)
  assert c == pytest.approx(n / np.sqrt(r))
  paper_truth = jnp.asarray(c * truth)
  paper = lt.losses.Loss(
    lambda w, data: jnp.sum(jnp.where(data[0], (w - data[1]) ** 2, 0.0)) / observed,
    data=(jnp.asarray(mask), paper_truth),
  )
  ws = lt.init.balanced(jax.random.PRNGKey(0), (n,) * (depth + 1), std=0.3, dtype=jnp.float64)
  eta_p, steps = 0.05, 40
  theirs = lt.gradient_descent(
    tuple(c ** (1 / depth) * w for w in ws), paper, lr=eta_p, steps=steps, record_every=10
  )
  ours = lt.gradient_descent(
    ws,
    lt.losses.matrix_completion(mask, truth),
    lr=eta_p * 2 / observed * c ** (2 - 2 / depth),
    steps=steps,
    record_every=10,
  )
  for a, b in zip(theirs.final, ours.final):
    np.testing.assert_allclose(np.asarray(a), c ** (1 / depth) * np.asarray(b), rtol=1e-9)
  # the losses: paper = (2 / |Omega|) c^2 lintraj
  np.testing.assert_allclose(theirs.loss, 2 / observed * c**2 * ours.loss, rtol=1e-9)

"""Statement 4: Claim 1 of Arora et al. 2019 (a margin bounds sigma_min on the whole ball)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt


@jax.jit
def smallest_singular_values(matrices):
  return jax.vmap(lambda m: jnp.linalg.svd(m, compute_uv=False)[-1])(matrices)


@pytest.mark.parametrize("shape", [(3, 3), (2, 5), (4, 2)])
def test_claim1_sigma_min_on_the_ball(x64, shape):
  """docs/theory.md, "Definitions", Claim 1 (Arora, Cohen, Golowich, Hu, ICLR 2019, arXiv
  1810.02281, Claim 1) [P]: "any W' with ||W' - Phi||_F <= ||W - Phi||_F has sigma_min(W') >= c",
  where c = sigma_min(Phi) - ||W - Phi||_F is the deficiency margin of W.

  For a random Phi and a W with margin c (lintraj.metrics.deficiency_margin), 4000 random W'
  drawn uniformly in the Frobenius ball of radius ||W - Phi||_F (and 1000 on its sphere) all have
  sigma_min(W') >= c (to 1e-12). The bound is attained: W' = Phi - ||W - Phi|| u_min v_min^T has
  sigma_min exactly c; and it is not vacuous: just outside the ball, the same construction has
  sigma_min < c.
  """
  rng = np.random.default_rng(sum(shape))
  phi = rng.standard_normal(shape)
  phi_svd = np.linalg.svd(phi)
  s_min = phi_svd[1][-1]
  direction = rng.standard_normal(shape)
  w = phi + 0.6 * s_min * direction / np.linalg.norm(direction)
  radius = np.linalg.norm(w - phi)
  margin = float(lt.metrics.deficiency_margin((jnp.asarray(w),), jnp.asarray(phi)))
  assert margin == pytest.approx(s_min - radius, abs=1e-12) and margin > 0

  n, size = 5000, phi.size
  directions = rng.standard_normal((n,) + shape)
  directions /= np.linalg.norm(directions.reshape(n, -1), axis=1)[:, None, None]
  radii = radius * rng.uniform(size=n) ** (1 / size)  # uniform in the ball
  radii[:1000] = radius  # and on its boundary sphere
  inside = phi[None] + radii[:, None, None] * directions
  assert float(jnp.min(smallest_singular_values(jnp.asarray(inside)))) >= margin - 1e-12

  u_min, v_min = phi_svd[0][:, len(phi_svd[1]) - 1], phi_svd[2][len(phi_svd[1]) - 1]
  for r, expected in ((radius, margin), (radius * 1.01, s_min - 1.01 * radius)):
    edge = jnp.asarray(phi - r * np.outer(u_min, v_min))[None]
    assert float(smallest_singular_values(edge)[0]) == pytest.approx(expected, abs=1e-12)
  outside = jnp.asarray(phi - 1.01 * radius * np.outer(u_min, v_min))[None]
  assert (
    float(smallest_singular_values(outside)[0]) < margin
  )  # just outside the ball: below the margin

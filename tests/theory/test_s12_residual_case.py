"""Statement 12: the residual special case of Theorem 1 (W_j = I, ||Phi - I||_F < 0.5)."""

import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt
from lintraj import theory


def near_identity(rng, d, distance):
  delta = rng.standard_normal((d, d))
  return jnp.asarray(np.eye(d) + distance * delta / np.linalg.norm(delta))


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_identity_init_satisfies_theorem1_when_phi_is_within_half_of_identity(x64, depth):
  """docs/theory.md, "Theorem 1", residual case (Arora, Cohen, Golowich, Hu, ICLR 2019, remark after
  Theorem 1) [P]: "Residual case: equal widths, W_j(0) = I: the assumptions hold when
  ||Phi - I||_F < 0.5."

  Finding (with the constants as transcribed; checked, not confirmed): check_theorem1 says every
  condition holds
  for W_j = I and 40 random Phi with ||Phi - I||_F in (0, 0.5), at lr = max_lr. The remark is true
  for a simple reason that the test re-derives: the identity init is exactly 0-balanced (so the
  delta condition holds whatever its constant), and sigma_min(Phi) >= 1 - ||Phi - I||_2 gives the
  margin c >= 1 - 2 ||Phi - I||_F > 0. The price is in the learning rate: max_lr scales like
  c^{(4N-2)/N} / ||Phi||_F^{(6N-4)/N}, so it vanishes where c -> 0 and shrinks with the width d
  (||Phi||_F ~ sqrt(d)). Measured at d = 3: max_lr = 2.2e-6 (N=2), 4.4e-7 (N=3), 7.0e-8 (N=5)
  at ||Phi - I||_F = 0.01, down to 1e-11 near 0.5 (random directions; asserted: below 1e-5
  everywhere). The constant 0.5 is sharp for the margin: with Phi = I - r e_1 e_1^T the margin is
  exactly 1 - 2r, so at r = 0.45 it is 0.1 and max_lr < 1e-8 (asserted), and for r > 0.5 the
  conditions fail.
  """
  rng = np.random.default_rng(depth)
  d = 3
  ws = lt.init.residual((d,) * (depth + 1))
  for distance in np.concatenate([rng.uniform(0.01, 0.5, 38), [0.01, 0.499]]):
    phi = near_identity(rng, d, distance)
    check = theory.check_theorem1(ws, phi, 1.0)
    assert check.has_margin and check.is_balanced and check.no_bottleneck and not check.lr_ok
    assert check.balancedness == 0.0
    assert check.margin >= 1 - 2 * distance - 1e-12
    check = theory.check_theorem1(ws, phi, check.max_lr)
    assert check.holds and check.iterations is not None
    assert check.max_lr < 1e-5

  for r, sign in ((0.45, 1), (0.55, -1)):  # sharpness: margin = 1 - 2r exactly
    phi = jnp.asarray(np.eye(d) - r * np.outer(np.eye(d)[0], np.eye(d)[0]))
    check = theory.check_theorem1(ws, phi, 1e-12)
    assert check.margin == pytest.approx(1 - 2 * r, abs=1e-12)
    assert check.has_margin == (sign > 0) and check.holds == (sign > 0)
    if sign > 0:
      assert check.max_lr < 1e-8


def test_residual_case_gd_converges_at_the_certified_rate(x64):
  """docs/theory.md, "Theorem 1", residual case [P]: with W_j = I and ||Phi - I||_F = 0.4 < 0.5, GD
  at the certified lr satisfies loss(t) <= (1 - lr c^{2(N-1)/N})^t loss(0) at every record, and so
  does GD at lr = 0.05 (more than 10^5 times larger), which reaches loss < 1e-20 in 3000 steps."""
  rng = np.random.default_rng(0)
  phi = near_identity(rng, 3, 0.4)
  ws = lt.init.residual((3, 3, 3, 3))
  check = theory.check_theorem1(ws, phi, 1.0)
  assert 0.05 / check.max_lr > 1e5
  for lr in (check.max_lr, 0.05):
    traj = lt.gradient_descent(ws, lt.losses.target(phi), lr=lr, steps=3000, record_every=100)
    steps, loss = np.asarray(traj.step), np.asarray(traj.loss)
    above_floor = loss > 1e-25 * loss[0]
    assert np.all((loss <= (1 - lr * check.rate) ** steps * loss[0] * (1 + 1e-12))[above_floor])
  assert loss[-1] < 1e-20

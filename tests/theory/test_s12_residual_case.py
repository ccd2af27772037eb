"""Statement 12: the residual special case of Theorem 1 (W_j = I, ||Phi - I||_F < 0.5).

The remark's content is the margin: the identity init is exactly 0-balanced and has no bottleneck
whatever the constants, so only "W_{1:N}(0) = I has a deficiency margin w.r.t. Phi" can fail, and
it is tested where it is sharp. Removed, because no implementation gets them wrong: balancedness
== 0 and is_balanced at W_j = I (I^T I - I I^T = 0 with the factors in any order), no_bottleneck
at equal widths, ``iterations is not None`` once ``holds``, ``not lr_ok`` at lr = 1, and
``margin >= 1 - 2||Phi - I||_F`` (it holds for a margin computed in the spectral norm too). Also
removed: a GD run at the certified rate, which the residual case cannot make tight (along
Phi = I - r e_1 e_1^T the loss contracts like (1 - lr N (1 - r)^{2(N-1)/N})^2 per step, at least
2N times the certified 1 - lr (1 - 2r)^{2(N-1)/N}, so a rate exponent (N-1)/N passed it); the
rate and iteration bound are tested on tight cases in test_s03_theorem1.py, which also runs GD from
residual inits at max_lr.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt
from lintraj import theory


def near_identity(rng, d, distance):
  delta = rng.standard_normal((d, d))
  return np.eye(d) + distance * delta / np.linalg.norm(delta)


def check_at_max_lr(ws, phi):
  """check_theorem1 at lr = its own max_lr when there is a margin (else at lr = 1e-3)."""
  check = theory.check_theorem1(ws, jnp.asarray(phi), 1e-3)
  return theory.check_theorem1(ws, jnp.asarray(phi), check.max_lr) if check.has_margin else check


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_identity_init_has_a_margin_exactly_when_phi_is_within_half_of_identity(x64, depth):
  """docs/theory.md, "Theorem 1", residual case (Arora, Cohen, Golowich, Hu, ICLR 2019, remark after
  Theorem 1) [P]: "Residual case: equal widths, W_j(0) = I: the assumptions hold when
  ||Phi - I||_F < 0.5." Why [D]: sigma_min(Phi) >= 1 - ||Phi - I||_2 >= 1 - ||Phi - I||_F, so
  the margin sigma_min(Phi) - ||Phi - I||_F of W_{1:N} = I is at least 1 - 2||Phi - I||_F > 0.

  At d = 3, with lintraj.theory.check_theorem1 on lintraj.init.residual:
  - 40 random Phi with ||Phi - I||_F in (0.01, 0.5): the conditions hold at lr = max_lr, and the
    margin equals sigma_min(Phi) - ||Phi - I||_F computed by NumPy to 1e-12. Rules out a margin
    computed in the spectral norm (larger by 1e-3 to 0.14 at these Phi), with sigma_max or
    with the squared distance, and a verdict lr < max_lr in place of lr <= max_lr.
  - Sharpness of 1/2, along Phi = I - r e_1 e_1^T (margin exactly 1 - 2r): a margin (and every
    condition) at r = 0.5 - 1e-9, none at r = 0.5 (margin exactly 0; the theorem needs c > 0) and
    at r = 0.5 + 1e-9. Rules out any constant above 1/2 in the remark, a margin off by more than
    1e-9 (a constant factor or offset), and has_margin as margin >= 0.
  - The norm is the Frobenius norm: Phi = 0.6 I has ||Phi - I||_2 = 0.4 < 0.5 but no margin
    (0.6 - 0.4 sqrt(3) = -0.093). Rules out the remark read with the spectral norm, and a margin
    computed in the spectral norm (0.2 there, so has_margin would be True).
  """
  rng = np.random.default_rng(depth)
  d = 3
  ws = lt.init.residual((d,) * (depth + 1))
  for distance in np.concatenate([rng.uniform(0.01, 0.5, 38), [0.01, 0.499]]):
    phi = near_identity(rng, d, distance)
    check = check_at_max_lr(ws, phi)
    assert check.holds
    expected = np.linalg.svd(phi, compute_uv=False)[-1] - np.linalg.norm(phi - np.eye(d))
    assert check.margin == pytest.approx(expected, abs=1e-12)

  e1 = np.outer(np.eye(d)[0], np.eye(d)[0])
  for r, has_margin in ((0.5 - 1e-9, True), (0.5, False), (0.5 + 1e-9, False)):
    check = check_at_max_lr(ws, np.eye(d) - r * e1)
    assert check.margin == pytest.approx(1 - 2 * r, abs=1e-15)
    assert check.has_margin == has_margin and check.holds == has_margin, (r, check)
  assert check_at_max_lr(ws, np.eye(d) - 0.5 * e1).margin == 0.0

  phi = 0.6 * np.eye(d)
  assert np.linalg.norm(phi - np.eye(d), 2) < 0.5
  check = check_at_max_lr(ws, phi)
  assert check.margin == pytest.approx(0.6 - 0.4 * np.sqrt(3), abs=1e-12) and not check.has_margin

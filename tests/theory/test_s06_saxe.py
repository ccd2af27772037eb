"""Statement 6: Saxe et al.'s exact mode dynamics for aligned balanced inits."""

import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt
from lintraj import theory


def aligned_problem(rng, d_in, d_out, strengths, u0):
  """Phi = U diag(strengths) V^T and the end-to-end init U diag(u0) V^T (same singular vectors)."""
  u = np.linalg.qr(rng.standard_normal((d_out, d_out)))[0][:, : len(strengths)]
  v = np.linalg.qr(rng.standard_normal((d_in, d_in)))[0][:, : len(strengths)]
  phi = u @ np.diag(strengths) @ v.T
  return jnp.asarray(phi), u @ np.diag(np.full(len(strengths), u0)) @ v.T


@pytest.mark.parametrize(
  "depth, u0, time", [(2, 0.01, 8.0), (3, 0.05, 6.0), (4, 0.1, 6.0), (6, 0.2, 6.0)]
)
def test_gd_singular_values_follow_mode_strength(x64, depth, u0, time):
  """docs/theory.md, "Exact dynamics" (Saxe, McClelland, Ganguli, ICLR 2014, arXiv 1312.6120) [P/D]:
  "With whitened input, init aligned to Phi = U S V^T, each mode strength u ... evolves alone.
  In lintraj units (loss 1/2||W - Phi||^2, continuous time t = eta * step): N = 2, balanced:
  du/dt = 2u(s - u) ... Depth N, balanced: du/dt = N u^{2-2/N} (s - u)."

  A balanced init (lintraj.init.balanced) whose end-to-end matrix is U diag(u0) V^T, with Phi =
  U diag(2, 1, 0.5) V^T, dims (4, 5, ..., 5, 3): GD's end-to-end singular values at t = lr * step
  match lintraj.theory.mode_strength(t, s, u0, N) up to GD's discretisation error, which halves
  with lr (gap ratio in [1.6, 2.4] for lr = 0.01 -> 0.005), for depths 2, 3, 4, 6. Every mode
  is learned by the end (u > 0.9 s), so the whole sigmoid is compared.
  """
  strengths = np.array([2.0, 1.0, 0.5])
  rng = np.random.default_rng(depth)
  phi, a = aligned_problem(rng, 4, 3, strengths, u0)
  dims = (4,) + (5,) * (depth - 1) + (3,)
  ws = lt.init.balanced(None, dims, end_to_end=a)
  gaps = []
  for lr in (0.01, 0.005):
    steps = int(round(time / lr))
    traj = lt.gradient_descent(
      ws, lt.losses.target(phi), lr=lr, steps=steps, record_every=steps // 60
    )
    t = lr * traj.step.astype(jnp.float64)
    predicted = theory.mode_strength(t[:, None], jnp.asarray(strengths)[None, :], u0, depth)
    gaps.append(float(jnp.max(jnp.abs(traj.end_to_end_singular_values - predicted))))
  assert np.all(np.asarray(predicted[-1]) > 0.9 * strengths)
  assert u0 <= 0.4 * strengths.min()  # every mode starts far from its target
  assert 1.6 < gaps[0] / gaps[1] < 2.4, gaps
  assert gaps[1] < 0.02, gaps


def test_time_to_learn_scales_like_one_over_s_at_depth_2(x64):
  """docs/theory.md, "Exact dynamics" [P/D]: "N = 2, balanced: ... Time from u0 to uf:
  (1/2s) ln[uf (s - u0) / (u0 (s - uf))]" -- so at a fixed small init the time to learn a mode
  scales like 1/s (Saxe et al. 2014, Eq. (8) and Fig. 3), up to a logarithm.

  One GD run (lr = 0.002) of a depth-2 network with modes s = 4, 2, 1, 0.5 all starting at
  u0 = 1e-6: the time at which each end-to-end singular value crosses s/2 (linear interpolation
  between records) matches the formula t_half = ln((s - u0)/u0) / (2s) to 1%. t_half varies by a
  factor of more than 5 over the modes while s * t_half varies by less than 25%: the 1/s law.
  """
  strengths, u0, lr = np.array([4.0, 2.0, 1.0, 0.5]), 1e-6, 0.002
  rng = np.random.default_rng(0)
  phi, a = aligned_problem(rng, 5, 4, strengths, u0)
  ws = lt.init.balanced(None, (5, 6, 4), end_to_end=a)
  traj = lt.gradient_descent(ws, lt.losses.target(phi), lr=lr, steps=9000, record_every=5)
  t = lr * np.asarray(traj.step, dtype=float)
  sv = np.asarray(traj.end_to_end_singular_values)
  t_half = np.array([np.interp(s / 2, sv[:, i], t) for i, s in enumerate(strengths)])
  np.testing.assert_allclose(t_half, np.log((strengths - u0) / u0) / (2 * strengths), rtol=0.01)
  assert t_half.max() / t_half.min() > 5
  assert (strengths * t_half).max() / (strengths * t_half).min() < 1.25

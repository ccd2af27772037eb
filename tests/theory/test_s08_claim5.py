"""Statement 8: Claim 5 / Bartlett et al. -- balanced without a margin can fail, and how GD escapes.

Findings recorded here (float64, measured):

* Rounding alone. With W_j(0) = I the exact iterates keep W_{N+1-j} = W_j^T, so W_{1:N} stays PSD.
  At depth 2 this survives floating point exactly (W_2 W_1 is a single matmul, and the two layer
  gradients are computed as exact transposes of each other), so GD never leaves the floor even
  for a rotated (non-diagonal) Phi. At depth 4 with a rotated Phi the chained product is not
  computed transposition-symmetrically, and rounding noise alone let GD escape at t ~ 106-120
  (lr = 0.01..0.5, Phi = Q diag(-1, 0.5) Q^T). With a diagonal Phi every iterate is diagonal and
  the floor is exact at any depth. Since this depends on the order of floating-point operations,
  it is recorded, not asserted.
* Which saddle. GD from the identity approaches the point W_j = Q diag(0, mu^{1/N}) Q^T (for
  Phi = Q diag(-lambda, mu) Q^T). Its Hessian (jax.hessian) has smallest eigenvalue -lambda at
  depth 2 (strict saddle). At depth N >= 3 the (e, e) block is 0, as the issue expects, BUT the
  off-diagonal entries W_1[e', e], W_N[e, e'] couple through the mu-mode and give the 2x2 block
  [[mu^{2(N-1)/N}, lambda mu^{(N-2)/N}], [., .]], so the smallest eigenvalue is
  -(lambda - mu) mu^{(N-2)/N} when mu < lambda: still a strict saddle, escaped after a time
  ~ ln(1/eps) / ((lambda - mu) mu^{(N-2)/N}). The saddle is non-strict (Hessian >= 0) only when no
  positive eigenvalue below lambda exists, e.g. Phi negative definite (the point is W = 0, where
  the Hessian vanishes for N >= 3) or mu >= lambda. Then escape from a perturbation of size eps
  is polynomially slow.
"""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt

LAMBDA, MU = 1.0, 0.5
ROTATION = np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]])


def symmetric_target(eigenvalues, rotated=True):
  q = ROTATION if rotated else np.eye(2)
  return jnp.asarray(q @ np.diag(eigenvalues) @ q.T)


def escape_time(depth, phi, eps, lr=0.1, steps=8000, threshold=0.1):
  """The first t = lr * step at which the loss is below (floor - threshold), from the identity
  init perturbed by eps times fixed random unit-norm matrices; inf if it never escapes."""
  rng = np.random.default_rng(depth)
  ws = tuple(
    jnp.asarray(np.eye(2) + eps * e / np.linalg.norm(e)) for e in rng.standard_normal((depth, 2, 2))
  )
  floor = 0.5 * float(np.sum(np.minimum(np.linalg.eigvalsh(np.asarray(phi)), 0) ** 2))
  traj = lt.gradient_descent(ws, lt.losses.target(phi), lr=lr, steps=steps, record_every=2)
  below = np.flatnonzero(np.asarray(traj.loss) < floor - threshold)
  return lr * float(traj.step[below[0]]) if below.size else np.inf


@jax.jit
def gradient_and_hessian(ws, loss):
  """The gradient and Hessian of the network loss with respect to the flattened weights."""
  flat, unravel = jax.flatten_util.ravel_pytree(ws)
  network_loss = lambda f: loss(lt.end_to_end(unravel(f)))
  return jax.grad(network_loss)(flat), jax.hessian(network_loss)(flat)


@pytest.mark.parametrize("depth", [2, 4])
def test_claim5_identity_init_never_goes_below_the_floor(x64, depth):
  """docs/theory.md, "Theorem 2 and Claims", Claim 5 (Arora, Cohen, Golowich, Hu, ICLR 2019,
  Appendix C; Bartlett, Helmbold, Long, ICML 2018) [P/D]: "balanced but no margin can fail: N even,
  Phi symmetric with an eigenvalue -lambda < 0, identity init. All layers stay equal and
  symmetric, W_{1:N} stays PSD, so loss(t) >= lambda^2/2 for all t and every eta."

  Phi = Q diag(-1, 0.5) Q^T, diagonal (Q = I) and rotated, identity init, lr in {1e-3, 1e-2,
  0.05, 0.1}, 500 steps: every recorded loss is >= lambda^2/2 (to 1e-12) and the final end-to-end
  matrix is PSD. For the diagonal Phi the layers stay exactly diagonal and equal up to rounding.
  (Over longer horizons rounding can break the symmetry at depth 4: see the module docstring.)
  """
  ws = lt.init.residual((2,) * (depth + 1))
  for rotated in (False, True):
    phi = symmetric_target([-LAMBDA, MU], rotated)
    for lr in (1e-3, 1e-2, 0.05, 0.1):
      traj = lt.gradient_descent(ws, lt.losses.target(phi), lr=lr, steps=500, record_every=5)
      assert traj.diverged_step is None
      assert float(jnp.min(traj.loss)) >= LAMBDA**2 / 2 - 1e-12
      w = np.asarray(lt.end_to_end(traj.final))
      assert np.linalg.eigvalsh((w + w.T) / 2).min() >= -1e-12 and np.allclose(w, w.T, atol=1e-12)
      if not rotated:  # every iterate is diagonal, the layers equal up to rounding
        assert all(float(layer[0, 1]) == 0.0 == float(layer[1, 0]) for layer in traj.final)
        assert all(bool(jnp.allclose(layer, traj.final[0], rtol=1e-12)) for layer in traj.final)
    assert float(traj.loss[-1]) == pytest.approx(LAMBDA**2 / 2, abs=1e-3)  # it reaches the floor


def test_floor_point_is_strict_at_depth_2_and_non_strict_only_without_a_smaller_positive_mode(x64):
  """docs/theory.md, "Landscape facts" (Kawaguchi 2016) [P/D] and Claim 5 [P/D], as the issue puts
  it: "at depth 2 the floor is a strict saddle ... at depth 4 it is a non-strict saddle."

  jax.hessian of the network loss at the floor point W_j = Q diag(0, mu^{1/N}) Q^T, with
  Phi = Q diag(-lambda, mu) Q^T, lambda = 1: the gradient is 0 there; depth 2 has smallest
  eigenvalue -lambda; depth N = 3, 4, 6 has -(lambda - mu) mu^{(N-2)/N} for mu in {0.3, 0.5}
  (strict, see the module docstring), none below -1e-12 for mu = 2 >= lambda, and the Hessian is
  exactly 0 at the floor point W = 0 of a negative definite Phi = Q diag(-1, -0.5) Q^T (non-strict).
  """
  for depth in (2, 3, 4, 6):
    for mu in (0.3, 0.5, 2.0):
      phi = symmetric_target([-LAMBDA, mu])
      layer = jnp.asarray(ROTATION @ np.diag([0.0, mu ** (1 / depth)]) @ ROTATION.T)
      gradient, hessian = gradient_and_hessian((layer,) * depth, lt.losses.target(phi))
      assert float(jnp.max(jnp.abs(gradient))) < 1e-12
      smallest = float(np.linalg.eigvalsh(np.asarray(hessian))[0])
      if depth == 2:
        assert smallest == pytest.approx(-LAMBDA, abs=1e-10)
      elif mu < LAMBDA:
        assert smallest == pytest.approx(-(LAMBDA - mu) * mu ** ((depth - 2) / depth), abs=1e-10)
      else:
        assert smallest > -1e-12
    if depth > 2:
      _, hessian = gradient_and_hessian(
        (jnp.zeros((2, 2)),) * depth, lt.losses.target(symmetric_target([-LAMBDA, -0.5]))
      )
      assert float(jnp.max(jnp.abs(hessian))) == 0.0


def test_escape_from_the_floor_after_a_perturbation(x64):
  """Claim 5 [P/D] and the issue's subtlety: "at depth 2 the floor is a strict saddle, so ... a
  tiny perturbation of size eps lets GD escape after a time growing like log(1/eps); at depth 4 it
  is a non-strict saddle and escape is far slower."

  Identity init plus eps times fixed random unit matrices, GD at lr = 0.1; escape = the loss drops
  0.1 below the floor.
  * Depth 2, Phi = Q diag(-1, 0.5) Q^T, eps = 1e-2..1e-8: the escape time is linear in ln(1/eps)
    with slope 1/lambda (least-squares slope within 15%; measured t = 4.0, 8.8, 13.6, 18.4,
    slope 1.04): a strict saddle.
  * Depth 4, same Phi: also logarithmic, with slope 1/((lambda - mu) mu^{1/2}) = 2.83 (within 15%):
    the coupled strict direction of the module docstring, not a non-strict saddle (measured
    t = 17.6, 30.2, 43.2, 56.4, slope 2.81).
  * Depth 4, Phi = Q diag(-1, -0.5) Q^T (negative definite: the floor point W = 0 is a non-strict
    saddle): escape takes over 10 times longer than at depth 2 and grows faster than any
    logarithm: t(1e-3) / t(1e-2) > 3 (measured 94.6 and 661.2), while at depth 2 the escape time
    grows by ln(10)/lambda per decade (within 30%; measured 4.0 and 6.4).
  """
  mixed = symmetric_target([-LAMBDA, MU])
  epsilons = np.array([1e-2, 1e-4, 1e-6, 1e-8])
  for depth, slope in ((2, 1 / LAMBDA), (4, 1 / ((LAMBDA - MU) * MU**0.5))):
    times = np.array([escape_time(depth, mixed, eps) for eps in epsilons])
    assert np.all(np.isfinite(times)), times
    fitted = np.polyfit(np.log(1 / epsilons), times, 1)[0]
    assert fitted == pytest.approx(slope, rel=0.15), (depth, times)

  negative_definite = symmetric_target([-LAMBDA, -0.5])
  shallow = [escape_time(2, negative_definite, eps) for eps in (1e-2, 1e-3)]
  deep = [escape_time(4, negative_definite, eps) for eps in (1e-2, 1e-3)]
  assert np.all(np.isfinite(deep)), deep
  assert deep[1] / deep[0] > 3, (shallow, deep)
  assert shallow[1] - shallow[0] == pytest.approx(np.log(10) / LAMBDA, rel=0.3), (shallow, deep)
  assert min(d / s for d, s in zip(deep, shallow)) > 10, (shallow, deep)

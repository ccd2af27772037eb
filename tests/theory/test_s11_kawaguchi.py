"""Statement 11: the landscape at the origin (Kawaguchi 2016)."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt


@jax.jit
def gradient_and_hessian(ws, loss):
  flat, unravel = jax.flatten_util.ravel_pytree(ws)
  network_loss = lambda f: loss(lt.end_to_end(unravel(f)))
  return jax.grad(network_loss)(flat), jax.hessian(network_loss)(flat)


@pytest.mark.parametrize("dims", [(3, 2, 4), (4, 5, 2), (3, 3, 3), (2, 4, 3, 2), (3, 2, 2, 2, 3)])
def test_origin_is_critical_and_its_hessian_is_as_predicted(x64, dims):
  """docs/theory.md, "Landscape facts" (Kawaguchi, NeurIPS 2016) [P]: "for N >= 3 'bad' saddles
  exist whose Hessian has no negative eigenvalue. At all-zero weights [D]: gradient is 0 for N >= 2;
  the Hessian is 0 for N >= 3 (non-strict saddle); for N = 2 it has eigenvalues -+ sigma_i(Phi)
  (strict saddle)."

  jax.hessian of the network loss 1/2||W_{1:N} - Phi||_F^2 on the flattened weights at W_j = 0,
  random Phi: the gradient is exactly 0; for N >= 3 the Hessian is exactly 0; for N = 2 its
  spectrum is +sigma_i(Phi) and -sigma_i(Phi), each with multiplicity d_1 (for the
  r = min(d_0, d_2) singular values), and 0 with multiplicity d_1 (d_0 + d_2) - 2 d_1 r -- derived
  here: the second-order term is -<W_2 W_1, Phi> = -<W_2, Phi W_1^T>, a bilinear form whose
  operator X -> Phi X (on the d_1 columns of X = W_1^T) has the singular values of Phi, each d_1
  times. Compared to 1e-12 against the eigenvalues computed by NumPy.
  """
  rng = np.random.default_rng(sum(dims))
  phi = rng.standard_normal((dims[-1], dims[0]))
  zeros = tuple(jnp.zeros((d_out, d_in)) for d_in, d_out in zip(dims[:-1], dims[1:]))
  gradient, hessian = gradient_and_hessian(zeros, lt.losses.target(phi))
  assert float(jnp.max(jnp.abs(gradient))) == 0.0
  if len(dims) > 3:
    assert float(jnp.max(jnp.abs(hessian))) == 0.0
    return
  sigma = np.linalg.svd(phi, compute_uv=False)
  width, size = dims[1], hessian.shape[0]
  expected = np.sort(
    np.concatenate(
      [np.repeat(sigma, width), -np.repeat(sigma, width), np.zeros(size - 2 * width * len(sigma))]
    )
  )
  eigenvalues = np.linalg.eigvalsh(np.asarray(hessian))
  np.testing.assert_allclose(eigenvalues, expected, atol=1e-12)
  assert eigenvalues[0] < 0 < eigenvalues[-1]  # a strict saddle

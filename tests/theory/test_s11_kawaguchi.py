"""Statement 11: the landscape at the origin (Kawaguchi 2016).

Not tested here, because no implementation can get them wrong: that the gradient vanishes at the
origin for N >= 2 and the Hessian for N >= 3. W_{1:N} is a product of N layers, so every derivative
of order below N at all-zero weights contains a zero factor, whatever the loss, the product's order
or the autodiff (the old assertions of both, at N = 3 and 4, passed with a loss lacking the 1/2 or
using W + Phi). What can fail is the first nonzero term, checked below; the old N = 2 spectrum
check is kept (it cannot see the sign of Phi, which the Taylor check does).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import jet

import lintraj as lt


@pytest.mark.parametrize("dims", [(3, 2, 4), (4, 5, 2), (3, 3, 3)])
def test_depth2_origin_is_a_strict_saddle_with_eigenvalues_plus_minus_sigma(x64, dims):
  """docs/theory.md, "Landscape facts" (Kawaguchi, NeurIPS 2016) [D]: "for N = 2 it [the Hessian
  at all-zero weights] has eigenvalues -+ sigma_i(Phi) (strict saddle)", each with multiplicity
  the hidden width d_1.

  lintraj.landscape.hessian of the loss 1/2||W_2 W_1 - Phi||_F^2 at W_j = 0, random Phi: its
  spectrum is +sigma_i(Phi) and -sigma_i(Phi), each d_1 times (for the r = min(d_0, d_2) singular
  values), and 0 with multiplicity d_1 (d_0 + d_2) - 2 d_1 r -- derived here: the second-order
  term is -<W_2 W_1, Phi> = -<W_2, Phi W_1^T>, a bilinear form whose operator X -> Phi X (on the
  d_1 columns of X = W_1^T) has the singular values of Phi, each d_1 times. Compared to 1e-12
  against NumPy's singular values of Phi. Rules out: a wrong scale of the cross term (a loss
  without the 1/2 gives +-2 sigma), a Hessian of the wrong function or blocks (other eigenvalues or
  multiplicities), and the wrong reading "the origin is a minimum or maximum at depth 2".
  """
  rng = np.random.default_rng(sum(dims))
  phi = rng.standard_normal((dims[-1], dims[0]))
  zeros = tuple(jnp.zeros((d_out, d_in)) for d_in, d_out in zip(dims[:-1], dims[1:]))
  hessian = np.asarray(lt.landscape.hessian(zeros, lt.losses.target(phi)))
  sigma = np.linalg.svd(phi, compute_uv=False)
  width, size = dims[1], hessian.shape[0]
  expected = np.sort(
    np.concatenate(
      [np.repeat(sigma, width), -np.repeat(sigma, width), np.zeros(size - 2 * width * len(sigma))]
    )
  )
  eigenvalues = np.linalg.eigvalsh(hessian)
  np.testing.assert_allclose(eigenvalues, expected, atol=1e-12)
  assert eigenvalues[0] < 0 < eigenvalues[-1]  # a strict saddle


@functools.partial(jax.jit, static_argnames="order")
def taylor_coefficients(directions, loss, order):
  """The coefficients of t^0 .. t^order of t -> loss(W_{1:N}(t V_1, ..., t V_N)) at t = 0
  (jax.experimental.jet: Taylor-mode autodiff, exact for this polynomial), with lintraj's
  end-to-end matrix."""
  f = lambda t: loss(lt.end_to_end(tuple(t * v for v in directions)))
  primal, series = jet.jet(f, (0.0,), ((1.0,) + (0.0,) * (order - 1),))
  return jnp.stack([primal] + [s / math.factorial(k + 1) for k, s in enumerate(series)])


@pytest.mark.parametrize("dims", [(3, 2, 4), (2, 4, 3, 2), (3, 3, 3, 3), (3, 2, 2, 2, 3)])
def test_origin_is_a_saddle_whose_first_nonzero_term_has_order_n(x64, dims):
  """docs/theory.md, "Landscape facts" (Kawaguchi, NeurIPS 2016) [P/D]: "for N >= 3 'bad' saddles
  exist whose Hessian has no negative eigenvalue. At all-zero weights ... the Hessian is 0 for
  N >= 3 (non-strict saddle)".

  What makes the origin a saddle and not a minimum although its Hessian vanishes [D]: along any
  direction V = (V_1, ..., V_N), L^N(t V) = 1/2||Phi||^2 - t^N <V_N ... V_1, Phi> + t^{2N}/2 ||V_N
  ... V_1||^2 exactly. The Taylor coefficients of lintraj's network loss along random V (jet, all
  orders 0..2N) match this polynomial to 1e-12 (relative), with the product and the inner product
  computed by NumPy. So the origin is a saddle: negating V_1 flips the order-N term, which is
  nonzero for generic V, giving descent and ascent at order N. Rules out: a wrong sign or factor in
  the order-N term (a loss without the 1/2 doubles it and the t^{2N} term; one of -Phi flips it), an
  end-to-end product in the wrong order (W_1 ... W_N: a different <., Phi> for square layers), a
  first nonzero term of another order, and the wrong reading "zero Hessian at a critical point of a
  polynomial loss means a local minimum".
  """
  rng = np.random.default_rng(sum(dims))
  phi = rng.standard_normal((dims[-1], dims[0]))
  directions = [rng.standard_normal((d_out, d_in)) for d_in, d_out in zip(dims[:-1], dims[1:])]
  depth = len(directions)
  product = np.linalg.multi_dot(directions[::-1]) if depth > 1 else directions[0]
  expected = np.zeros(2 * depth + 1)
  expected[0], expected[depth] = 0.5 * np.sum(phi**2), -np.sum(product * phi)
  expected[2 * depth] = 0.5 * np.sum(product**2)
  coefficients = np.asarray(
    taylor_coefficients(tuple(map(jnp.asarray, directions)), lt.losses.target(phi), 2 * depth)
  )
  np.testing.assert_allclose(coefficients, expected, rtol=0, atol=1e-12 * np.max(np.abs(expected)))

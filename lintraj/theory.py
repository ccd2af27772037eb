r"""Theory next to simulation: the closed forms, rates and bounds of the trajectory theory, with the
same call shapes as the simulated quantities.

- :func:`theorem1`, :func:`iterations_bound`, :func:`check_theorem1`: linear convergence of GD from
  balanced inits with a deficiency margin (Arora, Cohen, Golowich, Hu, ICLR 2019, Theorem 1).
- :func:`end_to_end_velocity`, :func:`end_to_end_flow`: the end-to-end rule of balanced networks
  (Arora, Cohen, Hazan, ICML 2018, Theorem 1).
- :func:`mode_strength`: Saxe et al.'s mode dynamics for aligned balanced inits (ICLR 2014).
- :func:`singular_value_velocity`: the singular value dynamics of deep matrix factorization
  (Arora, Cohen, Hu, Luo, NeurIPS 2019, Theorem 3).

Loss convention throughout: :math:`\tfrac12\|W - \Phi\|_F^2` (``lintraj.losses.target``), and
continuous time :math:`t = \eta \cdot \mathrm{step}`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lintraj import metrics
from lintraj.dynamics import train
from lintraj.flow import odeint
from lintraj.network import as_float_array, check_weights, end_to_end, layer_dims
from lintraj.recording import Trajectory
from lintraj.validation import check_int, check_lr, check_positive

__all__ = [
  "Theorem1",
  "theorem1",
  "iterations_bound",
  "Theorem1Check",
  "check_theorem1",
  "end_to_end_velocity",
  "end_to_end_flow",
  "mode_strength",
  "singular_value_velocity",
  "flattest_sharpness",
  "gradient_flow_sharpness",
]


def _check_depth(depth) -> int:
  return check_int("depth", depth, 1)


def _check_target(target) -> jnp.ndarray:
  target = as_float_array(target, "target")
  if target.ndim != 2:
    raise ValueError(
      f"target must be a (d_N, d_0) matrix Phi; got shape {target.shape}. "
      "Reshape a vector to (1, d_0)."
    )
  return target


def _check_concrete_positive(name, value):
  """``value`` as an array; ValueError if it is concrete and not (finite and) positive."""
  if isinstance(value, jax.core.Tracer):
    return value
  arr = np.asarray(value, dtype=float)
  if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
    hint = (
      " Theorem 1 needs a deficiency margin c > 0 (lintraj.metrics.deficiency_margin)."
      if name == "margin"
      else ""
    )
    raise ValueError(f"{name} must be positive and finite; got {value!r}.{hint}")
  return value


def _check_matrix(name, x) -> jnp.ndarray:
  x = jnp.asarray(x)
  if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
      f"{name} must be a 2-D floating matrix (the end-to-end matrix, shape (d_N, d_0)); "
      f"got shape {x.shape} and dtype {x.dtype}. For a network use lintraj.end_to_end(ws)."
    )
  return x


class Theorem1(NamedTuple):
  r"""The quantities of Theorem 1 for a target :math:`\Phi`, margin :math:`c` and depth :math:`N`.

  Attributes:
    max_balancedness: :math:`\delta` bound, :math:`c^2 / (256 N^3 \|\Phi\|_F^{2(N-1)/N})`.
    max_lr: :math:`\eta` bound, :math:`c^{(4N-2)/N} / (6144 N^3 \|\Phi\|_F^{(6N-4)/N})`.
    rate: :math:`c^{2(N-1)/N}`: while the conditions hold,
      :math:`\mathrm{loss}(t+1) \le (1 - \eta\, \mathrm{rate})\, \mathrm{loss}(t)`.
  """

  max_balancedness: jnp.ndarray
  max_lr: jnp.ndarray
  rate: jnp.ndarray


def theorem1(target, margin, depth: int) -> Theorem1:
  r"""The balancedness bound, learning-rate bound and rate of Theorem 1.

  With loss :math:`\tfrac12\|W_{1:N} - \Phi\|_F^2`: if :math:`W_{1:N}(0)` has deficiency margin
  :math:`c > 0`, the weights are :math:`\delta`-balanced with

  .. math::
     \delta \le \frac{c^2}{256\, N^3\, \|\Phi\|_F^{2(N-1)/N}}, \qquad
     \eta \le \frac{c^{(4N-2)/N}}{6144\, N^3\, \|\Phi\|_F^{(6N-4)/N}},

  then :math:`\mathrm{loss}(t) \le (1 - \eta\, c^{2(N-1)/N})^t\, \mathrm{loss}(0)` (Lemma 1 with
  Lemma 2). The constants are transcribed from docs/theory.md, "Theorem 1" (the authors' course
  notes, tagged "confirm"); no simulation can confirm constants of sufficient conditions. What
  float64 simulations showed (``tests/theory/test_s03_theorem1.py``): the conclusion held on every
  init tested that satisfies the conditions, with an empirical rate 6 to 48 times the guaranteed
  one on generic inits and 2.02-2.03 times on constructed tight ones (the closest any run at
  ``max_lr`` can come: Lemma 1 keeps half the flow's decrease), and it still held at learning
  rates :math:`10^4`-:math:`10^8` times ``max_lr``.

  Args:
    target: :math:`\Phi`, shape ``(d_N, d_0)``.
    margin: the deficiency margin :math:`c > 0` (e.g. ``lintraj.metrics.deficiency_margin``).
    depth: :math:`N \ge 1`.

  Returns:
    A :class:`Theorem1` of scalars. Jittable in ``target`` and ``margin``.

  Example:
    >>> import jax.numpy as jnp
    >>> bounds = theorem1(jnp.eye(2), 0.5, 2)  # ||Phi||_F = sqrt(2)
    >>> [float(f"{float(x):.4g}") for x in bounds]
    [8.632e-05, 6.358e-07, 0.5]

  References:
    Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019 (arXiv 1810.02281), Theorem 1.
  """
  depth = _check_depth(depth)
  if not isinstance(target, jax.core.Tracer):
    target = _check_target(target)
  margin = _check_concrete_positive("margin", margin)
  phi_norm = jnp.linalg.norm(target)
  c = jnp.asarray(margin, phi_norm.dtype)
  n = depth
  return Theorem1(
    max_balancedness=c**2 / (256 * n**3 * phi_norm ** (2 * (n - 1) / n)),
    max_lr=c ** ((4 * n - 2) / n) / (6144 * n**3 * phi_norm ** ((6 * n - 4) / n)),
    rate=c ** (2 * (n - 1) / n),
  )


def iterations_bound(loss0, eps, lr, margin, depth: int) -> jnp.ndarray:
  r"""The number of steps after which Theorem 1 guarantees :math:`\mathrm{loss} \le \epsilon`:

  .. math::
     T(\epsilon) = \max\Big(0, \frac{\log(\mathrm{loss}(0) / \epsilon)}{\eta\, c^{2(N-1)/N}}\Big)

  (from :math:`(1 - \eta c^{2(N-1)/N})^T \le e^{-\eta c^{2(N-1)/N} T}`); the guarantee holds for
  every :math:`T \ge T(\epsilon)` when the conditions of :func:`theorem1` hold.

  Args:
    loss0: the loss at initialization, :math:`\tfrac12 \|W_{1:N}(0) - \Phi\|_F^2 \ge 0`.
    eps: the target loss :math:`\epsilon > 0`.
    lr: the learning rate :math:`\eta > 0`.
    margin: the deficiency margin :math:`c > 0`.
    depth: :math:`N \ge 1`.

  Returns:
    A scalar (not rounded; the guaranteed count is its ceiling).

  Example:
    >>> round(float(iterations_bound(1.0, 1e-4, 0.01, 1.0, 3)), 3)  # log(1e4) / 0.01
    921.034

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Theorem 1.
  """
  depth = _check_depth(depth)
  for name, value in (("eps", eps), ("lr", lr), ("margin", margin)):
    _check_concrete_positive(name, value)
  if not isinstance(loss0, jax.core.Tracer) and not (np.isfinite(loss0) and loss0 >= 0):
    raise ValueError(f"loss0 must be a finite number >= 0; got {loss0!r}.")
  rate = jnp.asarray(margin, jnp.result_type(float)) ** (2 * (depth - 1) / depth)
  return jnp.maximum(jnp.log(jnp.asarray(loss0) / eps) / (lr * rate), 0.0)


class Theorem1Check(NamedTuple):
  r"""Which conditions of Theorem 1 hold at an initialization, with the numbers.

  Attributes:
    holds: every condition below holds.
    no_bottleneck: :math:`d_j \ge \min(d_0, d_N)` for every hidden width (the architecture
      assumption).
    has_margin: the deficiency margin is positive.
    is_balanced: ``balancedness <= max_balancedness``.
    lr_ok: ``lr <= max_lr``.
    margin: the deficiency margin :math:`c = \sigma_{\min}(\Phi) - \|W_{1:N} - \Phi\|_F`.
    balancedness: :math:`\max_j \|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F`.
    max_balancedness: the :math:`\delta` bound at this margin (NaN without a margin).
    lr: the learning rate checked.
    max_lr: the :math:`\eta` bound at this margin (NaN without a margin).
    rate: :math:`c^{2(N-1)/N}` (NaN without a margin).
    loss: :math:`\tfrac12\|W_{1:N} - \Phi\|_F^2` at the initialization.
    eps: the loss the iteration count is for.
    iterations: the guaranteed number of steps to reach ``loss <= eps``
      (``ceil(iterations_bound)``), or None when a condition fails.
  """

  holds: bool
  no_bottleneck: bool
  has_margin: bool
  is_balanced: bool
  lr_ok: bool
  margin: float
  balancedness: float
  max_balancedness: float
  lr: float
  max_lr: float
  rate: float
  loss: float
  eps: float
  iterations: int | None


@jax.jit
def _init_quantities(weights, target):
  """Deficiency margin, balancedness and loss of an initialization (one compiled call)."""
  return (
    metrics.deficiency_margin(weights, target),
    metrics.balancedness(weights),
    0.5 * jnp.sum((end_to_end(weights) - target) ** 2),
  )


def check_theorem1(weights, target, lr, *, eps: float = 1e-5) -> Theorem1Check:
  r"""Check the conditions of Theorem 1 at an initialization, before a run.

  Computes the deficiency margin :math:`c` and balancedness of ``weights`` with respect to
  ``target``, the bounds of :func:`theorem1` at that margin, and compares. When all conditions
  hold, GD with this ``lr`` on :math:`\tfrac12\|W_{1:N} - \Phi\|_F^2` reaches ``loss <= eps``
  within ``iterations`` steps.

  A rank-deficient :math:`\Phi` has :math:`\sigma_{\min}(\Phi) = 0`, so no margin here (the paper's
  variant for that case, with shared null spaces, is not implemented).

  Args:
    weights: ``(W_1, ..., W_N)``.
    target: :math:`\Phi`, shape ``(d_N, d_0)``.
    lr: the learning rate to check.
    eps: the loss the iteration count is for (default ``1e-5``, the convergence criterion of
      Arora et al. 2019, Figure 1).

  Returns:
    A :class:`Theorem1Check` of Python numbers (not jittable: it is a pre-run check).

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> check = check_theorem1(lt.init.residual((2, 2, 2)), jnp.diag(jnp.array([1.1, 0.9])), 1e-7)
    >>> check.holds, check.has_margin, check.lr_ok, round(check.margin, 4)
    (True, True, True, 0.7586)
    >>> check_theorem1(lt.init.residual((2, 2, 2)), jnp.diag(jnp.array([1.1, 0.9])), 1e-3).lr_ok
    False

  References:
    Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019 (arXiv 1810.02281), Theorem 1 and Definitions 1-2.
  """
  weights = check_weights(weights)
  target = _check_target(target)
  dims, depth = layer_dims(weights), len(weights)
  if target.shape != (dims[-1], dims[0]):
    raise ValueError(
      f"target has shape {target.shape} but the end-to-end matrix of these weights has "
      f"shape {(dims[-1], dims[0])} (d_N, d_0)."
    )
  lr = check_lr(lr)
  eps = check_positive("eps", eps)
  margin, balancedness, loss = (
    float(x) for x in _init_quantities(weights, target.astype(weights[0].dtype))
  )
  no_bottleneck = min(dims[1:-1], default=dims[0]) >= min(dims[0], dims[-1])
  has_margin = margin > 0
  if has_margin:
    bounds = theorem1(target, margin, depth)
    max_balancedness, max_lr, rate = (float(x) for x in bounds)
  else:
    max_balancedness = max_lr = rate = math.nan
  is_balanced, lr_ok = balancedness <= max_balancedness, lr <= max_lr
  holds = no_bottleneck and has_margin and is_balanced and lr_ok
  iterations = math.ceil(float(iterations_bound(loss, eps, lr, margin, depth))) if holds else None
  return Theorem1Check(
    holds=holds,
    no_bottleneck=no_bottleneck,
    has_margin=has_margin,
    is_balanced=is_balanced,
    lr_ok=lr_ok,
    margin=margin,
    balancedness=balancedness,
    max_balancedness=max_balancedness,
    lr=lr,
    max_lr=max_lr,
    rate=rate,
    loss=loss,
    eps=eps,
    iterations=iterations,
  )


def _padded_singular_values(w):
  """Full SVD of ``w`` with singular values below the numerical rank threshold set to 0, padded
  with zeros to ``d_N`` (left) and ``d_0`` (right) entries."""
  u, s, vt = jnp.linalg.svd(w, full_matrices=True)
  threshold = max(w.shape) * jnp.finfo(w.dtype).eps * s[0]
  s = jnp.where(s > threshold, s, 0.0)
  rows, cols = w.shape
  left = jnp.zeros((rows,), s.dtype).at[: s.shape[0]].set(s)
  right = jnp.zeros((cols,), s.dtype).at[: s.shape[0]].set(s)
  return u, left, right, vt


def end_to_end_velocity(w, grad, depth: int) -> jnp.ndarray:
  r"""The end-to-end rule: the velocity of :math:`W = W_{1:N}` under gradient flow on a balanced
  network of depth :math:`N`,

  .. math::
     \dot W = -\sum_{j=1}^{N} (W W^\top)^{\frac{j-1}{N}}\, \nabla L^1(W)\, (W^\top
     W)^{\frac{N-j}{N}}.

  It depends on the depth only, not on the hidden widths. With the SVD :math:`W = U S V^\top`
  (full :math:`U, V`) it is :math:`-U\,[(U^\top \nabla L^1 V) \circ K]\,V^\top` with
  :math:`K_{ik} = \sum_j \lambda_i^{(j-1)/N} \mu_k^{(N-j)/N}` and :math:`\lambda, \mu` the
  eigenvalues of :math:`W W^\top, W^\top W` (squared singular values, zero-padded): the
  preconditioner's eigenvalues of Arora et al. 2018. The fractional powers come from the SVD of
  :math:`W` itself rather than ``eigh`` of the Gram matrices (which would square the rounding error
  before taking roots), and singular values below ``max(d) * eps * sigma_max`` count as 0, so the
  result is exact on the null spaces of a rank-deficient :math:`W`.

  Args:
    w: the end-to-end matrix, shape ``(d_N, d_0)``.
    grad: :math:`\nabla L^1(W)`, same shape.
    depth: :math:`N \ge 1` (``N = 1`` gives ``-grad``).

  Returns:
    :math:`\dot W`, shape ``(d_N, d_0)``. Jittable (``depth`` static).

  Example:
    >>> import jax.numpy as jnp
    >>> w = jnp.diag(jnp.array([4.0, 0.0]))
    >>> v = end_to_end_velocity(w, -jnp.ones((2, 2)), depth=2)  # K = [[4 + 4, 4 + 0], [0 + 4, 0]]
    >>> [[round(x, 4) for x in row] for row in v.tolist()]
    [[8.0, 4.0], [4.0, 0.0]]

  References:
    Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration by
    Overparameterization. ICML 2018 (arXiv 1802.06509), Theorem 1 and Claim 1.
  """
  depth = _check_depth(depth)
  w, grad = _check_matrix("w", w), _check_matrix("grad", grad)
  if grad.shape != w.shape:
    raise ValueError(
      f"grad has shape {grad.shape} but w has shape {w.shape}; pass the gradient of "
      "the loss at w (same shape)."
    )
  u, left, right, vt = _padded_singular_values(w)
  k = sum(
    left[:, None] ** (2 * (j - 1) / depth) * right[None, :] ** (2 * (depth - j) / depth)
    for j in range(1, depth + 1)
  )
  return -u @ ((u.T @ grad @ vt.T) * k) @ vt


def singular_value_velocity(w, grad, depth: int) -> jnp.ndarray:
  r"""The velocity of the singular values of :math:`W = W_{1:N}` under gradient flow from a
  balanced init,

  .. math::
     \dot\sigma_r = -N\, \sigma_r^{2 - 2/N}\, \langle \nabla L^1(W),\, u_r v_r^\top \rangle,

  with :math:`(\sigma_r, u_r, v_r)` the singular triplets of :math:`W` (distinct, so that they are
  differentiable). Depth speeds up large and slows down small singular values.

  Args:
    w: the end-to-end matrix, shape ``(d_N, d_0)``.
    grad: :math:`\nabla L^1(W)`, same shape.
    depth: :math:`N \ge 1`.

  Returns:
    ``(min(d_0, d_N),)``, in the (descending) order of
    ``lintraj.metrics.end_to_end_singular_values``.

  Example:
    >>> import jax.numpy as jnp
    >>> w = jnp.diag(jnp.array([4.0, 1.0]))
    >>> singular_value_velocity(w, -jnp.eye(2), depth=2).tolist()  # 2 sigma
    [8.0, 2.0]

  References:
    Arora, Cohen, Hu, Luo. Implicit Regularization in Deep Matrix Factorization. NeurIPS 2019
    (arXiv 1905.13655), Theorem 3.
  """
  depth = _check_depth(depth)
  w, grad = _check_matrix("w", w), _check_matrix("grad", grad)
  if grad.shape != w.shape:
    raise ValueError(f"grad has shape {grad.shape} but w has shape {w.shape}.")
  u, s, vt = jnp.linalg.svd(w, full_matrices=False)
  projections = jnp.sum(u * (grad @ vt.T), axis=0)  # <grad, u_r v_r^T>
  return -depth * s ** (2 - 2 / depth) * projections


def _end_to_end_update(depth):
  def update(grads, state, params):
    (w,), (g,) = params, grads
    return (-end_to_end_velocity(w, g, depth),), state

  return update


@functools.lru_cache(maxsize=64)
def _end_to_end_rule(depth: int, lr: float) -> optax.GradientTransformation:
  """Euler steps of the end-to-end rule on the one-layer 'network' ``(W,)``, as an optax
  transformation (cached, so repeated runs with the same depth and lr reuse the compiled scan)."""
  rule = optax.GradientTransformation(lambda params: optax.EmptyState(), _end_to_end_update(depth))
  return optax.chain(rule, optax.scale(-lr))


def end_to_end_flow(w0, loss, depth: int, *, lr, steps: int, record_every: int = 1) -> Trajectory:
  r"""Evolve the end-to-end matrix by the end-to-end rule (Euler steps of size ``lr``), recording
  like :func:`lintraj.gradient_descent`.

  .. math::
     W(t+1) = W(t) - \eta \sum_{j=1}^{N} (W W^\top)^{\frac{j-1}{N}} \nabla L^1(W)
              (W^\top W)^{\frac{N-j}{N}}

  (:func:`end_to_end_velocity`). For a balanced network GD on the weights follows this rule up to
  :math:`O(\eta^2)` per step, so its end-to-end records approach these as :math:`\eta \to 0`.
  Runs as one compiled loop (:func:`lintraj.train` with the rule as an optax
  transformation); a repeated call with the same shapes, depth, ``lr``, ``steps`` and
  ``record_every`` does not recompile.

  Args:
    w0: the initial end-to-end matrix, shape ``(d_N, d_0)`` (e.g. ``lintraj.end_to_end(ws)``).
    loss: a :class:`lintraj.losses.Loss` or a jittable function of the end-to-end matrix.
    depth: the depth :math:`N \ge 1` the rule is for.
    lr: the step size :math:`\eta > 0`.
    steps: the number of steps.
    record_every: record at steps ``0, k, 2k, ...``.

  Returns:
    A :class:`lintraj.Trajectory` of the one-layer network ``(W,)``: ``step``, ``loss``,
    ``deficiency_margin`` and ``end_to_end_singular_values`` compare one to one with those of a GD
    run; ``grad_norm`` is :math:`\|\nabla L^1(W)\|_F`, ``balancedness`` is 0,
    ``layer_singular_values`` is ``(end_to_end_singular_values,)`` and ``final`` is ``(W,)``.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> flow = end_to_end_flow(jnp.array([[0.1, 0.0]]), lt.losses.target(jnp.array([[1.0, 0.5]])),
    ...                        depth=3, lr=0.05, steps=400, record_every=100)
    >>> flow.step.tolist(), bool(flow.loss[-1] < 1e-6)
    ([0, 100, 200, 300, 400], True)

  References:
    Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration by
    Overparameterization. ICML 2018 (arXiv 1802.06509), Theorem 1.
  """
  if isinstance(w0, (tuple, list)):
    raise ValueError(
      "w0 must be the end-to-end matrix, not a tuple of layers; pass lintraj.end_to_end(weights)."
    )
  w0 = _check_matrix("w0", w0)
  depth, lr = _check_depth(depth), check_lr(lr)
  return train((w0,), loss, _end_to_end_rule(depth, lr), steps=steps, record_every=record_every)


def _mode_rhs(y, tau, above, p):
  r"""The normalised mode ODE :math:`dx/d\tau = x^p (1 - x)` in the variable ``y`` on
  :math:`\theta \in [0, 1]` (:math:`\tau = \theta\, \tau_{\text{end}}`): ``y = logit(x)`` with
  :math:`dy/d\tau = x^{p-1}` below 1, ``y = log(x - 1)`` with :math:`dy/d\tau = -x^p` above 1.
  Neither form is stiff near the fixed point :math:`x = 1`."""
  below = jnp.exp(-(p - 1) * jax.nn.softplus(-y))  # sigmoid(y) ** (p - 1)
  over = -jnp.exp(p * jax.nn.softplus(y))  # -(1 + e^y) ** p
  return tau * jnp.where(above, over, below)


@functools.partial(jax.jit, static_argnames="depth")
def _mode_strength(t, s, u0, depth):
  if depth == 1:  # du/dt = s - u
    return s + (u0 - s) * jnp.exp(-t)
  if depth == 2:  # u = s u0 / (s e^{-2st} + u0 (1 - e^{-2st})), written to be exact at s = 0
    growth = jnp.where(s * t == 0, 2 * t, -jnp.expm1(-2 * s * t) / jnp.where(s == 0, 1, s))
    return u0 / (jnp.exp(-2 * s * t) + u0 * growth)
  p = 2 - 2 / depth
  safe_s = jnp.where(s > 0, s, 1)
  x0 = u0 / safe_s
  moving = (s > 0) & (u0 > 0) & (x0 != 1)
  above = moving & (x0 > 1)
  safe_x0 = jnp.where(moving, x0, 0.5)
  y0 = jnp.where(
    above,
    jnp.log(jnp.where(above, safe_x0 - 1, 1.0)),
    jnp.log(safe_x0) - jnp.log1p(-jnp.where(above, 0.5, safe_x0)),
  )
  tau = jnp.where(moving, depth * safe_s**p * t, 0.0)
  tol = max(1e-13, 64 * float(jnp.finfo(t.dtype).eps))
  records, *_ = odeint(
    lambda y: _mode_rhs(y, tau, above, p),
    y0,
    jnp.ones((1,), t.dtype),
    lambda y: y,
    rtol=tol,
    atol=tol,
    max_steps=1_000_000,
  )
  y = records[0]
  x = jnp.where(above, 1 + jnp.exp(y), jax.nn.sigmoid(y))
  decay = (u0**-p + depth * p * t) ** (-1 / p)  # s = 0: du/dt = -N u^{3 - 2/N}
  u = jnp.where(x0 == 1, s, s * x)
  return jnp.where(u0 == 0, 0.0, jnp.where(s > 0, u, decay))


def mode_strength(t, s, u0, depth: int) -> jnp.ndarray:
  r"""The strength :math:`u(t)` of one mode (a singular value of :math:`W_{1:N}` along a singular
  pair of :math:`\Phi` with singular value :math:`s`) under gradient flow from a balanced init
  aligned to :math:`\Phi`'s singular vectors:

  .. math::
     \frac{du}{dt} = N\, u^{2 - 2/N}\, (s - u), \qquad u(0) = u_0,

  in lintraj's units (loss :math:`\tfrac12\|W - \Phi\|_F^2`, :math:`t = \eta \cdot \mathrm{step}`).
  Depth 2 has the closed form :math:`u(t) = s u_0 / (s e^{-2st} + u_0 (1 - e^{-2st}))` (depth 1:
  :math:`s + (u_0 - s) e^{-t}`); for :math:`N \ge 3` the ODE is normalised to
  :math:`dx/d\tau = x^{2-2/N}(1 - x)`, :math:`x = u/s`, :math:`\tau = N s^{2-2/N} t`, written in
  :math:`y = \mathrm{logit}(x)` (or :math:`\log(x - 1)` for :math:`u_0 > s`), where it is not stiff,
  and integrated by the adaptive Dormand-Prince 5(4) pair at tolerance :math:`10^{-13}`
  (:func:`lintraj.flow.odeint`). In float64 the error is below :math:`10^{-8} s` (tested against a
  NumPy RK4 reference with tiny steps and against quadrature of :math:`t(u) = \int du / \dot u`;
  measured at most :math:`2 \cdot 10^{-10} s`); in float32 it is float32 rounding.

  Args:
    t: times :math:`t \ge 0`.
    s: target singular values :math:`s \ge 0` (:math:`s = 0`: :math:`u` decays to 0).
    u0: initial strengths :math:`u_0 \ge 0` (:math:`u_0 = 0` stays 0).
    depth: :math:`N \ge 1`.

  ``t``, ``s`` and ``u0`` broadcast against each other (same rank, or scalars), e.g.
  ``mode_strength(lr * traj.step[:, None], s[None, :], u0, N)`` has the shape of
  ``traj.end_to_end_singular_values``.

  Returns:
    :math:`u(t)`, of the broadcast shape. Jittable (``depth`` static).

  Example:
    >>> import jax.numpy as jnp
    >>> [round(x, 6) for x in mode_strength(jnp.array([0.0, 1.0, 10.0]), 1.0, 0.01, 2).tolist()]
    [0.01, 0.069453, 1.0]

  References:
    Saxe, McClelland, Ganguli. Exact solutions to the nonlinear dynamics of learning in deep
    linear neural networks. ICLR 2014 (arXiv 1312.6120): the decoupled mode dynamics of aligned,
    balanced initializations (docs/theory.md, "Exact dynamics").
  """
  depth = _check_depth(depth)
  dtype = jnp.result_type(t, s, u0, float)
  t, s, u0 = jnp.broadcast_arrays(*(jnp.asarray(x, dtype) for x in (t, s, u0)))
  for name, x in (("t", t), ("s", s), ("u0", u0)):
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x) & (x >= 0))):
      raise ValueError(
        f"{name} must be finite and >= 0 everywhere (times, singular values and "
        f"mode strengths are non-negative); got {name} = {x}."
      )
  shape, size = t.shape, t.size
  padded = max(
    8, 1 << (size - 1).bit_length()
  )  # few sizes, few compilations; padding is a fixed point
  pad = lambda x, value: jnp.concatenate([x.reshape(-1), jnp.full((padded - size,), value, dtype)])
  u = _mode_strength(pad(t, 0.0), pad(s, 1.0), pad(u0, 1.0), depth)
  return u[:size].reshape(shape)


def flattest_sharpness(depth: int, sigma_max: float) -> float:
  r"""The least sharpness of any global minimum of :math:`\tfrac12\|W_N \cdots W_1 - \Phi\|_F^2`:
  :math:`S_{\min} = N \sigma_{\max}(\Phi)^{2 - 2/N}`, attained at the balanced minima.

  At a global minimum the Hessian is :math:`H = J^\top J` (:math:`J` the Jacobian of the
  end-to-end matrix in the weights); along the top singular direction of :math:`\Phi`,
  Cauchy-Schwarz and AM-GM over the layers' singular values bound :math:`\lambda_{\max}(H)` below by
  :math:`S_{\min}`, with equality exactly at the balanced minima. GD with
  :math:`\eta > 2/S_{\min}` cannot converge to any global minimum (the edge-of-stability study,
  :mod:`lintraj.reproductions.edge_of_stability`).

  Example:
    >>> round(flattest_sharpness(3, 2.0), 6)   # 3 * 2^(4/3)
    7.559526

  References:
    Derived for lintraj (docs/theory.md); the value at the balanced minimum is checked against
    the dense Hessian in tests/test_landscape.py. Related [not checked against the paper]: Mulayoff,
    Michaeli. Unique properties of flat minima in deep networks. ICML 2020.
  """
  depth = _check_depth(depth)
  sigma_max = check_positive("sigma_max", sigma_max)
  return float(depth * sigma_max ** (2 - 2 / depth))


def gradient_flow_sharpness(magnitudes, phi: float) -> np.ndarray:
  r"""Sharpness of the global minimum that gradient flow reaches from a scalar chain (GFS
  sharpness).

  Gradient flow on :math:`\tfrac12(w_N \cdots w_1 - \phi)^2` conserves :math:`w_i^2 - w_j^2`, so it
  ends at :math:`w_i^2 = a_i + s` with :math:`a_i = w_i(0)^2` and :math:`s` the root of
  :math:`\prod_i (a_i + s) = \phi^2` on :math:`s > -\min_i a_i` (increasing there, so unique; found
  by bisection). The sharpness there is :math:`\sum_i \phi^2 / (a_i + s)` (:math:`H = J^\top J`,
  :math:`J_i = \phi / w_i`). Assumes the flow does not stall at a saddle (two layers reaching 0 at
  once, a non-generic start).

  Args:
    magnitudes: ``(..., N)`` the layer magnitudes :math:`|w_i|` (e.g. a run's
      ``layer_singular_values``); NaN rows give NaN.
    phi: the target, :math:`\phi > 0`.

  Returns:
    ``(...,)`` the GFS sharpness.

  Example:
    >>> round(float(gradient_flow_sharpness([0.1, 0.1, 0.1], 2.0)), 6)   # balanced: S_min
    7.559526
    >>> float(gradient_flow_sharpness([2.0, 1.0], 2.0))                  # already a minimum
    5.0

  References:
    Kreisler, Nacson, Soudry, Carmon. Gradient Descent Monotonically Decreases the Sharpness of
    Gradient Flow Solutions in Scalar Networks and Beyond. ICML 2023 (arXiv 2305.13064).
  """
  phi = check_positive("phi", phi)
  a = np.asarray(magnitudes, np.float64) ** 2
  if a.ndim < 1 or a.shape[-1] < 1:
    raise ValueError(
      f"magnitudes must have a last axis of N >= 1 layer magnitudes; got shape {a.shape}."
    )
  depth = a.shape[-1]
  lo, hi = -np.min(a, axis=-1), np.full(a.shape[:-1], float(phi) ** (2 / depth))
  target = 2 * np.log(float(phi))
  with np.errstate(invalid="ignore", divide="ignore"):
    for _ in range(120):
      mid = 0.5 * (lo + hi)
      below = np.sum(np.log(np.maximum(a + mid[..., None], 0.0)), axis=-1) < target
      lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    s = 0.5 * (lo + hi)
    return float(phi) ** 2 * np.sum(1 / (a + s[..., None]), axis=-1)

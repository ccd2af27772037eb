r"""Losses of the end-to-end matrix :math:`W = W_{1:N}`: the network loss is
:math:`L^N(W_1, \dots, W_N) = L^1(W_N \cdots W_1)`.

A loss is a :class:`Loss`: a pytree whose array data (target, inputs, labels, mask) are leaves,
so a compiled run is reused when only the data change. A user-defined loss is any jittable
function of the end-to-end matrix; wrap it as ``Loss(fn, target=phi)`` to give it a target
(used for the deficiency margin), or pass the bare function (no target).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lintraj.network import as_float_array, default_float_dtype
from lintraj.validation import check_key, check_positive

__all__ = [
  "Loss",
  "as_loss",
  "check_loss",
  "target",
  "regression",
  "lp_regression",
  "matrix_completion",
  "matrix_sensing",
  "split",
  "autoencoder_loss",
  "stack_losses",
]


@jax.tree_util.register_pytree_node_class
class Loss:
  r"""A loss :math:`L^1(W)` of the end-to-end matrix, with an optional target.

  A loss *has examples* when some of its data arrays hold one row per example along their leading
  axis (``m`` rows each): then a minibatch of it (:meth:`minibatch`, what ``batch_size=`` of the
  run functions trains on) is the same formula on the chosen rows. Write ``fn`` so that its
  value on a subset of the rows is the estimate you want of the full loss (a mean over examples,
  as :func:`regression`; a sum scaled by ``m`` over the rows present, as
  :func:`matrix_completion`), and say which arrays are per example with ``examples=``.

  Args:
    fn: ``fn(w)`` if ``data`` is None, else ``fn(w, data)``; must be jittable and return a scalar.
      Use a module-level function (not a fresh lambda per call) so compiled runs are reused.
    data: a pytree of arrays the loss reads (a traced argument, not a constant).
    target: the end-to-end matrix the loss is minimised at, if known, else None.
    name: a label for summaries.
    examples: None (no examples: minibatches are refused), True (every array of ``data`` has a
      leading example axis) or a pytree of booleans shaped like ``data`` (True: per example).

  Example:
    >>> import jax.numpy as jnp
    >>> def half_sq(w): return 0.5 * jnp.sum(w ** 2)
    >>> loss = Loss(half_sq, target=jnp.zeros((1, 2)))
    >>> float(loss(jnp.ones((1, 2))))
    1.0
    >>> def mean_sq(w, data): x, y = data; return 0.5 * jnp.mean(jnp.sum((x @ w.T - y) ** 2, -1))
    >>> loss = Loss(mean_sq, data=(jnp.eye(3), jnp.zeros((3, 1))), examples=True)
    >>> loss.n_examples, float(loss.minibatch(jnp.array([0, 2]))(jnp.ones((1, 3))))
    (3, 0.5)
  """

  def __init__(
    self,
    fn: Callable,
    data: Any = None,
    target: Any = None,
    name: str | None = None,
    examples: Any = None,
  ):
    self.fn, self.data, self.target = fn, data, target
    self.name = name or getattr(fn, "__name__", "custom")
    self.examples = _example_leaves(data, examples)

  def __call__(self, w):
    return self.fn(w) if self.data is None else self.fn(w, self.data)

  @property
  def n_examples(self) -> int | None:
    """``m``, the number of examples (rows of the per-example arrays), or None."""
    if self.examples is None:
      return None
    leaves = jax.tree_util.tree_leaves(self.data)
    return int(np.shape(leaves[self.examples.index(True)])[0])

  def minibatch(self, index) -> Loss:
    """The loss on the examples ``index`` (integer array): the per-example arrays' rows
    ``index``, the other data as they are (traceable: used inside compiled runs)."""
    leaves, treedef = jax.tree_util.tree_flatten(self.data)
    rows = [x[index] if per else x for x, per in zip(leaves, self.examples)]
    batch = object.__new__(Loss)
    batch.fn, batch.name, batch.examples = self.fn, self.name, self.examples
    batch.data, batch.target = jax.tree_util.tree_unflatten(treedef, rows), self.target
    return batch

  def tree_flatten(self):
    return (self.data, self.target), (self.fn, self.name, self.examples)

  @classmethod
  def tree_unflatten(cls, aux, children):
    fn, name, examples = aux
    loss = object.__new__(cls)
    loss.fn, loss.name, loss.examples = fn, name, examples
    loss.data, loss.target = children
    return loss

  def __repr__(self):
    shape = None if self.target is None else tuple(np.shape(self.target))
    return f"Loss({self.name}, target shape={shape})"


def _example_leaves(data, examples) -> tuple | None:
  """Which leaves of ``data`` are per example (a tuple of booleans, static), or None; checks
  that they share a leading axis."""
  if examples is None or examples is False:
    return None
  leaves = jax.tree_util.tree_leaves(data)
  if examples is True:
    flags = [True] * len(leaves)
  else:
    try:
      flags = [bool(f) for f in jax.tree_util.tree_structure(data).flatten_up_to(examples)]
    except (TypeError, ValueError) as err:
      raise ValueError(
        "examples= must be True or a pytree of booleans shaped like the loss's data "
        f"({jax.tree_util.tree_structure(data)}); got {examples!r}."
      ) from err
  rows = {np.shape(x)[0] if np.ndim(x) else None for x, f in zip(leaves, flags) if f}
  if not rows or None in rows or len(rows) > 1:
    raise ValueError(
      "the per-example data arrays must share a leading example axis (one row per example); "
      f"got leading sizes {sorted(map(str, rows))}. Mark only those arrays in examples=."
    )
  return tuple(flags)


def as_loss(loss) -> Loss:
  """A :class:`Loss` from a Loss or a bare callable of the end-to-end matrix."""
  if isinstance(loss, Loss):
    return loss
  if callable(loss):
    return Loss(loss)
  raise ValueError(
    f"loss must be a lintraj.losses.Loss or a function of the end-to-end matrix; got "
    f"{type(loss).__name__}. For a target matrix use lintraj.losses.target(phi)."
  )


def check_loss(loss, dims_or_weights) -> Loss:
  r"""``loss`` as a :class:`Loss`, checked to map an end-to-end matrix to a real scalar.

  The loss is traced once on the shape of :math:`W_{1:N}` (``jax.eval_shape``, nothing is
  computed), so a loss that returns a non-scalar, a complex or integer value, or cannot be traced
  (it calls ``float(w)`` or NumPy on ``w``) raises a ``ValueError`` saying so before a run compiles.

  Args:
    loss: a :class:`Loss` or a function of the end-to-end matrix.
    dims_or_weights: the widths ``(d_0, ..., d_N)`` (the end-to-end matrix is then of the default
      float dtype) or the weights ``(W_1, ..., W_N)`` (their dtype).

  Returns:
    ``as_loss(loss)``.

  Example:
    >>> import jax.numpy as jnp
    >>> check_loss(lambda w: jnp.sum(w ** 2), (3, 4, 2)).name
    '<lambda>'
    >>> check_loss(lambda w: w ** 2, (3, 4, 2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the loss must return a real scalar; got shape (2, 3), dtype float32. Reduce ...
  """
  loss = as_loss(loss)
  shapes = [np.ndim(x) for x in dims_or_weights]
  if shapes and set(shapes) == {0}:
    shape, dtype = (int(dims_or_weights[-1]), int(dims_or_weights[0])), default_float_dtype()
  elif shapes and min(shapes) >= 2:
    shape = (np.shape(dims_or_weights[-1])[-2], np.shape(dims_or_weights[0])[-1])
    dtype = jnp.result_type(dims_or_weights[0])
  else:
    raise ValueError(
      "check_loss needs the widths (d_0, ..., d_N) or the weights (W_1, ..., W_N); "
      f"got {dims_or_weights!r}."
    )
  try:
    out = jax.eval_shape(loss, jax.ShapeDtypeStruct(shape, dtype))
  except Exception as err:  # a user function: whatever it raises under tracing is its fault
    raise ValueError(
      f"the loss {loss.name!r} cannot be traced by JAX on a {shape} end-to-end matrix "
      f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); write it with "
      "jax.numpy only (no float(w), np.* on w or Python branches on its values)."
    ) from err
  if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
    got = (
      f"shape {out.shape}, dtype {out.dtype}"
      if isinstance(out, jax.ShapeDtypeStruct)
      else type(out).__name__
    )
    raise ValueError(
      f"the loss must return a real scalar; got {got}. Reduce it to one number of "
      f"a {shape} end-to-end matrix, e.g. with jnp.sum."
    )
  if not jnp.issubdtype(out.dtype, jnp.floating):
    raise ValueError(
      f"the loss must return a real scalar; got dtype {out.dtype}. Return a real "
      "floating value (gradient descent needs one), e.g. jnp.abs(z) ** 2 for a "
      "complex z."
    )
  return loss


def _half_squared_distance(w, phi):
  return 0.5 * jnp.sum((w - phi) ** 2)


def target(phi) -> Loss:
  r"""The loss :math:`\tfrac12 \|W - \Phi\|_F^2` (exactly, no constant), with ``.target = phi``.

  Whitened :math:`\ell_2` regression equals this loss plus a constant (see :func:`lintraj.whiten`).

  Example:
    >>> import jax.numpy as jnp
    >>> float(target(jnp.array([[1.0, 2.0]]))(jnp.zeros((1, 2))))
    2.5

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Section 2, Eq. (2).
  """
  phi = as_float_array(phi, "phi")
  if phi.ndim != 2:
    raise ValueError(
      f"phi must be a (d_N, d_0) matrix; got shape {phi.shape}. Reshape a vector to (1, d_0)."
    )
  return Loss(_half_squared_distance, data=phi, target=phi, name="target")


def check_regression_data(x, y):
  """``(x, y)`` as arrays of shapes (m, d_0) and (m, d_N), or ValueError."""
  x = as_float_array(x, "x")
  y = as_float_array(y, "y", x.dtype)
  if x.ndim != 2:
    raise ValueError(f"x must be (m, d_0) with samples as rows; got shape {x.shape}.")
  if y.ndim == 1:
    y = y[:, None]
  if y.ndim != 2 or y.shape[0] != x.shape[0]:
    raise ValueError(
      f"y must be (m, d_N) or (m,) with m = {x.shape[0]} rows like x; got shape {y.shape}."
    )
  return x, y


def _least_squares(x, y):
  return jnp.linalg.lstsq(x, y)[0].T


def _squared_error(w, data):
  x, y = data
  return 0.5 * jnp.sum((x @ w.T - y) ** 2) / x.shape[0]


def _lp_error(w, data):
  x, y, p = data
  return jnp.sum(jnp.abs(x @ w.T - y) ** p) / (p * x.shape[0])


def regression(x, y) -> Loss:
  r"""Least squares :math:`\frac{1}{2m}\|W X^\top - Y^\top\|_F^2` with samples as rows of
  ``x`` (m, d_0) and ``y`` (m, d_N).

  ``.target`` is the least-squares end-to-end matrix :math:`\arg\min_W` of the loss.

  Example:
    >>> import jax.numpy as jnp
    >>> loss = regression(jnp.eye(2), jnp.array([1.0, 3.0]))
    >>> loss.target.tolist(), float(loss(loss.target))
    ([[1.0, 3.0]], 0.0)

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Section 2.
  """
  x, y = check_regression_data(x, y)
  return Loss(
    _squared_error, data=(x, y), target=_least_squares(x, y), name="regression", examples=True
  )


def lp_regression(x, y, p: float) -> Loss:
  r"""The :math:`\ell_p` regression loss :math:`\frac{1}{p\,m}\sum_{i=1}^m \sum_k |(W x_i -
  y_i)_k|^p`.

  For ``p = 2`` it equals :func:`regression` and ``.target`` is the least-squares matrix; for
  other ``p`` the minimiser has no closed form and ``.target`` is None.

  Example:
    >>> import jax.numpy as jnp
    >>> float(lp_regression(jnp.ones((2, 1)), jnp.zeros(2), 4)(jnp.full((1, 1), 2.0)))
    4.0

  References:
    Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration by
    Overparameterization. ICML 2018 (arXiv 1802.06509), Section 6.
  """
  x, y = check_regression_data(x, y)
  p = check_positive("p", p)
  if p < 1:
    raise ValueError(f"p must be >= 1 (the loss is convex only then); got {p}.")
  return Loss(
    _lp_error,
    data=(x, y, jnp.asarray(p, x.dtype)),
    name="lp_regression",
    target=_least_squares(x, y) if p == 2 else None,
    examples=(True, True, False),
  )


def _observed_error(w, data):
  rows, cols, values, observed = data
  return 0.5 * jnp.sum((w[rows, cols] - values) ** 2) * (observed / rows.shape[0])


def matrix_completion(mask, values) -> Loss:
  r"""Squared error on the observed entries: :math:`\tfrac12 \sum_{(i,j) \in \Omega} (W_{ij} -
  M_{ij})^2`.

  With every entry observed it equals :func:`target` of ``values``. ``.target`` is None (the
  unobserved entries are unknown). The observed entries are the loss's examples (row-major
  order): a minibatch of ``b`` of them is :math:`\frac{|\Omega|}{b} \cdot \tfrac12
  \sum_{(i,j) \in \text{batch}} (W_{ij} - M_{ij})^2`, an unbiased estimate of the loss.

  Args:
    mask: ``(d_N, d_0)`` booleans (or 0/1), true on observed entries :math:`\Omega`.
    values: ``(d_N, d_0)`` matrix; only observed entries are read.

  Example:
    >>> import jax.numpy as jnp
    >>> loss = matrix_completion(jnp.array([[True, False]]), jnp.array([[2.0, 9.0]]))
    >>> float(loss(jnp.zeros((1, 2)))), loss.n_examples
    (2.0, 1)

  References:
    Arora, Cohen, Hu, Luo. Implicit Regularization in Deep Matrix Factorization. NeurIPS 2019
    (arXiv 1905.13655), Section 2.
  """
  mask, values = np.asarray(mask, bool), np.asarray(values)
  if mask.shape != values.shape or values.ndim != 2:
    raise ValueError(
      f"mask {mask.shape} and values {values.shape} must be the same (d_N, d_0) shape."
    )
  if not mask.any():
    raise ValueError("mask observes no entry; the loss would be zero everywhere.")
  values = as_float_array(np.where(mask, values, 0.0), "values")
  rows, cols = np.nonzero(mask)
  observed = jnp.asarray(rows.size, values.dtype)
  data = (jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32), values[rows, cols], observed)
  return Loss(
    _observed_error, data=data, name="matrix_completion", examples=(True, True, True, False)
  )


def _sensing_error(w, data):
  a, y = data
  if a.shape[1:] != w.shape:
    raise ValueError(
      f"matrix_sensing's sensing matrices are (d_N, d_0) = {a.shape[1:]}, but the end-to-end "
      f"matrix is {w.shape}; use a network with dims ({a.shape[2]}, ..., {a.shape[1]})."
    )
  residual = jnp.einsum("mij,ij->m", a, w) - y
  return 0.5 * jnp.sum(residual**2) / a.shape[0]


def matrix_sensing(a, y) -> Loss:
  r"""Matrix sensing: the squared error of ``m`` linear measurements of the end-to-end matrix,

  .. math::
     L^1(W) = \frac{1}{2m} \sum_{i=1}^m \big(\langle A_i, W \rangle - y_i\big)^2,
     \qquad \langle A_i, W \rangle = \operatorname{tr}(A_i^\top W) = \sum_{jk} (A_i)_{jk} W_{jk}.

  The literature's sensing matrices :math:`A_i` are i.i.d. Gaussian (e.g.
  ``jax.random.normal(key, (m, d_N, d_0))``) and :math:`y_i = \langle A_i, W^* \rangle` for a
  low-rank :math:`W^*`. The measurements are the loss's examples: a minibatch of ``b`` of them
  is the same mean, :math:`\frac{1}{2b}\sum_{i \in \text{batch}}(\langle A_i, W\rangle -
  y_i)^2`. ``.target`` is the least-squares matrix when the :math:`A_i` span all
  :math:`d_N \times d_0` matrices (then the minimiser is unique: ``m >= d_N d_0`` and the
  flattened :math:`A_i` of full rank), else None (the underdetermined case, in which which
  minimiser gradient descent finds is the implicit regularization question).

  Args:
    a: ``(m, d_N, d_0)``, the sensing matrices :math:`A_i` (one per measurement).
    y: ``(m,)``, the measurements :math:`y_i`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> a = jnp.array([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]])  # read W_11, W_12
    >>> loss = matrix_sensing(a, jnp.array([1.0, 2.0]))
    >>> float(loss(jnp.zeros((2, 2)))), loss.n_examples, loss.target is None
    (1.25, 2, True)
    >>> a = jax.random.normal(jax.random.PRNGKey(0), (20, 3, 3))        # Gaussian sensing
    >>> w_star = jnp.outer(jnp.array([1.0, 2.0, 0.0]), jnp.array([0.0, 1.0, 1.0]))  # rank 1
    >>> loss = matrix_sensing(a, jnp.einsum("mij,ij->m", a, w_star))
    >>> float(loss(w_star)), bool(jnp.allclose(loss.target, w_star, atol=1e-4))
    (0.0, True)

  References:
    Gunasekar, Woodworth, Bhojanapalli, Neyshabur, Srebro. Implicit Regularization in Matrix
    Factorization. NeurIPS 2017 (arXiv 1705.09280), Section 2; Arora, Cohen, Hu, Luo. Implicit
    Regularization in Deep Matrix Factorization. NeurIPS 2019 (arXiv 1905.13655), Section 2.
  """
  a = as_float_array(a, "a")
  if a.ndim != 3:
    raise ValueError(
      f"a must be (m, d_N, d_0), one sensing matrix A_i per measurement; got shape {a.shape}. "
      "For a single measurement pass a[None]."
    )
  m = a.shape[0]
  if m == 0:
    raise ValueError("a holds no sensing matrix (m = 0); give at least one measurement.")
  y = as_float_array(y, "y", a.dtype)
  if y.shape != (m,):
    hint = " (flatten it with y.reshape(-1))" if y.size == m else ""
    raise ValueError(
      f"y must be (m,) = ({m},), one measurement y_i per sensing matrix of a; got shape "
      f"{y.shape}{hint}."
    )
  n = a.shape[1] * a.shape[2]
  target = None
  if m >= n:
    solution, _, rank, _ = jnp.linalg.lstsq(a.reshape(m, n), y)
    if int(rank) == n:
      target = solution.reshape(a.shape[1:])
  return Loss(_sensing_error, data=(a, y), target=target, name="matrix_sensing", examples=True)


def split(key, x, y, n_test: int):
  r"""Split examples into a training and a test set, at random, the same for the same key.

  With ``perm = jax.random.permutation(key, m)``, the test set is the rows ``perm[:n_test]`` of
  ``x`` and ``y`` and the training set the rows ``perm[n_test:]`` (in that order), so every
  example is in exactly one set, with its own label. ``x`` and ``y`` keep their trailing shapes:
  split a regression's ``x`` (m, d_0) and ``y`` (m, d_N) or (m,), or a :func:`matrix_sensing`'s
  ``a`` (m, d_N, d_0) and ``y`` (m,). Train on the first, and pass the loss of the second as
  ``validation=`` of a run (its ``traj.validation_loss``, ``best``, ``patience=``).

  Args:
    key: a PRNG key, ``jax.random.PRNGKey(seed)``.
    x: ``(m, ...)``, one row per example.
    y: ``(m, ...)``, the labels, one row per example.
    n_test: how many examples go to the test set, from 1 to ``m - 1``.

  Returns:
    ``((x_train, y_train), (x_test, y_test))``, float arrays of ``m - n_test`` and ``n_test``
    rows.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (50, 3))
    >>> y = x @ jnp.array([1.0, -2.0, 0.5])
    >>> train, test = lt.losses.split(jax.random.PRNGKey(1), x, y, n_test=10)
    >>> train[0].shape, train[1].shape, test[0].shape, test[1].shape
    ((40, 3), (40,), (10, 3), (10,))
    >>> ws = lt.init.balanced(jax.random.PRNGKey(2), (3, 4, 1), std=0.5)
    >>> traj = lt.gradient_descent(ws, lt.losses.regression(*train), lr=0.1, steps=300,
    ...                            record_every=100, validation=lt.losses.regression(*test))
    >>> traj.validation_loss.shape, bool(traj.validation_loss[-1] < 1e-3 * traj.validation_loss[0])
    ((4,), True)
  """
  key = check_key(key)
  x, y = as_float_array(x, "x"), as_float_array(y, "y")
  if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
    raise ValueError(
      f"x and y must hold one row per example along their first axis, the same m rows each; "
      f"got shapes {x.shape} and {y.shape}."
    )
  m = x.shape[0]
  if m < 2:
    raise ValueError(f"split needs at least 2 examples (one for each set); got m = {m}.")
  if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or not 0 < n_test < m:
    raise ValueError(
      f"n_test must be an integer from 1 to m - 1 = {m - 1} (both sets non-empty); got "
      f"{n_test!r}. For a fraction f of the data use n_test=round(f * m)."
    )
  perm = jax.random.permutation(key, m)
  test, train = perm[:n_test], perm[n_test:]
  return (x[train], y[train]), (x[test], y[test])


def _reconstruction_error(w, cov):
  residual = jnp.eye(cov.shape[0], dtype=w.dtype) - w
  return 0.5 * jnp.sum((residual @ cov) * residual)


def check_covariance(cov) -> jnp.ndarray:
  """``cov`` as a float array, checked to be a square symmetric positive semidefinite matrix."""
  cov = as_float_array(cov, "cov")
  if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
    raise ValueError(f"cov must be a square (n, n) covariance matrix; got shape {cov.shape}.")
  host = np.asarray(cov, np.float64)
  scale = max(np.max(np.abs(host)), np.finfo(np.float64).tiny)
  if np.max(np.abs(host - host.T)) > 1e-6 * scale:
    raise ValueError("cov must be symmetric; symmetrise it with (cov + cov.T) / 2.")
  if np.linalg.eigvalsh((host + host.T) / 2)[0] < -1e-6 * scale:
    raise ValueError("cov must be positive semidefinite (a covariance, e.g. x.T @ x / m).")
  return cov


def autoencoder_loss(cov) -> Loss:
  r"""The linear autoencoder loss of the end-to-end matrix :math:`W` (``n x n``):

  .. math::
     L^1(W) = \tfrac12\, \mathbb{E}\, \|x - W x\|^2
            = \tfrac12 \operatorname{tr}\big((I - W)\, \Sigma\, (I - W)^\top\big),
     \qquad \Sigma = \mathbb{E}\, x x^\top .

  Convention: with the :math:`\tfrac12` in front (as every lintraj loss). For samples ``x`` (rows)
  and ``cov = x.T @ x / m`` it equals ``lintraj.losses.regression(x, x)``. The covariance is the
  loss's data (a traced leaf): a new covariance does not recompile. ``.target`` is None (the
  minimiser is a projection, not unique as a matrix when eigenvalues tie).

  Example:
    >>> import jax.numpy as jnp
    >>> loss = autoencoder_loss(jnp.diag(jnp.array([3.0, 1.0])))
    >>> float(loss(jnp.zeros((2, 2))))                    # tr(Sigma) / 2
    2.0

  References:
    Baldi, Hornik. Neural Networks and Principal Component Analysis: Learning from Examples
    Without Local Minima. Neural Networks 2 (1989); Frye et al., arXiv 1901.10603, Section 3.
  """
  return Loss(_reconstruction_error, data=check_covariance(cov), name="autoencoder")


def stack_losses(losses: Sequence) -> Loss:
  """One loss per lane, stacked into a :class:`lintraj.losses.Loss` whose data and target have a
  leading lane axis; every loss must have the same function and array shapes.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> ones, zeros = lt.losses.target(jnp.ones((1, 2))), lt.losses.target(jnp.zeros((1, 2)))
    >>> loss = stack_losses([ones, zeros])
    >>> loss.target.shape
    (2, 1, 2)
  """
  losses = [as_loss(loss) for loss in losses]
  if not losses:
    raise ValueError(
      "loss is an empty sequence; give one loss per lane, or one loss shared by all."
    )
  first = losses[0]
  structure = lambda loss: jax.tree_util.tree_map(np.shape, (loss.data, loss.target))
  for i, loss in enumerate(losses[1:], start=1):
    if (
      loss.fn is not first.fn
      or structure(loss) != structure(first)
      or loss.examples != first.examples
    ):
      raise ValueError(
        f"the per-lane losses differ in kind or shapes: lane 0 is {first!r} with data "
        f"shapes {structure(first)}, lane {i} is {loss!r} with {structure(loss)}; a batch "
        "needs one function with same-shaped data (e.g. lt.losses.target of same-shaped "
        "targets)."
      )
  stack = lambda *xs: np.stack([np.asarray(x) for x in xs])
  data = jax.tree_util.tree_map(stack, *[loss.data for loss in losses])
  target = None if first.target is None else stack(*[loss.target for loss in losses])
  stacked = Loss(first.fn, data=data, target=target, name=first.name)
  stacked.examples = first.examples  # the lane axis comes first; each lane's rows are per example
  return stacked

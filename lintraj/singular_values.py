r"""Singular values of the many matrices of one record, in as few LAPACK calls as possible.

A record needs the singular values of every layer and of the end-to-end matrix. Matrices of
equal shape up to transposition (:math:`\sigma(W) = \sigma(W^\top)`) and equal dtype are stacked
and share batched SVD calls of up to :data:`MAX_BATCH` matrices (``method="batched"``, the
default); ``method="exact"`` makes one
call per matrix. Both run the same backward-stable solver (LAPACK ``gesdd`` on CPU) on the same
matrices, so they give the same values: every singular value within
:math:`O(\varepsilon)\,\sigma_{\max}` of the exact one. Measured against ``numpy.linalg.svd`` in
float64 at every record of 300-step runs with exact zeros (wide hidden layers of a balanced
init) and clusters of equal values (balanced and orthogonal inits): at most
:math:`3 \cdot 10^{-7}\sigma_{\max}` in float32 and :math:`10^{-15}\sigma_{\max}` in float64
(``tests/test_tracking.py`` asserts :math:`10^{-5}` and :math:`10^{-10}`).

Why not something cheaper: the singular values from ``eigvalsh`` of the Gram matrix
:math:`W^\top W` carry an absolute error of about :math:`\sqrt{\varepsilon}\,\sigma_{\max}`
on small and zero singular values (measured :math:`2 \cdot 10^{-4}\sigma_{\max}` in float32 on
the zeros problem of the tests), and on the CPU XLA's ``eigh`` is not faster than its SVD at
most benchmarked sizes (0.64-0.86x, 1.06-1.21x at depth 16 width 32).
``benchmarks/bench_tracking.py`` measures every candidate.

On the CPU, XLA calls LAPACK from its own thread pool and the OpenBLAS behind it (scipy's)
starts threads of its own; on a small or busy machine they contend, and a record can take tens of
times longer. :func:`lapack_single_thread` holds that OpenBLAS to one thread around a run.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import threading

import jax.numpy as jnp
from jax import lax

__all__ = ["METHODS", "check_method", "singular_values", "lapack_single_thread"]

METHODS = ("batched", "exact")
MAX_BATCH = 8


def check_method(method: str) -> str:
  """``method`` if it is one of :data:`METHODS`, else ValueError naming the choices."""
  if not isinstance(method, str) or method not in METHODS:
    raise ValueError(
      f"singular-value method must be one of {METHODS}; got {method!r}. "
      "'batched' (the default) and 'exact' give the same values; 'exact' makes "
      "one LAPACK call per matrix."
    )
  return method


def _wide(m):
  """``m`` or its transpose, whichever has no more rows than columns (same singular values)."""
  return m if m.shape[-2] <= m.shape[-1] else jnp.swapaxes(m, -1, -2)


def singular_values(matrices, method: str = "batched") -> tuple:
  r"""The singular values :math:`\sigma_1 \ge \dots \ge \sigma_r \ge 0` of each matrix,
  :math:`r = \min(m, n)` for an :math:`m \times n` matrix.

  ``method="batched"`` groups the matrices by shape up to transposition and dtype and computes
  each group with one batched SVD call per :data:`MAX_BATCH` matrices; ``method="exact"`` computes
  them one by one. Both are backward stable: :math:`|\hat\sigma_i - \sigma_i| \le
  p(n)\,\varepsilon\,\sigma_{\max}`. Leading batch axes (a vmapped run) are kept.

  Args:
    matrices: a sequence of ``(..., m, n)`` arrays.
    method: ``"batched"`` or ``"exact"``.

  Returns:
    A tuple with, for each matrix, its ``(..., min(m, n))`` singular values, descending.

  Example:
    >>> import jax.numpy as jnp
    >>> a, b = jnp.diag(jnp.array([1.0, 3.0])), jnp.array([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    >>> [s.tolist() for s in singular_values((a, b, b.T))]
    [[3.0, 1.0], [2.0, 0.0], [2.0, 0.0]]

  References:
    Demmel, Applied Numerical Linear Algebra (SIAM 1997), Section 5.2 (perturbation of
    singular values, Weyl's bound) and Section 5.4 (bidiagonalisation, ``gesdd``).
  """
  check_method(method)
  matrices = tuple(jnp.asarray(m) for m in matrices)
  if method == "exact":
    return tuple(jnp.linalg.svd(m, compute_uv=False) for m in matrices)
  groups: dict = {}
  for i, m in enumerate(matrices):
    groups.setdefault((m.shape[:-2], min(m.shape[-2:]), max(m.shape[-2:]), m.dtype), []).append(i)
  # Batches of at most MAX_BATCH: XLA's compile time grows fast with the batch of one SVD call
  # (33 matrices of 32 x 32: 0.8 s in one call, 0.4 s in batches of 8, 0.2 s one by one).
  batches = [g[k : k + MAX_BATCH] for g in groups.values() for k in range(0, len(g), MAX_BATCH)]
  out = [None] * len(matrices)
  for members in batches:
    if len(members) == 1:
      out[members[0]] = jnp.linalg.svd(matrices[members[0]], compute_uv=False)
      continue
    stacked = jnp.linalg.svd(
      jnp.stack([_wide(matrices[i]) for i in members], axis=-3), compute_uv=False
    )
    # One split, not one slice per matrix: XLA compiles it faster at large depth.
    for i, piece in zip(members, lax.split(stacked, [1] * len(members), axis=stacked.ndim - 2)):
      out[i] = jnp.squeeze(piece, axis=-2)
  return tuple(out)


@functools.lru_cache(maxsize=1)
def _lapack_thread_controls():
  """``(get, set)`` of the thread count of scipy's OpenBLAS (jaxlib's CPU LAPACK calls scipy's, and
  loads it on first use; it is loaded here so that a process's first run is covered too), or None
  when there is no such library (e.g. scipy built on Apple's Accelerate)."""
  try:
    import scipy
    import scipy.linalg.cython_lapack  # noqa: F401  (loads scipy's LAPACK, as jaxlib does)
  except ImportError:
    return None
  root = os.path.dirname(os.path.dirname(scipy.__file__))
  paths = sorted(
    glob.glob(os.path.join(root, "scipy.libs", "*scipy_openblas*"))
    + glob.glob(os.path.join(root, "scipy", ".dylibs", "*scipy_openblas*"))
  )
  for path in paths:
    try:  # RTLD_NOLOAD: only a library the process has already loaded
      lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
    except OSError:
      continue
    for prefix in ("scipy_openblas_", "openblas_"):
      get = getattr(lib, prefix + "get_num_threads", None)
      set_ = getattr(lib, prefix + "set_num_threads", None)
      if get is not None and set_ is not None:
        get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
        return get, set_
  return None


@contextlib.contextmanager
def lapack_single_thread():
  """Inside the block, the OpenBLAS behind jaxlib's CPU LAPACK (scipy's) runs on one thread.

  XLA already spreads work over the cores; OpenBLAS threads inside each SVD call only contend
  with it. Every run (:func:`lintraj.gradient_descent`, :func:`lintraj.train`,
  :func:`lintraj.batch_gradient_descent`, :func:`lintraj.gradient_flow`) holds it around its
  compiled loop; the thread count it had is restored when the last holder exits (blocks may nest
  and run in several threads). NumPy's own BLAS is left alone. Where no such OpenBLAS is loaded
  the block runs unchanged. Results do not change; the speed-up depends on the load
  (``benchmarks/README.md``).

  Example:
    >>> import jax.numpy as jnp
    >>> with lapack_single_thread():
    ...   [round(float(x), 6) for x in singular_values((2 * jnp.eye(2),))[0]]
    [2.0, 2.0]
  """
  controls = _lapack_thread_controls()
  if controls is None:
    yield
    return
  get, set_ = controls
  with _HOLD.lock:  # the first holder saves the count, the last one restores it (nested, threads)
    if _HOLD.holders == 0:
      _HOLD.previous = get()
      set_(1)
    _HOLD.holders += 1
  try:
    yield
  finally:
    with _HOLD.lock:
      _HOLD.holders -= 1
      if _HOLD.holders == 0:
        set_(_HOLD.previous)


class _Hold:
  """Who holds scipy's OpenBLAS to one thread: a process-wide count (the library's setting is
  global)."""

  def __init__(self):
    self.lock, self.holders, self.previous = threading.Lock(), 0, None


_HOLD = _Hold()

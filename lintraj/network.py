"""The network: a tuple of layer matrices ``(W_1, ..., W_N)`` and its end-to-end matrix.

Layer ``W_j`` has shape ``(d_j, d_{j-1})``; ``d_0`` is the input and ``d_N`` the output
dimension. The end-to-end matrix is :math:`W_{1:N} = W_N W_{N-1} \\cdots W_1`
(Arora, Cohen, Golowich, Hu, ICLR 2019, Section 2).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

__all__ = ["end_to_end", "layer_dims", "check_weights", "default_float_dtype", "as_float_array"]


def check_weights(weights: Sequence) -> tuple:
  """Validate a network and return it as a tuple of arrays.

  Raises ``ValueError`` (before any tracing) when the weights are not a non-empty sequence
  of 2-D floating arrays whose shapes chain, ``W_{j+1}.shape[1] == W_j.shape[0]``.

  Dtypes follow JAX's conversion: NumPy arrays and Python numbers become float32, or float64
  under ``jax.enable_x64(True)``. A JAX array keeps its dtype, so two cases are refused with the
  fix: float64 JAX arrays outside ``jax.enable_x64`` (made under the context, used after it
  exited; the run would mix float32 and float64), and float16/bfloat16 (the SVDs of the records
  have no half-precision kernel). Run the first inside ``with jax.enable_x64(True):``, or cast
  either to float32.

  Example:
    >>> import jax.numpy as jnp
    >>> [w.shape for w in check_weights([jnp.ones((3, 2)), jnp.ones((4, 3))])]
    [(3, 2), (4, 3)]
  """
  if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or not weights:
    raise ValueError(
      "weights must be a non-empty tuple (W_1, ..., W_N) of 2-D arrays, W_j of shape "
      f"(d_j, d_{{j-1}}); got {type(weights).__name__}. Build one with lintraj.init.*."
    )
  weights = tuple(jnp.asarray(w) for w in weights)
  for j, w in enumerate(weights, start=1):
    if w.ndim != 2:
      raise ValueError(
        f"layer W_{j} has shape {w.shape}; every layer must be a 2-D matrix of shape "
        "(d_j, d_{j-1}). For a batch of networks use lintraj.batch_gradient_descent."
      )
    if not jnp.issubdtype(w.dtype, jnp.floating):
      raise ValueError(
        f"layer W_{j} has dtype {w.dtype}; use a floating dtype (float32 or float64)."
      )
    if w.dtype not in (jnp.float32, jnp.float64):
      raise ValueError(
        f"layer W_{j} has dtype {w.dtype}, which lintraj cannot run (no SVD kernel for it); "
        "cast the weights to float32, e.g. tuple(w.astype(jnp.float32) for w in weights)."
      )
    if w.dtype == jnp.float64 and default_float_dtype() != jnp.float64:
      raise ValueError(
        f"layer W_{j} is float64 but jax_enable_x64 is off (weights made under "
        "jax.enable_x64(True) keep float64 after the context exits); run inside "
        "`with jax.enable_x64(True):`, or cast them to float32."
      )
  for j in range(1, len(weights)):
    if weights[j].shape[1] != weights[j - 1].shape[0]:
      raise ValueError(
        f"layer shapes do not chain: W_{j} has shape {weights[j - 1].shape} but W_{j + 1} has "
        f"shape {weights[j].shape}; W_{j + 1} must have {weights[j - 1].shape[0]} columns "
        "(W_j has shape (d_j, d_{j-1}))."
      )
  if len({w.dtype for w in weights}) > 1:
    raise ValueError(
      f"layers have mixed dtypes {[str(w.dtype) for w in weights]}; cast them all to one dtype."
    )
  return weights


def layer_dims(weights: Sequence) -> tuple[int, ...]:
  """The widths ``(d_0, d_1, ..., d_N)`` of a network.

  Example:
    >>> import jax.numpy as jnp
    >>> layer_dims((jnp.ones((3, 2)), jnp.ones((4, 3))))
    (2, 3, 4)
  """
  return (weights[0].shape[-1],) + tuple(w.shape[-2] for w in weights)


def end_to_end(weights: Sequence) -> jnp.ndarray:
  r"""The end-to-end matrix :math:`W_{1:N} = W_N W_{N-1} \cdots W_1`.

  The product is taken from the narrower end (left to right when :math:`d_N \le d_0`), which
  costs fewer flops for the usual :math:`d_N \ll d_0` regression networks. Works on batched
  layers too (leading axes broadcast, as in ``jnp.matmul``).

  Args:
    weights: ``(W_1, ..., W_N)``, ``W_j`` of shape ``(..., d_j, d_{j-1})``.

  Returns:
    The ``(..., d_N, d_0)`` product.

  Example:
    >>> import jax.numpy as jnp
    >>> end_to_end((jnp.eye(2) * 2.0, jnp.eye(2) * 3.0)).tolist()
    [[6.0, 0.0], [0.0, 6.0]]

  References:
    Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019 (arXiv 1810.02281), Section 2.
  """
  if weights[-1].shape[-2] <= weights[0].shape[-1]:
    return functools.reduce(lambda acc, w: acc @ w, reversed(weights[:-1]), weights[-1])
  return functools.reduce(lambda acc, w: w @ acc, weights[1:], weights[0])


def default_float_dtype():
  """float64 when ``jax_enable_x64`` is on, else float32."""
  return jnp.result_type(float)


def as_float_array(x, name: str, dtype=None) -> jnp.ndarray:
  """``x`` as a real floating JAX array, with a ValueError naming ``name`` if it is complex or has
  non-finite entries."""
  arr = np.asarray(x)
  if not np.issubdtype(arr.dtype, np.number):
    raise ValueError(f"{name} must be a numeric array; got dtype {arr.dtype}.")
  if np.issubdtype(arr.dtype, np.complexfloating):
    raise ValueError(
      f"{name} is complex ({arr.dtype}); lintraj works with real matrices. Pass a "
      f"real array (np.real({name}) if its imaginary part is zero)."
    )
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} has non-finite entries (NaN or inf); pass a finite array.")
  if dtype is None and not np.issubdtype(arr.dtype, np.floating):
    dtype = default_float_dtype()
  return jnp.asarray(arr, dtype=dtype)

r"""Which examples each step of minibatch SGD sees: the four sampling schemes, their state and
their checks.

Step :math:`t` of a run with ``batch_size=b`` over a loss with :math:`m` examples trains on the
minibatch loss (the loss's own formula on :math:`b` of its examples,
:meth:`lintraj.losses.Loss.minibatch`). The examples come from a stream of orders of
:math:`\{0, \dots, m-1\}`, one order per *epoch* of :math:`m` examples, and step :math:`t` takes
positions :math:`tb, \dots, tb + b - 1` of the stream:

- ``"shuffle"`` (default): a fresh random order every epoch;
- ``"shuffle_once"``: one random order, the same every epoch;
- ``"sequential"``: the data's own order (no key needed);
- ``"with_replacement"``: every minibatch drawn independently and uniformly, with replacement
  (no stream).

When :math:`b` does not divide :math:`m` the batches run on across the end of an epoch: the last
batch of an epoch is completed with the first examples of the next epoch's order. So every
example is seen once per epoch, no example is ever dropped (with ``drop_last`` a
``"shuffle_once"`` or ``"sequential"`` run would never see the same :math:`m \bmod b` examples),
and every batch has :math:`b` examples (one compiled step). An epoch's order is drawn once, when
the stream reaches it, not at every step.

The sampler's state (the key and the orders of the current and next epochs) is part of a run's
state, so a checkpointed run resumes bit for bit, and a batch of lanes with their own keys equals
the single runs with those keys.

References:
  Bottou, Curtis, Nocedal. Optimization Methods for Large-Scale Machine Learning. SIAM Review 60
  (2018), Section 4 (arXiv 1606.04838); Gürbüzbalaban, Ozdaglar, Parrilo. Why random reshuffling
  beats stochastic gradient descent. Math. Program. 186 (2021).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lintraj.validation import check_int

__all__ = ["SAMPLINGS", "Sampling", "indices", "start"]

SAMPLINGS = ("shuffle", "shuffle_once", "sequential", "with_replacement")


class Sampling(NamedTuple):
  """How a run samples minibatches (hashable: part of the compiled program)."""

  batch_size: int  # b
  scheme: str  # one of SAMPLINGS
  examples: int  # m


class SamplerState(NamedTuple):
  """One network's sampler: its key (uint32 ``(2,)``) and the orders of the epoch that step
  ``t``'s batch starts in and of the next one (int32 ``(2, m)``; ``(2, 0)`` with replacement)."""

  key: Any
  orders: Any


def _epoch(sampling: Sampling, t):
  """The epoch of stream position ``t b`` and the position within it, in int32 without forming
  ``t b`` (``t = u m + v``: ``t b = u b m + v b``; ``v b < m b < 2**31`` is checked)."""
  b, m = sampling.batch_size, sampling.examples
  u, v = t // m, t % m
  return u * b + (v * b) // m, (v * b) % m


def _order(sampling: Sampling, key, epoch):
  m = sampling.examples
  if sampling.scheme == "sequential":
    return jnp.arange(m, dtype=jnp.int32)
  if sampling.scheme == "shuffle_once":
    return jax.random.permutation(key, m).astype(jnp.int32)
  return jax.random.permutation(jax.random.fold_in(key, epoch), m).astype(jnp.int32)


def start(sampling: Sampling, keys, *, batched=False) -> SamplerState:
  """The sampler at step 0 (host arrays; a batch: one per key of ``keys`` ``(B, 2)``): the
  orders of epochs 0 and 1."""

  def first(key):
    if sampling.scheme == "with_replacement":
      return SamplerState(key, jnp.zeros((2, 0), jnp.int32))
    return SamplerState(key, jnp.stack([_order(sampling, key, 0), _order(sampling, key, 1)]))

  keys = jnp.asarray(keys, jnp.uint32)
  return jax.device_get(jax.vmap(first)(keys) if batched else first(keys))


def indices(sampling: Sampling, state: SamplerState, t):
  r"""The examples of step ``t``'s minibatch (int32 ``(b,)``) and the sampler after it.

  Steps must be taken in order (each moves the stream to step ``t``'s epoch). Whether step ``t``
  starts a new epoch depends on ``t`` only, so under ``vmap`` (a batch of lanes) the next
  epoch's order is still drawn once per epoch, not at every step.
  """
  b, m = sampling.batch_size, sampling.examples
  if sampling.scheme == "with_replacement":
    rows = jax.random.randint(jax.random.fold_in(state.key, t), (b,), 0, m, jnp.int32)
    return rows, state
  epoch, offset = _epoch(sampling, t)
  orders = state.orders
  if sampling.scheme == "shuffle":
    crossed = (t > 0) & (epoch > _epoch(sampling, jnp.maximum(t - 1, 0))[0])
    orders = lax.cond(
      crossed,
      lambda: jnp.stack([orders[1], _order(sampling, state.key, epoch + 1)]),
      lambda: orders,
    )
  rows = orders.reshape(-1)[offset + jnp.arange(b, dtype=jnp.int32)]
  return rows, state._replace(orders=orders)


def check_sampling(loss, batch_size, sampling, key, *, lanes=None):
  """The :class:`Sampling` of a run's ``batch_size=`` / ``sampling=`` / ``key=`` and the keys
  (uint32 ``(2,)``, a batch ``(B, 2)``: one key split per lane, or one key per lane given), or
  ``(None, None)`` for full batch; ValueError naming the fix, before anything is traced."""
  if batch_size is None:
    if sampling != "shuffle" or key is not None:
      raise ValueError(
        "sampling= and key= choose the minibatches of SGD: pass batch_size= too (None, the "
        "default, is full-batch gradient descent)."
      )
    return None, None
  renamed = (
    ""
    if lanes is None
    else " (Lanes per device at a time, once called batch_size, is now lanes_per_device=.)"
  )
  if sampling not in SAMPLINGS:
    raise ValueError(f"sampling must be one of {SAMPLINGS}; got {sampling!r}.")
  m = loss.n_examples
  if m is None:
    raise ValueError(
      f"batch_size= trains on minibatches of the loss's examples, but the loss {loss.name!r} "
      "has none (its data have no example axis, e.g. lt.losses.target(phi) is one matrix). "
      "Use a loss of data (lt.losses.regression, lp_regression, matrix_completion), or give "
      "your own Loss(fn, data, examples=True) data with one row per example." + renamed
    )
  b = check_int("batch_size", batch_size, 1)
  if b > m:
    raise ValueError(
      f"batch_size={b} is more than the loss's {m} examples; use at most {m} "
      "(batch_size=None is full-batch gradient descent)."
    )
  if m * b >= 2**31:
    raise ValueError(
      f"batch_size * examples = {b} * {m} must be below 2**31 (the sampler counts in int32); "
      "use a smaller batch_size, or batch_size=None for full batch."
    )
  if key is None:
    if sampling != "sequential":
      raise ValueError(
        f"sampling={sampling!r} draws random minibatches: pass key=jax.random.PRNGKey(seed) "
        "(only sampling='sequential' needs no key)." + renamed
      )
    key = np.zeros(2, np.uint32)
  keys = _keys(key, lanes)
  return Sampling(b, sampling, m), keys


def _keys(key, lanes):
  """uint32 key data: one key ``(2,)``, or for ``lanes`` lanes ``(B, 2)``."""
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
    dtype = key.dtype
  shape = np.shape(key)
  if dtype == jnp.uint32 and shape == (2,):
    return np.asarray(key if lanes is None else jax.random.split(key, lanes))
  if lanes is not None and dtype == jnp.uint32 and shape == (lanes, 2):
    return np.asarray(key)
  per_lane = "" if lanes is None else f", or one per lane, shape ({lanes}, 2)"
  raise ValueError(
    f"key must be one PRNG key, e.g. jax.random.PRNGKey(0){per_lane}; got an array of shape "
    f"{shape} and dtype {dtype}."
  )

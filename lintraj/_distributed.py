"""Checks that every ``jax.distributed`` process makes the same run call, with a bounded wait.

Under ``jax.distributed.initialize()`` a batched run is one program over the devices of every
process: if one process does not make the call, or makes it with other arguments, the others
would wait in a collective forever or compute a mixture of two runs. :func:`check_same_call`
compares a fingerprint of the call across processes first, through the distributed runtime's
key-value store, whose reads take a timeout (JAX's public collectives, e.g.
``multihost_utils.process_allgather``, have none).
"""

from __future__ import annotations

import hashlib
import json
import time

import jax
import numpy as np

__all__ = ["check_same_call", "fingerprint"]

DEFAULT_TIMEOUT_S = 300.0  # how long a process waits for the others to reach the same call

_CALLS = [0]  # calls checked so far in this process: the n-th call of every process is compared


def fingerprint(*parts) -> bytes:
  """A SHA-256 digest of ``parts``: pytrees of arrays (by shape, dtype and bytes), numbers,
  strings, and JSON-serialisable dicts; ``None`` leaves count.

  Example:
    >>> import numpy as np
    >>> fingerprint(np.ones(2), {"steps": 3}) == fingerprint(np.ones(2), {"steps": 3})
    True
    >>> fingerprint(np.ones(2)) == fingerprint(np.ones(2, np.float32))
    False
  """
  digest = hashlib.sha256()
  for part in parts:
    if isinstance(part, dict):
      digest.update(json.dumps(part, sort_keys=True).encode())
      continue
    leaves, treedef = jax.tree_util.tree_flatten(part, is_leaf=lambda x: x is None)
    digest.update(str(treedef).encode())
    for leaf in leaves:
      leaf = np.asarray(leaf) if leaf is not None else np.array([], np.uint8)
      digest.update(f"{leaf.shape}{leaf.dtype.str}".encode())
      digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.digest()


def check_same_call(fingerprint: bytes | str, what: str, *, timeout_s: float | None = None) -> None:
  """Raise ValueError unless every process makes this call (its ``n``-th checked call) with the
  same ``fingerprint`` within ``timeout_s`` seconds (default :data:`DEFAULT_TIMEOUT_S`).

  Each process publishes ``what`` and its fingerprint under the key of its ``n``-th call in the
  ``jax.distributed`` key-value store and reads every other process's, waiting at most
  ``timeout_s`` in all. A no-op in a single process.

  Args:
    fingerprint: bytes or text identifying the call's arguments (e.g. from :func:`fingerprint`).
    what: the call's name, for the error message (e.g. ``"batch_gradient_descent"``).
    timeout_s: the longest wait for the other processes, in seconds.

  Example:
    >>> check_same_call(fingerprint({"steps": 10}), "batch_gradient_descent")  # one process: no-op
  """
  timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else float(timeout_s)
  if not timeout_s > 0:
    raise ValueError(f"timeout_s must be a positive number of seconds; got {timeout_s!r}.")
  if jax.process_count() == 1:
    return
  from jax._src import distributed  # the runtime client: the one store reads with a timeout

  client = distributed.global_state.client
  mine = jax.process_index()
  value = f"{what}:{fingerprint.hex() if isinstance(fingerprint, bytes) else fingerprint}"
  call, _CALLS[0] = _CALLS[0], _CALLS[0] + 1
  key = f"lintraj/check_same_call/{call}"
  client.key_value_set(f"{key}/{mine}", value)
  deadline = time.monotonic() + timeout_s
  for other in range(jax.process_count()):
    if other == mine:
      continue
    remaining_ms = max(1, int(1000 * (deadline - time.monotonic())))
    try:
      theirs = client.blocking_key_value_get(f"{key}/{other}", remaining_ms)
    except jax.errors.JaxRuntimeError as err:  # a timeout is DEADLINE_EXCEEDED
      raise ValueError(
        f"process {mine} called {what} (its call number {call} under jax.distributed) but "
        f"process {other} did not make that call within {timeout_s:g} s ({type(err).__name__}: "
        f"{str(err).splitlines()[0][:200]}). Make the same run calls, in the same order, on "
        "every process (jax.process_count() processes)."
      ) from None
    if theirs != value:
      their_what = theirs.rsplit(":", 1)[0]
      differs = (
        f"called {what} with different arguments than process {mine}"
        if their_what == what
        else f"called {their_what} where process {mine} called {what}"
      )
      raise ValueError(
        f"process {other} {differs} (call number {call} of each under jax.distributed; "
        f"fingerprints {theirs[-16:]} and {value[-16:]}). Build the same arguments on every "
        "process (e.g. lt.sweep.grid with the same seeds, the same lr, steps and loss) and make "
        "the same run calls, in the same order, on all of them."
      )

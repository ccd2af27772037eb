"""Where a run's arrays live: free memory of a device or the host, placing host arrays on the
devices of a sharding (each process giving its own pieces), and gathering them back.

Under ``jax.distributed.initialize()`` the devices of every process form one mesh; these helpers
are the only place lintraj moves arrays between hosts and devices.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh

__all__ = []


def available_bytes(device) -> tuple[int | None, str]:
  """Free memory of ``device`` (accelerators) or of the host (CPU), with a name for messages."""
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "bytes_limit" in stats:
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"{device.platform} device memory"
  try:
    with open("/proc/meminfo") as f:
      info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024, "available host memory"
  except (OSError, KeyError, ValueError):
    try:
      pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
      return pages, "available host memory"
    except (ValueError, OSError, AttributeError):
      return None, "memory"


def lane_mesh(devices=None) -> Mesh | None:
  """A 1-D mesh (axis ``"lanes"``) over ``devices`` (default ``jax.devices()``: every device, of
  every process under ``jax.distributed.initialize()``), or None for a single device.

  Example:
    >>> lane_mesh() is None or lane_mesh().axis_names == ("lanes",)
    True
  """
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError(
      "devices is empty; pass None (all devices) or a list such as jax.devices()[:4]."
    )
  return None if len(devices) == 1 else Mesh(np.array(devices), ("lanes",))


def put_sharded(x, sharding) -> jax.Array:
  """A host array placed on the devices of ``sharding``, each process giving its own pieces."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(x) -> np.ndarray:
  """A (possibly sharded, possibly multi-process) array as a NumPy array on this host."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils

    x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(x)

"""Two ``jax.distributed`` processes on 127.0.0.1 (tests/multiprocess_worker.py), CPU collectives.

Each test starts the two processes with a free port picked at run time, loopback only, and a
deadline on everything it waits for. Deselect them with ``-m "not multiprocess"``.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import lintraj as lt
from lintraj import io
from tests import multiprocess_worker as worker

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 120  # for each pair of processes

pytestmark = pytest.mark.multiprocess


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(scenario, out_dir, devices=(1, 1)) -> list[subprocess.Popen]:
  """Processes 0 and 1 of ``scenario``, with ``devices[i]`` CPU devices each."""
  port = _free_port()
  procs = []
  for i, n in enumerate(devices):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    procs.append(subprocess.Popen([sys.executable, "-m", "tests.multiprocess_worker", scenario, str(port),
                                   str(i), str(out_dir)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT))
  return procs


def _finish(procs, timeout=DEADLINE_S) -> list[tuple[int, str]]:
  """(return code, output) of each process, killing all of them if one is not done in time."""
  deadline = time.monotonic() + timeout
  try:
    return [(p.wait(max(0.1, deadline - time.monotonic())), p.communicate()[0].decode()) for p in procs]
  except subprocess.TimeoutExpired:
    raise AssertionError(f"the processes did not finish within {timeout} s") from None
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait(30)


def _run_ok(scenario, out_dir, devices=(1, 1)) -> list[dict]:
  results = _finish(_start(scenario, out_dir, devices))
  for i, (code, output) in enumerate(results):
    assert code == 0, f"process {i} failed:\n{output[-3000:]}"
  return [dict(np.load(out_dir / f"{scenario}-{i}.npz")) for i in range(2)]


@pytest.mark.parametrize("devices", [(1, 1), (2, 2), (1, 2)])
def test_two_processes_give_every_process_the_one_process_records(tmp_path, devices):
  """12 and 7 lanes over 2-4 devices of two processes: with the same lanes per device
  (batch_size) the records are bit for bit those of one process on one device, on both processes;
  with the default layout equal to rounding."""
  results = _run_ok("records", tmp_path, devices)
  assert [int(r.pop("devices/local")) for r in results] == list(devices)
  assert [int(r.pop("devices/all")) for r in results] == [sum(devices)] * 2
  single = {}
  for name, (args, kwargs) in worker.sweeps().items():
    single.update(worker.flat(lt.batch_gradient_descent(*args, **kwargs), name))
  stopped, diverged = single["grid12/stopped_step/0"], single["grid12/diverged_step/0"]
  assert np.any(stopped >= 0) and np.any(diverged >= 0) and np.any((stopped < 0) & (diverged < 0))
  for result in results:
    assert sorted(result) == sorted(single)
    for key, value in single.items():
      if key.startswith("grid12_default/"):
        np.testing.assert_allclose(result[key], value, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=key)
      else:
        np.testing.assert_array_equal(result[key], value, err_msg=key)
  for key in single:
    np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)

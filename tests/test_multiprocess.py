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
    flags = f"--xla_force_host_platform_device_count={n}"
    # Without the suite's persistent compilation cache: with one program loaded from it in one
    # process and compiled in the other, gloo saw mismatched collectives (a size mismatch abort).
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")}
    inherited.pop("JAX_COMPILATION_CACHE_DIR", None)
    env = dict(
      inherited,
      JAX_PLATFORMS="cpu",
      XLA_FLAGS=flags,
      PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    command = [
      sys.executable,
      "-m",
      "tests.multiprocess_worker",
      scenario,
      str(port),
      str(i),
      str(out_dir),
    ]
    procs.append(
      subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    )
  return procs


def _finish(procs, timeout=DEADLINE_S) -> list[tuple[int, str]]:
  """(return code, output) of each process, killing all of them if one is not done in time."""
  deadline = time.monotonic() + timeout
  try:
    return [
      (p.wait(max(0.1, deadline - time.monotonic())), p.communicate()[0].decode()) for p in procs
    ]
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


def test_two_processes_give_every_process_the_one_process_records_and_catch_wrong_calls(tmp_path):
  """12 and 7 lanes over 2 x 2 devices, by batch_gradient_descent (GD, and minibatch SGD from one
  key split per lane) and batch_train (Adam, a learning rate per lane): with the same
  lanes_per_device the records of GD and SGD are bit for bit those of one process on one device,
  on both processes; with the default layout, and for Adam, equal to rounding (Adam measured
  1.8e-6 relative; the cause of that difference was not pinned down). Then a call with other
  learning rates on process 1 fails on both, and a call made by process 0 alone fails there
  after the timeout, instead of waiting forever."""
  results = _run_ok("records", tmp_path, devices=(2, 2))
  assert [int(r.pop("devices/local")) for r in results] == [2, 2]
  assert [int(r.pop("devices/all")) for r in results] == [4, 4]
  single = {}
  for name, (run, args, kwargs) in worker.sweeps().items():
    single.update(worker.flat(run(*args, **kwargs), name))
  stopped, diverged = single["grid12/stopped_step/0"], single["grid12/diverged_step/0"]
  assert np.any(stopped >= 0) and np.any(diverged >= 0) and np.any((stopped < 0) & (diverged < 0))
  assert np.any(single["sgd12/minibatch_loss/0"] != single["sgd12/loss/0"])  # it is SGD
  assert np.all(single["adam7/loss/0"][:, -1] < single["adam7/loss/0"][:, 0])
  for result in results:
    assert sorted(result) == sorted(single)
    for key, value in single.items():
      if key.startswith(("grid12_default/", "adam7/")):  # Adam: measured 1.8e-6 relative
        np.testing.assert_allclose(
          result[key], value, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=key
        )
      else:
        np.testing.assert_array_equal(result[key], value, err_msg=key)
  for key in single:
    np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)
  errors = [(tmp_path / f"records-{i}.txt").read_text().split("\n---\n") for i in range(2)]
  assert len(errors[0]) == 2 and len(errors[1]) == 1
  for error, other in zip((errors[0][0], errors[1][0]), (1, 0)):
    assert f"process {other} called batch_gradient_descent with different arguments" in error, error
  assert f"process 1 did not make that call within {worker.SAME_CALL_TIMEOUT_S} s" in errors[0][1]


def _records_written(state: dict) -> int:
  """Records written by the checkpointed chunk and lanes finished before it, as one number."""
  leaves = [k for k in state if k.startswith("current/")]
  return int(np.min(state[f"current/{len(leaves) - 1}"]))


def _progress(path) -> tuple[int, int] | None:
  """(lanes finished, records of the current chunk) of the checkpoint at ``path`` (None: none)."""
  if not path.exists():
    return None
  _, call, _, _, state, _ = io.read_checkpoint(path)
  return call["done"], _records_written(state)


def _wait_for_checkpoint(procs, path, beyond=None) -> tuple[int, int]:
  """Poll (deadline :data:`DEADLINE_S`) until the processes wrote a checkpoint past ``beyond``."""
  deadline = time.monotonic() + DEADLINE_S
  while time.monotonic() < deadline:
    for i, p in enumerate(procs):
      if p.poll() is not None:
        raise AssertionError(
          f"process {i} ended before it was killed:\n{p.communicate()[0].decode()[-3000:]}"
        )
    progress = _progress(path)
    if progress is not None and (beyond is None or progress > beyond):
      return progress
    time.sleep(0.01)
  raise AssertionError(f"no checkpoint past {beyond} appeared within {DEADLINE_S} s")


def test_killed_processes_resume_bit_for_bit_and_a_lone_death_fails_fast(tmp_path):
  """Both processes SIGKILLed after process 0's first checkpoint; restarted with lt.resume, and
  process 1 alone SIGKILLed after a later checkpoint: process 0 then fails with the runtime's
  error within seconds (its next collective, or the heartbeat timeout), never hangs; a second
  resume finishes and equals the uninterrupted one-process run bit for bit on both processes."""
  path = tmp_path / "run.npz"
  procs = _start("checkpoint", tmp_path)
  first = _wait_for_checkpoint(procs, path)
  for p in procs:
    p.send_signal(signal.SIGKILL)
  _finish(procs, timeout=30)
  total = 200_000 // 500 + 1
  assert first[0] == 0 and 0 < first[1] < total, "killed mid-run, after a checkpoint"

  procs = _start("resume", tmp_path)
  _wait_for_checkpoint(procs, path, beyond=first)
  procs[1].send_signal(signal.SIGKILL)
  killed = time.monotonic()
  (code, output), _ = _finish(procs, timeout=60)
  waited = time.monotonic() - killed
  assert code != 0 and waited < 4 * worker.HEARTBEAT_S + 10, (code, waited)
  assert "Connection reset by peer" in output or "heartbeat" in output, output[-3000:]

  resumed = _run_ok("resume", tmp_path)
  with jax.enable_x64(True):
    uninterrupted = worker.flat(worker.long_run(), "run")
  assert np.all(uninterrupted["run/stopped_step/0"] > 0)
  for result in resumed:
    assert sorted(result) == sorted(uninterrupted)
    for key, value in uninterrupted.items():
      np.testing.assert_array_equal(result[key], value, err_msg=key)

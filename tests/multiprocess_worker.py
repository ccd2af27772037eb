"""One of two ``jax.distributed`` processes on 127.0.0.1, started by tests/test_multiprocess.py.

``python -m tests.multiprocess_worker SCENARIO PORT PROCESS_ID OUT_DIR`` joins a two-process JAX
cluster (CPU collectives over gloo, coordinator 127.0.0.1:PORT, run by process 0), runs
``SCENARIO`` and writes what it got to ``OUT_DIR/SCENARIO-PROCESS_ID.npz`` (``.txt``: errors).
The number of CPU devices of the process comes from ``XLA_FLAGS`` in its environment.

Scenarios:
  records: the runs of :func:`sweeps` (GD on 12 and 7 lanes, SGD, Adam), then the wrong calls of
    :func:`misuse`.
  checkpoint: :func:`long_run` with checkpoints (written by process 0), to be killed mid-run.
  resume: ``lt.resume`` of that checkpoint.
"""

import sys

import jax

HEARTBEAT_S = 5  # a dead peer is detected by the coordination service within about this
SAME_CALL_TIMEOUT_S = 2  # how long the misuse scenario waits for a process that never calls
CHECKPOINT_EVERY = 2_000  # steps


def join(port: int, process_id: int) -> None:
  """Join the cluster: gloo CPU collectives, then ``jax.distributed.initialize``."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{port}",
    num_processes=2,
    process_id=process_id,
    initialization_timeout=60,
    heartbeat_timeout_seconds=HEARTBEAT_S,
  )


def sweeps() -> dict:
  """Name -> (run function, arguments, keyword arguments) of the runs compared with one process:
  a 12-lane grid (some lanes stop, one diverges) and 7 lanes, which do not divide among 2 or 4
  devices, by ``lt.batch_gradient_descent``; minibatch SGD on a regression (12 lanes, one key each)
  and ``lt.batch_train`` with Adam at a learning rate per lane (7 lanes)."""
  import numpy as np
  import optax

  import lintraj as lt

  ws, lrs, _ = lt.sweep.grid(
    "gaussian", (4, 3, 2), std=[0.4, 0.8], lr=[0.02, 0.1, 0.2, 0.5, 1.0, 4.0]
  )
  target = lt.losses.target(np.array([[1.0, 0.5, 0.0, -0.5], [0.0, 0.3, 0.2, 0.1]]))
  rng = np.random.default_rng(0)
  x = rng.standard_normal((10, 4))
  data = lt.losses.regression(x, x @ rng.standard_normal((4, 2)))
  common = {"steps": 40, "record_every": 3, "stop_at_loss": 0.05}
  gd, train = lt.batch_gradient_descent, lt.batch_train
  ws7 = tuple(w[:7] for w in ws)
  sgd = dict(common, lr=lrs / 4, batch_size=3, key=jax.random.PRNGKey(7), lanes_per_device=1)
  return {
    "grid12": (gd, (ws, target), dict(common, lr=lrs, lanes_per_device=1)),
    "grid12_default": (gd, (ws, target), dict(common, lr=lrs)),
    "lanes7": (
      gd,
      (tuple(w[:7] for w in ws), target),
      dict(common, lr=lrs[:7], lanes_per_device=1),
    ),
    "sgd12": (gd, (ws, data), sgd),
    "adam7": (
      train,
      (ws7, target, optax.adam),
      dict(common, hyperparams={"learning_rate": lrs[:7] / 10}, lanes_per_device=1),
    ),
  }


def flat(trajectory, prefix: str) -> dict:
  """A trajectory's arrays by name ``prefix/field/i``."""
  import numpy as np

  return {
    f"{prefix}/{field}/{i}": np.asarray(leaf)
    for field, value in trajectory._asdict().items()
    for i, leaf in enumerate(jax.tree_util.tree_leaves(value))
  }


def long_run(**kwargs):
  """A run long enough to be killed mid-way (float64, 2 chunks of lanes, checkpoints on request)."""
  import numpy as np

  import lintraj as lt

  ws, lrs, _ = lt.sweep.grid(
    "balanced", (5, 4, 4, 2), std=[0.1, 0.3], lr=[0.001, 0.004, 0.01], dtype=np.float64
  )
  target = lt.losses.target(np.linspace(-1.0, 1.0, 10).reshape(2, 5) / 2)
  return lt.batch_gradient_descent(
    ws,
    target,
    lr=lrs,
    steps=200_000,
    record_every=500,
    stop_at_loss=1e-24,
    lanes_per_device=1,
    **kwargs,
  )


def main(scenario: str, port: int, process_id: int, out_dir: str) -> None:
  import numpy as np

  join(port, process_id)
  import lintraj as lt

  out = f"{out_dir}/{scenario}-{process_id}"
  if scenario == "records":
    result = {
      "devices/local": np.array(jax.local_device_count()),
      "devices/all": np.array(jax.device_count()),
    }
    for name, (run, args, kwargs) in sweeps().items():
      result.update(flat(run(*args, **kwargs), name))
    np.savez(out + ".npz", **result)
    misuse(process_id, out + ".txt")
  else:
    with jax.enable_x64(True):
      path = f"{out_dir}/run.npz"
      traj = (
        lt.resume(path)
        if scenario == "resume"
        else long_run(checkpoint=path, checkpoint_every=CHECKPOINT_EVERY)
      )
    np.savez(out + ".npz", **flat(traj, "run"))


def misuse(process_id: int, path: str) -> None:
  """A call whose learning rates differ on process 1, then a call made by process 0 only; the
  errors go to ``path``, one per call, separated by ``---`` lines."""
  import lintraj as lt
  from lintraj import _distributed

  _distributed.DEFAULT_TIMEOUT_S = SAME_CALL_TIMEOUT_S
  _, (ws, target), kwargs = sweeps()["lanes7"]
  calls = [dict(kwargs, lr=kwargs["lr"] * (1 + process_id))] + ([kwargs] if process_id == 0 else [])
  errors = []
  for call in calls:
    try:
      lt.batch_gradient_descent(ws, target, **call)
      errors.append("no error")
    except ValueError as err:
      errors.append(str(err))
  with open(path, "w") as f:
    f.write("\n---\n".join(errors))


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])

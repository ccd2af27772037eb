"""The ``lintraj`` command line: ``lintraj run`` trains one network from flags; ``lintraj reproduce
NAME`` reproduces a paper's figure (``lintraj reproduce --list`` lists them)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

__all__ = ["main"]


def _dims(text):
  try:
    return tuple(int(d) for d in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"--dims must be comma-separated integers like 128,32,32,1; got {text!r}"
    ) from None


def _parser():
  parser = argparse.ArgumentParser(
    prog="lintraj", description="Trajectories of deep linear networks."
  )
  commands = parser.add_subparsers(dest="command", required=True)
  run = commands.add_parser(
    "run",
    help="train one network by gradient descent and write its trajectory and figure",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  run.add_argument("--dims", type=_dims, default="128,32,32,1", help="d_0,d_1,...,d_N")
  run.add_argument(
    "--init",
    choices=("balanced", "gaussian", "orthogonal", "residual"),
    default="balanced",
    help="initialization (lintraj.init)",
  )
  run.add_argument(
    "--std", type=float, default=1e-3, help="init std (balanced, gaussian) or scale (orthogonal)"
  )
  run.add_argument("--lr", type=float, default=1e-2, help="learning rate")
  run.add_argument("--steps", type=int, default=20_000, help="gradient descent steps")
  run.add_argument(
    "--record-every", type=int, default=10, help="record every K-th step (at most --steps)"
  )
  run.add_argument(
    "--seed", type=int, default=0, help="seed of the target, the init and the minibatches"
  )
  run.add_argument(
    "--batch-size",
    type=int,
    default=None,
    metavar="B",
    help="minibatch SGD with B examples per step, on a regression of --examples samples "
    "x ~ N(0, I), y = Phi x (least-squares matrix Phi); default: full-batch GD on the target Phi",
  )
  run.add_argument(
    "--sampling",
    default="shuffle",
    help="which examples each SGD step sees: shuffle, shuffle_once, sequential or "
    "with_replacement (lintraj.minibatch); needs --batch-size",
  )
  run.add_argument(
    "--examples", type=int, default=1024, help="samples of the regression with --batch-size"
  )
  target = run.add_mutually_exclusive_group()
  target.add_argument(
    "--target-norm", type=float, default=1.0, help="random target Phi with this Frobenius norm"
  )
  target.add_argument("--target", help="a .npy file holding the (d_N, d_0) target Phi")
  run.add_argument(
    "--sharpness-every",
    type=int,
    default=0,
    metavar="K",
    help="also record the sharpness (top Hessian eigenvalue) at every K-th record "
    "and plot it against 2/lr in sharpness.png (0: not recorded)",
  )
  run.add_argument("--x64", action="store_true", help="run in float64")
  run.add_argument("--out", default="out/run", help="output folder")
  run.add_argument("--no-progress", action="store_true", help="no progress bar")
  reproduce = commands.add_parser(
    "reproduce",
    help="reproduce a paper's figure: write NAME.png (and .pdf), NAME.json and tables as CSV",
    description="Reproduce a paper's figure with lintraj. The default follows the paper's protocol "
    "(or a documented smaller version); --quick runs a small version in seconds.",
  )
  reproduce.add_argument("name", nargs="?", help="the reproduction (see --list)")
  reproduce.add_argument("--list", action="store_true", help="list the reproductions and exit")
  reproduce.add_argument(
    "--quick", action="store_true", help="small grids and iteration caps (seconds)"
  )
  reproduce.add_argument(
    "--full",
    action="store_true",
    help="arora2019-fig1: the paper's scale, cap 1e6 iterations and stds down to 1e-7 "
    "(longer; see the README)",
  )
  reproduce.add_argument(
    "--data",
    help="arora2019-fig1: a CSV file (features, label last) instead of the "
    "synthetic target; whitened with lintraj.whiten",
  )
  reproduce.add_argument("--out", help="output folder (default out/NAME)")
  reproduce.add_argument("--pdf", action="store_true", help="also write the figure as PDF")
  reproduce.add_argument("--seed", type=int, help="random seed (default 0)")
  reproduce.add_argument("--no-progress", action="store_true", help="no progress bars")
  return parser


def _check_run(args):
  """``(weights, loss, minibatch arguments)`` of ``lintraj run``, or ValueError for bad flags
  (before anything runs)."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  import lintraj as lt
  from lintraj.minibatch import check_sampling
  from lintraj.validation import check_int, check_positive

  check_positive("--lr", args.lr)
  check_positive("--target-norm", args.target_norm)
  steps = check_int("--steps", args.steps, 1)
  check_int("--record-every", args.record_every, 1)
  if args.record_every > steps:
    raise ValueError(
      f"--record-every {args.record_every} is larger than --steps {steps}: only "
      "step 0 would be recorded. Use --record-every <= --steps."
    )
  check_int("--sharpness-every", args.sharpness_every, 0)
  if args.batch_size is not None:
    check_int("--examples", args.examples, 1)
  key_target, key_init = jax.random.split(jax.random.PRNGKey(args.seed))
  key_data = jax.random.fold_in(jax.random.PRNGKey(args.seed), 2)
  d0, dn = args.dims[0], args.dims[-1]
  if args.target:
    try:
      phi = np.load(args.target, allow_pickle=False)
    except (OSError, ValueError) as err:
      raise ValueError(f"--target {args.target}: not a readable .npy file ({err}).") from None
    if phi.shape != (dn, d0):
      raise ValueError(
        f"--target {args.target} has shape {phi.shape}; with --dims "
        f"{','.join(map(str, args.dims))} it must be (d_N, d_0) = {(dn, d0)}."
      )
  else:
    phi = jax.random.normal(key_target, (dn, d0))
    phi = phi * (args.target_norm / jnp.linalg.norm(phi))
  loss = lt.losses.target(phi)
  if args.batch_size is not None:
    x = jax.random.normal(key_data, (args.examples, d0), jnp.asarray(phi).dtype)
    loss = lt.losses.regression(x, x @ jnp.asarray(phi).T)
  minibatches = dict(batch_size=args.batch_size, sampling=args.sampling)
  if args.batch_size is not None:
    minibatches["key"] = jax.random.fold_in(jax.random.PRNGKey(args.seed), 1)
  check_sampling(loss, args.batch_size, args.sampling, minibatches.get("key"))
  weights = lt.init.by_name(args.init)(key_init, args.dims, args.std)
  return weights, loss, minibatches


def _run(args, weights, loss, minibatches):
  import numpy as np

  import lintraj as lt

  start = time.perf_counter()
  progress = not args.no_progress and importlib.util.find_spec("tqdm") is not None
  track = (
    dict(track=("sharpness",), track_every=args.sharpness_every) if args.sharpness_every else {}
  )
  traj = lt.gradient_descent(
    weights,
    loss,
    lr=args.lr,
    steps=args.steps,
    record_every=args.record_every,
    progress=progress,
    **track,
    **minibatches,
  )
  seconds = time.perf_counter() - start
  os.makedirs(args.out, exist_ok=True)
  metadata = dict(
    dims=list(args.dims),
    init=args.init,
    std=args.std,
    lr=args.lr,
    seed=args.seed,
    steps=args.steps,
    record_every=args.record_every,
    x64=args.x64,
    batch_size=args.batch_size,
    sampling=None if args.batch_size is None else args.sampling,
    examples=None if args.batch_size is None else args.examples,
  )
  lt.save(os.path.join(args.out, "trajectory.npz"), traj, **metadata)
  final = tuple(traj.final)  # the weights after the last step, recorded or not
  balancedness = np.append(np.asarray(traj.balancedness), lt.metrics.balancedness(final))
  summary = dict(
    metadata,
    seconds=round(seconds, 3),
    steps_per_second=round(args.steps / seconds, 1),
    loss_initial=float(traj.loss[0]),
    loss_final=float(loss(lt.end_to_end(final))),
    balancedness_max=float(np.nanmax(balancedness)),
    deficiency_margin_initial=float(traj.deficiency_margin[0]),
    deficiency_margin_final=float(lt.metrics.deficiency_margin(final, loss.target)),
    diverged_step=traj.diverged_step,
  )
  if traj.sharpness is not None:
    tracked = np.asarray(traj.sharpness)[~np.isnan(np.asarray(traj.sharpness))]
    summary.update(
      sharpness_final=float(tracked[-1]) if tracked.size else None,
      sharpness_max=float(tracked.max()) if tracked.size else None,
      two_over_lr=2 / args.lr,
    )
  with open(os.path.join(args.out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  from lintraj.plotting import plot_sharpness, plot_trajectory

  dims = ",".join(map(str, args.dims))
  fig = plot_trajectory(
    traj,
    title=f"GD on a deep linear network, dims {dims}, {args.init} init "
    f"(std {args.std:g}), lr {args.lr:g}",
  )
  fig.savefig(os.path.join(args.out, "trajectory.png"), dpi=120)
  figures = "trajectory.png"
  if traj.sharpness is not None:
    plot_sharpness(traj, args.lr).figure.savefig(os.path.join(args.out, "sharpness.png"), dpi=120)
    figures += ", sharpness.png"
  for name, value in summary.items():
    print(f"{name:>26}: {value}")
  print(f"wrote {args.out}/trajectory.npz, summary.json, {figures}")


def _check_reproduce(args):
  """``(options,)`` of ``lintraj reproduce``, or ValueError for bad flags (before anything runs)."""
  from lintraj import reproductions

  if args.list:
    return (None,)
  if args.name is None:
    raise ValueError(
      "name the reproduction to run, e.g. lintraj reproduce arora2019-fig1 "
      "(lintraj reproduce --list lists them)."
    )
  asked = dict(pdf=args.pdf or None, seed=args.seed, full=args.full or None, data=args.data)
  options = {k: v for k, v in asked.items() if v is not None}
  entry = reproductions.check_options(args.name, options)
  if args.data is not None and not os.path.isfile(args.data):
    raise ValueError(f"--data {args.data}: no such file.")
  if "progress" in entry.options:  # bars when tqdm is installed (pip install 'lintraj[progress]')
    options["progress"] = not args.no_progress and importlib.util.find_spec("tqdm") is not None
  return (options,)


def _reproduce(args, options):
  from lintraj import reproductions

  if args.list:
    for name in reproductions.names():
      print(f"{name:>26}  {reproductions.describe(name).summary}")
    return
  start = time.perf_counter()
  results = reproductions.run(args.name, quick=args.quick, out_dir=args.out, **options)
  print(f"{args.name}: finished in {time.perf_counter() - start:.1f} s")
  for path in results.get("files", {}).values():
    print(f"  wrote {path}")


def main(argv=None) -> int:
  """Entry point of the ``lintraj`` console script.

  Bad flags (a ValueError while the inputs are checked, before anything runs) print one line and
  return 2; an error while running is a bug and raises with its traceback.
  """
  args = _parser().parse_args(argv)
  import jax

  commands = {"run": (_check_run, _run), "reproduce": (_check_reproduce, _reproduce)}
  check, run = commands[args.command]
  with jax.enable_x64(getattr(args, "x64", False)):
    try:
      inputs = check(args)
    except ValueError as err:
      print(f"lintraj: error: {err}", file=sys.stderr)
      return 2
    run(args, *inputs)
  return 0


if __name__ == "__main__":
  sys.exit(main())

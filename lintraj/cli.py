"""The ``lintraj`` command line: ``lintraj run`` trains one network from flags."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

__all__ = ["main"]


def _dims(text):
  try:
    return tuple(int(d) for d in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"--dims must be comma-separated integers like 128,32,32,1; got {text!r}") from None


def _parser():
  parser = argparse.ArgumentParser(prog="lintraj", description="Trajectories of deep linear networks.")
  commands = parser.add_subparsers(dest="command", required=True)
  run = commands.add_parser("run", help="train one network by gradient descent and write its trajectory and figure")
  run.add_argument("--dims", type=_dims, default=(128, 32, 32, 1), help="d_0,d_1,...,d_N (default 128,32,32,1)")
  run.add_argument("--init", choices=("balanced", "gaussian", "orthogonal", "residual"), default="balanced")
  run.add_argument("--std", type=float, default=1e-3, help="init std (balanced, gaussian) or scale (orthogonal)")
  run.add_argument("--lr", type=float, default=1e-2)
  run.add_argument("--steps", type=int, default=20_000)
  run.add_argument("--record-every", type=int, default=10)
  run.add_argument("--seed", type=int, default=0)
  target = run.add_mutually_exclusive_group()
  target.add_argument("--target-norm", type=float, default=1.0, help="random target Phi with this Frobenius norm")
  target.add_argument("--target", help="a .npy file holding the (d_N, d_0) target Phi")
  run.add_argument("--x64", action="store_true", help="run in float64")
  run.add_argument("--out", default="out/run", help="output folder (default out/run)")
  return parser


def _run(args):
  import jax
  import numpy as np

  import lintraj as lt

  key_target, key_init = jax.random.split(jax.random.PRNGKey(args.seed))
  d0, dn = args.dims[0], args.dims[-1]
  if args.target:
    phi = np.load(args.target, allow_pickle=False)
  else:
    phi = np.asarray(jax.random.normal(key_target, (dn, d0)), np.float64)
    phi *= args.target_norm / np.linalg.norm(phi)
  init = {"balanced": lambda: lt.init.balanced(key_init, args.dims, std=args.std),
          "gaussian": lambda: lt.init.gaussian(key_init, args.dims, std=args.std),
          "orthogonal": lambda: lt.init.orthogonal(key_init, args.dims, scale=args.std),
          "residual": lambda: lt.init.residual(args.dims)}[args.init]
  weights = init()
  start = time.perf_counter()
  traj = lt.gradient_descent(weights, lt.losses.target(phi), lr=args.lr, steps=args.steps,
                             record_every=args.record_every)
  seconds = time.perf_counter() - start
  os.makedirs(args.out, exist_ok=True)
  metadata = dict(dims=list(args.dims), init=args.init, std=args.std, lr=args.lr, seed=args.seed,
                  steps=args.steps, record_every=args.record_every, x64=args.x64)
  lt.save(os.path.join(args.out, "trajectory.npz"), traj, **metadata)
  summary = dict(metadata, seconds=round(seconds, 3), steps_per_second=round(args.steps / seconds, 1),
                 loss_initial=float(traj.loss[0]), loss_final=float(traj.loss[-1]),
                 balancedness_max=float(np.nanmax(traj.balancedness)),
                 deficiency_margin_initial=float(traj.deficiency_margin[0]),
                 deficiency_margin_final=float(traj.deficiency_margin[-1]),
                 diverged_step=traj.diverged_step)
  with open(os.path.join(args.out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  from lintraj.plotting import plot_trajectory
  dims = ",".join(map(str, args.dims))
  fig = plot_trajectory(traj, title=f"GD on a deep linear network, dims {dims}, {args.init} init "
                        f"(std {args.std:g}), lr {args.lr:g}")
  fig.savefig(os.path.join(args.out, "trajectory.png"), dpi=120)
  for name, value in summary.items():
    print(f"{name:>26}: {value}")
  print(f"wrote {args.out}/trajectory.npz, summary.json, trajectory.png")


def main(argv=None) -> int:
  """Entry point of the ``lintraj`` console script."""
  args = _parser().parse_args(argv)
  import jax
  with jax.enable_x64(getattr(args, "x64", False)):
    try:
      {"run": _run}[args.command](args)
    except ValueError as err:
      print(f"lintraj: error: {err}", file=sys.stderr)
      return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())

r"""Arora, Cohen, Golowich, Hu 2019, Figure 1: balanced init converges at every scale, layer-wise
Gaussian init only in a band.

Scalar regression reduced by whitening to the loss :math:`\tfrac12\|W_{1:N} - \Phi\|_F^2`,
:math:`\Phi \in \mathbb{R}^{1 \times 128}`, :math:`\|\Phi\|_F = 1`; networks of depth 3
(``128, 32, 32, 1``) and depth 8 (``128, 32 x 7, 1``). A run has converged once its loss is within
``1e-5`` of the optimum (0 here). For every init std, learning rates from a log grid over
``1e-4 .. 1`` are tried and the fastest run to converge is kept.

- (a) iterations to converge vs init std for layer-wise independent Gaussian init;
- (b) the same for balanced init (Procedure 1 with an :math:`\mathcal N(0, \mathrm{std}^2)`
  end-to-end matrix);
- (c) balancedness :math:`\max_j \|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F` against
  :math:`\min_j \|W_j W_j^\top\|_F` along a converging Gaussian-init run of small std: the
  balancedness stays at its small initial value (conserved by gradient flow, changed by GD only at
  order :math:`\eta^2`) while the weights grow, so relative to their size they become balanced.

The target. The paper uses the UCI gas-sensor data (not shipped). After PCA whitening only
:math:`\Phi` matters, and both init laws (Gaussian layers, and a Gaussian end-to-end matrix) are
invariant under :math:`W_1 \mapsto W_1 Q` for orthogonal :math:`Q`, while GD is equivariant under it
(if :math:`W_j(t)` solves GD for :math:`\Phi`, then :math:`W_1(t) Q` solves it for :math:`\Phi Q`,
with the same loss, balancedness and margin at every step). Any unit :math:`\Phi \in \mathbb{R}^{1
\times 128}` is :math:`e_1^\top Q` for some :math:`Q`, so all give the same distribution of
trajectories: the default target is a random unit vector. ``data=`` takes a CSV file instead
(features, then the label in the last column), whitened by :func:`lintraj.whiten`, with the label
scaled so that
:math:`\|\Phi\|_F = 1`; ``d_0`` is then the number of whitened features.

Seeds. Every std is searched with several seeds (5 by default), each std and seed an independent
draw (:func:`lintraj.sweep.grid` with ``draws="independent"``); the figure shows, per std, the
median and the min-max range of the iterations over the seeds that converged, and how many did.
One draw rescaled for every std (``draws="common"``) would show one sample of the init law: with
seed 0 the balanced inits have a deficiency margin at 10 of 15 stds (``1e-7 .. 1``), with seeds 2,
3 or 4 at none. The figure's claim does not depend on the margin: balanced inits of every std and
seed converge, with a margin (about half the draws at small std, none above std ``0.03``) or
without one. The margin is a sufficient condition of Theorem 1, not what the experiment needs;
``margin`` in the results has it per std and seed.

Precision. float32. The claim (which stds converge within the cap) does not depend on it; the
iteration counts do, somewhat. Measured on 2 seeds at 9 (init, depth, std) points of the default
grid, cap ``3e4``: the same points converged in float32 and in float64, and the iterations agreed
within 30% at 12 of the 14 converged pairs (the others: balanced, depth 8, std 1: 316 in float32,
2239 in float64; Gaussian, depth 8, std 0.1: 60 and 166). A
Gaussian depth-8 init of std up to about ``1e-2`` is an exact fixed point of float32 GD (every
update rounds away); in float64 it moves, but did not reach the threshold within the cap either.

The cost. Lanes of the grid that never converge run to the cap, so the cost is about
``(non-converging lanes) x cap`` GD steps. Per depth, the lanes of both inits and every seed
share one batched call per stage of the staged search (:func:`lintraj.sweep.fastest_iterations`):
an (init, std, seed) leaves the search as soon as one of its learning rates has converged (a
later one could only be slower), diverged lanes are dropped, and so are exact fixed points; the
survivors continue from their weights (no step is repeated). A stage records only its first and
last step, and on a CPU runs in chunks of :data:`LANES_PER_DEVICE` lanes (each chunk ends when its
own lanes have stopped).
Protocols (:func:`protocol`): ``quick`` (seconds; the tests and the notebook's CI run), the default
(cap ``1e5``, stds ``3e-6 .. 1``: the newcomer's run) and ``full=True`` (the paper's cap ``1e6``,
stds ``1e-7 .. 1``). The measured run times are in the README.
"""

from __future__ import annotations

import csv
import time

import jax
import numpy as np

from lintraj import losses, sweep
from lintraj.metrics import deficiency_margin
from lintraj.reproductions.output import cap_marker, pyplot, write_outputs
from lintraj.sweep import batch_gradient_descent, fastest_iterations
from lintraj.whitening import whiten

__all__ = ["run", "protocol", "read_csv", "target"]

NAME = "arora2019-fig1"
INITS = ("gaussian", "balanced")  # (a) and (b); their lanes share each batched call
# Lanes per batched call on a CPU: 64 lanes of the depth-8 network's weights (45 KB each) fit in the
# cache; on 2 cores the search took 2.6x (depth 3) and 1.8x (depth 8) less CPU time per GD step in
# chunks of 64 than with all 1170 lanes of a stage at once.
LANES_PER_DEVICE = 64


def protocol(quick: bool = False, full: bool = False) -> dict:
  """The settings of a run: ``quick``, the default, or ``full`` (the paper's scale).

  All three use the paper's architecture (depths 3 and 8, hidden width 32), both inits and its
  convergence criterion (loss within ``1e-5`` of the optimum), with learning rates ``1e-4 .. 1``
  at 2 per decade, and search every std with several independent seeds. ``full`` uses the paper's
  cap (``1e6`` iterations) with stds ``1e-7 .. 1``; the default a cap of ``1e5`` with stds
  ``3e-6 .. 1`` (down to where the depth-3 Gaussian band ends within that cap), 2 stds per decade;
  both 5 seeds. ``quick`` shrinks the grids and the cap (``3000``) and uses 3 seeds.

  Example:
    >>> [(len(p["stds"]), p["caps"][-1], p["seeds"]) for p in
    ...  (protocol(quick=True), protocol(), protocol(full=True))]
    [(5, 3000, 3), (12, 100000, 5), (15, 1000000, 5)]
  """
  if quick and full:
    raise ValueError("choose quick or full, not both.")
  grid = lambda low, high, per_decade: tuple(
    float(f"{x:.6g}") for x in np.logspace(low, high, round((high - low) * per_decade) + 1)
  )
  common = dict(d0=128, hidden=32, depths=(3, 8), threshold=1e-5, panel_c_std=1e-3, panel_c_depth=3)
  if quick:
    return dict(
      common,
      stds=(1e-4, 1e-3, 1e-2, 0.1, 1.0),
      lrs=(1e-3, 3.16228e-3, 1e-2, 0.1, 0.316228, 1.0),
      caps=(3000,),
      seeds=3,
    )
  caps = (1000, 3000, 10_000, 30_000, 100_000) + ((300_000, 1_000_000) if full else ())
  return dict(common, stds=grid(-7 if full else -5.5, 0, 2), lrs=grid(-4, 0, 2), caps=caps, seeds=5)


def read_csv(path):
  """Features and labels from a numeric CSV file: every column but the last is a feature, the last
  is the label; a first row that is not numeric is taken as a header and skipped.

  Returns:
    ``(x, y)``: ``(m, d)`` and ``(m,)`` float64 arrays.
  """
  with open(path, newline="") as f:
    rows = [row for row in csv.reader(f) if row]
  if not rows:
    raise ValueError(f"{path} is empty; give a CSV file with feature columns and the label last.")
  try:
    [float(v) for v in rows[0]]
  except ValueError:
    rows = rows[1:]
  try:
    table = np.array([[float(v) for v in row] for row in rows], np.float64)
  except ValueError as err:
    raise ValueError(
      f"{path} must hold numbers only (after an optional header row): {err}."
    ) from None
  if table.ndim != 2 or table.shape[1] < 2 or table.shape[0] < 3:
    raise ValueError(
      f"{path} must have at least 3 rows and 2 columns (features, then the label); "
      f"got shape {table.shape}."
    )
  return table[:, :-1], table[:, -1]


def target(d0: int, data=None, seed: int = 0):
  r"""The target :math:`\Phi` (shape ``(1, d_0)``, :math:`\|\Phi\|_F = 1`) and a description.

  Without ``data``: a random unit vector (see the module docstring for why any unit vector gives
  the same trajectories). With ``data`` (a CSV path): :math:`\Phi = \tfrac1m Y^\top X_w` of the
  whitened features, divided by its norm (the label scaled accordingly).

  Example:
    >>> phi, source = target(128)
    >>> phi.shape, round(float(np.linalg.norm(phi)), 6), source["kind"]
    ((1, 128), 1.0, 'synthetic')
  """
  if data is None:
    phi = np.asarray(jax.random.normal(jax.random.PRNGKey(10_000 + seed), (1, d0)), np.float64)
    return phi / np.linalg.norm(phi), dict(kind="synthetic", d0=d0)
  x, y = read_csv(data)
  with jax.enable_x64(True):
    x_white, phi = whiten(x, y)
  phi = np.asarray(phi, np.float64)
  norm = float(np.linalg.norm(phi))
  if norm == 0:
    raise ValueError(
      f"the label in {data} is uncorrelated with every feature (Phi = 0); nothing to fit."
    )
  return phi / norm, dict(
    kind="csv",
    path=str(data),
    samples=int(x.shape[0]),
    features=int(x.shape[1]),
    whitened_features=int(x_white.shape[1]),
    label_scale=1 / norm,
  )


def _min_gram_norm(layer_singular_values) -> np.ndarray:
  r""":math:`\min_j \|W_j W_j^\top\|_F = \min_j (\sum_i \sigma_{j,i}^4)^{1/2}` from recorded
  singular values (leading axes kept)."""
  return np.min(
    np.stack(
      [np.sqrt(np.sum(np.asarray(s, np.float64) ** 4, axis=-1)) for s in layer_singular_values]
    ),
    axis=0,
  )


def run(
  quick: bool = False,
  out_dir=f"out/{NAME}",
  *,
  full: bool = False,
  data=None,
  pdf: bool = False,
  seed: int = 0,
  progress: bool = False,
) -> dict:
  r"""Reproduce Figure 1 (a)(b)(c) of Arora, Cohen, Golowich, Hu 2019 over several seeds.

  The init seeds are ``seed, seed + 1, ...`` (``protocol()["seeds"]`` of them), each std and seed
  an independent draw (:func:`lintraj.sweep.grid`, ``draws="independent"``).

  Returns: ``sweeps`` (per init and depth, per std: ``steps`` and ``lr`` per seed, the fastest
  learning rate's iterations, ``-1`` if none converged within the cap; ``converged``, how many
  seeds converged; ``median``, ``min`` and ``max`` of the iterations over the seeds that
  converged; ``diverged`` and ``fixed`` learning rates per seed; for balanced inits ``margin``,
  the deficiency margin of each seed's init), ``lane_steps`` (GD steps run, summed over lanes),
  ``panel_c`` (per seed: the lr, the steps, the balancedness and
  :math:`\min_j \|W_j W_j^\top\|_F` at the start and the end, and the largest balancedness),
  ``target`` (where :math:`\Phi` came from) and ``seconds``.

  Example:
    >>> protocol(quick=True)["depths"]
    (3, 8)

  References:
    Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019 (arXiv 1810.02281), Section 5, Figure 1.
  """
  start = time.perf_counter()
  p = protocol(quick, full)
  seeds = tuple(range(seed, seed + p["seeds"]))
  phi, source = target(p["d0"], data, seed)
  d0 = phi.shape[1]
  loss = losses.target(phi.astype(np.float32))
  dims = {depth: (d0,) + (p["hidden"],) * (depth - 1) + (1,) for depth in p["depths"]}
  sweeps, tables, lane_steps = {}, {}, 0
  for depth in p["depths"]:
    best, steps = fastest_iterations(
      INITS,
      dims[depth],
      loss,
      stds=p["stds"],
      lrs=p["lrs"],
      caps=p["caps"],
      threshold=p["threshold"],
      seeds=seeds,
      lanes_per_device=LANES_PER_DEVICE if jax.default_backend() == "cpu" else None,
      progress=progress,
    )
    lane_steps += steps
    for init in INITS:
      table = {k: v[best["init"] == init] for k, v in best.items() if k != "init"}
      if init == "balanced":
        table["margin"] = _margins(dims[depth], p["stds"], seeds, phi, table)
      sweeps[f"{init}/N={depth}"] = _spread(table, p["stds"], seeds)
      tables[f"{init}_depth{depth}"] = table
  panel_c = _panel_c(p, dims, loss, seeds, tables[f"gaussian_depth{p['panel_c_depth']}"])
  results = dict(
    name=NAME,
    quick=quick,
    full=full,
    protocol=p,
    seeds=list(seeds),
    precision="float32",
    target=source,
    sweeps=sweeps,
    lane_steps=lane_steps,
    panel_c=panel_c["summary"],
  )
  fig = _figure(p, seeds, sweeps, panel_c, source)
  results["seconds"] = round(time.perf_counter() - start, 2)
  return write_outputs(NAME, out_dir, fig, results, tables=tables, pdf=pdf)


def _spread(table, stds, seeds) -> dict:
  """Per std: the per-seed columns of ``table`` (rows sorted by std, then seed) and the spread of
  the iterations over the seeds that converged."""
  shape = (len(stds), len(seeds))
  per_seed = {k: np.asarray(v).reshape(shape) for k, v in table.items() if k not in ("std", "seed")}
  steps = per_seed["steps"].astype(np.float64)
  ok = steps >= 0
  masked = np.where(ok, steps, np.nan)
  with np.errstate(all="ignore"):
    spread = {
      name: [None if not row.any() else float(f(m[row])) for m, row in zip(masked, ok)]
      for name, f in (("median", np.median), ("min", np.min), ("max", np.max))
    }
  return dict(
    std=list(stds),
    converged=ok.sum(axis=1).tolist(),
    **spread,
    **{k: v.tolist() for k, v in per_seed.items()},
  )


def _margins(dims, stds, seeds, phi, table) -> np.ndarray:
  """The deficiency margin of each balanced init of ``table``'s rows (the draws of the search)."""
  weights, _, lanes = sweep.grid("balanced", dims, std=stds, lr=[1.0], seeds=seeds)
  margin = jax.vmap(lambda *ws: deficiency_margin(ws, phi.astype(np.float32)))(*weights)
  by_lane = dict(zip(zip(lanes["std"].tolist(), lanes["seed"].tolist()), np.asarray(margin)))
  return np.array([by_lane[k] for k in zip(table["std"].tolist(), table["seed"].tolist())])


def _panel_c(p, dims, loss, seeds, gaussian):
  """Panel (c): the Gaussian runs at ``panel_c_std``, one per seed, each with its fastest learning
  rate of the search (the same draws), in one batched call."""
  depth, std = p["panel_c_depth"], p["panel_c_std"]
  rows = np.flatnonzero(np.asarray(gaussian["std"]) == std)
  steps = np.asarray(gaussian["steps"])[rows]
  converged = steps >= 0
  if converged.any():
    rows, steps = rows[converged], steps[converged]
    lrs = np.asarray(gaussian["lr"])[rows]
  else:  # no seed converged: show every seed at the middle learning rate, to the cap
    lrs, steps = np.full(rows.size, float(np.median(p["lrs"]))), np.full(rows.size, p["caps"][-1])
  run_seeds = np.asarray(gaussian["seed"])[rows]
  weights, _, lanes = sweep.grid("gaussian", dims[depth], std=p["stds"], lr=[1.0], seeds=seeds)
  pick = [int(np.flatnonzero((lanes["std"] == std) & (lanes["seed"] == s))[0]) for s in run_seeds]
  # A lane may take a few more steps in another batch (kernels depend on the batch's shape).
  record_every = max(1, int(steps.max()) // 250)
  traj = batch_gradient_descent(
    tuple(w[pick] for w in weights),
    loss,
    lr=lrs,
    steps=(2 * int(steps.max()) // record_every + 1) * record_every,
    record_every=record_every,
    stop_at_loss=p["threshold"],
  )
  gram = _min_gram_norm(traj.layer_singular_values)
  balancedness = np.asarray(traj.balancedness, np.float64)
  stopped = np.asarray(traj.stopped_step)
  last = np.where(stopped >= 0, -(-stopped // record_every), -1)  # the record where it stopped
  final = lambda x: [float(row[i]) for row, i in zip(x, last)]
  return dict(
    trajectory=traj,
    gram=gram,
    last=last,
    summary=dict(
      depth=depth,
      std=std,
      seeds=run_seeds.tolist(),
      lr=lrs.tolist(),
      steps=stopped.tolist(),
      converged=(stopped >= 0).tolist(),
      final_loss=final(np.asarray(traj.loss)),
      balancedness_initial=balancedness[:, 0].tolist(),
      balancedness_max=np.nanmax(balancedness, axis=1).tolist(),
      balancedness_final=final(balancedness),
      min_gram_norm_initial=gram[:, 0].tolist(),
      min_gram_norm_final=final(gram),
    ),
  )


def _figure(p, seeds, sweeps, panel_c, source):
  plt = pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
  cap, count = p["caps"][-1], len(seeds)
  for ax, init, letter in ((axes[0], "gaussian", "a"), (axes[1], "balanced", "b")):
    for i, depth in enumerate(p["depths"]):
      s, color = sweeps[f"{init}/N={depth}"], f"C{i}"
      std, converged = np.asarray(s["std"]), np.asarray(s["converged"])
      as_array = lambda name: np.array([np.nan if v is None else v for v in s[name]])
      median, low, high = as_array("median"), as_array("min"), as_array("max")
      ok = converged > 0
      shift = 1.06 ** (2 * i - 1)  # the two depths side by side where both have a point
      ax.errorbar(
        std[ok] * shift,
        median[ok],
        yerr=(median[ok] - low[ok], high[ok] - median[ok]),
        color=color,
        marker="o",
        ms=5,
        capsize=3,
        label=f"N={depth}: median over {count} seeds, bars min-max",
      )
      part = ok & (converged < count)
      ax.scatter(
        std[part] * shift, median[part], s=70, facecolors="white", edgecolors=color, zorder=3
      )
      for x, y, k in zip(std[part] * shift, high[part], converged[part]):
        ax.annotate(
          f"{k}/{count}",
          (x, y),
          xytext=(0, 6),
          textcoords="offset points",
          ha="center",
          fontsize=8,
          color=color,
        )
      cap_marker(
        ax,
        std[~ok],
        cap * 1.5**i,
        color=color,
        s=60,
        label=f"N={depth}: no seed converged within {cap:.0e}" if (~ok).any() else None,
      )
    ax.axhline(cap, color="gray", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(
      xlabel="init standard deviation (log scale)",
      ylabel="iterations to converge (log scale)",
      title=f"({letter}) {'layer-wise Gaussian' if init == 'gaussian' else 'balanced'} init, "
      f"fastest lr of {len(p['lrs'])} in [{min(p['lrs']):g}, {max(p['lrs']):g}]",
    )
    ax.legend(fontsize="small", loc="lower left" if init == "gaussian" else "best")
  ymin = min(min(axes[0].get_ylim()[0], axes[1].get_ylim()[0]), 10)
  for ax in axes[:2]:
    ax.set_ylim(ymin, cap * 6)
  ax = axes[2]
  traj, summary = panel_c["trajectory"], panel_c["summary"]
  for b, last in enumerate(panel_c["last"]):
    end = None if last < 0 else last + 1
    step = np.asarray(traj.step[b])[1:end]
    first = b == 0
    ax.loglog(
      step,
      np.asarray(traj.balancedness[b])[1:end],
      color="C0",
      lw=1,
      alpha=0.8,
      label=r"balancedness $\max_j\|W_{j+1}^\top W_{j+1} - W_jW_j^\top\|_F$" if first else None,
    )
    ax.loglog(
      step,
      panel_c["gram"][b][1:end],
      color="C1",
      lw=1,
      alpha=0.8,
      label=r"$\min_j \|W_j W_j^\top\|_F$" if first else None,
    )
  lrs = sorted(set(summary["lr"]))
  ax.set(
    xlabel="iteration (log scale)",
    ylabel="Frobenius norm (log scale)",
    title=f"(c) Gaussian init, N={summary['depth']}, std {summary['std']:g}, "
    f"{len(summary['seeds'])} seeds, lr {', '.join(f'{lr:.3g}' for lr in lrs)}",
  )
  ax.legend(fontsize="small")
  where = (
    "synthetic unit target (rotation invariance)"
    if source["kind"] == "synthetic"
    else f"whitened data {source['path']} (d0={source['whitened_features']})"
  )
  fig.suptitle(
    f"Arora, Cohen, Golowich, Hu 2019, Figure 1: converged = loss within {p['threshold']:g} of the "
    f"optimum, cap {cap:.0e} iterations, float32; {where}\n{count} seeds per std "
    f"({seeds[0]}..{seeds[-1]}, an independent draw per std and seed): median of the seeds that "
    "converged, bars min-max; open circle with k/n: only k of the n seeds converged"
  )
  return fig

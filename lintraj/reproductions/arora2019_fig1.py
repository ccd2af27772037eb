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

The cost. Lanes of the grid that never converge run to the cap, so the cost is about
``(non-converging lanes) x cap`` GD steps. The search runs in stages of growing caps: a std leaves
the search as soon as one of its learning rates has converged (a later one could only be slower),
diverged lanes are dropped, and so are lanes whose weights end a stage bit for bit where they began
it (exact fixed points of float32 GD: at depth 8 a Gaussian init of std up to about 1e-2 is one,
every update rounding away, and those lanes would otherwise run to the cap); the survivors continue
from their weights (no step is repeated).
Protocols (:func:`protocol`): ``quick`` (seconds; the tests and the notebook's CI run), the default
(the paper's cap ``1e6``, 2 stds and learning rates per decade) and ``full=True`` (4 per decade).
The measured run times are in the README.
"""

from __future__ import annotations

import csv
import time

import jax
import numpy as np

from lintraj import losses, sweep
from lintraj.dynamics import gradient_descent
from lintraj.reproductions.output import cap_marker, pyplot, write_outputs
from lintraj.sweep import fastest_iterations
from lintraj.whitening import whiten

__all__ = ["run", "protocol", "read_csv", "target"]

NAME = "arora2019-fig1"


def protocol(quick: bool = False, full: bool = False) -> dict:
  """The settings of a run: ``quick``, the default, or ``full``.

  All three use the paper's architecture and convergence criterion. The default uses the paper's
  cap (``1e6`` iterations) with stds ``1e-7 .. 1`` (down to where the depth-3 Gaussian band ends)
  and learning rates ``1e-4 .. 1``, 2 per decade; ``full`` the same ranges with 4 per decade.
  ``quick`` shrinks the grids and the cap (``3000``).

  Example:
    >>> [len(protocol(**kw)["stds"]) for kw in ({"quick": True}, {}, {"full": True})]
    [4, 15, 29]
  """
  if quick and full:
    raise ValueError("choose quick or full, not both.")
  grid = lambda low, high, per_decade: tuple(
    float(f"{x:.6g}") for x in np.logspace(low, high, (high - low) * per_decade + 1)
  )
  if quick:
    return dict(
      d0=128,
      hidden=32,
      depths=(3, 8),
      stds=(1e-4, 1e-2, 0.1, 1.0),
      lrs=(1e-3, 1e-2, 0.1, 1.0),
      caps=(3000,),
      threshold=1e-5,
      panel_c_std=1e-3,
      panel_c_depth=3,
    )
  per_decade = 4 if full else 2
  return dict(
    d0=128,
    hidden=32,
    depths=(3, 8),
    stds=grid(-7, 0, per_decade),
    lrs=grid(-4, 0, per_decade),
    caps=(1000, 3000, 10_000, 30_000, 100_000, 300_000, 1_000_000),
    threshold=1e-5,
    panel_c_std=1e-3,
    panel_c_depth=3,
  )


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
  singular values."""
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
  r"""Reproduce Figure 1 (a)(b)(c) of Arora, Cohen, Golowich, Hu 2019.

  Returns: ``sweeps`` (per init and depth, per std: the fastest learning rate, its iterations,
  ``-1`` if none converged within the cap, how many learning rates diverged and how many were
  exact fixed points), ``lane_steps``
  (GD steps run, summed over lanes), ``panel_c`` (the run of panel (c): its std, lr, steps, and
  balancedness and :math:`\min_j \|W_j W_j^\top\|_F` at the start and the end, and the largest
  balancedness), ``target`` (where :math:`\Phi` came from) and ``seconds``.

  Example:
    >>> protocol(quick=True)["depths"]
    (3, 8)

  References:
    Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019 (arXiv 1810.02281), Section 5, Figure 1.
  """
  start = time.perf_counter()
  p = protocol(quick, full)
  phi, source = target(p["d0"], data, seed)
  d0 = phi.shape[1]
  loss = losses.target(phi.astype(np.float32))
  dims = {depth: (d0,) + (p["hidden"],) * (depth - 1) + (1,) for depth in p["depths"]}
  sweeps, tables, lane_steps = {}, {}, 0
  for init in ("gaussian", "balanced"):
    for depth in p["depths"]:
      best, steps = fastest_iterations(
        init,
        dims[depth],
        loss,
        stds=p["stds"],
        lrs=p["lrs"],
        caps=p["caps"],
        threshold=p["threshold"],
        seed=seed,
        progress=progress,
      )
      sweeps[f"{init}/N={depth}"], lane_steps = best, lane_steps + steps
      tables[f"{init}_depth{depth}"] = best
  panel_c = _panel_c(p, dims, loss, seed, progress)
  results = dict(
    name=NAME,
    quick=quick,
    full=full,
    protocol=p,
    seed=seed,
    target=source,
    sweeps={k: {c: v.tolist() for c, v in best.items()} for k, best in sweeps.items()},
    lane_steps=lane_steps,
    panel_c=panel_c["summary"],
  )
  fig = _figure(p, sweeps, panel_c, source)
  results["seconds"] = round(time.perf_counter() - start, 2)
  return write_outputs(NAME, out_dir, fig, results, tables=tables, pdf=pdf)


def _panel_c(p, dims, loss, seed, progress):
  """The Gaussian run of panel (c) at ``panel_c_std``, with the fastest learning rate of the
  grid."""
  depth, std = p["panel_c_depth"], p["panel_c_std"]
  best, _ = fastest_iterations(
    "gaussian",
    dims[depth],
    loss,
    stds=[std],
    lrs=p["lrs"],
    caps=p["caps"],
    threshold=p["threshold"],
    seed=seed,
    progress=progress,
  )
  converged = best["steps"][0] >= 0
  lr = float(best["lr"][0]) if converged else float(np.median(p["lrs"]))
  steps = max(int(best["steps"][0]) if converged else p["caps"][-1], 100)
  weights, _, _ = sweep.grid(
    "gaussian", dims[depth], std=[std], lr=[lr], seeds=[seed], draws="common"
  )
  record_every = max(1, steps // 500)
  traj = gradient_descent(
    tuple(w[0] for w in weights),
    loss,
    lr=lr,
    steps=-(-steps // record_every) * record_every,
    record_every=record_every,
    stop_at_loss=p["threshold"],
  )
  gram = _min_gram_norm(traj.layer_singular_values)
  balancedness = np.asarray(traj.balancedness, np.float64)
  return dict(
    trajectory=traj,
    gram=gram,
    summary=dict(
      depth=depth,
      std=std,
      lr=lr,
      steps=steps,
      converged=bool(converged),
      final_loss=float(traj.loss[-1]),
      balancedness_initial=float(balancedness[0]),
      balancedness_max=float(np.nanmax(balancedness)),
      balancedness_final=float(balancedness[-1]),
      min_gram_norm_initial=float(gram[0]),
      min_gram_norm_final=float(gram[-1]),
    ),
  )


def _figure(p, sweeps, panel_c, source):
  plt = pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), constrained_layout=True)
  cap = p["caps"][-1]
  for ax, init, letter in ((axes[0], "gaussian", "a"), (axes[1], "balanced", "b")):
    for i, depth in enumerate(p["depths"]):
      best, color = sweeps[f"{init}/N={depth}"], f"C{i}"
      std, steps = np.asarray(best["std"]), np.asarray(best["steps"])
      ok = steps >= 0
      ax.loglog(std[ok], steps[ok], "o-", color=color, label=f"N={depth}")
      cap_marker(
        ax,
        std[~ok],
        cap * 1.4**i,
        color=color,
        s=60,
        label=f"N={depth}: no convergence within {cap:.0e}" if (~ok).any() else None,
      )
    ax.axhline(cap, color="gray", lw=0.6, ls=":")
    ax.set(
      xlabel="init standard deviation (log scale)",
      ylabel="iterations to converge (log scale)",
      title=f"({letter}) {'layer-wise Gaussian' if init == 'gaussian' else 'balanced'} init, "
      f"fastest lr of {len(p['lrs'])} in [{min(p['lrs']):g}, {max(p['lrs']):g}]",
    )
    ax.legend(fontsize="small", loc="best")
  ymin = min(min(axes[0].get_ylim()[0], axes[1].get_ylim()[0]), 10)
  for ax in axes[:2]:
    ax.set_ylim(ymin, cap * 3)
  ax = axes[2]
  traj, summary = panel_c["trajectory"], panel_c["summary"]
  step = np.asarray(traj.step)
  ax.loglog(
    step[1:],
    np.asarray(traj.balancedness)[1:],
    label=r"balancedness $\max_j\|W_{j+1}^\top W_{j+1} - W_jW_j^\top\|_F$",
  )
  ax.loglog(step[1:], panel_c["gram"][1:], label=r"$\min_j \|W_j W_j^\top\|_F$")
  ax.set(
    xlabel="iteration (log scale)",
    ylabel="Frobenius norm (log scale)",
    title=f"(c) Gaussian init, N={summary['depth']}, std {summary['std']:g}, "
    f"lr {summary['lr']:.3g}",
  )
  ax.legend(fontsize="small")
  where = (
    "synthetic unit target (rotation invariance)"
    if source["kind"] == "synthetic"
    else f"whitened data {source['path']} (d0={source['whitened_features']})"
  )
  fig.suptitle(
    f"Arora, Cohen, Golowich, Hu 2019, Figure 1: converged = loss within {p['threshold']:g} of the "
    f"optimum, cap {cap:.0e} iterations; {where}"
  )
  return fig

r"""Linear convergence from balanced inits with a deficiency margin (Arora et al. 2019, Theorem 1).

Target :math:`\Phi \in \mathbb{R}^{4 \times 8}` with singular values ``target_singular_values``
(:math:`\sigma_{\min}(\Phi) = 0.6`), hidden widths 8, depths ``depths``. Each network starts from
the balanced init (Procedure 1) whose end-to-end matrix is :math:`\Phi + E` with
:math:`\|E\|_F = \sigma_{\min}(\Phi) - c`, so it has deficiency margin exactly :math:`c`
(``margin``). Theorem 1 bounds the loss by the line
:math:`\mathrm{loss}(0)(1 - \eta\, c^{2(N-1)/N})^t` (``lintraj.theory.theorem1(...).rate``).

The theorem's learning-rate condition :math:`\eta \le c^{(4N-2)/N} / (6144 N^3
\|\Phi\|_F^{(6N-4)/N})` is about :math:`10^{-7}`: at that rate the runs would take tens of millions
of steps. The runs here use a practical :math:`\eta` and draw the rate line at that :math:`\eta`;
``check_theorem1`` in the results records which conditions hold. Near the optimum the loss contracts
by
:math:`(1 - \eta\, \sigma_{\min}(\Phi)^{2(N-1)/N})^2` per step (linearising the end-to-end rule
around :math:`\Phi`, whose preconditioner's smallest eigenvalue on this wide target is
:math:`\sigma_{\min}^{2(N-1)/N}`), which the results compare with the fitted slope. Runs in float64.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from lintraj import init, losses, theory
from lintraj.dynamics import gradient_descent
from lintraj.reproductions.output import pyplot, write_outputs

__all__ = ["run", "protocol", "target_and_start"]

NAME = "convergence-rate"
# Below this the float64 loss is rounding noise (its square-root scale is ~1e-10), so the comparison
# with the rate line stops there.
_ROUNDING_FLOOR = 1e-20


def protocol(quick: bool) -> dict:
  """The settings of a run: the full one, or the small ``quick`` one."""
  return dict(
    target_singular_values=(1.5, 1.2, 0.9, 0.6),
    d0=8,
    hidden=8,
    margin=0.3,
    lr=0.05,
    depths=(1, 2, 3) if quick else (1, 2, 3, 4, 6),
    steps=600 if quick else 1000,
    record_every=2,
    fit_range=(1e-10, 1e-3),
  )


def target_and_start(p: dict, seed: int = 0):
  r"""The target :math:`\Phi = U \mathrm{diag}(s) V^\top` (random orthonormal ``U``, ``V``) and a
  start
  :math:`\Phi + E` with :math:`\|E\|_F = \sigma_{\min}(\Phi) - c`, i.e. deficiency margin ``c``.

  Example:
    >>> phi, start = target_and_start(protocol(quick=True))
    >>> margin = np.linalg.svd(phi, compute_uv=False)[-1] - np.linalg.norm(start - phi)
    >>> phi.shape, round(float(margin), 6)
    ((4, 8), 0.3)
  """
  rng = np.random.default_rng(seed)
  s = np.asarray(p["target_singular_values"], np.float64)
  u, _ = np.linalg.qr(rng.standard_normal((len(s), len(s))))
  v, _ = np.linalg.qr(rng.standard_normal((p["d0"], len(s))))
  phi = u @ np.diag(s) @ v.T
  e = rng.standard_normal(phi.shape)
  e *= (s.min() - p["margin"]) / np.linalg.norm(e)
  return phi, phi + e


def run(
  quick: bool = False,
  out_dir=f"out/{NAME}",
  *,
  pdf: bool = False,
  seed: int = 0,
  progress: bool = False,
) -> dict:
  r"""Reproduce Theorem 1's linear rate against gradient descent from balanced inits.

  Returns, per depth: ``bound_rate`` (:math:`\eta c^{2(N-1)/N}`, the per-step contraction factor of
  the theorem is one minus it), ``empirical_rate`` (one minus the per-step contraction of the loss
  fitted over ``fit_range``), ``asymptotic_rate`` (one minus
  :math:`(1 - \eta \sigma_{\min}^{2(N-1)/N})^2`), ``below_bound`` (loss at or below the line at
  every record where the line is above :math:`10^{-20}`, float64 rounding), ``min_margin``,
  ``max_balancedness``, ``theorem1`` (:func:`lintraj.theory.check_theorem1` at the run's
  :math:`\eta`: which conditions hold, ``max_lr``, ``max_balancedness``) and
  ``iterations_at_max_lr`` (the steps Theorem 1 guarantees to reach ``loss <= 1e-5`` at its own
  :math:`\eta`, against ``iterations`` observed at the run's).

  Example:
    >>> protocol(quick=True)["margin"]
    0.3

  References:
    Arora, Cohen, Golowich, Hu. A Convergence Analysis of Gradient Descent for Deep Linear
    Neural Networks. ICLR 2019 (arXiv 1810.02281), Theorem 1, Lemmas 1-2.
  """
  start = time.perf_counter()
  p = protocol(quick)
  runs, per_depth = {}, {}
  with jax.enable_x64(True):
    phi, w0 = target_and_start(p, seed)
    loss = losses.target(phi)
    sigma_min = float(np.linalg.svd(phi, compute_uv=False)[-1])
    for depth in p["depths"]:
      dims = (p["d0"],) + (p["hidden"],) * (depth - 1) + (len(p["target_singular_values"]),)
      weights = init.balanced(None, dims, end_to_end=w0, dtype=jnp.float64)
      check = theory.check_theorem1(weights, phi, p["lr"])
      traj = gradient_descent(
        weights,
        loss,
        lr=p["lr"],
        steps=p["steps"],
        record_every=p["record_every"],
        progress=progress,
      )
      runs[depth] = traj
      bound = float(theory.theorem1(phi, check.margin, depth).rate) * p["lr"]
      step, values = np.asarray(traj.step), np.asarray(traj.loss)
      line = values[0] * (1 - bound) ** step
      low, high = p["fit_range"]
      fit = (values > low) & (values < high)
      slope = np.polyfit(step[fit], np.log(values[fit]), 1)[0] if fit.sum() > 2 else np.nan
      reached = np.flatnonzero(values <= check.eps)
      per_depth[str(depth)] = dict(
        bound_rate=bound,
        empirical_rate=float(-np.expm1(slope)),
        asymptotic_rate=float(1 - (1 - p["lr"] * sigma_min ** (2 * (depth - 1) / depth)) ** 2),
        below_bound=bool(np.all((values <= line * (1 + 1e-9))[line > _ROUNDING_FLOOR])),
        min_margin=float(np.min(traj.deficiency_margin)),
        max_balancedness=float(np.max(traj.balancedness)),
        theorem1=check._asdict(),
        iterations=int(step[reached[0]]) if reached.size else -1,
        iterations_at_max_lr=float(
          np.ceil(theory.iterations_bound(check.loss, check.eps, check.max_lr, check.margin, depth))
        ),
      )
  results = dict(
    name=NAME,
    quick=quick,
    protocol=p,
    seed=seed,
    margin=p["margin"],
    sigma_min=sigma_min,
    depths=per_depth,
  )
  fig = _figure(p, runs, per_depth)
  results["seconds"] = round(time.perf_counter() - start, 2)
  table = {
    key: [per_depth[str(d)][key] for d in p["depths"]]
    for key in (
      "bound_rate",
      "empirical_rate",
      "asymptotic_rate",
      "iterations",
      "iterations_at_max_lr",
    )
  }
  return write_outputs(
    NAME, out_dir, fig, results, tables={"rates": dict(depth=list(p["depths"]), **table)}, pdf=pdf
  )


def _figure(p, runs, per_depth):
  plt = pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
  for i, depth in enumerate(p["depths"]):
    traj, stats, color = runs[depth], per_depth[str(depth)], f"C{i}"
    step, values = np.asarray(traj.step), np.asarray(traj.loss)
    axes[0].semilogy(
      step,
      values,
      color=color,
      label=f"N={depth}: GD {stats['empirical_rate']:.3g}/step, "
      f"line {stats['bound_rate']:.3g}/step",
    )
    axes[0].semilogy(step, values[0] * (1 - stats["bound_rate"]) ** step, color=color, ls="--")
    axes[1].plot(step, np.asarray(traj.deficiency_margin), color=color, label=f"N={depth}")
    if depth > 1:
      axes[2].semilogy(
        step, np.maximum(np.asarray(traj.balancedness), 1e-18), color=color, label=f"N={depth}"
      )
      axes[2].axhline(
        2 * stats["theorem1"]["max_balancedness"],
        color=color,
        ls=":",
        lw=1,
        label=rf"N={depth}: $2\delta$ of Lemma 2 "
        rf"(for $\eta \leq$ {stats['theorem1']['max_lr']:.1e})",
      )
  axes[0].set(
    xlabel="iteration",
    ylabel=r"loss $\frac{1}{2}\|W_{1:N} - \Phi\|_F^2$ (log scale)",
    ylim=(1e-20, 1),
    title=r"(a) loss vs the rate line $(1 - \eta\, c^{2(N-1)/N})^t$",
  )
  axes[0].plot([], [], color="gray", ls="--", label="dashed: Theorem 1 rate line")
  axes[0].legend(fontsize="x-small", loc="lower left")
  axes[1].axhline(
    p["margin"], color="gray", lw=0.8, ls=":", label=f"initial margin c = {p['margin']:g}"
  )
  axes[1].set(
    xlabel="iteration",
    ylabel=r"$\sigma_{\min}(\Phi) - \|W_{1:N} - \Phi\|_F$",
    title="(b) deficiency margin along the run (kept)",
  )
  axes[1].legend(fontsize="small")
  axes[2].set(
    xlabel="iteration",
    ylabel=r"$\max_j \|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F$ (log scale)",
    title="(c) balancedness along the run (float64)",
  )
  axes[2].legend(fontsize="x-small")
  fig.suptitle(
    f"Arora, Cohen, Golowich, Hu 2019, Theorem 1: balanced init with margin c = {p['margin']:g}, "
    f"4x8 target, lr {p['lr']:g}"
  )
  return fig

r"""Implicit acceleration by overparameterization (Arora, Cohen, Hazan 2018): depth speeds up
gradient descent on :math:`\ell_4` regression but not on :math:`\ell_2` regression.

Scalar regression :math:`L(w) = \frac{1}{p\,m}\sum_i |x_i^\top w - y_i|^p`
(``lintraj.losses.lp_regression``) on synthetic data: ``d`` features with scales from 1 down to
0.1 (an ill-conditioned covariance), a linear teacher plus noise (so the optimum has positive loss).
A linear model (depth 1) is compared with depth-2..4 networks of hidden width 8, every one started
from the same small end-to-end vector :math:`w_0` (balanced init, Procedure 1), so all depths start
from the same function. For each depth the learning rate is tuned on a log grid (the fastest to
converge wins, as in the paper's comparison of tuned optimizers); converged means an excess loss
:math:`L - L^*` at most ``tol`` times the initial one, with :math:`L^*` from Newton's method
(independent of lintraj).

Why: a balanced network's end-to-end vector follows
:math:`\dot w = -\|w\|^{2-2/N}\,(\nabla L + (N-1)\langle\nabla L, \hat w\rangle \hat w)`
(``lintraj.theory.end_to_end_velocity``), an adaptive step size that grows with :math:`\|w\|` plus
a momentum-like boost along :math:`w`. For :math:`p = 4` the curvature is large far from the optimum
and small near it, which a fixed step size cannot serve and the adaptive one does; for :math:`p = 2`
the curvature is constant and a tuned fixed step is already the best. The deep runs overlay
``lintraj.theory.end_to_end_flow`` at the same learning rate: the network follows the end-to-end
rule. Runs in float64.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from lintraj import init, losses, theory
from lintraj.dynamics import gradient_descent
from lintraj.reproductions.output import pyplot, write_outputs
from lintraj.sweep import fastest_iterations

__all__ = ["run", "protocol", "regression_data", "lp_minimum"]

NAME = "acceleration"


def protocol(quick: bool) -> dict:
  """The settings of a run: the full one, or the small ``quick`` one."""
  lrs = lambda low, high, per_decade: tuple(
    float(f"{x:.6g}") for x in np.logspace(low, high, round((high - low) * per_decade) + 1)
  )
  return dict(
    samples=200 if quick else 1000,
    features=12,
    noise=0.5,
    hidden=8,
    init_std=1e-2,
    ps=(4, 2),
    depths=(1, 2) if quick else (1, 2, 3, 4),
    tol=1e-4,
    lrs=lrs(-2, 0.5, 4) if quick else lrs(-3, 0.5, 6),
    caps=(1500,) if quick else (300, 1000, 3000, 10_000, 30_000),
    curve_steps=1000 if quick else 2000,
    curve_records=200,
  )


def regression_data(samples: int, features: int, noise: float, seed: int = 0):
  """Inputs with feature scales from 1 down to 0.1 and labels of a Gaussian linear teacher plus
  noise.

  Example:
    >>> x, y = regression_data(5, 3, 0.1)
    >>> x.shape, y.shape
    ((5, 3), (5,))
  """
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((samples, features)) * np.logspace(0, -1, features)[None, :]
  return x, x @ rng.standard_normal(features) + noise * rng.standard_normal(samples)


def lp_minimum(x, y, p: float, iterations: int = 100):
  r"""The minimiser and minimum of :math:`\frac{1}{p\,m}\sum_i |x_i^\top w - y_i|^p` (``p >= 2``) by
  Newton's method from the least-squares solution, in NumPy float64.

  Example:
    >>> x, y = regression_data(50, 3, 0.1)
    >>> w, value = lp_minimum(x, y, 2)
    >>> bool(np.allclose(w, np.linalg.lstsq(x, y, rcond=None)[0]))
    True
  """
  m = x.shape[0]
  w = np.linalg.lstsq(x, y, rcond=None)[0]
  for _ in range(iterations if p != 2 else 0):
    r = x @ w - y
    grad = x.T @ (np.abs(r) ** (p - 1) * np.sign(r)) / m
    hess = (p - 1) * (x.T * np.abs(r)[None, :] ** (p - 2)) @ x / m
    w = w - np.linalg.solve(hess, grad)
  return w, float(np.sum(np.abs(x @ w - y) ** p) / (p * m))


def run(
  quick: bool = False,
  out_dir=f"out/{NAME}",
  *,
  pdf: bool = False,
  seed: int = 0,
  progress: bool = False,
) -> dict:
  r"""Reproduce the implicit acceleration of depth on :math:`\ell_4` (and its absence on
  :math:`\ell_2`).

  Returns, per ``p`` and depth: ``iterations`` (of the fastest learning rate; ``-1`` if none
  converged within the cap), ``lr`` (that learning rate), ``speedup`` (depth-1 iterations over
  these), and for depths > 1 ``flow_gap`` (the largest difference between the network's loss and
  that of ``lintraj.theory.end_to_end_flow`` at the same learning rate over the first
  ``curve_steps`` steps, relative to the initial excess loss); and the optimum :math:`L^*` per
  ``p``.

  Example:
    >>> protocol(quick=True)["ps"]
    (4, 2)

  References:
    Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration by
    Overparameterization. ICML 2018 (arXiv 1802.06509), Section 6 and Theorem 1.
  """
  start = time.perf_counter()
  p = protocol(quick)
  x, y = regression_data(p["samples"], p["features"], p["noise"], seed)
  per_p, curves = {}, {}
  with jax.enable_x64(True):
    w0 = p["init_std"] * np.asarray(
      jax.random.normal(jax.random.PRNGKey(seed), (1, p["features"]), jnp.float64)
    )
    start_at = lambda key, dims, std: init.balanced(None, dims, end_to_end=w0, dtype=jnp.float64)
    for power in p["ps"]:
      loss = losses.lp_regression(x, y, power)
      _, optimum = lp_minimum(x, y, power)
      initial = float(loss(jnp.asarray(w0)))
      threshold = optimum + p["tol"] * (initial - optimum)
      stats = {}
      for depth in p["depths"]:
        dims = (p["features"],) + (p["hidden"],) * (depth - 1) + (1,)
        best, _ = fastest_iterations(
          start_at,
          dims,
          loss,
          stds=[1.0],
          lrs=p["lrs"],
          caps=p["caps"],
          threshold=threshold,
          seed=seed,
          progress=progress,
        )
        steps, lr = int(best["steps"][0]), float(best["lr"][0])
        stats[str(depth)] = dict(iterations=steps, lr=lr)
        if steps < 0:
          continue
        length, record_every = p["curve_steps"], p["curve_steps"] // p["curve_records"]
        traj = gradient_descent(
          start_at(None, dims, None), loss, lr=lr, steps=length, record_every=record_every
        )
        curve = dict(step=np.asarray(traj.step), excess=np.asarray(traj.loss) - optimum)
        if depth > 1:
          flow = theory.end_to_end_flow(
            jnp.asarray(w0), loss, depth, lr=lr, steps=length, record_every=record_every
          )
          curve["flow_excess"] = np.asarray(flow.loss) - optimum
          stats[str(depth)]["flow_gap"] = float(
            np.max(np.abs(curve["flow_excess"] - curve["excess"])) / (initial - optimum)
          )
        curves[power, depth] = curve
      base = stats["1"]["iterations"]
      for depth_stats in stats.values():
        depth_stats["speedup"] = (
          base / depth_stats["iterations"]
          if base > 0 and depth_stats["iterations"] > 0
          else float("nan")
        )
      per_p[str(power)] = dict(
        optimum=optimum, initial_loss=initial, threshold=threshold, depths=stats
      )
  results = dict(name=NAME, quick=quick, protocol=p, seed=seed, p=per_p)
  fig = _figure(p, per_p, curves)
  results["seconds"] = round(time.perf_counter() - start, 2)
  table = dict(p=[], depth=[], iterations=[], lr=[], speedup=[])
  for power in p["ps"]:
    for depth in p["depths"]:
      row = per_p[str(power)]["depths"][str(depth)]
      for key, value in (
        ("p", power),
        ("depth", depth),
        ("iterations", row["iterations"]),
        ("lr", row["lr"]),
        ("speedup", row["speedup"]),
      ):
        table[key].append(value)
  return write_outputs(NAME, out_dir, fig, results, tables={"iterations": table}, pdf=pdf)


def _figure(p, per_p, curves):
  plt = pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), constrained_layout=True)
  for ax, power, letter in zip(axes, p["ps"], "ab"):
    for i, depth in enumerate(p["depths"]):
      if (power, depth) not in curves:
        continue
      curve, stats = curves[power, depth], per_p[str(power)]["depths"][str(depth)]
      ax.semilogy(
        curve["step"],
        curve["excess"],
        color=f"C{i}",
        label=f"depth {depth}, lr {stats['lr']:.3g}: {stats['iterations']} iterations",
      )
      if "flow_excess" in curve:
        ax.semilogy(
          curve["step"],
          curve["flow_excess"],
          color="k",
          lw=0.8,
          ls=":",
          label="end-to-end rule (theory.end_to_end_flow)" if depth == 2 else None,
        )
    ax.axhline(
      per_p[str(power)]["threshold"] - per_p[str(power)]["optimum"],
      color="gray",
      lw=0.6,
      ls="--",
      label="converged",
    )
    ax.set_ylim(bottom=1e-12)
    ax.set(
      xlabel="iteration",
      ylabel=r"excess loss $L - L^*$ (log scale)",
      title=f"({letter}) $\\ell_{power}$ regression, each depth at its fastest lr",
    )
    ax.legend(fontsize="x-small")
  ax = axes[2]
  for power, marker in zip(p["ps"], "os"):
    stats = per_p[str(power)]["depths"]
    its = np.array([stats[str(d)]["iterations"] for d in p["depths"]], float)
    its[its < 0] = np.nan
    ax.semilogy(p["depths"], its, marker=marker, label=f"$\\ell_{power}$")
  ax.set_xticks(p["depths"])
  ax.set(
    xlabel="depth N",
    ylabel="iterations to converge (log scale)",
    title="(c) iterations to converge vs depth (tuned lr)",
  )
  ax.legend()
  fig.suptitle(
    f"Arora, Cohen, Hazan 2018: depth accelerates GD on $\\ell_4$, not on $\\ell_2$ "
    f"({p['samples']} samples, {p['features']} features, converged = excess loss "
    f"{p['tol']:g} x initial)"
  )
  return fig

r"""Exact learning dynamics of deep linear networks (Saxe, McClelland, Ganguli 2014).

Target :math:`\Phi = U \mathrm{diag}(s) V^\top \in \mathbb{R}^{5 \times 8}` with mode strengths
:math:`s = (2, 1.5, 1, 0.7, 0.5)`, hidden widths 8, loss :math:`\tfrac12\|W_{1:N} - \Phi\|_F^2`.

- (a), (b) From a balanced init aligned with :math:`\Phi` (end-to-end matrix :math:`u_0 U V^\top`),
  each singular value of :math:`W_{1:N}` evolves on its own, :math:`\dot u = N u^{2-2/N}(s - u)`
  (``lintraj.theory.mode_strength``, time :math:`t = \eta \cdot \mathrm{step}`): sigmoidal curves,
  stronger modes first. GD follows them up to its discretisation error (``mode_error``, shrinking
  with the learning rate).
- (c) Time for a mode to reach half its strength. At depth 2 it is
  :math:`\frac{1}{2s}\ln\frac{s - u_0}{u_0}`, nearly proportional to :math:`1/s`; at depth
  :math:`N > 2` and small :math:`u_0` it is about :math:`u_0^{-(1 - 2/N)} / ((N - 2)\, s)` (the
  escape from
  :math:`u_0` dominates): proportional to :math:`1/s` too, with a slope growing with depth.
- (d) Steps until the loss is below ``1e-3`` of :math:`\tfrac12\|\Phi\|_F^2` as depth grows, for
  three random inits: small layer-wise Gaussian (std 0.1: the end-to-end scale shrinks exponentially
  with depth, and learning slows down exponentially), scaled orthogonal layers (scale 1: an
  isometric product, every direction starts at strength 1; learning time independent of depth, Saxe
  et al.'s point), and balanced with an O(1) end-to-end matrix (std 0.3, so O(1) layers too): in
  between, it grows about linearly with depth, because the modes along which the random end-to-end
  matrix is weak still start small.

The target is wide (5 x 8) on purpose: for a square target, random inits whose end-to-end
determinant has the wrong sign must pass through a singular matrix, a saddle that deep networks
cross extremely slowly (the same obstruction as ``residual-failure``). Runs in float64.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from lintraj import init, losses, theory
from lintraj.dynamics import gradient_descent
from lintraj.reproductions.output import cap_marker, pyplot, write_outputs

__all__ = ["run", "protocol", "half_time"]

NAME = "saxe-modes"


def protocol(quick: bool) -> dict:
  """The settings of a run: the full one, or the small ``quick`` one."""
  return dict(
    strengths=(2.0, 1.5, 1.0, 0.7, 0.5),
    d0=8,
    hidden=8,
    u0=1e-3,
    mode_depths=(2, 3) if quick else (2, 3, 4, 6),
    mode_lr=0.01 if quick else 0.005,
    mode_time=30.0 if quick else 70.0,
    init_depths=(2, 4, 6) if quick else (2, 3, 4, 5, 6, 8),
    init_lr=0.02,
    init_cap=3000 if quick else 20_000,
    gaussian_std=0.1,
    balanced_std=0.3,
    orthogonal_scale=1.0,
    learned=1e-3,
  )


def half_time(times, strengths, s) -> np.ndarray:
  """The first time each mode reaches half its target strength (NaN if never), from records
  ``strengths`` of shape ``(T, modes)`` at ``times`` ``(T,)``, linearly interpolated.

  Example:
    >>> half_time(np.array([0.0, 1.0, 2.0]), np.array([[0.0], [0.4], [0.8]]), np.array([1.0]))
    array([1.25])
  """
  times, strengths, s = np.asarray(times, float), np.asarray(strengths, float), np.asarray(s, float)
  out = np.full(s.shape, np.nan)
  for r in range(s.size):
    above = np.flatnonzero(strengths[:, r] >= s[r] / 2)
    if above.size and above[0] > 0:
      i = above[0]
      fraction = (s[r] / 2 - strengths[i - 1, r]) / (strengths[i, r] - strengths[i - 1, r])
      out[r] = times[i - 1] + fraction * (times[i] - times[i - 1])
  return out


def _target(p, seed):
  rng = np.random.default_rng(seed)
  s = np.asarray(p["strengths"], np.float64)
  u, _ = np.linalg.qr(rng.standard_normal((s.size, s.size)))
  v, _ = np.linalg.qr(rng.standard_normal((p["d0"], s.size)))
  return u, s, v


def run(
  quick: bool = False,
  out_dir=f"out/{NAME}",
  *,
  pdf: bool = False,
  seed: int = 0,
  progress: bool = False,
) -> dict:
  r"""Reproduce Saxe et al.'s mode dynamics and the depth dependence of learning time.

  Returns, per depth of the aligned runs: ``mode_error`` (per mode,
  :math:`\max_t |u_{GD}(t) - u(t)| / s`), ``half_time`` (GD) and ``half_time_theory``
  (from ``mode_strength`` on a fine grid), in time units :math:`\eta \cdot \mathrm{step}`;
  ``depth2_fit`` (slope, intercept and :math:`r^2` of the depth-2 half times against :math:`1/s`);
  and ``steps_to_learn`` per init and depth (``-1``: not within ``init_cap``).

  Example:
    >>> protocol(quick=True)["strengths"]
    (2.0, 1.5, 1.0, 0.7, 0.5)

  References:
    Saxe, McClelland, Ganguli. Exact solutions to the nonlinear dynamics of learning in deep
    linear neural networks. ICLR 2014 (arXiv 1312.6120), Sections 1-3 (Eqs. 6-8, Fig. 2-3, 6).
  """
  start = time.perf_counter()
  p = protocol(quick)
  modes, learning, per_depth = {}, {}, {}
  with jax.enable_x64(True):
    u, s, v = _target(p, seed)
    phi = u @ np.diag(s) @ v.T
    loss = losses.target(phi)
    steps = int(round(p["mode_time"] / p["mode_lr"]))
    fine = np.linspace(0.0, p["mode_time"], 4001)
    for depth in p["mode_depths"]:
      dims = (p["d0"],) + (p["hidden"],) * (depth - 1) + (s.size,)
      weights = init.balanced(None, dims, end_to_end=p["u0"] * u @ v.T, dtype=jnp.float64)
      traj = gradient_descent(
        weights, loss, lr=p["mode_lr"], steps=steps, record_every=steps // 400, progress=progress
      )
      t = p["mode_lr"] * np.asarray(traj.step, np.float64)
      simulated = np.asarray(traj.end_to_end_singular_values)
      predicted = np.asarray(
        theory.mode_strength(t[:, None], s[None, :], np.full((1, s.size), p["u0"]), depth)
      )
      exact = np.asarray(
        theory.mode_strength(fine[:, None], s[None, :], np.full((1, s.size), p["u0"]), depth)
      )
      modes[depth] = dict(t=t, simulated=simulated, predicted=predicted)
      per_depth[str(depth)] = dict(
        mode_error=np.max(np.abs(simulated - predicted), axis=0) / s,
        half_time=half_time(t, simulated, s),
        half_time_theory=half_time(fine, exact, s),
      )
    threshold = p["learned"] * 0.5 * float(np.sum(s**2))
    makers = {
      "small Gaussian": lambda key, dims: init.gaussian(
        key, dims, std=p["gaussian_std"], dtype=jnp.float64
      ),
      "balanced": lambda key, dims: init.balanced(
        key, dims, std=p["balanced_std"], dtype=jnp.float64
      ),
      "orthogonal": lambda key, dims: init.orthogonal(
        key, dims, scale=p["orthogonal_scale"], dtype=jnp.float64
      ),
    }
    for name, make in makers.items():
      learning[name] = []
      for depth in p["init_depths"]:
        dims = (p["d0"],) + (p["hidden"],) * (depth - 1) + (s.size,)
        traj = gradient_descent(
          make(jax.random.PRNGKey(seed), dims),
          loss,
          lr=p["init_lr"],
          steps=p["init_cap"],
          record_every=p["init_cap"] // 100,
          stop_at_loss=threshold,
        )
        learning[name].append(-1 if traj.stopped_step is None else traj.stopped_step)
  halves = per_depth[str(p["mode_depths"][0])]["half_time"]
  slope, intercept = np.polyfit(1 / s, halves, 1)
  residual = halves - (slope / s + intercept)
  r2 = 1 - np.sum(residual**2) / np.sum((halves - halves.mean()) ** 2)
  results = dict(
    name=NAME,
    quick=quick,
    protocol=p,
    seed=seed,
    depths=per_depth,
    depth2_fit=dict(slope=float(slope), intercept=float(intercept), r2=float(r2)),
    steps_to_learn=learning,
  )
  fig = _figure(p, s, modes, per_depth, learning)
  results["seconds"] = round(time.perf_counter() - start, 2)
  tables = {
    "steps_to_learn": dict(
      depth=list(p["init_depths"]), **{k.replace(" ", "_"): v for k, v in learning.items()}
    ),
    "half_times": dict(
      strength=s,
      **{f"depth{d}": per_depth[str(d)]["half_time"] for d in p["mode_depths"]},
      **{f"depth{d}_theory": per_depth[str(d)]["half_time_theory"] for d in p["mode_depths"]},
    ),
  }
  return write_outputs(NAME, out_dir, fig, results, tables=tables, pdf=pdf)


def _figure(p, s, modes, per_depth, learning):
  plt = pyplot()
  fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), constrained_layout=True)
  for ax, depth, letter in (
    (axes[0, 0], p["mode_depths"][0], "a"),
    (axes[0, 1], p["mode_depths"][-1], "b"),
  ):
    run_ = modes[depth]
    for r, strength in enumerate(s):
      ax.plot(run_["t"], run_["simulated"][:, r], color=f"C{r}", label=f"GD, s={strength:g}")
      ax.plot(
        run_["t"],
        run_["predicted"][:, r],
        color="k",
        lw=0.8,
        ls="--",
        label="mode_strength (exact flow)" if r == 0 else None,
      )
    ax.set(
      xlabel=r"time $t = \eta \cdot$ iteration",
      ylabel="singular value of $W_{1:N}$",
      title=f"({letter}) depth {depth}: each mode learned sigmoidally (lr {p['mode_lr']:g}, "
      f"$u_0$={p['u0']:g})",
    )
    ax.legend(fontsize="x-small", loc="lower right")
  ax = axes[1, 0]
  for i, depth in enumerate(p["mode_depths"]):
    stats = per_depth[str(depth)]
    ax.plot(1 / s, stats["half_time"], "o", color=f"C{i}", label=f"depth {depth}: GD")
    ax.plot(
      1 / s, stats["half_time_theory"], "-", color=f"C{i}", lw=0.8, label=f"depth {depth}: theory"
    )
  ax.set(
    xlabel="1 / s (inverse mode strength)",
    ylabel=r"time to reach s/2 ($\eta \cdot$ iteration)",
    title="(c) time to learn a mode vs 1/s",
  )
  ax.legend(fontsize="x-small", ncol=2)
  ax = axes[1, 1]
  for i, (name, steps) in enumerate(learning.items()):
    steps = np.asarray(steps, float)
    ok = steps >= 0
    depths = np.asarray(p["init_depths"])
    ax.semilogy(depths[ok], steps[ok], "o-", color=f"C{i}", label=name)
    cap_marker(
      ax,
      depths[~ok],
      p["init_cap"],
      color=f"C{i}",
      s=60,
      label=f"{name}: not learned within {p['init_cap']}" if (~ok).any() else None,
    )
  ax.set_xticks(p["init_depths"])
  ax.set(
    xlabel="depth N",
    ylabel="iterations to learn (log scale)",
    title=f"(d) random inits vs depth: until loss < {p['learned']:g}"
    r" $\cdot \frac{1}{2}\|\Phi\|_F^2$"
    f", lr {p['init_lr']:g}",
  )
  ax.legend(fontsize="small")
  fig.suptitle(
    f"Saxe, McClelland, Ganguli 2014: 5x8 target, mode strengths {', '.join(f'{x:g}' for x in s)}"
  )
  return fig

r"""Implicit acceleration by overparameterization (Arora, Cohen, Hazan 2018): depth speeds up
gradient descent on :math:`\ell_4` regression but not on :math:`\ell_2` regression; and how depth
compares with tuned AdaGrad and AdaDelta on :math:`\ell_4`.

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
rule.

The adaptive optimizers (the paper's experiments: depth-2/3 GD against AdaGrad and AdaDelta on the
linear model, :math:`\ell_4`): ``optax.adagrad`` and ``optax.adadelta`` at optax's defaults but the
learning rate (AdaGrad: initial accumulator 0.1, eps 1e-7; AdaDelta: rho 0.9, eps 1e-6), each
learning rate tuned on the grid ``optimizer_lrs`` (1e-3..1e4) by one ``lt.batch_train`` per stage
(:func:`optimizer_iterations`), on two problems: the data as drawn (``features``: the input scales
lie along the coordinate axes, which a per-coordinate step can undo) and the same data rotated
(``rotated``: inputs :math:`x_i^\top Q`, start :math:`w_0 Q`, :func:`rotation`), on which GD at
every depth runs exactly as before (same losses) while AdaGrad and AdaDelta do not. Converged, for
them, means staying below the threshold through step ``hold`` (AdaDelta's fastest first steps
below come from runs that then blow up); GD's tuned runs are checked to stay below as well
(``rebound`` <= 1), so both are tuned by the same rule.

Measured in the default run (``lintraj reproduce acceleration``, float64, data and :math:`w_0`
from seed 0, :math:`Q` from NumPy seed 1; every number is in ``acceleration.json`` and the tables
``acceleration-iterations.csv`` and ``acceleration-optimizers.csv``):

- **Depth on** :math:`\ell_4`: GD needs 293 iterations at depth 1 (lr 0.316), 95, 93 and 93 at
  depths 2, 3, 4 (lr 0.316, 0.316, 0.215): a 3.1x speedup. On :math:`\ell_2`: 86 at depth 1 (lr
  1.47), 85, 88 and 117 at depths 2-4: none. The largest gap between the network and the
  end-to-end rule, relative to the initial excess loss, is 1.3e-3, 6.7e-4, 2.6e-3
  (:math:`\ell_4`, depths 2-4) and 0.060, 0.033, 0.046 (:math:`\ell_2`). Every tuned GD run stays
  below the threshold through step 10^4 (rebound 0.974-0.998).
- **AdaGrad** beats depth on the data as drawn, 20 iterations (lr 1.47), and loses to it on the
  rotated data, 429 (lr 0.681), slower even than the linear model with GD.
- **AdaDelta** loses to depth on both, 367 and 545 iterations (lr 2.15 on both). Its first steps
  below the threshold come sooner, 10 (lr 464) and 69 (lr 147), in runs whose loss then grows to
  about 1e208 times the threshold's excess; and at lr 3.16 (data as drawn) it stays below from
  step 285 through step 600 but rises above at step 5550: the hold rejects it.

So depth beats AdaDelta, and beats AdaGrad unless the ill-conditioning lies along the coordinate
axes, where AdaGrad's diagonal preconditioner removes it: the paper's claim holds here only in part.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lintraj import init, losses, theory
from lintraj.dynamics import gradient_descent
from lintraj.reproductions.output import pyplot, write_outputs
from lintraj.sweep import batch_train, fastest_iterations

__all__ = ["run", "protocol", "regression_data", "lp_minimum", "rotation", "optimizer_iterations"]

# The adaptive optimizers of the paper's comparison, at optax's defaults but for the learning rate
# (AdaGrad: initial accumulator 0.1, eps 1e-7; AdaDelta: rho 0.9, eps 1e-6).
OPTIMIZERS = {"adagrad": optax.adagrad, "adadelta": optax.adadelta}

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
    optimizers=tuple(OPTIMIZERS),
    optimizer_p=4,
    hold=3000 if quick else 10_000,
    optimizer_lrs=lrs(-3, 4, 4) if quick else lrs(-3, 4, 6),
    bases=("features", "rotated"),
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


def rotation(features: int, seed: int = 0) -> np.ndarray:
  r"""A random orthogonal :math:`Q` (the Q factor of a Gaussian matrix, NumPy ``seed + 1``): the
  rotated problem has inputs :math:`x_i^\top Q` and start :math:`w_0 Q`.

  Every loss value is unchanged (:math:`(x^\top Q)(Q^\top w) = x^\top w`) and gradient descent
  at every depth is equivariant (a balanced network's layers rotate with :math:`w`), so GD's
  iterations are the same on both; a per-coordinate optimizer (AdaGrad, AdaDelta) is not:
  rotated, the ill-conditioning of the inputs no longer lies along the coordinate axes.

  Example:
    >>> q = rotation(3)
    >>> bool(np.allclose(q.T @ q, np.eye(3)))
    True
  """
  return np.linalg.qr(np.random.default_rng(seed + 1).standard_normal((features, features)))[0]


def optimizer_iterations(factory, w0, loss, *, lrs, caps, threshold, hold, progress=False) -> dict:
  r"""The fewest steps any learning rate of a grid needs to take the linear model (depth 1) from
  ``w0`` to ``loss <= threshold`` for good, with the optax optimizer ``factory(learning_rate=...)``:

  .. math::
     T = \min_{\eta \in \text{lrs}} \min\{t \le \text{cap} :
         L(w(s; \eta)) \le \text{threshold} \text{ for } t \le s \le H\},
     \qquad H = \max(\text{hold}, 2\,\text{cap}).

  The rule of :func:`lintraj.sweep.fastest_iterations` for gradient descent (the fastest learning
  rate of a grid, in stages ending at ``caps``), with the learning rates as lanes of one
  :func:`lintraj.batch_train` (``hyperparams={"learning_rate": lrs}``), except that converged means
  *staying* below the threshold through step :math:`H`, not the first step below it: AdaDelta at
  a large learning rate dips below the threshold within tens of steps and then grows without bound,
  some only after thousands of steps. For gradient descent the two rules agree whenever its tuned
  run stays converged (its first step below is the least over every lane, so no lane settles
  sooner). A stage runs every lane that has not diverged from ``w0`` for ``2 cap`` steps (an
  optimizer's state is not carried over, so each stage starts again); the lanes settled by the cap
  there run again to :math:`H`, fastest first, until one stays; the search ends at the first
  stage with a lane converged (a lane converging later is slower).

  Returns:
    ``lr`` and ``iterations`` of the fastest lane (NaN and ``-1`` if none converged within the
    last cap); ``lrs``, and per lane of the last stage ``steps`` (the step from which it stays
    below through ``2 cap``, ``-1`` if it does not by the cap; the lanes faster than the fastest
    were checked through :math:`H` too) and ``first`` (its first step below, ``-1`` if none by the
    cap); ``rejected``: the learning rates whose lanes stayed below through ``2 cap`` but rose
    above before :math:`H` (their ``steps`` are ``-1``); ``first_lr`` and ``first_iterations`` of
    the lane first below (the rule without staying); ``diverged`` (how many learning rates
    diverged); ``cap`` (of the last stage) and ``horizon`` (:math:`H`); ``loss``: the loss at every
    step up to :math:`H` of the fastest lane, ``first_loss``: up to ``2 cap`` of the lane first
    below (None where there is none).

  Example:
    >>> import numpy as np, optax
    >>> x, y = regression_data(50, 3, 0.1)
    >>> loss, threshold = losses.lp_regression(x, y, 4), lp_minimum(x, y, 4)[1] + 1e-3
    >>> best = optimizer_iterations(optax.adagrad, np.zeros((1, 3), np.float32), loss,
    ...                             lrs=[0.1, 1.0], caps=[1000], threshold=threshold, hold=3000)
    >>> best["lr"], best["iterations"] > 0, best["horizon"]
    (1.0, True, 3000)

  References:
    Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration by
    Overparameterization. ICML 2018 (arXiv 1802.06509), experiments section (depth-2 and depth-3
    networks trained by GD against AdaGrad and AdaDelta on the linear model, :math:`\ell_4`
    regression, learning rates tuned).
  """
  lrs, w0 = np.asarray(lrs, np.float64), np.asarray(w0)
  active, done, horizon, rejected = np.ones(len(lrs), bool), 0, 0, []
  steps, first, curves, found = np.full(len(lrs), -1), np.full(len(lrs), -1), {}, -1

  def settle(lanes, length):
    """Per lane, the loss at every step, its first step below and the step from which it stays
    below (``length + 1`` if its last is above)."""
    traj = batch_train(
      (np.repeat(w0[None], lanes.size, 0),),
      loss,
      factory,
      hyperparams={"learning_rate": lrs[lanes]},
      steps=length,
      progress=progress,
    )
    values = np.asarray(traj.loss)
    above = ~(values <= threshold)  # NaN (diverged) counts as above
    settled = np.where(above.any(1), above.shape[1] - np.argmax(above[:, ::-1], 1), 0)
    below = np.where((~above).any(1), np.argmax(~above, 1), -1)
    return values, below, settled, np.asarray(traj.diverged_step) >= 0

  for cap in caps:
    index = np.flatnonzero(active)
    if index.size == 0:
      break
    values, below, settled, diverged = settle(index, 2 * cap)
    active[index[diverged]] = False
    steps[:], first[:], done, rejected = -1, -1, cap, []
    first[index] = np.where(below <= cap, below, -1)
    steps[index] = np.where(settled <= cap, settled, -1)
    curves = dict(zip(index.tolist(), values))
    horizon = max(hold, 2 * cap)
    # Settled by the cap and below through 2 cap: it stays through H or rises after 2 cap (then
    # it settles after the cap). Check the fastest first, one lane at a time (they rarely fail).
    for lane in sorted(np.flatnonzero(steps >= 0), key=lambda b: (steps[b], b)):
      if horizon == 2 * cap:  # the stage was the check
        found = lane
        break
      values, _, settled, _ = settle(np.array([lane]), horizon)
      if settled[0] <= cap:
        found, curves[lane] = lane, values[0]
        break
      rejected.append(float(lrs[lane]))
      steps[lane] = -1
    if found >= 0:
      break
  early = (
    int(np.flatnonzero(first >= 0)[np.argmin(first[first >= 0])]) if np.any(first >= 0) else -1
  )
  return dict(
    lr=float(lrs[found]) if found >= 0 else float("nan"),
    iterations=int(steps[found]) if found >= 0 else -1,
    lrs=lrs,
    steps=steps,
    first=first,
    rejected=rejected,
    first_lr=float(lrs[early]) if early >= 0 else float("nan"),
    first_iterations=int(first[early]) if early >= 0 else -1,
    diverged=int(np.sum(~active)),
    cap=done,
    horizon=horizon,
    loss=curves[found] if found >= 0 else None,
    first_loss=curves[early] if early >= 0 else None,
  )


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
  :math:`\ell_2`), and compare it with tuned AdaGrad and AdaDelta on the linear model.

  The iterations of a learning rate :math:`\eta` at depth :math:`N` are
  :math:`T_N(\eta) = \min\{t : L(W_{1:N}(t)) \le L^* + \text{tol}\,(L(w_0) - L^*)\}` and each
  depth reports :math:`\min_\eta T_N(\eta)` over the grid ``lrs``.

  Returns, per ``p`` and depth: ``iterations`` (of the fastest learning rate; ``-1`` if none
  converged within the cap), ``lr`` (that learning rate), ``speedup`` (depth-1 iterations over
  these), ``rebound`` (the largest excess loss from that step through step ``hold``, over the
  threshold's: <= 1 when the run stays converged), and for depths > 1 ``flow_gap`` (the largest
  difference between the network's loss and that of ``lintraj.theory.end_to_end_flow`` at the same
  learning rate over the first ``curve_steps`` steps, relative to the initial excess loss); the
  optimum :math:`L^*` per ``p``; and for ``p = optimizer_p`` under ``optimizers``, per optimizer
  (``adagrad``, ``adadelta``) and basis (``features``, ``rotated``): ``iterations``, ``lr``,
  ``speedup`` (over GD at depth 1), ``steps`` and ``first`` (per learning rate of
  ``optimizer_lrs``), ``rejected``, ``diverged`` and ``horizon`` (as in
  :func:`optimizer_iterations`) and ``first_crossing`` (``lr``, ``iterations`` and ``rebound`` of
  the rule without staying).

  Example:
    >>> protocol(quick=True)["ps"], protocol(quick=True)["optimizers"]
    ((4, 2), ('adagrad', 'adadelta'))

  References:
    Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration by
    Overparameterization. ICML 2018 (arXiv 1802.06509), Section 6 and Theorem 1; the experiments
    section for the comparison with AdaGrad and AdaDelta.
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
          seeds=[seed],
          progress=progress,
        )
        steps, lr = int(best["steps"][0]), float(best["lr"][0])
        stats[str(depth)] = dict(iterations=steps, lr=lr)
        if steps < 0:
          continue
        length, record_every = p["curve_steps"], p["curve_steps"] // p["curve_records"]
        horizon = max(p["hold"], length, steps)
        traj = gradient_descent(start_at(None, dims, None), loss, lr=lr, steps=horizon)
        excess = np.asarray(traj.loss) - optimum
        # The largest excess loss from the first step below the threshold through the hold, over
        # the threshold's: <= 1 when the tuned run stays converged (the optimizers' rule).
        stats[str(depth)]["rebound"] = float(np.max(excess[steps:]) / (threshold - optimum))
        curve = dict(
          step=np.arange(0, length + 1, record_every), excess=excess[: length + 1 : record_every]
        )
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
    per_p[str(p["optimizer_p"])]["optimizers"] = _adaptive(
      p, x, y, w0, per_p, curves, seed, progress
    )
  results = dict(name=NAME, quick=quick, protocol=p, seed=seed, p=per_p)
  fig = _figure(p, per_p, curves)
  results["seconds"] = round(time.perf_counter() - start, 2)
  table = dict(p=[], depth=[], iterations=[], lr=[], speedup=[], rebound=[])
  for power in p["ps"]:
    for depth in p["depths"]:
      row = per_p[str(power)]["depths"][str(depth)]
      for key, value in (
        ("p", power),
        ("depth", depth),
        ("iterations", row["iterations"]),
        ("lr", row["lr"]),
        ("speedup", row["speedup"]),
        ("rebound", row.get("rebound", float("nan"))),
      ):
        table[key].append(value)
  adaptive = {
    key: []
    for key in ("p", "optimizer", "basis", "iterations", "lr", "speedup", "first_iterations")
  }
  adaptive.update(first_lr=[], first_rebound=[])
  for name, per_basis in per_p[str(p["optimizer_p"])]["optimizers"].items():
    for basis, row in per_basis.items():
      for key, value in (
        ("p", p["optimizer_p"]),
        ("optimizer", name),
        ("basis", basis),
        ("iterations", row["iterations"]),
        ("lr", row["lr"]),
        ("speedup", row["speedup"]),
        ("first_iterations", row["first_crossing"]["iterations"]),
        ("first_lr", row["first_crossing"]["lr"]),
        ("first_rebound", row["first_crossing"]["rebound"]),
      ):
        adaptive[key].append(value)
  tables = {"iterations": table, "optimizers": adaptive}
  return write_outputs(NAME, out_dir, fig, results, tables=tables, pdf=pdf)


def _adaptive(p, x, y, w0, per_p, curves, seed, progress) -> dict:
  """AdaGrad and AdaDelta on the linear model, each learning rate tuned, on the data as drawn
  (``features``: the input scales along the coordinate axes) and rotated (:func:`rotation`)."""
  power = p["optimizer_p"]
  row = per_p[str(power)]
  gd, optimum = row["depths"]["1"]["iterations"], row["optimum"]
  converged = row["threshold"] - optimum
  q = rotation(p["features"], seed)
  problems = {"features": (x, w0), "rotated": (x @ q, w0 @ q)}
  rebound = lambda loss, start: float(np.max(loss[start:] - optimum) / converged)
  out = {}
  for name in p["optimizers"]:
    out[name] = {}
    for basis in p["bases"]:
      inputs, start = problems[basis]
      best = optimizer_iterations(
        OPTIMIZERS[name],
        start,
        losses.lp_regression(inputs, y, power),
        lrs=p["optimizer_lrs"],
        caps=p["caps"],
        threshold=row["threshold"],
        hold=p["hold"],
        progress=progress,
      )
      its = best["iterations"]
      stats = dict(
        iterations=its,
        lr=best["lr"],
        speedup=gd / its if gd > 0 and its > 0 else float("nan"),
        steps=best["steps"],
        first=best["first"],
        first_crossing=dict(
          lr=best["first_lr"],
          iterations=best["first_iterations"],
          rebound=float("nan"),
        ),
        rejected=best["rejected"],
        diverged=best["diverged"],
        horizon=best["horizon"],
      )
      if best["first_loss"] is not None:
        stats["first_crossing"]["rebound"] = rebound(best["first_loss"], best["first_iterations"])
      if best["loss"] is not None:
        excess = best["loss"][: p["curve_steps"] + 1] - optimum
        curves[power, name, basis] = dict(step=np.arange(excess.size), excess=excess)
      out[name][basis] = stats
  return out


def _figure(p, per_p, curves):
  plt = pyplot()
  fig, grid = plt.subplots(2, 2, figsize=(14, 9.5), constrained_layout=True)
  axes = grid.ravel()
  styles = {"adagrad": ("C5", "AdaGrad"), "adadelta": ("C6", "AdaDelta")}
  for ax, power, letter in zip(axes, p["ps"], "ab"):
    for i, depth in enumerate(p["depths"]):
      if (power, depth) not in curves:
        continue
      curve, stats = curves[power, depth], per_p[str(power)]["depths"][str(depth)]
      ax.semilogy(
        curve["step"],
        curve["excess"],
        color=f"C{i}",
        label=f"GD, depth {depth}, lr {stats['lr']:.3g}: {stats['iterations']} iterations",
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
    for name in p["optimizers"] if power == p["optimizer_p"] else ():
      for basis, ls in zip(p["bases"], ("--", "-.")):
        if (power, name, basis) not in curves:
          continue
        curve, stats = curves[power, name, basis], per_p[str(power)]["optimizers"][name][basis]
        color, label = styles[name]
        ax.semilogy(
          curve["step"],
          curve["excess"],
          color=color,
          ls=ls,
          lw=1.2,
          label=f"{label} (depth 1, {basis}), lr {stats['lr']:.3g}: "
          f"{stats['iterations']} iterations",
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
      title=f"({letter}) $\\ell_{power}$ regression, each optimizer at its fastest lr",
    )
    ax.legend(fontsize="x-small")
  ax = axes[2]
  for power, marker in zip(p["ps"], "os"):
    stats = per_p[str(power)]["depths"]
    its = np.array([stats[str(d)]["iterations"] for d in p["depths"]], float)
    its[its < 0] = np.nan
    ax.semilogy(p["depths"], its, marker=marker, label=f"GD, $\\ell_{power}$")
  power = p["optimizer_p"]
  for name in p["optimizers"]:
    for basis, ls in zip(p["bases"], ("--", "-.")):
      its = per_p[str(power)]["optimizers"][name][basis]["iterations"]
      if its > 0:
        color, label = styles[name]
        ax.axhline(its, color=color, ls=ls, lw=1, label=f"{label} ({basis}), $\\ell_{power}$")
  ax.set_xticks(p["depths"])
  ax.set(
    xlabel="depth N",
    ylabel="iterations to converge (log scale)",
    title="(c) iterations vs depth (tuned lr); lines: AdaGrad, AdaDelta",
  )
  ax.legend(fontsize="x-small")
  ax = axes[3]
  for name in p["optimizers"]:
    for basis, marker in zip(p["bases"], "ox"):
      stats = per_p[str(power)]["optimizers"][name][basis]
      color, label = styles[name]
      for key, lw, alpha, tag in (("steps", 0.9, 1.0, ""), ("first", 0.6, 0.35, ", first below")):
        its = np.array(stats[key], float)
        its[its < 0] = np.nan
        if key == "steps" and stats["iterations"] > 0:
          ax.scatter(stats["lr"], stats["iterations"], s=80, marker="*", color=color, zorder=3)
        ax.loglog(
          p["optimizer_lrs"],
          its,
          color=color,
          marker=marker,
          ms=3,
          lw=lw,
          alpha=alpha,
          ls="-" if basis == p["bases"][0] else "-.",
          label=f"{label}, {basis}{tag}",
        )
  deep = per_p[str(power)]["depths"]
  for depth, ls in ((1, ":"), (max(p["depths"]), "--")):
    its = deep[str(depth)]["iterations"]
    if its > 0:
      ax.axhline(its, color="k", ls=ls, lw=0.8, label=f"GD, depth {depth} (tuned lr)")
  ax.set(
    xlabel="learning rate (log scale)",
    ylabel="iterations to converge (log scale)",
    title=f"(d) $\\ell_{power}$, depth 1: AdaGrad, AdaDelta per lr (star: tuned; stays below)",
  )
  ax.legend(fontsize="x-small", ncol=2)
  fig.suptitle(
    "Arora, Cohen, Hazan 2018: depth accelerates GD on $\\ell_4$, not on $\\ell_2$; "
    "tuned AdaGrad and AdaDelta on the linear model, $\\ell_4$\n"
    f"({p['samples']} samples, {p['features']} features; converged = excess loss {p['tol']:g} x "
    "initial; rotated = the same data in a random orthonormal basis, where GD is unchanged)"
  )
  return fig

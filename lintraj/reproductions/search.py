"""The learning-rate search of the papers' figures: for each init scale, the fewest GD iterations
any learning rate of a grid needs to converge, run in stages so that a sweep costs little more than
its slowest relevant lane."""

from __future__ import annotations

import types

import numpy as np

from lintraj import sweep
from lintraj.sweep import batch_gradient_descent

__all__ = ["fastest_iterations"]


def fastest_iterations(init, dims, loss, *, stds, lrs, caps, threshold, seed=0, draws="common",
                       progress=False):
  r"""For each init scale, the fewest GD iterations any learning rate of a grid needs to reach
  ``loss <= threshold``:

  .. math::
     T(s) = \min_{\eta \in \text{lrs}} \min\{t : L(W(t; s, \eta)) \le \text{threshold}\}.

  Runs the grid ``stds x lrs`` (:func:`lintraj.sweep.grid`) with
  :func:`lintraj.batch_gradient_descent` in stages ending at ``caps``: after each stage a std with a
  converged lane leaves the search (any later lane would be slower), diverged lanes are dropped, and
  the other lanes continue from their weights (GD is a Markov chain: no step is repeated).

  Args:
    init: an init name of :func:`lintraj.sweep.grid` or a function ``init(key, dims, std=...)``.
    dims: ``(d_0, ..., d_N)``.
    loss: the loss, shared by every lane.
    stds: init scales; lrs: learning rates.
    caps: increasing step counts at which the stages end; the last is the iteration cap.
    threshold: the loss that counts as converged.
    seed: the init seed.
    draws: ``"common"`` (one draw per seed, rescaled for every std) or ``"independent"``
      (:func:`lintraj.sweep.grid`).
    progress: show a progress bar per stage.

  Returns:
    ``(best, lane_steps)``: the :func:`lintraj.sweep.fastest` table (``std``, ``lr``, ``seed``,
    ``steps``; ``steps = -1`` where no learning rate converged within the last cap) with a
    ``diverged`` column (how many learning rates diverged before the std left the search), and the GD
    steps taken, summed over lanes.

  Example:
    >>> import jax.numpy as jnp, lintraj as lt
    >>> best, _ = fastest_iterations("balanced", (2, 3, 1), lt.losses.target(jnp.array([[1.0, 0.5]])),
    ...                              stds=[0.5], lrs=[0.05, 0.1], caps=[20, 1000], threshold=1.15e-4)
    >>> best["lr"].tolist(), best["steps"].tolist()
    ([0.1], [30])

  References:
    Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281), Section 5 and Figure 1 (iterations
    to convergence of the best learning rate, per init scale).
  """
  weights, lr, table = sweep.grid(init, dims, std=stds, lr=lrs, seeds=[seed], draws=draws)
  lanes = len(lr)
  stopped, diverged = np.full(lanes, -1), np.zeros(lanes, bool)
  active, done, lane_steps = np.ones(lanes, bool), 0, 0
  weights = [np.array(w) for w in weights]
  for cap in caps:
    index = np.flatnonzero(active)
    if index.size == 0:
      break
    steps = cap - done
    traj = batch_gradient_descent(tuple(w[index] for w in weights), loss, lr=lr[index], steps=steps,
                                  record_every=max(1, steps // 50), stop_at_loss=threshold, progress=progress)
    stop, div = np.asarray(traj.stopped_step), np.asarray(traj.diverged_step)
    lane_steps += int(np.sum(np.where(stop >= 0, stop, np.where(div >= 0, div, steps))))
    stopped[index[stop >= 0]] = done + stop[stop >= 0]
    diverged[index[div >= 0]] = True
    for w, final in zip(weights, traj.final):
      w[index] = np.asarray(final)
    converged_stds = set(table["std"][stopped >= 0].tolist())
    active &= ~diverged & (stopped < 0) & ~np.isin(table["std"], list(converged_stds))
    done = cap
  best = sweep.fastest(table, types.SimpleNamespace(stopped_step=stopped))
  best["diverged"] = np.array([int(np.sum(diverged[table["std"] == s])) for s in best["std"]])
  return best, lane_steps

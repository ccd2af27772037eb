"""Figures of trajectories (matplotlib; an optional extra, never imported by the core)."""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["pyplot", "plot_trajectory", "plot_sharpness"]


def pyplot():
  """``matplotlib.pyplot``. If nothing in the process has imported it yet and no notebook backend
  is set, the non-interactive Agg backend is chosen (figures are written to files); a backend the
  user already chose (e.g. Qt or a notebook widget) is never switched."""
  try:
    import matplotlib
  except ImportError:
    raise ValueError(
      "lintraj draws figures with matplotlib: pip install 'lintraj[plot]'."
    ) from None
  if "matplotlib.pyplot" not in sys.modules and matplotlib.get_backend().lower() not in (
    "module://matplotlib_inline.backend_inline",
    "agg",
  ):
    matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def plot_trajectory(trajectory, *, title: str | None = None):
  """A 2x2 figure: loss (log scale), balancedness, deficiency margin, per-layer singular values.

  Returns the matplotlib Figure. Needs ``pip install 'lintraj[plot]'``.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 2, 1), std=0.5)
    >>> traj = lt.gradient_descent(ws, lt.losses.target(jnp.ones((1, 2))), lr=0.1, steps=50)
    >>> fig = plot_trajectory(traj)
    >>> len(fig.axes)
    4
  """
  plt = pyplot()
  step = np.asarray(trajectory.step)
  fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
  ax = axes[0, 0]
  ax.semilogy(step, np.asarray(trajectory.loss))
  ax.set(xlabel="iteration", ylabel="loss", title="loss (log scale)")
  ax = axes[0, 1]
  ax.plot(step, np.asarray(trajectory.balancedness))
  ax.set(
    xlabel="iteration",
    ylabel=r"$\max_j \|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F$",
    title="balancedness",
  )
  ax = axes[1, 0]
  ax.plot(step, np.asarray(trajectory.deficiency_margin))
  ax.axhline(0.0, color="gray", lw=0.8, ls="--")
  ax.set(
    xlabel="iteration",
    ylabel=r"$\sigma_{\min}(\Phi) - \|W_{1:N} - \Phi\|_F$",
    title="deficiency margin",
  )
  ax = axes[1, 1]
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for j, sv in enumerate(trajectory.layer_singular_values):
    sv = np.asarray(sv)
    ax.plot(
      step,
      sv,
      color=colors[j % len(colors)],
      lw=0.8,
      label=[f"$W_{{{j + 1}}}$"] + [None] * (sv.shape[1] - 1),
    )
  ax.set(xlabel="iteration", ylabel="singular value", title="per-layer singular values")
  ax.legend(fontsize="small", ncol=2)
  for ax in axes.flat:
    ax.xaxis.set_major_locator(plt.MaxNLocator(5))
  if title:
    fig.suptitle(title)
  return fig


def plot_sharpness(trajectory, lr: float, *, ax=None):
  r"""The tracked sharpness :math:`\lambda_{\max}(\nabla^2 L^N)` along a run against the edge of
  stability :math:`2/\eta` (GD is linearly stable at a minimum only below it), both on a log axis,
  log-scale loss on a twin axis. Only the records where the sharpness was computed are drawn.

  Args:
    trajectory: a single run with ``track=("sharpness",)``.
    lr: its learning rate :math:`\eta`.
    ax: a matplotlib Axes to draw on (default: a new figure).

  Returns:
    The Axes. Needs ``pip install 'lintraj[plot]'``.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 2, 1), std=0.5)
    >>> traj = lt.gradient_descent(ws, lt.losses.target(jnp.ones((1, 2))), lr=0.1, steps=50,
    ...                            track=("sharpness",), track_every=5)
    >>> ax = plot_sharpness(traj, lr=0.1)
    >>> len(ax.lines)   # sharpness and 2 / lr
    2

  References:
    Cohen, Kaur, Li, Kolter, Talwalkar. Gradient Descent on Neural Networks Typically Occurs at
    the Edge of Stability. ICLR 2021 (arXiv 2103.00065), Figure 1.
  """
  if trajectory.sharpness is None or np.ndim(trajectory.sharpness) != 1:
    raise ValueError(
      "plot_sharpness needs a single run made with track=('sharpness',); for a batched "
      "run pick one lane first with lt.sweep.lane(trajectory, index)."
    )
  plt = pyplot()
  if ax is None:
    _, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
  step, sharp = np.asarray(trajectory.step), np.asarray(trajectory.sharpness)
  tracked = ~np.isnan(sharp)
  ax.plot(step[tracked], sharp[tracked], marker=".", label=r"sharpness $\lambda_{\max}$")
  ax.axhline(2.0 / lr, color="gray", ls="--", lw=1.0, label=r"$2/\eta$")
  # log scale: a sharpness of O(1) and an edge 2/lr of O(100) both stay readable
  ax.set(
    xlabel="iteration",
    ylabel="top Hessian eigenvalue (log scale)",
    yscale="log",
    title=f"sharpness, lr = {lr:g}",
  )
  loss_ax = ax.twinx()
  loss_ax.semilogy(step, np.asarray(trajectory.loss), color="C1", lw=0.8, alpha=0.6)
  loss_ax.set_ylabel("loss (log scale)", color="C1")
  ax.legend(loc="center right", fontsize="small")
  return ax

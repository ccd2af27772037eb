"""Figures of trajectories (matplotlib; an optional extra, never imported by the core)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_trajectory"]


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
  import matplotlib
  if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "agg"):
    matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt

  step = np.asarray(trajectory.step)
  fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
  ax = axes[0, 0]
  ax.semilogy(step, np.asarray(trajectory.loss))
  ax.set(xlabel="iteration", ylabel="loss", title="loss (log scale)")
  ax = axes[0, 1]
  ax.plot(step, np.asarray(trajectory.balancedness))
  ax.set(xlabel="iteration", ylabel=r"$\max_j \|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F$",
         title="balancedness")
  ax = axes[1, 0]
  ax.plot(step, np.asarray(trajectory.deficiency_margin))
  ax.axhline(0.0, color="gray", lw=0.8, ls="--")
  ax.set(xlabel="iteration", ylabel=r"$\sigma_{\min}(\Phi) - \|W_{1:N} - \Phi\|_F$",
         title="deficiency margin")
  ax = axes[1, 1]
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for j, sv in enumerate(trajectory.layer_singular_values):
    sv = np.asarray(sv)
    ax.plot(step, sv, color=colors[j % len(colors)], lw=0.8, label=[f"$W_{{{j + 1}}}$"] + [None] * (sv.shape[1] - 1))
  ax.set(xlabel="iteration", ylabel="singular value", title="per-layer singular values")
  ax.legend(fontsize="small", ncol=2)
  for ax in axes.flat:
    ax.xaxis.set_major_locator(plt.MaxNLocator(5))
  if title:
    fig.suptitle(title)
  return fig

r"""Deep matrix factorization: depth biases gradient descent towards low rank (Arora, Cohen, Hu, Luo
2019).

Matrix completion: a rank-``r`` ground truth :math:`M \in \mathbb{R}^{n \times n}` (``r = 5``,
``n = 100``) is observed on ``observed`` random entries :math:`\Omega`; the loss is
:math:`\tfrac12 \sum_{(i,j)\in\Omega} (W_{ij} - M_{ij})^2` of the end-to-end matrix of a depth-N
network with hidden widths ``n`` (``lintraj.losses.matrix_completion``). Gradient descent starts
from a small balanced init. Every depth fits the observed entries; what differs is the solution it
picks. Under gradient flow from a balanced init the singular values of :math:`W_{1:N}` move as
:math:`\dot\sigma_r = -N \sigma_r^{2-2/N} \langle \nabla L^1(W), u_r v_r^\top\rangle`
(``lintraj.theory.singular_value_velocity``): the factor :math:`\sigma_r^{2-2/N}` speeds up large
and slows down small singular values the more the deeper the network, so the top ``r`` singular
values separate from the rest more sharply, the effective rank is lower and the unobserved entries
are recovered better.

Units, to compare numbers with the paper and its code (which use other conventions [P]: the loss
:math:`\frac{1}{|\Omega|}\sum_{\Omega} (W_{ij} - M_{ij})^2`, the truth scaled to
:math:`\|M\|_F = n`, the test error :math:`\frac{1}{n^2}\|W - M\|_F^2` over all entries, and
the end-to-end matrix the transposed product of ``nn.Linear`` weights). Let :math:`c =
\|M_{\text{paper}}\|_F / \|M\|_F = n / \sqrt{r}`. The network loss is homogeneous:
scaling every layer by :math:`c^{1/N}` and the truth by :math:`c` scales the loss by :math:`c^2`
and each layer's gradient by :math:`c^{2 - 1/N}`. So one GD step of the paper's code at learning
rate :math:`\eta_p` from layers :math:`c^{1/N} W_j` is exactly :math:`c^{1/N}` times one lintraj
step from :math:`W_j` at

.. math::  \eta = \eta_p \cdot \frac{2}{|\Omega|} \cdot c^{2 - 2/N}

[D; checked step by step in ``tests/test_dmf_units.py``]. A paper init of layer std
:math:`s_p` is a lintraj init of layer std :math:`s_p / c^{1/N}`, and the paper's test error is
:math:`c^2 \|W - M\|_F^2 / n^2` in lintraj's units. Example: lintraj's default
:math:`\eta = 0.25` at depth 3 with :math:`|\Omega| = 2000`, :math:`n = 100`, :math:`r = 5`
(:math:`c = 44.7`) is the paper's :math:`\eta_p = 0.25 \cdot 1000 / 44.7^{4/3} = 1.57`.
:func:`paper_units` computes these conversions; the results carry them (``paper_units``) and
report test errors in both units: ``test_error`` (lintraj's relative error on the unobserved
entries) and ``paper_test_error`` (the paper's mean squared error over all entries, with
:math:`\|M\|_F = n`, which equals :math:`\|W - M\|_F^2 / \|M\|_F^2` in any units).

Panel (e), the paper's plot of test error against the number of observed entries: for each count
in ``sweep_observed`` and each of ``sweep_seeds`` seeds one truth and mask, depths 1 (the
baseline: gradient descent on :math:`W` itself changes only the observed entries) to 4 by
gradient descent (for each depth and count one batched run with the seeds as lanes,
``lintraj.sweep``), and the minimum nuclear norm completion of the same entries
(``lintraj.nuclear.min_nuclear_norm_completion(method="admm")``; its residual and duality gap are
in the results, ``nuclear``).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from lintraj import init, losses
from lintraj.dynamics import gradient_descent
from lintraj.network import end_to_end
from lintraj.nuclear import min_nuclear_norm_completion
from lintraj.reproductions.output import pyplot, write_outputs
from lintraj.sweep import batch_gradient_descent, stack

__all__ = ["run", "protocol", "effective_rank", "completion_problem", "paper_units"]

NAME = "deep-matrix-factorization"


def protocol(quick: bool) -> dict:
  """The settings of a run: the paper's setup, or the small ``quick`` one."""
  if quick:
    return dict(
      size=30,
      rank=3,
      observed=300,
      depths=(2, 3, 4),
      std=1e-4,
      lr=0.3,
      steps=3000,
      record_every=50,
      sweep_observed=(200, 300, 450),
      sweep_seeds=(0, 1),
    )
  return dict(
    size=100,
    rank=5,
    observed=2000,
    depths=(2, 3, 4),
    std=1e-6,
    lr=0.25,
    steps=15_000,
    record_every=100,
    sweep_observed=(2000, 3000, 4000, 5000),
    sweep_seeds=(0, 1),
  )


def effective_rank(singular_values) -> np.ndarray:
  r"""The effective rank :math:`\exp(-\sum_i p_i \log p_i)`, :math:`p_i = \sigma_i / \sum_k
  \sigma_k` (Roy and Vetterli 2007), over the last axis.

  Example:
    >>> round(float(effective_rank(np.array([1.0, 1.0, 0.0]))), 6)
    2.0

  References:
    Roy, Vetterli. The effective rank: a measure of effective dimensionality. EUSIPCO 2007; used by
    Arora, Cohen, Hu, Luo, NeurIPS 2019 (arXiv 1905.13655), Section 5.
  """
  s = np.asarray(singular_values, np.float64)
  p = s / np.sum(s, axis=-1, keepdims=True)
  terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
  return np.exp(-np.sum(terms, axis=-1))


def completion_problem(size: int, rank: int, observed: int, seed: int = 0):
  r"""A rank-``rank`` ground truth :math:`M = U V^\top` (Gaussian factors, scaled to
  :math:`\|M\|_F = \sqrt{\mathrm{rank}}`) and a mask of ``observed`` entries drawn uniformly
  without replacement.

  Example:
    >>> m, mask = completion_problem(6, 2, 20)
    >>> int(np.linalg.matrix_rank(m)), int(mask.sum())
    (2, 20)
  """
  if not 0 < observed <= size * size:
    raise ValueError(f"observed must be between 1 and size**2 = {size * size}; got {observed}.")
  rng = np.random.default_rng(seed)
  m = rng.standard_normal((size, rank)) @ rng.standard_normal((rank, size))
  m *= np.sqrt(rank) / np.linalg.norm(m)
  mask = np.zeros(size * size, bool)
  mask[rng.choice(size * size, observed, replace=False)] = True
  return m, mask.reshape(size, size)


def paper_units(lr: float, std: float, *, size: int, rank: int, observed: int, depth: int) -> dict:
  r"""The paper's learning rate and init scale equal to lintraj's ``lr`` and ``std`` at depth
  ``depth`` (module docstring): :math:`\eta_p = \eta\, (|\Omega| / 2)\, c^{2/N - 2}`, with
  :math:`c = n / \sqrt{r}` (the truth of :func:`completion_problem` has :math:`\|M\|_F =
  \sqrt r`, the paper's :math:`n`); every layer scales by :math:`c^{1/N}`, so the end-to-end
  std of ``init.balanced`` (lintraj's ``std``) becomes :math:`c\, s`.

  Example:
    >>> round(paper_units(0.25, 1e-6, size=100, rank=5, observed=2000, depth=3)["lr"], 2)
    1.57
  """
  c = size / np.sqrt(rank)
  return dict(
    c=float(c),
    lr=float(lr * observed / 2 * c ** (2 / depth - 2)),
    end_to_end_std=float(c * std),
  )


def paper_test_error(completed, truth) -> float:
  r"""The paper's test error, the mean squared error over all entries with the truth scaled to
  :math:`\|M\|_F = n`: :math:`\|W - M\|_F^2 / \|M\|_F^2` in any units.

  Example:
    >>> paper_test_error(np.zeros((2, 2)), np.eye(2))
    1.0
  """
  w, m = (np.asarray(a, np.float64) for a in (completed, truth))
  return float(np.sum((w - m) ** 2) / np.sum(m**2))


def _sweep(p: dict, seed: int, progress) -> dict:
  """Panel (e): test error against the number of observed entries, depths 1-4 (for each depth and
  count one batched run, its seeds as lanes) and the minimum nuclear norm completion."""
  cases = [(count, seed + s) for count in p["sweep_observed"] for s in p["sweep_seeds"]]
  problems = [completion_problem(p["size"], p["rank"], count, s) for count, s in cases]
  errors, nuclear = {}, dict(residual=[], gap=[], iterations=[])
  for truth, mask in problems:
    found = min_nuclear_norm_completion(mask, truth, method="admm", tol=1e-5, max_iters=5000)
    for name in nuclear:
      nuclear[name].append(float(getattr(found, name)))
    errors.setdefault("nuclear", []).append(paper_test_error(found.completed, truth))
  fitted = {}
  seeds = len(p["sweep_seeds"])
  for depth in (1, 2, 3, 4):
    dims = (p["size"],) * (depth + 1)
    errors[str(depth)], fitted[str(depth)] = [], 0.0
    for start in range(0, len(cases), seeds):  # one count, its seeds as lanes (same data shapes)
      batch = range(start, start + seeds)
      weights = stack(
        [init.balanced(jax.random.PRNGKey(cases[i][1]), dims, std=p["std"]) for i in batch]
      )
      traj = batch_gradient_descent(
        weights,
        [losses.matrix_completion(problems[i][1], problems[i][0]) for i in batch],
        lr=p["lr"],
        steps=p["steps"],
        record_every=p["steps"],
        progress=progress,
      )
      for lane, i in enumerate(batch):
        w = end_to_end(tuple(layer[lane] for layer in traj.final))
        errors[str(depth)].append(paper_test_error(w, problems[i][0]))
      fitted[str(depth)] = max(fitted[str(depth)], float(np.max(traj.loss[:, -1])))
  shape = (len(p["sweep_observed"]), len(p["sweep_seeds"]))
  return dict(
    observed=list(p["sweep_observed"]),
    paper_test_error={k: np.asarray(v).reshape(shape) for k, v in errors.items()},
    final_train_loss=fitted,
    nuclear={k: np.asarray(v).reshape(shape) for k, v in nuclear.items()},
  )


def run(
  quick: bool = False,
  out_dir=f"out/{NAME}",
  *,
  pdf: bool = False,
  seed: int = 0,
  progress: bool = False,
) -> dict:
  r"""Reproduce the implicit low-rank bias of deep matrix factorization.

  Returns, per depth: ``test_error`` (relative Frobenius error on the unobserved entries,
  :math:`\|P_{\bar\Omega}(W - M)\|_F / \|P_{\bar\Omega}(M)\|_F`), ``train_loss``,
  ``effective_rank``, ``top_singular_values`` (the first ``rank + 2``), ``separation``
  (:math:`\sigma_r / \sigma_{r+1}` at the end), ``paper_test_error`` and ``paper_units`` (the
  paper's units, module docstring), and the ground truth's singular values; ``sweep`` (panel e):
  ``observed``, ``paper_test_error[name]`` of shape (counts, seeds) for depths ``"1"`` to ``"4"``
  and ``"nuclear"``, the largest ``final_train_loss`` per depth, and the nuclear norm solver's
  ``residual``, ``gap`` and ``iterations``.

  Precision: the default dtype (float32 unless run under ``jax.enable_x64``). The test errors and
  separations depend on it (float64 gives a smaller depth-3 error and a larger separation; the
  README quotes both); their ordering by depth, the claim, does not.

  Example:
    >>> protocol(quick=True)["depths"]
    (2, 3, 4)

  References:
    Arora, Cohen, Hu, Luo. Implicit Regularization in Deep Matrix Factorization. NeurIPS 2019
    (arXiv 1905.13655), Section 5 and Figures 1-2.
  """
  start = time.perf_counter()
  p = protocol(quick)
  truth, mask = completion_problem(p["size"], p["rank"], p["observed"], seed)
  loss = losses.matrix_completion(mask, truth)
  unobserved = ~mask
  runs, per_depth = {}, {}
  for depth in p["depths"]:
    weights = init.balanced(jax.random.PRNGKey(seed), (p["size"],) * (depth + 1), std=p["std"])
    traj = gradient_descent(
      weights, loss, lr=p["lr"], steps=p["steps"], record_every=p["record_every"], progress=progress
    )
    runs[depth] = traj
    w = np.asarray(end_to_end(traj.final), np.float64)
    sv = np.asarray(traj.end_to_end_singular_values[-1], np.float64)
    per_depth[str(depth)] = dict(
      test_error=float(np.linalg.norm((w - truth)[unobserved]) / np.linalg.norm(truth[unobserved])),
      train_loss=float(traj.loss[-1]),
      effective_rank=float(effective_rank(sv)),
      top_singular_values=sv[: p["rank"] + 2],
      separation=float(sv[p["rank"] - 1] / sv[p["rank"]]),
      diverged_step=traj.diverged_step,
      paper_test_error=paper_test_error(w, truth),
      paper_units=paper_units(
        p["lr"], p["std"], size=p["size"], rank=p["rank"], observed=p["observed"], depth=depth
      ),
    )
  sweep = _sweep(p, seed, progress)
  results = dict(
    name=NAME,
    quick=quick,
    protocol=p,
    seed=seed,
    depths=per_depth,
    truth_singular_values=np.linalg.svd(truth, compute_uv=False)[: p["rank"] + 2],
    sweep=sweep,
  )
  fig = _figure(p, runs, per_depth, results["truth_singular_values"], sweep)
  results["seconds"] = round(time.perf_counter() - start, 2)
  table = dict(
    step=np.asarray(runs[p["depths"][0]].step),
    **{
      f"effective_rank_depth{d}": effective_rank(runs[d].end_to_end_singular_values)
      for d in p["depths"]
    },
  )
  return write_outputs(NAME, out_dir, fig, results, tables={"effective_rank": table}, pdf=pdf)


def _figure(p, runs, per_depth, truth_sv, sweep):
  plt = pyplot()
  fig, named = plt.subplot_mosaic(
    [["a", "b", "c"], ["d", "e", "e"]], figsize=(16, 8.5), constrained_layout=True
  )
  rank, shown = p["rank"], p["rank"] + 5
  for ax, depth, letter in zip([named[k] for k in "abc"], p["depths"], "abc"):
    traj = runs[depth]
    step, sv = np.asarray(traj.step), np.asarray(traj.end_to_end_singular_values)
    for i in range(shown):
      ax.semilogy(
        step,
        sv[:, i],
        color="C0" if i < rank else "C3",
        lw=1.2 if i < rank else 0.8,
        label=(f"top {rank}" if i == 0 else f"{rank + 1}th to {shown}th" if i == rank else None),
      )
    for s in truth_sv[:rank]:
      ax.axhline(s, color="gray", lw=0.6, ls=":")
    stats = per_depth[str(depth)]
    ax.set(
      xlabel="iteration",
      ylabel="singular value of $W_{1:N}$ (log scale)",
      ylim=(1e-6, 3),
      title=f"({letter}) depth N={depth}: test error {stats['test_error']:.3f}, "
      f"$\\sigma_{rank}/\\sigma_{rank + 1}$ = {stats['separation']:.3g}",
    )
    ax.legend(fontsize="small", loc="lower right")
  ax = named["d"]
  for depth in p["depths"]:
    traj = runs[depth]
    ax.plot(
      np.asarray(traj.step), effective_rank(traj.end_to_end_singular_values), label=f"depth {depth}"
    )
  ax.axhline(rank, color="gray", lw=0.8, ls=":", label=f"true rank {rank}")
  ax.set_yscale("log")
  ax.set(
    xlabel="iteration",
    ylabel="effective rank of $W_{1:N}$ (log scale)",
    title="(d) effective rank (Roy-Vetterli) along the run",
  )
  ax.legend(fontsize="small")
  _sweep_panel(named["e"], p, sweep)
  fig.suptitle(
    f"Arora, Cohen, Hu, Luo 2019: {p['size']}x{p['size']} rank-{rank} completion from "
    f"{p['observed']} entries, balanced init (std {p['std']:g}), lr {p['lr']:g}"
  )
  return fig


def _sweep_panel(ax, p, sweep):
  observed, errors = np.asarray(sweep["observed"]), sweep["paper_test_error"]
  seeds = len(p["sweep_seeds"])
  for i, (name, label) in enumerate(
    [("1", "depth 1 (GD on W)"), ("2", "depth 2"), ("3", "depth 3"), ("4", "depth 4")]
    + [("nuclear", "min nuclear norm")]
  ):
    e = np.asarray(errors[name])
    style = dict(color="k", ls="--", marker="s") if name == "nuclear" else dict(marker="o")
    ax.semilogy(observed, e.mean(axis=1), label=label, color=style.pop("color", f"C{i}"), **style)
    ax.fill_between(observed, e.min(axis=1), e.max(axis=1), alpha=0.15, color=f"C{i}")
  gap = float(np.max(sweep["nuclear"]["gap"]))
  ax.set(
    xlabel="number of observed entries",
    ylabel="test error (paper's units: MSE over all entries, $\\|M\\|_F = n$)",
    title=f"(e) test error vs observations, mean (band: min-max) of {seeds} seeds; nuclear norm "
    f"by ADMM, duality gap <= {gap:.1g}",
  )
  ax.legend(fontsize="small")

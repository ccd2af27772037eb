r"""Razin and Cohen 2020: implicit regularization towards low rank that no norm explains.

The 2x2 completion problem with observed entries :math:`W_{12} = W_{21} = 1`, :math:`W_{22} = 0`
and :math:`W_{11}` unobserved; loss :func:`lintraj.losses.matrix_completion`,
:math:`L = \tfrac12 \sum_{\text{observed}} (W_{ij} - M_{ij})^2` (the paper's). Every solution is
:math:`\begin{pmatrix} w & 1 \\ 1 & 0 \end{pmatrix}`, of determinant :math:`-1`. A start whose
end-to-end determinant is positive can reach loss 0 only if the determinant changes sign; if it
cannot (gradient flow, depth :math:`N \ge 2`, Razin and Cohen's analysis), the loss falls only as
:math:`|W_{11}| \to \infty`: every norm grows without bound while the effective rank falls to 1.

Protocol (the paper's default run, at its scale): depths 2, 3, 4, 2x2 layers, GD at
:math:`\eta = 3 \cdot 10^{-3}` for ``steps`` (10 million; 3 million in quick mode), recorded every
10000 steps, no early stop, two inits resampled until :math:`\det W_{1:N}(0) > 0`
(:func:`lintraj.init.with_determinant_sign`): per-layer Gaussian of std 8e-3 (the paper's) and
balanced (Procedure 1, end-to-end std :math:`(8 \cdot 10^{-3})^N`); and at depth 3 the same inits
with :math:`\det < 0` for contrast. Recorded through ``metrics=``: :math:`W_{11}`,
:math:`\det W_{1:N}`, the nuclear and Frobenius norms and the effective rank. Precision
**float64**; **8 seeds** per setting (3 in quick mode), one ``batch_gradient_descent`` call per
init, depth and sign. A run **escaped** the origin if its loss fell below 0.5.

Measured in the default run (``lintraj reproduce implicit-regularization-norms``, float64, 8
seeds, seed 0; about 35 s for all 64 runs of 1e7 steps, 3-6 s per batched call on 2 CPU cores;
every number is in the JSON and ``implicit-regularization-norms-runs.csv``):

- **Balanced, det > 0, depths 3 and 4: as the paper says.** The determinant stayed positive at
  every record of every run (down to 1e-18: the runs sit where it is just above 0). All 16
  reached the paper's loss 1e-4, after 3.6 million steps at depth 3 and 3.4-6.4 million at
  depth 4, with :math:`|W_{11}| \approx 70.7`, and kept going: after 1e7 steps the loss is
  4.6e-5 (depth 3) and 6.7e-5 to 7.5e-5 (depth 4), and :math:`|W_{11}|` and the nuclear norm are
  104 and 82-86, with effective rank 1.0000. Along the boundary :math:`\det = 0^+` the loss is
  :math:`1/(2 W_{11}^2)` [D: with :math:`W_{12}, W_{21} \to 1` and :math:`W_{11} W_{22} \ge
  W_{12} W_{21}`, :math:`W_{22} \ge 1/W_{11}`]: :math:`2 L W_{11}^2 = 1.000` at the end of every
  such run, so the loss reaches 0 only as the norm grows without bound.
- **Depth 2 flips the determinant**: from det > 0 starts of both kinds, GD made it negative in its
  first steps out of the tiny init (the Gaussian start also at a tenth of the lr) and then fit the
  data exactly (loss 1e-28) with :math:`|W_{11}|` of 0-2.8 (Gaussian) and 7.4-7.7 (balanced).
- **The paper's Gaussian start is not balanced, and at depth 3 GD flipped the sign in 7 of 8
  seeds**, then converged (loss below 1e-26) to :math:`|W_{11}|` of 39-65, already nearly rank
  1; the eighth behaved like the balanced runs. At depth 4 the determinant dipped to -3e-8 in
  4 seeds without a sign change that lasted, and none converged (final loss 6.6e-5 to 1e-3).
- **Negative determinants** (depth 3): 7 of 8 balanced and 5 of 8 Gaussian starts fit the data
  exactly with a finite :math:`|W_{11}|` (2.7-75); the others had not converged by 1e7 steps
  and sat at the det > 0 runs' values. Whether a finite solution is reached in practice depends
  on where the run meets the solution set, not only on the sign.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from lintraj import init, losses, metrics
from lintraj.network import end_to_end
from lintraj.reproductions.output import pyplot, write_outputs
from lintraj.sweep import batch_gradient_descent, stack

__all__ = ["run", "protocol", "problem"]

NAME = "implicit-regularization-norms"
THRESHOLD = 1e-4  # the paper's stopping loss


def protocol(quick: bool) -> dict:
  """The settings of a run (quick: fewer seeds and steps; the same problem, rates and inits).

  Example:
    >>> protocol(quick=True)["steps"], protocol(quick=False)["steps"]
    (3000000, 10000000)
  """
  return dict(
    depths=(2, 3, 4),
    inits=("gaussian", "balanced"),
    layer_std=8e-3,
    lr=3e-3,
    steps=3_000_000 if quick else 10_000_000,
    record_every=10_000,
    seeds=3 if quick else 8,
    contrast_depth=3,
  )


def problem():
  r"""The completion problem: ``(mask, values)``, :math:`W_{11}` unobserved.

  Example:
    >>> mask, values = problem()
    >>> mask.tolist(), values.tolist()
    ([[False, True], [True, True]], [[0.0, 1.0], [1.0, 0.0]])
  """
  return np.array([[False, True], [True, True]]), np.array([[0.0, 1.0], [1.0, 0.0]])


def _determinant(weights):
  return jnp.linalg.det(end_to_end(weights))


METRICS = {
  "w11": metrics.entry(0, 0),
  "det": _determinant,
  "nuclear": metrics.nuclear_norm,
  "frobenius": metrics.schatten_norm(2),
  "effective_rank": metrics.effective_rank,
}


def _inits(p, law, depth, sign, seed):
  std = p["layer_std"] if law == "gaussian" else p["layer_std"] ** depth
  keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), depth), p["seeds"])
  lanes = [
    init.with_determinant_sign(law, k, (2,) * (depth + 1), std=std, sign=sign, dtype=jnp.float64)
    for k in keys
  ]
  return stack(lanes)


def _summary(traj) -> dict:
  loss = np.asarray(traj.loss, np.float64)
  got = {name: np.asarray(v, np.float64) for name, v in traj.metrics.items()}
  below = loss <= THRESHOLD
  first = np.where(below.any(1), below.argmax(1), -1)
  at = lambda name: np.array([got[name][k, i] if i >= 0 else np.nan for k, i in enumerate(first)])
  return dict(
    step=np.asarray(traj.step[0]),
    loss=loss,
    **got,
    escaped=loss[:, -1] < 0.5,
    threshold_step=np.where(first >= 0, np.asarray(traj.step[0])[np.maximum(first, 0)], -1),
    w11_at_threshold=np.abs(at("w11")),
    nuclear_at_threshold=at("nuclear"),
    effective_rank_at_threshold=at("effective_rank"),
    final_loss=loss[:, -1],
    final_w11=np.abs(got["w11"][:, -1]),
    final_nuclear=got["nuclear"][:, -1],
    final_effective_rank=got["effective_rank"][:, -1],
    min_det=np.nanmin(got["det"], axis=1),
    max_det=np.nanmax(got["det"], axis=1),
  )


def run(
  quick: bool = False,
  out_dir=f"out/{NAME}",
  *,
  pdf: bool = False,
  seed: int = 0,
  progress: bool = False,
) -> dict:
  r"""GD on Razin and Cohen's 2x2 completion from starts with :math:`\det W_{1:N}(0) > 0`: the
  unobserved entry, the norms and the effective rank along millions of steps, at depths 2-4.

  Step: :math:`W_j \leftarrow W_j - \eta\, \partial L / \partial W_j`,
  :math:`L = \tfrac12 \sum_{(i,j) \ne (1,1)} ((W_{1:N})_{ij} - M_{ij})^2`. Float64.

  Returns: ``runs`` keyed ``"{init}/N={depth}/det{sign}"``: per lane ``threshold_step`` (first
  record with loss :math:`\le 10^{-4}`, -1: none), ``w11_at_threshold``,
  ``nuclear_at_threshold``, ``effective_rank_at_threshold``, ``final_*``, ``min_det``,
  ``max_det``, ``escaped``, and the curves ``step``, ``loss``, ``w11``, ``det``, ``nuclear``,
  ``frobenius``, ``effective_rank`` (lanes x records); ``seconds_per_run`` (wall time of each
  batched call).

  Example:
    >>> protocol(quick=True)["depths"]
    (2, 3, 4)
    >>> import tempfile
    >>> res = run(quick=True, out_dir=tempfile.mkdtemp())  # doctest: +SKIP

  References:
    Razin, Cohen. Implicit Regularization in Deep Learning May Not Be Explainable by Norms.
    NeurIPS 2020 (arXiv 2005.06398), Section 3 and its experiments.
  """
  start = time.perf_counter()
  p = protocol(quick)
  mask, values = problem()
  runs, seconds = {}, {}
  with jax.enable_x64(True):
    loss = losses.matrix_completion(mask, values)
    settings = [(law, depth, 1) for law in p["inits"] for depth in p["depths"]]
    settings += [(law, p["contrast_depth"], -1) for law in p["inits"]]
    for law, depth, sign in settings:
      name = f"{law}/N={depth}/det{'+' if sign > 0 else '-'}"
      began = time.perf_counter()
      traj = batch_gradient_descent(
        _inits(p, law, depth, sign, seed),
        loss,
        lr=p["lr"],
        steps=p["steps"],
        record_every=p["record_every"],
        metrics=METRICS,
        progress=progress,
      )
      jax.block_until_ready(traj.final)
      seconds[name] = time.perf_counter() - began
      runs[name] = _summary(traj)
  results = dict(
    name=NAME,
    quick=quick,
    protocol=p,
    seed=seed,
    precision="float64",
    seeds=p["seeds"],
    threshold=THRESHOLD,
    runs=runs,
    seconds_per_run=seconds,
  )
  fig = _figure(p, runs)
  results["seconds"] = round(time.perf_counter() - start, 2)
  names = list(runs)
  table = dict(
    run=names,
    escaped=[int(runs[n]["escaped"].sum()) for n in names],
    reached_threshold=[int((runs[n]["threshold_step"] >= 0).sum()) for n in names],
    median_threshold_step=[
      _median(runs[n]["threshold_step"], runs[n]["threshold_step"] >= 0) for n in names
    ],
    median_final_w11=[_median(runs[n]["final_w11"], runs[n]["escaped"]) for n in names],
    median_final_loss=[_median(runs[n]["final_loss"], runs[n]["escaped"]) for n in names],
    median_final_effective_rank=[
      _median(runs[n]["final_effective_rank"], runs[n]["escaped"]) for n in names
    ],
    min_det=[float(np.min(runs[n]["min_det"])) for n in names],
    seconds=[seconds[n] for n in names],
  )
  return write_outputs(NAME, out_dir, fig, results, tables={"runs": table}, pdf=pdf)


def _median(values, where) -> float:
  values = np.asarray(values, np.float64)[np.asarray(where, bool)]
  return float(np.median(values)) if values.size else float("nan")


def _figure(p, runs):
  plt = pyplot()
  fig, axes = plt.subplots(2, 2, figsize=(13, 9), constrained_layout=True)
  (a, b), (c, d) = axes
  for i, (name, r) in enumerate(runs.items()):
    color, style = f"C{i}", "-" if name.endswith("+") else ":"
    ok = r["escaped"]
    if not ok.any():
      continue
    step = r["step"]
    a.loglog(step[1:], np.median(r["loss"][ok], axis=0)[1:], color=color, ls=style, label=name)
    b.loglog(
      np.median(r["loss"][ok], axis=0)[1:],
      np.median(np.abs(r["w11"][ok]), axis=0)[1:],
      color=color,
      ls=style,
      label=name,
    )
    c.loglog(step[1:], np.median(r["nuclear"][ok], axis=0)[1:], color=color, ls=style, label=name)
    d.semilogx(
      step[1:], np.median(r["effective_rank"][ok], axis=0)[1:], color=color, ls=style, label=name
    )
  a.axhline(THRESHOLD, color="gray", lw=0.8, ls="--")
  a.set(xlabel="step", ylabel="loss (median over escaped seeds)", title="(a) loss; dashed: 1e-4")
  b.set_xlim(2, 1e-8)  # falling to the right; below 1e-8 only runs whose determinant flipped
  b.set(
    xlabel="loss (falling to the right)",
    ylabel=r"$|W_{11}|$, the unobserved entry",
    title=r"(b) $|W_{11}|$ grows as the loss falls (det > 0: solid)",
  )
  c.set(xlabel="step", ylabel=r"nuclear norm $\|W_{1:N}\|_*$", title="(c) the norm grows")
  d.set(xlabel="step", ylabel="effective rank", title="(d) while the effective rank falls to 1")
  for ax in axes.ravel():
    ax.legend(fontsize="x-small")
  fig.suptitle(
    f"Razin and Cohen 2020: 2x2 completion, GD lr {p['lr']:g}, {p['steps']:.0e} steps, float64, "
    f"{p['seeds']} seeds (solid: det W(0) > 0, dotted: det W(0) < 0)"
  )
  return fig

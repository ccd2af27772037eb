r"""Sharpness against the edge of stability :math:`2/\eta` along gradient descent on deep linear
networks.

Loss :math:`\tfrac12\|W_{1:N} - \Phi\|_F^2`, float64, sharpness :math:`\lambda_{\max}(\nabla^2 L^N)`
tracked at every step (``track=("sharpness",)``, Lanczos). Two problems:

- the scalar chain :math:`w_N \cdots w_1 \to \phi = 2` at depths 2, 3, 4 (3 only in quick mode);
- a matrix target :math:`\Phi \in \mathbb{R}^{2 \times 3}` with singular values 2 and 1, depth 3,
  widths ``(3, 3, 3, 2)``.

Each from two starts: **balanced** (scalar: every :math:`w_i = 0.1`; matrix: Procedure 1 with a
small random end-to-end matrix) and **unbalanced** (scalar: :math:`(2.5, 0.1, \dots, 0.1)`; matrix:
orthogonal layers scaled by 2.5, 0.1, 0.1), at learning rates :math:`\eta = f \cdot 2/S_{\min}` over
a grid of fractions :math:`f` around 1, each problem one ``batch_gradient_descent`` call.

Two closed forms are the references.

- **Flattest minimum** [D]: every global minimum has sharpness
  :math:`\ge S_{\min} = N \sigma_{\max}(\Phi)^{2 - 2/N}`, with equality at the balanced minima.
  Proof: there :math:`H = J^\top J`, so :math:`\lambda_{\max} \ge \|J^\top E\|^2` for the unit
  output direction :math:`E = u_1 v_1^\top`, i.e.
  :math:`\lambda_{\max} \ge \sum_j \beta_j^2 \alpha_{j-1}^2` with :math:`\alpha_j = \|W_{1:j}
  v_1\|`,
  :math:`\beta_j = \|W_{j+1:N}^\top u_1\|`. Cauchy-Schwarz gives :math:`\alpha_j \beta_j \ge
  u_1^\top \Phi v_1 = \sigma_1`, so :math:`\prod_j \beta_j \alpha_{j-1} \ge \sigma_1^{N-1}`, and
  AM-GM gives the bound. GD converges only to minima with :math:`\lambda_{\max} \le 2/\eta` (linear
  stability), so for :math:`\eta > 2/S_{\min}` it cannot converge at all.
- **Gradient-flow solution (GFS) sharpness** of the scalar chain [D]: gradient flow conserves
  :math:`w_i^2 - w_j^2` (docs/theory.md, "Implicit acceleration"), so from any point it reaches the
  minimum with :math:`w_i^2 = w_i(0)^2 + s`, :math:`\prod_i (w_i(0)^2 + s) = \phi^2`, of sharpness
  :math:`\sum_i \phi^2 / w_i^2` (:func:`lintraj.theory.gradient_flow_sharpness`). Kreisler et al.
  (2023) prove that GD decreases it monotonically [P; their step-size conditions not checked here].

Measured in the default run (fractions 0.2, 0.25, ..., 1.4 without 1.0; 10^4 steps; every number is
in the JSON, the per-run table in ``edge-of-stability-lanes.csv``):

- **Every converged run lies in** :math:`[S_{\min}, 2/\eta]`: 127 of 192 runs converged (loss
  :math:`\le 10^{-12}`), with final sharpness between :math:`S_{\min}(1 - 2\cdot10^{-15})` and
  :math:`0.9996 \cdot 2/\eta`; no run with :math:`\eta > 2/S_{\min}` converged.
- **Balanced starts: progressive sharpening to the flattest minimum, then no edge dynamics.** The
  sharpness rises from 1.99 / 0.20 / 0.02 (depth 2 / 3 / 4) to :math:`S_{\min}` (to 4e-15) for every
  :math:`\eta < 2/S_{\min}`; for :math:`f \ge 0.9` (depth 4: 0.95) it overshoots :math:`2/\eta` for
  1-7 steps on the way and comes back. The scalar chain stays exactly balanced, so for :math:`\eta >
  2/S_{\min}` there is no flatter minimum to go to: GD ends on a period-2 orbit (:math:`f` =
  1.05-1.2, loss between 0.04 and 0.43), a period-4 one (1.25-1.3, up to 0.65) or an irregular one
  (1.3-1.4, dipping to 1e-3 but never converging) for all :math:`10^4` steps. Unlike Cohen et al.'s
  networks, the loss never resumes its decrease at the edge.
- **The sharpness of the iterates does not hover at 2/eta.** On the period-2 orbits it alternates
  between values far on either side (depth 3, :math:`f = 1.1`: 3.75 and 10.61 around
  :math:`2/\eta = 6.87`); the mean of two consecutive steps sits 1-11% above :math:`2/\eta` there
  (scalar chains; up to 32% on the matrix target's unbalanced orbits), and 11-40% above on the
  period-4 orbits (where the two-step mean depends on the phase of the cycle).
  In the self-balancing runs below the iterates' sharpness swings between 0.29 and 2.1 times
  :math:`2/\eta` while its two-step mean stays at 0.99-1.0 times :math:`2/\eta` for most of the
  phase.
- **Unbalanced starts self-balance to just below the edge**, where the gradient-flow minimum is too
  sharp (:math:`S_{\min} < 2/\eta < S_{GF}`): the loss first drops (depth 3, :math:`f = 0.9`: to
  9e-4 by step 3, a catapult towards the sharp minimum), rises again (to 0.77) and oscillates with
  period 2 while the imbalance :math:`w_1^2 - w_2^2` falls (6.24 to 1.98) and the GFS sharpness
  falls from 11.15 to 8.34; once that is below :math:`2/\eta = 8.40` (step 344) GD converges. Final
  sharpness over :math:`2/\eta`: 0.992-0.996 at depth 3, 0.998-0.999 at depth 4, 0.992-1.000 for the
  matrix target (at :math:`f = 0.95` it is still converging after :math:`10^4` steps, loss 3e-9).
- **Depth 2 contradicts "settles at 2/eta"**: its unbalanced runs overshoot to 0.69-0.96 times
  :math:`2/\eta`, at :math:`f` = 0.75 and 0.8 all the way to :math:`S_{\min}` (exactly balanced: the
  strong balancing Wang et al. 2022 prove for depth-2 factorisation with large steps [P, abstract]),
  for :math:`f \ge 0.8` with both layers' signs flipped; and for every :math:`f > 1` they diverge
  within 8 steps, where the balanced depth-2 runs and all depth-3 and 4 runs stay bounded (the
  matrix target's unbalanced runs diverge for :math:`f \ge 1.3`).
- **The GFS sharpness decreased monotonically** (largest relative increase between steps at
  rounding level, 4e-16) in every bounded run at depths 3 and 4 and at depth 2 up to :math:`f =
  0.85`, as Kreisler et al. prove; but not in the depth-2 unbalanced runs at :math:`f` = 0.9 and
  0.95, where the first, catapult step throws the weights past the balanced point and the next one
  raises it by 7% and 24% [their theorem has conditions on the step size and the start that were not
  checked here; these runs presumably violate them].
- **Above 2/S_min unbalanced starts become balanced**: the scalar runs end on the balanced run's
  orbit (the same pair of sharpness values), imbalance from 6.24 to below 6e-14, at depth 3 with two
  layers' signs flipped for :math:`f \ge 1.15`; the matrix runs lose only part of theirs (10.8 to
  3.1-3.8): the directions the oscillation does not move keep it.
- **Below the edge GD still balances a little** (the :math:`O(\eta^2)` drift of the imbalance): for
  :math:`2/\eta > S_{GF}` it lands 0.1-1% flatter than the gradient-flow minimum at depths 3 and 4
  and 2.5-19% flatter at depth 2; the matrix target's balanced start drifts the other way (its
  balancedness grows from 0 to 0.03), ending 1e-6 to 2e-5 above :math:`S_{\min}`.

Runs in float64; the GFS sharpness is computed from the recorded layer singular values (the scalar
layers' magnitudes).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from lintraj import init, losses
from lintraj.reproductions.output import pyplot, write_outputs
from lintraj.sweep import batch_gradient_descent
from lintraj.theory import flattest_sharpness, gradient_flow_sharpness

__all__ = ["run", "protocol", "matrix_problem", "classify_tail"]

NAME = "edge-of-stability"
CONVERGED_LOSS = 1e-12  # a run with a final loss below this has converged to a global minimum
STALLED_GRAD = 1e-8  # not converged with a gradient norm below this: stuck at a saddle
TAIL = 8  # the last records used to find a period


def protocol(quick: bool) -> dict:
  """The settings of a run: the full one, or the small ``quick`` one."""
  default = tuple(
    float(f) for f in np.round(np.arange(0.2, 1.4001, 0.05), 2) if abs(f - 1.0) > 1e-9
  )
  return dict(
    phi=2.0,
    scalar_depths=(3,) if quick else (2, 3, 4),
    balanced_start=0.1,
    unbalanced_start=(2.5, 0.1),
    fractions=(0.3, 0.5, 0.7, 0.8, 0.9, 1.1, 1.2) if quick else default,
    matrix_singular_values=(2.0, 1.0),
    matrix_dims=(3, 3, 3, 2),
    matrix_balanced_std=0.1,
    matrix_unbalanced_scales=(2.5, 0.1, 0.1),
    matrix_fractions=(0.5, 0.8, 1.1) if quick else default,
    showcase_depth=3,
    showcase_fractions=(0.5, 0.9, 1.1),
    steps=1500 if quick else 10_000,
  )


def matrix_problem(p: dict, seed: int = 0):
  """The matrix target and its two starts: ``(phi, balanced, unbalanced)`` (float64 NumPy).

  Example:
    >>> phi, bal, unbal = matrix_problem(protocol(True))
    >>> np.round(np.linalg.svd(phi, compute_uv=False), 12).tolist(), [w.shape for w in bal]
    ([2.0, 1.0], [(3, 3), (3, 3), (2, 3)])
  """
  dims = p["matrix_dims"]
  rng = np.random.default_rng(seed)
  u, _ = np.linalg.qr(rng.standard_normal((dims[-1], dims[-1])))
  v, _ = np.linalg.qr(rng.standard_normal((dims[0], dims[-1])))
  phi = u @ np.diag(p["matrix_singular_values"]) @ v.T
  with jax.enable_x64(True):
    balanced = init.balanced(
      jax.random.PRNGKey(seed + 1), dims, std=p["matrix_balanced_std"], dtype=jnp.float64
    )
    orthogonal = init.orthogonal(jax.random.PRNGKey(seed + 2), dims, dtype=jnp.float64)
  unbalanced = tuple(
    scale * np.asarray(w) for scale, w in zip(p["matrix_unbalanced_scales"], orthogonal)
  )
  return phi, tuple(np.asarray(w) for w in balanced), unbalanced


def classify_tail(loss, sharpness, grad_norm, diverged: bool) -> tuple[str, int]:
  """How a run ended, from its records (one per step): ``(outcome, period)``.

  ``converged`` (final loss <= 1e-12), ``diverged``, ``stalled`` (at a saddle: gradient norm
  <= 1e-8), ``period-p`` (loss and sharpness repeat with period ``p`` in 2, 4, 8 over the last 8
  records, to 1e-8 relative), ``converging`` (loss still falling: the last 8 all below a tenth of
  the least of 8 a quarter of the run earlier) or ``irregular``. ``period`` is ``p``, 1 for a
  converged or stalled run, 0 otherwise.

  Example:
    >>> classify_tail(np.array([1.0, 0.5] * 10), np.array([3.0, 5.0] * 10), np.ones(20), False)
    ('period-2', 2)
  """
  loss, sharpness = np.asarray(loss, np.float64), np.asarray(sharpness, np.float64)
  if diverged:
    return "diverged", 0
  if loss[-1] <= CONVERGED_LOSS:
    return "converged", 1
  if float(np.asarray(grad_norm)[-1]) <= STALLED_GRAD:
    return "stalled", 1
  for period in (2, 4, 8):
    last, earlier = slice(-TAIL, None), slice(-TAIL - period, -period)
    if all(np.allclose(x[last], x[earlier], rtol=1e-8, atol=0) for x in (loss, sharpness)):
      return f"period-{period}", period
  quarter = len(loss) // 4
  if quarter > TAIL and np.max(loss[-TAIL:]) < 0.1 * np.min(loss[-quarter - TAIL : -quarter]):
    return "converging", 0
  return "irregular", 0


def _starts(p: dict, depth: int):
  small = p["unbalanced_start"][1]
  return {
    "balanced": (p["balanced_start"],) * depth,
    "unbalanced": (p["unbalanced_start"][0],) + (small,) * (depth - 1),
  }


def _sweep(starts: dict, loss, fractions, s_min: float, steps: int, progress: bool):
  """One batched run: every start at every fraction of 2 / S_min. Returns (trajectory, lanes,
  lrs)."""
  lanes = [(name, f) for name in starts for f in fractions]
  weights = tuple(
    np.stack([np.asarray(starts[name][j], np.float64) for name, _ in lanes])
    for j in range(len(next(iter(starts.values()))))
  )
  lrs = np.array([f * 2 / s_min for _, f in lanes])
  traj = batch_gradient_descent(
    weights, loss, lr=lrs, steps=steps, record_every=1, track=("sharpness",), progress=progress
  )
  return traj, lanes, lrs


def _increases(loss) -> int:
  """How many steps raised the loss (by more than 1e-12 relative), counted while it is above
  1e-20."""
  loss = np.asarray(loss, np.float64)
  loss = loss[np.isfinite(loss)]
  return int(np.sum((np.diff(loss) > 1e-12 * loss[:-1]) & (loss[:-1] > 1e-20)))


def _lane_numbers(traj, b: int, lr: float, s_min: float, gfs=None) -> dict:
  """The numbers of lane ``b``: outcome, final and tail sharpness, time above 2/lr, loss
  increases."""
  loss, sharp = np.asarray(traj.loss[b], np.float64), np.asarray(traj.sharpness[b], np.float64)
  diverged = int(traj.diverged_step[b]) >= 0
  outcome, period = classify_tail(loss, sharp, traj.grad_norm[b], diverged)
  edge = 2 / lr
  above = np.flatnonzero(np.where(np.isfinite(sharp), sharp, -np.inf) > edge)
  out = dict(
    outcome=outcome,
    period=period,
    lr=lr,
    two_over_lr=edge,
    final_loss=float(loss[-1]),
    final_sharpness=float(sharp[-1]),
    final_sharpness_over_edge=float(sharp[-1] / edge),
    final_sharpness_over_s_min=float(sharp[-1] / s_min),
    initial_sharpness=float(sharp[0]),
    max_sharpness=float(np.nanmax(sharp)),
    tail_sharpness=(float(np.min(sharp[-TAIL:])), float(np.max(sharp[-TAIL:]))),
    tail_loss=(float(np.min(loss[-TAIL:])), float(np.max(loss[-TAIL:]))),
    steps_above_edge=int(above.size),
    first_step_above_edge=int(above[0]) if above.size else -1,
    last_step_above_edge=int(above[-1]) if above.size else -1,
    loss_increases=_increases(loss),
    initial_balancedness=float(traj.balancedness[b, 0]),
    final_balancedness=float(traj.balancedness[b, -1]),
    diverged_step=int(traj.diverged_step[b]),
    final_weights=[np.asarray(w[b]).tolist() for w in traj.final],
  )
  pair_mean = (
    0.5 * (sharp[:-1] + sharp[1:]) / edge
  )  # the sharpness averaged over two steps, over 2/lr
  out["tail_two_step_mean_over_edge"] = float(pair_mean[-1])
  if above.size and not diverged:
    phase = slice(above[0], above[-1] + 1)
    out["unstable_phase_sharpness_over_edge"] = (
      float(np.nanmin(sharp[phase]) / edge),
      float(np.nanmax(sharp[phase]) / edge),
    )
    rises = np.flatnonzero(np.diff(loss[: phase.stop]) > 0)
    if (
      rises.size
    ):  # the loss first falls to a low, then rises again: the lowest and the highest after it
      out["unstable_phase_loss"] = (
        float(loss[rises[0]]),
        float(np.max(loss[rises[0] : phase.stop])),
      )
    out["unstable_phase_two_step_mean_over_edge"] = tuple(
      float(q)
      for q in np.nanquantile(pair_mean[above[0] : max(above[-1], above[0] + 1)], (0.0, 0.5, 1.0))
    )
  if gfs is not None:
    g = gfs[b][np.isfinite(gfs[b])]
    out.update(
      gfs_initial=float(gfs[b, 0]),
      gfs_final=float(gfs[b, -1]),
      gfs_max_relative_increase=float(np.max(np.diff(g) / g[:-1], initial=-np.inf))
      if g.size > 1
      else None,
    )
  return out


def run(
  quick: bool = False,
  out_dir=f"out/{NAME}",
  *,
  pdf: bool = False,
  seed: int = 0,
  progress: bool = False,
) -> dict:
  r"""Track the sharpness of GD on deep linear networks against :math:`2/\eta` and :math:`S_{\min}`.

  Returns the numbers: ``s_min`` per problem (``"N=3"`` for the scalar chain of depth 3,
  ``"matrix"``); ``lanes``: per problem, start and fraction :math:`f` (:math:`\eta = f \cdot
  2/S_{\min}`) the outcome (:func:`classify_tail`), final loss and sharpness (also over
  :math:`2/\eta` and over
  :math:`S_{\min}`), the sharpness range over the last 8 steps, the steps spent above
  :math:`2/\eta`, the number of loss increases, initial and final balancedness, final weights and,
  for the scalar chain, the GFS sharpness at the start and the end and its largest relative increase
  along the run; ``checks``: the claims of the module docstring as numbers:
  ``max_converged_over_edge`` and ``min_converged_over_s_min`` (over every converged run),
  ``balanced_converged_error`` (balanced scalar starts, :math:`|\lambda/S_{\min} - 1|`),
  ``matrix_balanced_over_s_min``, ``converged_above_flattest_edge`` (how many runs converged with
  :math:`\eta > 2/S_{\min}`: none can), ``gfs_max_relative_increase`` and ``gfs_raised`` (per scalar
  depth, over the bounded runs), ``self_balancing`` (per problem, the final sharpness over
  :math:`2/\eta` of the unbalanced runs with
  :math:`S_{\min} < 2/\eta < S_{GF}`; for the matrix the smallest-lr run's final sharpness stands in
  for :math:`S_{GF}`), ``diverged``, ``sign_flips``, ``orbits`` and ``orbits_straddling_edge``, and
  every run's ``outcomes``; ``showcase``: the depth-3 runs of panels (a)-(c).

  Example:
    >>> import tempfile
    >>> res = run(quick=True, out_dir=tempfile.mkdtemp())  # doctest: +SKIP
    >>> res["checks"]["max_converged_over_edge"] <= 1  # doctest: +SKIP
    True

  References:
    Cohen, Kaur, Li, Kolter, Talwalkar. Gradient Descent on Neural Networks Typically Occurs at the
    Edge of Stability. ICLR 2021 (arXiv 2103.00065).
    Kreisler, Nacson, Soudry, Carmon. ICML 2023 (arXiv 2305.13064): GFS sharpness of scalar
    networks. Wang, Chen, Zhao, Tao. Large Learning Rate Tames Homogeneity: Convergence and
    Balancing Effect. ICLR 2022 (arXiv 2110.03677).
  """
  start = time.perf_counter()
  p = protocol(quick)
  phi = p["phi"]
  s_min, lanes, series = {}, {}, {}
  with jax.enable_x64(True):
    scalar_loss = losses.target(np.full((1, 1), phi))
    for depth in p["scalar_depths"]:
      key = f"N={depth}"
      s_min[key] = flattest_sharpness(depth, phi)
      starts = {
        name: tuple(np.full((1, 1), w) for w in ws) for name, ws in _starts(p, depth).items()
      }
      traj, names, lrs = _sweep(
        starts, scalar_loss, p["fractions"], s_min[key], p["steps"], progress
      )
      magnitudes = np.stack([np.asarray(sv)[..., 0] for sv in traj.layer_singular_values], axis=-1)
      gfs = gradient_flow_sharpness(magnitudes, phi)
      lanes[key] = [
        dict(start=name, fraction=f, **_lane_numbers(traj, b, float(lrs[b]), s_min[key], gfs))
        for b, (name, f) in enumerate(names)
      ]
      if depth == p["showcase_depth"]:
        series = {
          (name, f): dict(
            loss=np.asarray(traj.loss[b]),
            sharpness=np.asarray(traj.sharpness[b]),
            gfs=gfs[b],
            lr=float(lrs[b]),
          )
          for b, (name, f) in enumerate(names)
          if f in p["showcase_fractions"]
        }
    target, balanced, unbalanced = matrix_problem(p, seed)
    s_min["matrix"] = flattest_sharpness(len(p["matrix_dims"]) - 1, p["matrix_singular_values"][0])
    traj, names, lrs = _sweep(
      {"balanced": balanced, "unbalanced": unbalanced},
      losses.target(target),
      p["matrix_fractions"],
      s_min["matrix"],
      p["steps"],
      progress,
    )
    lanes["matrix"] = [
      dict(start=name, fraction=f, **_lane_numbers(traj, b, float(lrs[b]), s_min["matrix"]))
      for b, (name, f) in enumerate(names)
    ]
  results = dict(
    name=NAME,
    quick=quick,
    protocol=p,
    seed=seed,
    target=np.asarray(target).tolist(),
    s_min=s_min,
    lanes=lanes,
    checks=_checks(lanes, s_min),
    showcase=_showcase(series, lanes, p),
  )
  fig = _figure(p, lanes, s_min, series)
  results["seconds"] = round(time.perf_counter() - start, 2)
  table = {
    column: []
    for column in (
      "problem",
      "start",
      "fraction",
      "lr",
      "outcome",
      "final_loss",
      "final_sharpness",
      "two_over_lr",
      "s_min",
      "gfs_initial",
      "gfs_final",
    )
  }
  for problem, rows in lanes.items():
    for row in rows:
      values = dict(row, problem=problem, s_min=s_min[problem])
      for column in table:
        table[column].append(values.get(column, float("nan")))
  return write_outputs(NAME, out_dir, fig, results, tables={"lanes": table}, pdf=pdf)


def _checks(lanes: dict, s_min: dict) -> dict:
  """The module docstring's claims as numbers, over every lane."""
  converged = [
    (problem, row)
    for problem, rows in lanes.items()
    for row in rows
    if row["outcome"] == "converged"
  ]
  balanced = [
    row for problem, row in converged if row["start"] == "balanced" and problem != "matrix"
  ]
  matrix_balanced = [
    row for problem, row in converged if row["start"] == "balanced" and problem == "matrix"
  ]
  gfs_increase = {
    problem: max(
      (row["gfs_max_relative_increase"] for row in rows if row["outcome"] != "diverged"),
      default=None,
    )
    for problem, rows in lanes.items()
    if problem != "matrix"
  }
  gfs_raised = {
    problem: [
      (row["start"], row["fraction"])
      for row in rows
      if row["outcome"] != "diverged" and row["gfs_max_relative_increase"] > 1e-12
    ]
    for problem, rows in lanes.items()
    if problem != "matrix"
  }
  self_balancing = {}
  for problem, rows in lanes.items():
    flow = [row.get("gfs_initial") for row in rows if row["start"] == "unbalanced"]
    reference = flow[0] if flow and flow[0] is not None else None
    if (
      reference is None
    ):  # matrix: the final sharpness of the smallest-lr unbalanced run stands in for S_GF
      unbalanced = [
        row for row in rows if row["start"] == "unbalanced" and row["outcome"] == "converged"
      ]
      reference = (
        min(unbalanced, key=lambda row: row["lr"])["final_sharpness"] if unbalanced else np.inf
      )
    window = [
      row
      for row in rows
      if row["start"] == "unbalanced" and s_min[problem] < row["two_over_lr"] < reference
    ]
    self_balancing[problem] = dict(
      flow_sharpness=reference,
      fractions=[row["fraction"] for row in window],
      outcomes=[row["outcome"] for row in window],
      final_over_edge=[row["final_sharpness_over_edge"] for row in window],
    )
  orbits = [
    row
    for rows in lanes.values()
    for row in rows
    if row["fraction"] > 1 and row["outcome"].startswith("period")
  ]
  return dict(
    converged=len(converged),
    lanes=sum(len(rows) for rows in lanes.values()),
    max_converged_over_edge=max(
      (row["final_sharpness_over_edge"] for _, row in converged), default=None
    ),
    min_converged_over_s_min=min(
      (row["final_sharpness_over_s_min"] for _, row in converged), default=None
    ),
    balanced_converged_error=max(
      (abs(row["final_sharpness_over_s_min"] - 1) for row in balanced), default=None
    ),
    matrix_balanced_over_s_min=[row["final_sharpness_over_s_min"] for row in matrix_balanced],
    converged_above_flattest_edge=sum(1 for _, row in converged if row["fraction"] > 1),
    gfs_max_relative_increase=gfs_increase,
    gfs_raised=gfs_raised,
    diverged={
      problem: [row["fraction"] for row in rows if row["outcome"] == "diverged"]
      for problem, rows in lanes.items()
    },
    sign_flips={
      problem: [
        (row["start"], row["fraction"])
        for row in rows
        if row["outcome"] != "diverged" and min(np.min(w) for w in row["final_weights"]) < 0
      ]
      for problem, rows in lanes.items()
      if problem != "matrix"
    },
    self_balancing=self_balancing,
    orbits_straddling_edge=sum(
      1
      for row in orbits
      if row["tail_sharpness"][0] < row["two_over_lr"] < row["tail_sharpness"][1]
    ),
    orbits=len(orbits),
    outcomes={
      problem: {
        start: {str(row["fraction"]): row["outcome"] for row in rows if row["start"] == start}
        for start in ("balanced", "unbalanced")
      }
      for problem, rows in lanes.items()
    },
  )


def _showcase(series: dict, lanes: dict, p: dict) -> dict:
  """Panels (a)-(c): per shown run, the loss minimum before the unstable phase and the phase's
  numbers."""
  out = {}
  rows = {(row["start"], row["fraction"]): row for row in lanes[f"N={p['showcase_depth']}"]}
  for (name, f), s in series.items():
    row = rows[name, f]
    out[f"{name}/{f:g}"] = {
      k: row.get(k)
      for k in (
        "outcome",
        "two_over_lr",
        "initial_sharpness",
        "max_sharpness",
        "final_sharpness",
        "tail_sharpness",
        "steps_above_edge",
        "first_step_above_edge",
        "last_step_above_edge",
        "loss_increases",
        "unstable_phase_sharpness_over_edge",
        "unstable_phase_two_step_mean_over_edge",
        "unstable_phase_loss",
        "tail_two_step_mean_over_edge",
        "gfs_initial",
        "gfs_final",
        "final_loss",
      )
    }
  return out


def _figure(p, lanes, s_min, series):
  plt = pyplot()
  fig, axes = plt.subplots(2, 3, figsize=(17, 9), constrained_layout=True)
  depth = p["showcase_depth"]
  steps = np.arange(p["steps"] + 1) + 1
  colors = {f: f"C{i}" for i, f in enumerate(p["showcase_fractions"])}
  for ax, start, letter in ((axes[0, 0], "balanced", "a"), (axes[0, 1], "unbalanced", "b")):
    for f in p["showcase_fractions"]:
      s = series[start, f]
      pairs = np.stack([s["sharpness"][:-1], s["sharpness"][1:]])  # two consecutive steps
      ax.fill_between(steps[:-1], pairs.min(0), pairs.max(0), color=colors[f], alpha=0.2, lw=0)
      ax.plot(steps[:-1], pairs.mean(0), color=colors[f], lw=1.3, label=f"lr = {f:g} x 2/S_min")
      ax.axhline(2 / s["lr"], color=colors[f], ls="--", lw=1.0)
      if start == "unbalanced":
        ax.plot(steps, s["gfs"], color=colors[f], ls=":", lw=2.0)
    ax.axhline(s_min[f"N={depth}"], color="k", lw=0.8, ls="-.", label="S_min = N phi^(2-2/N)")
    ax.fill_between(
      [], [], [], color="gray", alpha=0.2, lw=0, label="sharpness at steps t, t+1 (band)"
    )
    ax.plot([], [], color="gray", lw=1.3, label="their mean")
    ax.plot([], [], color="gray", ls="--", label="2/lr (same colour)")
    if start == "unbalanced":
      ax.plot([], [], color="gray", ls=":", lw=2.0, label="GFS sharpness")
    ax.set_xscale("log")
    ax.set(
      xlabel="iteration + 1 (log scale)",
      ylabel="sharpness (top Hessian eigenvalue)",
      title=f"({letter}) scalar chain N={depth} -> {p['phi']:g}, {start} start: sharpness vs 2/lr",
    )
    ax.legend(
      fontsize="x-small", loc="upper left" if start == "balanced" else "upper right", ncol=2
    )
  ax = axes[0, 2]
  for f in p["showcase_fractions"]:
    for start, ls in (("balanced", "-"), ("unbalanced", "--")):
      ax.loglog(
        steps,
        np.maximum(series[start, f]["loss"], 1e-32),
        color=colors[f],
        ls=ls,
        lw=0.8,
        label=f"{start}, lr = {f:g} x 2/S_min",
      )
  ax.set(
    xlabel="iteration + 1 (log scale)",
    ylabel="loss (log scale)",
    ylim=(1e-32, 10),
    title="(c) loss of the runs in (a) (solid) and (b) (dashed)",
  )
  ax.legend(fontsize="x-small", ncol=2, loc="lower left")
  scalars = [k for k in lanes if k != "matrix"]
  _final_panel(axes[1, 0], lanes, s_min, scalars)
  axes[1, 0].set_title(
    f"(d) scalar chain, depth {', '.join(k[2:] for k in scalars)}: final sharpness vs lr"
  )
  _final_panel(axes[1, 1], lanes, s_min, ["matrix"])
  axes[1, 1].set_title(
    f"(e) 2x3 target (singular values {', '.join(f'{x:g}' for x in p['matrix_singular_values'])}), "
    "N=3: final sharpness vs lr"
  )
  ax = axes[1, 2]
  for i, problem in enumerate(lanes):
    rows = [
      row for row in lanes[problem] if row["start"] == "unbalanced" and row["outcome"] != "diverged"
    ]
    ax.semilogy(
      [row["fraction"] for row in rows],
      [max(row["final_balancedness"] / row["initial_balancedness"], 1e-17) for row in rows],
      "s-",
      color=f"C{i}",
      ms=4,
      label=problem,
    )
  ax.axvline(1.0, color="k", lw=0.8, ls="-.")
  ax.set(
    xlabel="lr x S_min / 2",
    ylabel="final / initial balancedness (log scale)",
    title="(f) unbalanced starts: larger steps end more balanced",
  )
  ax.legend(fontsize="small")
  fig.suptitle(
    "Edge of stability in deep linear networks: GD on 1/2 ||W_N...W_1 - Phi||^2, sharpness vs 2/lr "
    "(Cohen et al. 2021), the flattest minimum S_min and the gradient-flow solution "
    "(Kreisler et al. 2023)"
  )
  return fig


def _final_panel(ax, lanes, s_min, problems):
  """Final sharpness / S_min vs lr S_min / 2: converged runs as points, the others as their
  sharpness range."""
  fractions = np.linspace(0.15, 1.45, 200)
  ax.plot(fractions, 1 / fractions, color="gray", ls="--", label="2/lr (converged runs lie below)")
  ax.axhline(1.0, color="k", lw=0.8, ls="-.", label="S_min (flattest minimum)")
  for i, problem in enumerate(problems):
    color, shift = (
      f"C{i}",
      0.012 * (i - (len(problems) - 1) / 2),
    )  # side by side, not on top of each other
    for start, marker in (("balanced", "o"), ("unbalanced", "s")):
      rows = [row for row in lanes[problem] if row["start"] == start]
      done = [row for row in rows if row["outcome"] == "converged"]
      ax.plot(
        [row["fraction"] + shift for row in done],
        [row["final_sharpness_over_s_min"] for row in done],
        marker,
        color=color,
        ms=5,
        mfc=color if start == "balanced" else "none",
        label=f"{problem}, {start}",
      )
      for row in rows:
        if row["outcome"] not in ("converged", "diverged"):
          lo, hi = (v / s_min[problem] for v in row["tail_sharpness"])
          ax.plot(
            [row["fraction"] + shift] * 2, [lo, hi], "_-", color=color, lw=1.0, ms=6, alpha=0.7
          )
        elif row["outcome"] == "diverged":
          ax.plot(row["fraction"] + shift, 0.1, "x", color=color, ms=5)
      flow = rows[0].get("gfs_initial") if rows else None
      if start == "unbalanced" and flow is not None:
        ax.axhline(flow / s_min[problem], color=color, lw=0.8, ls=":")
  ax.plot([], [], "_-", color="gray", label="not converged: sharpness range, last 8 steps")
  ax.plot([], [], "x", color="gray", label="diverged")
  ax.plot([], [], color="gray", ls=":", lw=0.8, label="GFS sharpness of the unbalanced start")
  ax.set(xlabel="lr x S_min / 2", ylabel="final sharpness / S_min", ylim=(0, 3.5))
  ax.legend(fontsize="x-small", loc="upper right")

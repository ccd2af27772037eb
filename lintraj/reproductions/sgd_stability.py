r"""Which minima SGD can stay in: linear stability (Wu, Ma, E 2018) and batch size vs sharpness.

Data (:func:`regression`): :math:`m = 16` examples :math:`x_i \sim \mathcal N(0, I_{32}/32)`,
labels :math:`y_i = \phi^\top x_i` of a random unit teacher; loss :func:`lintraj.losses.regression`
on depth-3 networks of widths ``32, 8, 8, 1``. With :math:`m < d_0` every network whose end-to-end
row fits the 16 labels is a global minimum (loss 0): a manifold of minima of different sharpness.
SGD with ``sampling="shuffle"`` (a fresh permutation every epoch), :math:`b = m` is full-batch GD.
For a minimum with per-example Hessians :math:`H_i` (``jax.hessian`` of
:math:`\frac12\|W x_i - y_i\|^2` in the flattened weights) and :math:`H = \frac1m\sum_i H_i`:

- **sharpness** :math:`\lambda_{\max}(H)`; linear stability of GD and SGD needs
  :math:`\eta\lambda_{\max}/2 \le 1`;
- **non-uniformity** :math:`s = \lambda_{\max}(\frac1m\sum_i H_i^2 - H^2)^{1/2}`; SGD needs
  :math:`\eta s \sqrt{f} \le 1`, :math:`f = (m-b)/(b(m-1))` the variance factor of a batch mean
  drawn without replacement (:math:`f = 0` at :math:`b = m`: GD has no such condition).

Both are shown as the **ratios** :math:`\eta\lambda_{\max}/2` and :math:`\eta s\sqrt f`, at most 1
where the published conditions hold. Precision **float64**; **16 seeds** by default (4 in quick
mode, which also runs fewer learning rates and batch sizes; every run is 20000 steps).

1. **Sweep** (:math:`\eta \in \{0.1, 0.2, 0.3, 0.4, 0.6, 0.8\}` x :math:`b \in \{1, 2, 4, 8,
   16\}` x seeds): from orthogonal inits of scale 2 (every singular value of every layer 2; lane
   :math:`k` of every setting the same init and SGD key), 20000 steps. A run **converged** if its
   full loss ends below 1e-12, **diverged** at the step ``diverged_step`` says. The sharpness and
   non-uniformity of each converged run's end point, the mean sharpness per setting with a
   Student-t 95% interval over the converged seeds. One ``batch_gradient_descent`` call per batch
   size runs every learning rate and seed as a lane.
2. **Escape** (Wu, Ma, E's experiment): GD at :math:`\eta = 0.01` from orthogonal inits of scale 3
   (40000 steps, loss below 1e-25) finds sharp minima :math:`W^*` (one per seed). From
   :math:`W^*` plus a 1e-6 Gaussian perturbation (an exact interpolating minimum has zero
   minibatch gradients), SGD runs 20000 steps at :math:`\eta = 2c/\lambda_{\max}(W^*)`,
   :math:`c \in \{0.25, 0.5, 0.9\}`: every such rate keeps GD at :math:`W^*`. A run **left** if it
   ends more than 1000x its perturbation away from :math:`W^*`, **stayed** if less than 10x.
   The prediction is the non-uniformity ratio :math:`\eta s(W^*)\sqrt f` at the start.
3. **Tracked sharpness** (``track=("sharpness",)``, Lanczos on Hessian-vector products, at every
   record): the sweep's first 2000 steps again at :math:`\eta = 0.4`, every seed and batch size,
   recorded every 10 steps, against :math:`2/\eta`.

Measured in the default run (``lintraj reproduce sgd-stability``, float64, 16 seeds, seed 0;
every number is in ``sgd-stability.json``, the tables in ``sgd-stability-sweep.csv`` and
``sgd-stability-escape.csv``):

- **Every minimum a run converged to satisfies both conditions**, with room: the largest
  sharpness ratio was 0.86, the largest non-uniformity ratio 0.88. Small batches did not end
  at their bound; where they would have had to, they diverged: at :math:`\eta = 0.4`, 14 of 16
  runs with :math:`b = 1` diverged and none with :math:`b \ge 2`; at :math:`\eta = 0.8` all with
  :math:`b \le 2` and 4 of 16 with :math:`b = 4`, none with :math:`b \ge 8`.
- **Smaller batches reach flatter minima** at the same :math:`\eta` and number of steps (Keskar
  et al.'s claim), at every rate, with a mean sharpness that grows with :math:`b` at every one:
  at :math:`\eta = 0.3`, 0.88 [0.80, 0.96] at :math:`b = 1`, 0.95 [0.86, 1.05] at :math:`b = 2`,
  1.42 [1.28, 1.57] at :math:`b = 4`, 1.99 [1.77, 2.21] at :math:`b = 8` and 2.39 [2.12, 2.66]
  for GD (mean [95% t-interval] over the converged seeds); at :math:`\eta = 0.1`, 1.36 at
  :math:`b = 1` against 2.59 for GD.
- **Escape is decided by the non-uniformity, to within about 30%**: from the same 8 sharp minima
  (sharpness 8.5-20), at rates where GD stays (GD never moved), all 42 SGD runs predicted above
  1.3 left (4 of them diverged; every one that converged ended flatter, 0.20-0.86x the sharpness
  of :math:`W^*`) and all 56 predicted below 0.9 stayed. Of the 22 in between, 8 left: runs
  left at 0.97 (:math:`b = 1`) and stayed at 1.24 (:math:`b = 4`). The published constant is a
  necessary condition for the second moment to stay bounded, exact only to a few per cent
  (docs/theory.md, "Minibatch SGD"); whether a run stays follows its typical growth, which can
  shrink where the second moment grows.
- The sharpness tracked along the runs (Lanczos) falls from the init's (median 5.2 over the
  seeds, at :math:`2/\eta = 5`) within the first few hundred steps, the further the smaller the
  batch (median at step 2000: 0.80 at :math:`b = 1`, 1.08 at :math:`b = 4`, 2.14 for GD); its
  value at the last record equals ``jax.hessian``'s largest eigenvalue to 2e-15 relative.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jax.flatten_util import ravel_pytree

from lintraj import init, losses
from lintraj.network import end_to_end
from lintraj.reproductions.output import pyplot, write_outputs
from lintraj.sweep import batch_gradient_descent, stack

__all__ = ["run", "protocol", "regression", "conditions", "t_interval"]

NAME = "sgd-stability"
CONVERGED = 1e-12  # final full loss below which a run counts as converged
LEFT, STAYED = 1e3, 10.0  # distance from W* in units of the perturbation


def protocol(quick: bool) -> dict:
  r"""The settings of a run: the full one, or the small ``quick`` one (fewer learning rates,
  batch sizes and seeds; the same data, network, steps and escape study).

  Example:
    >>> p = protocol(quick=True)
    >>> p["lrs"], p["batch_sizes"], p["seeds"]
    ((0.1, 0.4), (1, 4, 16), 4)
  """
  return dict(
    examples=16,
    d0=32,
    hidden=8,
    depth=3,
    init_scale=2.0,
    lrs=(0.1, 0.4) if quick else (0.1, 0.2, 0.3, 0.4, 0.6, 0.8),
    batch_sizes=(1, 4, 16) if quick else (1, 2, 4, 8, 16),
    seeds=4 if quick else 16,
    steps=20000,
    record_every=200,
    tracked_lr=0.4,
    tracked_steps=2000,
    tracked_every=10,
    sharp_init_scale=3.0,
    sharp_lr=0.01,
    sharp_steps=40000,
    escape_fractions=(0.25, 0.5, 0.9),
    escape_batch_sizes=(1, 4, 16) if quick else (1, 2, 4, 8, 16),
    escape_seeds=4 if quick else 8,
    perturbation=1e-6,
  )


def regression(p: dict, seed: int = 0):
  r"""The data: ``(x, y)``, ``x`` ``(m, d0)`` with entries :math:`\mathcal N(0, 1/d_0)`,
  ``y = x @ phi.T`` for a random unit teacher ``phi`` (float64 NumPy).

  Example:
    >>> x, y = regression(protocol(quick=True))
    >>> x.shape, y.shape
    ((16, 32), (16, 1))
  """
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((p["examples"], p["d0"])) / np.sqrt(p["d0"])
  phi = rng.standard_normal((1, p["d0"]))
  return x, x @ (phi / np.linalg.norm(phi)).T


def conditions(weights, x, y) -> tuple[float, float]:
  r"""Sharpness :math:`\lambda_{\max}(H)` and non-uniformity :math:`\lambda_{\max}(\frac1m\sum_i
  H_i^2 - H^2)^{1/2}` of one network ``weights`` for the regression ``(x, y)``, from the
  per-example Hessians :math:`H_i = \nabla^2 \frac12\|W_{1:N} x_i - y_i\|^2` in the flattened
  weights (``jax.hessian``, float64 under ``jax.enable_x64``).

  Example:
    >>> import jax.numpy as jnp
    >>> x, y = jnp.eye(2), jnp.zeros((2, 1))
    >>> w = (jnp.array([[1.0, 0.0]]),)               # one layer: H_i = x_i x_i^T
    >>> [round(v, 6) for v in conditions(w, x, y)]   # H = I/2, (H_1^2 + H_2^2)/2 - H^2 = I/4
    [0.5, 0.5]

  References:
    Wu, Ma, E. How SGD Selects the Global Minima in Over-parameterized Learning: A Dynamical
    Stability Perspective. NeurIPS 2018, Section 3 (sharpness and non-uniformity).
  """
  hs = np.asarray(_example_hessians(tuple(jnp.asarray(w) for w in weights), x, y))
  h = hs.mean(0)
  spread = (hs @ hs).mean(0) - h @ h
  return float(np.linalg.eigvalsh(h)[-1]), float(np.sqrt(max(np.linalg.eigvalsh(spread)[-1], 0)))


@jax.jit
def _example_hessians(weights, x, y):
  """``(m, P, P)``: the Hessian of each example's loss in the flattened weights."""
  flat, unravel = ravel_pytree(weights)

  def example_loss(theta, xi, yi):
    residual = end_to_end(unravel(theta)) @ xi - yi
    return 0.5 * jnp.sum(residual**2)

  return jax.vmap(lambda xi, yi: jax.hessian(example_loss)(flat, xi, yi))(x, y)


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
  r"""Mean and Student-t confidence interval :math:`\bar v \pm t_{n-1}\, \mathrm{sd}/\sqrt n` of
  the finite ``values`` (NaN bounds for fewer than two; all NaN for none); the quantile from
  ``scipy.stats.t`` (SciPy comes with JAX).

  Example:
    >>> [round(v, 3) for v in t_interval([1.0, 2.0, 3.0])]   # t_2(0.975) = 4.303
    [2.0, -0.484, 4.484]
  """
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  n = len(values)
  if n == 0:
    return (np.nan, np.nan, np.nan)
  mean = float(values.mean())
  if n < 2:
    return (mean, np.nan, np.nan)
  quantile = scipy.stats.t.ppf(1 - (1 - level) / 2, n - 1)
  half = float(quantile * values.std(ddof=1) / np.sqrt(n))
  return (mean, mean - half, mean + half)


def _dims(p: dict) -> tuple:
  return (p["d0"],) + (p["hidden"],) * (p["depth"] - 1) + (1,)


def _inits(p: dict, seed: int, scale: float, count: int, salt: int) -> list:
  keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), salt), count)
  return [init.orthogonal(k, _dims(p), scale=scale, dtype=jnp.float64) for k in keys]


def _lane(weights, k: int) -> tuple:
  return tuple(w[k] for w in weights)


def _factor(b: int, m: int) -> float:
  return (m - b) / (b * (m - 1))


def _sgd_kwargs(b: int, m: int, keys) -> dict:
  return dict(batch_size=b, sampling="shuffle", key=keys) if b < m else {}


def _sweep(p, loss, x, y, seed, progress):
  """Study 1: one batched call per batch size; lane ``i * seeds + k`` is rate ``i``, seed ``k``."""
  m, seeds, lrs = p["examples"], p["seeds"], np.asarray(p["lrs"])
  inits = _inits(p, seed, p["init_scale"], seeds, salt=1)
  weights = stack([inits[k] for _ in lrs for k in range(seeds)])
  keys = jnp.tile(jax.random.split(jax.random.PRNGKey(seed), seeds), (len(lrs), 1))
  per_b = {}
  for b in p["batch_sizes"]:
    traj = batch_gradient_descent(
      weights,
      loss,
      lr=jnp.asarray(np.repeat(lrs, seeds)),
      steps=p["steps"],
      record_every=p["record_every"],
      progress=progress,
      **_sgd_kwargs(b, m, keys),
    )
    final = np.asarray(traj.loss[:, -1], np.float64)
    converged = final < CONVERGED
    sharp, nonuni = np.full(len(final), np.nan), np.full(len(final), np.nan)
    for lane in np.flatnonzero(converged):
      sharp[lane], nonuni[lane] = conditions(_lane(traj.final, lane), x, y)
    lr_lane = np.repeat(lrs, seeds)
    entry = dict(
      batch_size=b,
      factor=_factor(b, m),
      sharpness=sharp.reshape(len(lrs), seeds),
      nonuniformity=nonuni.reshape(len(lrs), seeds),
      sharpness_ratio=(lr_lane * sharp / 2).reshape(len(lrs), seeds),
      nonuniformity_ratio=(lr_lane * nonuni * np.sqrt(_factor(b, m))).reshape(len(lrs), seeds),
      converged=converged.reshape(len(lrs), seeds),
      diverged_step=np.asarray(traj.diverged_step).reshape(len(lrs), seeds),
      final_loss=final.reshape(len(lrs), seeds),
      sharpness_interval=[t_interval(row) for row in sharp.reshape(len(lrs), seeds)],
    )
    per_b[str(b)] = entry
  return per_b


def _tracked(p, loss, x, y, seed, progress):
  """Study 3: the sweep's first ``tracked_steps`` at ``tracked_lr``, sharpness at every record."""
  m, seeds = p["examples"], p["seeds"]
  weights = stack(_inits(p, seed, p["init_scale"], seeds, salt=1))
  keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
  per_b = {}
  for b in p["batch_sizes"]:
    traj = batch_gradient_descent(
      weights,
      loss,
      lr=p["tracked_lr"],
      steps=p["tracked_steps"],
      record_every=p["tracked_every"],
      track=("sharpness",),
      progress=progress,
      **_sgd_kwargs(b, m, keys),
    )
    finite = np.flatnonzero(np.asarray(traj.diverged_step) < 0)
    hessian = np.array([conditions(_lane(traj.final, k), x, y)[0] for k in finite])
    lanczos = np.asarray(traj.sharpness[finite, -1], np.float64)
    per_b[str(b)] = dict(
      step=np.asarray(traj.step[0]),
      sharpness=np.asarray(traj.sharpness, np.float64),
      diverged_step=np.asarray(traj.diverged_step),
      lanczos_vs_hessian_gap=float(np.max(np.abs(lanczos / hessian - 1), initial=0.0)),
      compared=len(finite),
    )
  return per_b


def _escape(p, loss, x, y, seed, progress):
  """Study 2: sharp GD minima, then SGD from each, at rates where GD stays."""
  m, seeds = p["examples"], p["escape_seeds"]
  gd = batch_gradient_descent(
    stack(_inits(p, seed, p["sharp_init_scale"], seeds, salt=2)),
    loss,
    lr=p["sharp_lr"],
    steps=p["sharp_steps"],
    record_every=p["sharp_steps"],
    progress=progress,
  )
  minima = [_lane(gd.final, k) for k in range(seeds)]
  start = np.array([conditions(w, x, y) for w in minima])  # (seeds, 2)
  fractions = np.asarray(p["escape_fractions"])
  lrs = (2 * fractions[:, None] / start[None, :, 0]).ravel()  # lane i * seeds + k
  flats = [ravel_pytree(w) for w in minima]
  rng = np.random.default_rng(seed + 5)
  noise = rng.standard_normal((len(lrs), flats[0][0].size)) * p["perturbation"]
  origin = np.stack([np.asarray(flats[lane % seeds][0]) for lane in range(len(lrs))])
  starts = stack([flats[lane % seeds][1](origin[lane] + noise[lane]) for lane in range(len(lrs))])
  keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 3), len(lrs))
  per_b = {}
  for b in p["escape_batch_sizes"]:
    traj = batch_gradient_descent(
      starts,
      loss,
      lr=jnp.asarray(lrs),
      steps=p["steps"],
      record_every=p["steps"],
      progress=progress,
      **_sgd_kwargs(b, m, keys),
    )
    ends = np.stack([np.asarray(ravel_pytree(_lane(traj.final, k))[0]) for k in range(len(lrs))])
    with np.errstate(over="ignore", invalid="ignore"):  # runs that blew up: moved is inf
      moved = np.linalg.norm(ends - origin, axis=1) / np.linalg.norm(noise, axis=1)
    moved = np.where(np.isfinite(moved), moved, np.inf)
    final = np.asarray(traj.loss[:, -1], np.float64)
    sharp_end = np.full(len(lrs), np.nan)
    for lane in np.flatnonzero(final < CONVERGED):
      sharp_end[lane] = conditions(_lane(traj.final, lane), x, y)[0]
    shape = (len(fractions), seeds)
    per_b[str(b)] = dict(
      batch_size=b,
      predicted=(lrs * np.tile(start[:, 1], len(fractions)) * np.sqrt(_factor(b, m))).reshape(
        shape
      ),
      moved=moved.reshape(shape),
      diverged_step=np.asarray(traj.diverged_step).reshape(shape),
      final_loss=final.reshape(shape),
      sharpness_end_over_start=(sharp_end / np.tile(start[:, 0], len(fractions))).reshape(shape),
    )
  return dict(
    minima_loss=np.asarray(gd.loss[:, -1], np.float64),
    minima_sharpness=start[:, 0],
    minima_nonuniformity=start[:, 1],
    lrs=lrs.reshape(len(fractions), seeds),
    batch_sizes=per_b,
  )


def _verdicts(escape: dict) -> dict:
  """Over every escape run: how many with a prediction above 1.3 left, below 0.9 stayed."""
  runs = escape["batch_sizes"].values()
  predicted = np.concatenate([r["predicted"].ravel() for r in runs])
  moved = np.concatenate([r["moved"].ravel() for r in runs])
  ratio = np.concatenate([r["sharpness_end_over_start"].ravel() for r in runs])
  above, below = predicted > 1.3, predicted < 0.9
  left = moved > LEFT
  return dict(
    above=int(above.sum()),
    above_left=int((above & left).sum()),
    below=int(below.sum()),
    below_stayed=int((below & (moved < STAYED)).sum()),
    between=int((~above & ~below).sum()),
    between_left=int((~above & ~below & left).sum()),
    left_diverged=int((left & ~np.isfinite(moved)).sum()),
    left_sharpness_ratio_max=float(np.nanmax(np.where(left, ratio, np.nan))),
    left_sharpness_ratio_min=float(np.nanmin(np.where(left, ratio, np.nan))),
  )


def run(
  quick: bool = False,
  out_dir=f"out/{NAME}",
  *,
  pdf: bool = False,
  seed: int = 0,
  progress: bool = False,
) -> dict:
  r"""Linear stability of SGD on an over-parameterised deep linear regression: the sharpness and
  non-uniformity of the minima SGD reaches across learning rates and batch sizes, and escape from
  sharp minima that GD keeps.

  SGD step: :math:`W_j \leftarrow W_j - \eta\, \partial \ell_{B_t} / \partial W_j`,
  :math:`\ell_B = \frac{1}{2b}\|W_{1:N} X_B^\top - Y_B^\top\|_F^2`; a minimum can be linearly
  stable for SGD only if :math:`\eta\lambda_{\max}(H) \le 2` and
  :math:`\eta s\sqrt{(m-b)/(b(m-1))} \le 1` (Wu, Ma, E 2018; the second constant holds to within
  a few per cent, docs/theory.md). Float64 throughout.

  Returns: ``sweep`` (per batch size: ``sharpness``, ``nonuniformity`` and their ratios to the
  bounds, ``converged``, ``diverged_step``, ``final_loss``, each ``(lrs, seeds)`` with NaN where a
  run did not converge; ``sharpness_interval`` (mean, low, high) per rate); ``tracked`` (per
  batch size: ``step``, ``sharpness`` (Lanczos, ``(seeds, records)``), ``diverged_step``,
  ``lanczos_vs_hessian_gap`` at the last record of the ``compared`` lanes that did not
  diverge); ``escape``
  (``minima_*`` of the sharp GD minima, ``lrs`` and per batch size ``predicted``, ``moved``,
  ``diverged_step``, ``final_loss``, ``sharpness_end_over_start``, each ``(fractions, seeds)``);
  ``verdicts`` (counts of runs predicted to leave / stay that did); ``largest_ratios``.

  Example:
    >>> protocol(quick=False)["batch_sizes"]
    (1, 2, 4, 8, 16)
    >>> import tempfile
    >>> res = run(quick=True, out_dir=tempfile.mkdtemp())  # doctest: +SKIP
    >>> res["verdicts"]["above_left"] == res["verdicts"]["above"]  # doctest: +SKIP
    True

  References:
    Wu, Ma, E. How SGD Selects the Global Minima in Over-parameterized Learning: A Dynamical
    Stability Perspective. NeurIPS 2018.
    Keskar, Mudigere, Nocedal, Smelyanskiy, Tang. On Large-Batch Training for Deep Learning:
    Generalization Gap and Sharp Minima. ICLR 2017 (arXiv 1609.04836).
  """
  start = time.perf_counter()
  p = protocol(quick)
  with jax.enable_x64(True):
    x, y = regression(p, seed)
    loss = losses.regression(x, y)
    sweep = _sweep(p, loss, x, y, seed, progress)
    escape = _escape(p, loss, x, y, seed, progress)
    tracked = _tracked(p, loss, x, y, seed, progress)
  ratios = {
    name: float(np.nanmax([np.nanmax(e[name]) for e in sweep.values()]))
    for name in ("sharpness_ratio", "nonuniformity_ratio")
  }
  results = dict(
    name=NAME,
    quick=quick,
    protocol=p,
    seed=seed,
    precision="float64",
    seeds=p["seeds"],
    sweep=sweep,
    escape=escape,
    tracked=tracked,
    verdicts=_verdicts(escape),
    largest_ratios=ratios,
  )
  fig = _figure(p, sweep, escape, tracked)
  results["seconds"] = round(time.perf_counter() - start, 2)
  return write_outputs(NAME, out_dir, fig, results, tables=_tables(p, sweep, escape), pdf=pdf)


def _tables(p, sweep, escape) -> dict:
  rows = [(b, i, lr) for b in sweep for i, lr in enumerate(p["lrs"])]
  cells = [(b, i, c) for b in escape["batch_sizes"] for i, c in enumerate(p["escape_fractions"])]
  runs = escape["batch_sizes"]
  return {
    "sweep": dict(
      batch_size=[int(b) for b, _, _ in rows],
      lr=[lr for _, _, lr in rows],
      converged=[int(sweep[b]["converged"][i].sum()) for b, i, _ in rows],
      diverged=[int((sweep[b]["diverged_step"][i] >= 0).sum()) for b, i, _ in rows],
      sharpness_mean=[sweep[b]["sharpness_interval"][i][0] for b, i, _ in rows],
      sharpness_low=[sweep[b]["sharpness_interval"][i][1] for b, i, _ in rows],
      sharpness_high=[sweep[b]["sharpness_interval"][i][2] for b, i, _ in rows],
      sharpness_ratio_max=[_nanmax(sweep[b]["sharpness_ratio"][i]) for b, i, _ in rows],
      nonuniformity_ratio_max=[_nanmax(sweep[b]["nonuniformity_ratio"][i]) for b, i, _ in rows],
    ),
    "escape": dict(
      batch_size=[int(b) for b, _, _ in cells],
      lr_times_sharpness_over_2=[c for _, _, c in cells],
      predicted_min=[float(runs[b]["predicted"][i].min()) for b, i, _ in cells],
      predicted_max=[float(runs[b]["predicted"][i].max()) for b, i, _ in cells],
      left=[int((runs[b]["moved"][i] > LEFT).sum()) for b, i, _ in cells],
      stayed=[int((runs[b]["moved"][i] < STAYED).sum()) for b, i, _ in cells],
      sharpness_end_over_start_mean=[
        _nanmean(runs[b]["sharpness_end_over_start"][i]) for b, i, _ in cells
      ],
    ),
  }


def _nanmax(values) -> float:
  values = np.asarray(values, np.float64)
  return float(np.nanmax(values)) if np.isfinite(values).any() else float("nan")


def _nanmean(values) -> float:
  values = np.asarray(values, np.float64)
  return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _figure(p, sweep, escape, tracked):
  plt = pyplot()
  fig, axes = plt.subplots(2, 3, figsize=(16, 9), constrained_layout=True)
  (a, b_ax, c), (d, e, f) = axes
  lrs, sizes = np.asarray(p["lrs"]), [int(b) for b in sweep]
  for i, lr in enumerate(lrs):
    means = np.array([sweep[str(b)]["sharpness_interval"][i] for b in sizes])
    counts = np.array([sweep[str(b)]["converged"][i].sum() for b in sizes])
    (line,) = a.plot(sizes, means[:, 0], marker="o", label=f"lr {lr:g}")
    shade = np.where(counts >= 3, 1.0, np.nan)  # no interval from fewer than 3 seeds
    a.fill_between(
      sizes, shade * means[:, 1], shade * means[:, 2], color=line.get_color(), alpha=0.2
    )
    a.axhline(2 / lr, color=line.get_color(), ls=":", lw=1)
  a.set_xscale("log", base=2)
  a.set_yscale("log")
  a.set(
    xlabel="batch size b (b = m: GD)",
    ylabel=r"sharpness $\lambda_{\max}$ of the minimum reached",
    title="(a) mean and 95% t-interval (3+ converged seeds); dotted: 2/lr",
  )
  a.legend(fontsize="small")
  for i, b in enumerate(sizes):
    entry = sweep[str(b)]
    b_ax.scatter(
      entry["sharpness_ratio"].ravel(),
      entry["nonuniformity_ratio"].ravel(),
      s=12,
      color=f"C{i}",
      label=f"b = {b}",
    )
  b_ax.axvline(1, color="k", lw=1)
  b_ax.axhline(1, color="k", lw=1)
  b_ax.set(
    xlabel=r"$\eta\lambda_{\max}/2$",
    ylabel=r"$\eta s \sqrt{(m-b)/(b(m-1))}$",
    title="(b) every converged run: stable region is the unit square",
    xlim=(0, 1.2),
    ylim=(0, 1.2),
  )
  b_ax.legend(fontsize="small")
  for i, lr in enumerate(lrs):
    diverged = [np.mean(sweep[str(b)]["diverged_step"][i] >= 0) for b in sizes]
    c.plot(sizes, diverged, marker="o", label=f"lr {lr:g}")
  c.set_xscale("log", base=2)
  c.set(
    xlabel="batch size b",
    ylabel="fraction of seeds that diverged",
    title="(c) small batches diverge where large ones converge",
  )
  c.legend(fontsize="small")
  lr = p["tracked_lr"]
  for i, (b, entry) in enumerate(tracked.items()):
    alive = entry["diverged_step"] < 0
    label = f"b = {b}" + (f" ({np.sum(~alive)} diverged)" if not alive.all() else "")
    if not alive.any():
      continue
    sharp = entry["sharpness"][alive]
    d.plot(entry["step"], np.median(sharp, axis=0), color=f"C{i}", label=label)
    d.fill_between(
      entry["step"], sharp.min(axis=0), sharp.max(axis=0), color=f"C{i}", alpha=0.15, lw=0
    )
  d.axhline(2 / lr, color="k", ls="--", lw=1, label=f"2 / lr = {2 / lr:g}")
  d.set_xscale("symlog", linthresh=10)
  d.set_xlim(0, p["tracked_steps"])
  d.set_yscale("log")
  d.set(
    xlabel=f"step (recorded every {p['tracked_every']})",
    ylabel="sharpness (Lanczos, tracked): median, range",
    title=f"(d) tracked sharpness, lr {lr:g} (runs not diverged)",
  )
  d.legend(fontsize="small")
  markers = ("o", "s", "^", "v", "D")
  for i, (b, entry) in enumerate(escape["batch_sizes"].items()):
    for j, frac in enumerate(p["escape_fractions"]):
      e.scatter(
        np.maximum(entry["predicted"][j], 1e-3),
        np.minimum(entry["moved"][j], 1e12),
        color=f"C{i}",
        marker=markers[j % len(markers)],
        s=16,
        label=f"b = {b}" if j == 0 else None,
      )
  e.axvline(1, color="k", lw=1)
  e.axhline(LEFT, color="gray", ls=":", lw=1)
  e.set_xscale("log")
  e.set_yscale("log")
  e.set(
    xlabel=r"predicted $\eta s(W^*)\sqrt{(m-b)/(b(m-1))}$ at the start (GD: 0, drawn at 1e-3)",
    ylabel="distance from $W^*$ / perturbation (diverged: top)",
    title="(e) escape from sharp minima; o s ^: lr sharpness / 2 = "
    + ", ".join(f"{c:g}" for c in p["escape_fractions"]),
  )
  e.legend(fontsize="small")
  for i, (b, entry) in enumerate(escape["batch_sizes"].items()):
    if int(b) == p["examples"]:
      continue  # GD: predicted 0, never moves
    ratio = entry["sharpness_end_over_start"]
    f.scatter(entry["predicted"].ravel(), ratio.ravel(), color=f"C{i}", s=16, label=f"b = {b}")
  f.axvline(1, color="k", lw=1)
  f.set_xscale("log")
  f.tick_params(which="minor", labelbottom=False)
  f.set(
    xlabel="predicted non-uniformity ratio at the start",
    ylabel=r"$\lambda_{\max}$(end) / $\lambda_{\max}(W^*)$ (converged runs)",
    title="(f) runs that leave end at flatter minima",
  )
  f.legend(fontsize="small")
  fig.suptitle(
    f"SGD's linear stability on deep linear regression (m = {p['examples']}, widths "
    f"{_dims(p)}, float64, {p['seeds']} seeds; escape: {p['escape_seeds']} sharp minima): "
    "Wu, Ma, E 2018; Keskar et al. 2017"
  )
  return fig

r"""Minibatch SGD on a deep linear regression: batch size, sampling scheme, balancedness.

Data (:func:`sorted_regression`): :math:`m = 1024` examples :math:`x_i \sim \mathcal N(0, I_{32})`
with a scalar label :math:`y_i = \phi^\top x_i + \varepsilon_i`, :math:`\phi` a random unit
teacher, label noise :math:`\varepsilon_i \sim \mathcal N(0, 1)`, **stored sorted by the label**.
Loss :func:`lintraj.losses.regression`, :math:`L = \frac{1}{2m}\|W X^\top - Y^\top\|_F^2`, on
depth-4 networks of widths ``32, 32, 32, 32, 1`` from balanced inits (Procedure 1, random
end-to-end matrix of entry std 0.3). Every curve is the **excess loss** :math:`L - L^*` on the
full data, :math:`L^*` at the least-squares solution (``loss.target``). Step :math:`t` with batch
size :math:`b` takes the gradient of :math:`\frac{1}{2b}\|W X_{B_t}^\top - Y_{B_t}^\top\|_F^2`; an
epoch is :math:`m/b` steps, and every setting runs the same number of epochs
(``steps = epochs * m / b``) at the same :math:`\eta = 0.005`, with 8 records per epoch. One
``batch_gradient_descent`` call per setting runs every seed as a lane (lane :math:`k`: the
:math:`k`-th balanced init and key :math:`k` of ``jax.random.split(PRNGKey(seed), seeds)``, the
same in every setting). :math:`b = m` is full-batch GD (``batch_size=None``). Precision:
**float64** (``jax.enable_x64``); **8 seeds** by default, 3 in quick mode (which also runs 20
epochs, not 40, and batch sizes 1, 16, m only).

1. **Batch size** (``"shuffle"``; :math:`b = 1, 4, 16, 64, 256, m`): the loss per epoch and per
   second. Lane 0 of each setting is run again as one :func:`lintraj.gradient_descent` call: the
   first call compiles, the second is timed (``jax.block_until_ready``); the time axis assumes the
   time is proportional to the steps. A reference curve is GD at its own, larger, stable rate
   :math:`\eta = 0.2`.
2. **Sampling scheme** at :math:`b = 4` on the sorted data: ``"shuffle"``, ``"shuffle_once"``,
   ``"sequential"`` (the stored, sorted order) and ``"with_replacement"``
   (:mod:`lintraj.minibatch`), compared by the *tail* excess loss: per seed, the mean over the
   records of the last quarter of the epochs. Why the sorted order hurts [D]: with
   :math:`s = \|\phi\|^2 + \sigma^2`, :math:`\mathbb E[\varepsilon x \mid y] = \phi\,
   (\sigma^2/s)(y^2/s - 1)`. Near the optimum the residual is :math:`-\varepsilon`, so the
   examples with large :math:`|y|` (both ends of the sorted order) pull the end-to-end matrix
   along :math:`+\phi` and the middle ones along :math:`-\phi`. Over an epoch these cancel, but a
   pass in the stored order follows their partial sums: an :math:`O(\eta m)` excursion every
   epoch, where the partial sums of a random order are :math:`O(\sqrt m)` random walks. Any random
   order, even one reused every epoch, removes it.
3. **Balancedness** :math:`\max_j \|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F` and **deficiency
   margin** :math:`\sigma_{\min}(\Phi) - \|W_{1:N} - \Phi\|_F` (:math:`\Phi` the least-squares
   solution) along SGD with :math:`b = 4` and along GD at the same :math:`\eta` for the same
   number of steps, from the same balanced inits. Both change the imbalance only at
   :math:`O(\eta^2)` per step (docs/theory.md, "Minibatch SGD"), but GD's gradients vanish as it
   converges, while SGD's minibatch gradients stay :math:`O(1)` at the optimum (label noise).

Measured in the default run (``lintraj reproduce minibatch-sgd``, float64, 8 seeds, 40 epochs,
seed 0; means over seeds; every number is in ``minibatch-sgd.json``, the tables in
``minibatch-sgd-batch-sizes.csv`` and ``minibatch-sgd-sampling.csv``):

- **Per epoch, small batches lead first, then stall at their noise floor.** After one epoch the
  excess loss grows with the batch size: 0.022 / 0.21 / 0.50 / 0.89 / 1.3 / 1.5 for
  :math:`b = 1, 4, 16, 64, 256, m`. At a fixed :math:`\eta` SGD stalls at a floor that falls with
  :math:`b` (tail 0.0091 at :math:`b = 1`, 0.0021 at :math:`b = 4`: 4.3x lower at 4x the batch, as
  the :math:`\eta/b` scale of SGD's stationary noise suggests). After 40 epochs :math:`b = 16` is
  lowest among the SGD runs (7.8e-5; :math:`b = 1`: 0.0082, :math:`b = 64`: 0.0094, :math:`b = 256`:
  0.31); GD at the same :math:`\eta` has taken 40 steps (0.62). GD at :math:`\eta = 0.2` reaches
  1.2e-5 in its 40 steps and keeps converging: GD has no noise floor. Random reshuffling's loss dips
  at every epoch's end (one permutation's minibatches together are the full data once), visible at
  :math:`b = 16`.
- **Per second** (single runs after compiling, a 2-core CPU shared with other jobs, so the times
  vary by some 20% between runs): an epoch costs about 5 ms at :math:`b = 1`, 1.6 ms at
  :math:`b = 16` and 0.2 ms for GD, i.e. a step 5 us, 25 us and 0.2 ms: far less than in
  proportion to :math:`b`. So per second the large batches catch up, and GD at
  :math:`\eta = 0.2` leads: its mean curve is below 1e-4 after 4 ms, that of :math:`b = 16` after
  about 40 ms (epoch 24).
- **Sampling on sorted data.** Sequential SGD's tail excess loss is 36x that of ``"shuffle"``
  (0.076 vs 0.0021; every seed's sequential run is above every seed's shuffled one, by at least
  33x). Within its last epoch it swings between 0.009 and 0.13 (shuffle: 0.0005 to 0.0045).
  ``"shuffle_once"`` matches ``"shuffle"`` (0.96x); ``"with_replacement"`` is 3.2x worse
  (0.0067), the gap by which random reshuffling beats SGD with replacement (Gürbüzbalaban et al.
  2021).
- **Balancedness.** From 4e-16, GD ends at 0.0038 (0.0034-0.0043) after 10240 steps, at the
  least-squares solution (excess loss 1e-16 or below, margin :math:`\sigma_{\min}(\Phi) =
  0.9916`); SGD with :math:`b = 4` ends at 1.25 (every seed at least 287x any GD one). After 40
  epochs the imbalance is 6.1 / 1.25 / 0.12 / 0.011 / 0.0029 / 0.0012 for :math:`b = 1, 4, 16,
  64, 256, m` (GD at :math:`\eta = 0.2`: 0.15, its larger early steps). The margin turns positive
  within the first 128 steps for both; SGD's then stays below GD's (0.90-0.96 at the end vs
  0.9916), by the radius of its noise ball.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from lintraj import init, losses
from lintraj.dynamics import gradient_descent
from lintraj.reproductions.output import pyplot, write_outputs
from lintraj.sweep import batch_gradient_descent, stack

__all__ = ["run", "protocol", "sorted_regression"]

NAME = "minibatch-sgd"
SCHEMES = ("shuffle", "shuffle_once", "sequential", "with_replacement")
# Excess losses below this are float64 rounding of L - L* (L* ~ 0.5); the log plots clip there.
_FLOOR = 1e-15


def protocol(quick: bool) -> dict:
  r"""The settings of a run: the full one, or the small ``quick`` one (fewer batch sizes, seeds and
  epochs; the same data, network and learning rates). A run with batch size :math:`b` takes
  ``epochs * examples / b`` steps.

  Example:
    >>> p = protocol(quick=True)
    >>> p["epochs"] * p["examples"] // p["sampling_batch_size"]  # steps of the b = 4 runs
    5120
  """
  return dict(
    examples=1024,
    d0=32,
    hidden=32,
    depth=4,
    noise=1.0,
    init_std=0.3,
    lr=0.005,
    gd_lr=0.2,
    batch_sizes=(1, 16, 1024) if quick else (1, 4, 16, 64, 256, 1024),
    epochs=20 if quick else 40,
    seeds=3 if quick else 8,
    records_per_epoch=8,
    sampling_batch_size=4,
    tail_fraction=0.25,
  )


def sorted_regression(p: dict, seed: int = 0):
  r"""The data set, stored sorted by its label: ``(x, y, phi)`` with ``x`` ``(m, d0)``, ``y``
  ``(m, 1)`` in increasing order and the unit teacher ``phi`` ``(1, d0)``;
  :math:`y_i = \phi^\top x_i + \varepsilon_i`, :math:`\varepsilon_i \sim \mathcal N(0,
  \mathrm{noise}^2)` (float64 NumPy).

  Example:
    >>> x, y, phi = sorted_regression(protocol(quick=True))
    >>> x.shape, bool(np.all(np.diff(y[:, 0]) >= 0)), round(float(np.linalg.norm(phi)), 12)
    ((1024, 32), True, 1.0)
  """
  rng = np.random.default_rng(seed)
  phi = rng.standard_normal((1, p["d0"]))
  phi /= np.linalg.norm(phi)
  x = rng.standard_normal((p["examples"], p["d0"]))
  y = x @ phi.T + p["noise"] * rng.standard_normal((p["examples"], 1))
  order = np.argsort(y[:, 0], kind="stable")
  return x[order], y[order], phi


def _dims(p: dict) -> tuple:
  return (p["d0"],) + (p["hidden"],) * (p["depth"] - 1) + (1,)


def _inits(p: dict, seed: int) -> tuple:
  """One balanced init per lane, stacked: ``(W_1, ..., W_N)``, shapes ``(seeds, d_j, d_{j-1})``."""
  keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 1), p["seeds"])
  lanes = [init.balanced(k, _dims(p), std=p["init_std"], dtype=jnp.float64) for k in keys]
  return stack(lanes)


def _settings(p: dict, b: int, scheme: str, lr: float, keys) -> dict:
  """The run's keyword arguments: ``epochs * m / b`` steps, 8 records per epoch (one per step
  when an epoch has fewer), minibatches unless ``b = m`` (full-batch GD)."""
  m = p["examples"]
  if m % b:
    raise ValueError(f"batch size {b} must divide the {m} examples (an epoch is m / b steps).")
  per_epoch = m // b
  record_every = max(per_epoch // p["records_per_epoch"], 1)
  kwargs = dict(lr=lr, steps=p["epochs"] * per_epoch, record_every=record_every)
  if b < m:
    kwargs.update(batch_size=b, sampling=scheme, key=keys)
  return kwargs


def _timed(weights, loss, kwargs, key):
  """Lane 0 as a single run: compile with the first call, time the second. Returns (seconds,
  trajectory)."""
  single = dict(kwargs, key=key) if "key" in kwargs else dict(kwargs)
  gradient_descent(weights, loss, **single)
  start = time.perf_counter()
  traj = gradient_descent(weights, loss, **single)
  jax.block_until_ready(traj.final)
  return time.perf_counter() - start, traj


def _summary(values) -> dict:
  values = np.asarray(values, np.float64)
  return dict(mean=float(values.mean()), min=float(values.min()), max=float(values.max()))


def _tail(excess, p: dict) -> np.ndarray:
  """Per lane, the mean excess loss over the records of the last ``tail_fraction`` of the epochs
  (record 0 excluded)."""
  n = max(int(round((excess.shape[1] - 1) * p["tail_fraction"])), 1)
  return excess[:, -n:].mean(axis=1)


def _batch_entry(p, b, lr, traj, optimum, seconds, timed, steps_per_epoch):
  excess = np.asarray(traj.loss, np.float64) - optimum
  epoch = np.asarray(traj.step[0], np.float64) / steps_per_epoch
  one = int(np.flatnonzero(epoch >= 1)[0])
  lane = np.asarray(traj.loss[0], np.float64)
  return dict(
    batch_size=b,
    lr=lr,
    steps=int(traj.step[0, -1]),
    steps_per_epoch=steps_per_epoch,
    seconds=seconds,
    seconds_per_epoch=seconds / p["epochs"],
    epoch=epoch,
    excess_mean=excess.mean(axis=0),
    excess_epoch1=_summary(excess[:, one]),
    excess_final=_summary(excess[:, -1]),
    excess_tail=_summary(_tail(excess, p)),
    balancedness_final=_summary(traj.balancedness[:, -1]),
    margin_final=_summary(traj.deficiency_margin[:, -1]),
    timed_vs_lane_gap=float(np.max(np.abs(np.asarray(timed.loss) / lane - 1))),
  )


def run(
  quick: bool = False,
  out_dir=f"out/{NAME}",
  *,
  pdf: bool = False,
  seed: int = 0,
  progress: bool = False,
) -> dict:
  r"""Minibatch SGD on a deep linear regression stored sorted by its label: loss per epoch and per
  second across batch sizes, the four sampling schemes, balancedness of SGD vs GD.

  Step :math:`t` is :math:`W_j \leftarrow W_j - \eta\, W_{j+1:N}^\top \nabla \ell_{B_t}(W_{1:N})\,
  W_{1:j-1}^\top` with :math:`\ell_B(W) = \frac{1}{2b}\|W X_B^\top - Y_B^\top\|_F^2` on the
  minibatch :math:`B_t` of :math:`b` examples (:math:`b = m`: GD); every number is of the full-data
  excess loss :math:`L(W_{1:N}) - L^*`, :math:`L^* = \min_W L(W)`. Float64 throughout.

  Returns: ``batch_sizes`` (per :math:`b`, and ``"gd_lr"`` for GD at ``gd_lr``): ``seconds`` (the
  timed second call of lane 0), ``seconds_per_epoch``, ``epoch`` and ``excess_mean`` (the curve,
  mean over seeds), ``excess_epoch1``, ``excess_final``, ``excess_tail`` (mean / min / max over
  seeds), ``balancedness_final``, ``margin_final``, ``timed_vs_lane_gap`` (the timed single run
  against lane 0 of the batch, largest relative loss difference); ``sampling`` (per scheme at
  ``sampling_batch_size``): ``tail`` and ``final`` per seed, ``last_epoch_range`` (the excess loss's
  range over the last epoch's records, mean over seeds), and the ratios of tail means to
  ``"shuffle"``; ``balancedness``: SGD vs GD at the same :math:`\eta` and steps: ``initial``,
  ``sgd_final`` / ``gd_final`` per seed, ``ratio_min`` (the least SGD over the largest GD final),
  ``sgd_margin_final`` / ``gd_margin_final``, ``*_margin_positive_step`` (the first record with a
  positive margin, per seed), ``gd_excess_final``, ``sigma_min``; ``optimum``
  (:math:`L^*`).

  Example:
    >>> protocol(quick=True)["batch_sizes"]
    (1, 16, 1024)
    >>> import tempfile
    >>> res = run(quick=True, out_dir=tempfile.mkdtemp())  # doctest: +SKIP
    >>> res["sampling"]["sequential_over_shuffle"] > 5  # doctest: +SKIP
    True

  References:
    Harakeh, lecture notes 2017: sample minibatches at random; data stored in a correlated order
    and never shuffled hurts SGD (docs/theory.md, "Minibatch SGD").
    Keskar, Mudigere, Nocedal, Smelyanskiy, Tang. On Large-Batch Training for Deep Learning:
    Generalization Gap and Sharp Minima. ICLR 2017 (arXiv 1609.04836): the batch-size question
    (their claim, that large batches find sharper minima, is not tested here).
    Gürbüzbalaban, Ozdaglar, Parrilo. Why random reshuffling beats stochastic gradient descent.
    Math. Program. 186 (2021). Arora, Cohen, Golowich, Hu. ICLR 2019 (arXiv 1810.02281),
    Definitions 1-2 (balancedness, deficiency margin).
  """
  start = time.perf_counter()
  p = protocol(quick)
  m = p["examples"]
  with jax.enable_x64(True):
    x, y, _ = sorted_regression(p, seed)
    loss = losses.regression(x, y)
    optimum = float(loss(loss.target))
    sigma_min = float(np.linalg.svd(np.asarray(loss.target), compute_uv=False)[-1])
    weights = _inits(p, seed)
    lane0 = tuple(w[0] for w in weights)
    keys = jax.random.split(jax.random.PRNGKey(seed), p["seeds"])
    runs = {}  # (b, scheme, lr) -> trajectory; a setting shared by two studies runs once

    def sgd(b, scheme, lr):
      if (b, scheme, lr) not in runs:
        kwargs = _settings(p, b, scheme, lr, keys)
        runs[b, scheme, lr] = batch_gradient_descent(weights, loss, progress=progress, **kwargs)
      return runs[b, scheme, lr]

    per_b, timed = {}, {}
    for b, lr in [(b, p["lr"]) for b in p["batch_sizes"]] + [(m, p["gd_lr"])]:
      traj = sgd(b, "shuffle", lr)
      seconds, single = _timed(lane0, loss, _settings(p, b, "shuffle", lr, keys), keys[0])
      name = "gd_lr" if lr != p["lr"] else str(b)
      per_b[name] = _batch_entry(p, b, lr, traj, optimum, seconds, single, m // b)
      timed[name] = single

    b = p["sampling_batch_size"]
    sampling = {}
    for scheme in SCHEMES:
      traj = sgd(b, scheme, p["lr"])
      excess = np.asarray(traj.loss, np.float64) - optimum
      last_epoch = excess[:, -p["records_per_epoch"] - 1 :]
      sampling[scheme] = dict(
        epoch=np.asarray(traj.step[0], np.float64) * b / m,
        excess_mean=excess.mean(axis=0),
        tail=_tail(excess, p),
        final=excess[:, -1],
        last_epoch_range=(float(last_epoch.min(1).mean()), float(last_epoch.max(1).mean())),
      )
    shuffled = sampling["shuffle"]["tail"]
    for scheme in SCHEMES[1:]:
      sampling[f"{scheme}_over_shuffle"] = float(sampling[scheme]["tail"].mean() / shuffled.mean())
    sampling["sequential_min_over_shuffle_max"] = float(
      sampling["sequential"]["tail"].min() / shuffled.max()
    )

    sgd_traj = sgd(b, "shuffle", p["lr"])
    gd_kwargs = dict(
      lr=p["lr"], steps=int(sgd_traj.step[0, -1]), record_every=int(sgd_traj.step[0, 1])
    )
    gd_traj = batch_gradient_descent(weights, loss, progress=progress, **gd_kwargs)
  balance = dict(
    batch_size=b,
    steps=gd_kwargs["steps"],
    initial=float(np.max(gd_traj.balancedness[:, 0])),
    sgd_final=np.asarray(sgd_traj.balancedness[:, -1]),
    gd_final=np.asarray(gd_traj.balancedness[:, -1]),
    sgd_max=np.asarray(np.max(sgd_traj.balancedness, axis=1)),
    gd_max=np.asarray(np.max(gd_traj.balancedness, axis=1)),
    sgd_margin_final=np.asarray(sgd_traj.deficiency_margin[:, -1]),
    gd_margin_final=np.asarray(gd_traj.deficiency_margin[:, -1]),
    gd_excess_final=np.asarray(gd_traj.loss[:, -1]) - optimum,
    sigma_min=sigma_min,
  )
  balance["ratio_min"] = float(balance["sgd_final"].min() / balance["gd_final"].max())
  for name, traj in (("sgd", sgd_traj), ("gd", gd_traj)):  # first record with a positive margin
    balance[f"{name}_margin_positive_step"] = [
      int(traj.step[k, np.argmax(traj.deficiency_margin[k] > 0)]) for k in range(p["seeds"])
    ]
  results = dict(
    name=NAME,
    quick=quick,
    protocol=p,
    seed=seed,
    precision="float64",
    seeds=p["seeds"],
    optimum=optimum,
    batch_sizes=per_b,
    sampling=sampling,
    balancedness=balance,
  )
  fig = _figure(
    p,
    per_b,
    sampling,
    sgd_traj,
    gd_traj,
    {b: sgd(b, "shuffle", p["lr"]) for b in p["batch_sizes"] if b < m},
    optimum,
  )
  results["seconds"] = round(time.perf_counter() - start, 2)
  rows = list(per_b.values())
  tables = {
    "batch-sizes": dict(
      batch_size=[r["batch_size"] for r in rows],
      lr=[r["lr"] for r in rows],
      steps=[r["steps"] for r in rows],
      seconds=[r["seconds"] for r in rows],
      seconds_per_epoch=[r["seconds_per_epoch"] for r in rows],
      excess_epoch1=[r["excess_epoch1"]["mean"] for r in rows],
      excess_final=[r["excess_final"]["mean"] for r in rows],
      excess_tail=[r["excess_tail"]["mean"] for r in rows],
      balancedness_final=[r["balancedness_final"]["mean"] for r in rows],
    ),
    "sampling": dict(
      scheme=list(SCHEMES),
      tail_mean=[float(sampling[s]["tail"].mean()) for s in SCHEMES],
      tail_min=[float(sampling[s]["tail"].min()) for s in SCHEMES],
      tail_max=[float(sampling[s]["tail"].max()) for s in SCHEMES],
      final_mean=[float(sampling[s]["final"].mean()) for s in SCHEMES],
    ),
  }
  return write_outputs(NAME, out_dir, fig, results, tables=tables, pdf=pdf)


def _label(entry: dict, m: int) -> str:
  b = entry["batch_size"]
  if b == m:
    return f"GD (b = m), lr {entry['lr']:g}"
  return f"b = {b}"


def _figure(p, per_b, sampling, sgd_traj, gd_traj, sgd_runs, optimum):
  plt = pyplot()
  m = p["examples"]
  fig, axes = plt.subplots(2, 3, figsize=(16, 9), constrained_layout=True)
  (a, b_ax, c), (d, e, f) = axes
  for i, (name, entry) in enumerate(per_b.items()):
    style = dict(color="k", ls="--") if name == "gd_lr" else dict(color=f"C{i}")
    curve = np.maximum(entry["excess_mean"], _FLOOR)
    label = _label(entry, m)
    a.semilogy(entry["epoch"], curve, label=label, **style)
    wall = entry["epoch"] * entry["seconds_per_epoch"]
    b_ax.loglog(wall[1:], curve[1:], label=f"{label}: {entry['seconds']:.3f} s", **style)
  a.set(
    xlabel="epoch (m examples seen)",
    ylabel=r"excess loss $L - L^*$ (full data, mean over seeds)",
    title=f"(a) per epoch, shuffle, lr {p['lr']:g}",
  )
  a.legend(fontsize="small")
  b_ax.set(
    xlabel="wall time of a single run after compiling (s)",
    ylabel=r"excess loss $L - L^*$",
    title="(b) per second (time proportional to steps)",
  )
  b_ax.legend(fontsize="x-small")
  bs = p["sampling_batch_size"]
  for i, scheme in enumerate(SCHEMES):
    entry = sampling[scheme]
    c.semilogy(
      entry["epoch"], np.maximum(entry["excess_mean"], _FLOOR), color=f"C{i}", lw=1, label=scheme
    )
    d.scatter(np.full(len(entry["tail"]), i), entry["tail"], color=f"C{i}", s=14, alpha=0.7)
    d.scatter([i], [entry["tail"].mean()], color="k", marker="_", s=400)
  c.set(
    xlabel="epoch",
    ylabel=r"excess loss $L - L^*$ (mean over seeds)",
    title=f"(c) data sorted by label, b = {bs}: sampling schemes",
  )
  c.set_ylim(top=30)
  c.legend(fontsize="small", ncol=2, loc="upper center")
  d.set_yscale("log")
  d.set_xticks(range(len(SCHEMES)), SCHEMES)
  d.set(
    xlabel="sampling scheme",
    ylabel="tail excess loss (last quarter of the epochs), per seed",
    title=f"(d) sequential {sampling['sequential_over_shuffle']:.0f}x shuffle, "
    f"shuffle_once {sampling['shuffle_once_over_shuffle']:.2f}x",
  )
  curves = [(f"SGD b = {b}", traj, f"C{i}", 1) for i, (b, traj) in enumerate(sgd_runs.items())]
  sgd_color = f"C{list(sgd_runs).index(bs)}" if bs in sgd_runs else "C6"
  if bs not in sgd_runs:
    curves.append((f"SGD b = {bs}", sgd_traj, sgd_color, 1))
  curves.append((f"GD, same lr and steps as b = {bs}", gd_traj, "k", 1.5))
  for label, traj, color, lw in curves:  # from the first record after step 0 (log axes)
    e.loglog(
      traj.step[0, 1:], traj.balancedness[:, 1:].mean(axis=0), color=color, lw=lw, label=label
    )
  e.set(
    xlabel="step",
    ylabel=r"$\max_j \|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F$ (mean over seeds)",
    title=f"(e) balancedness, from {float(gd_traj.balancedness[:, 0].max()):.0e} at step 0",
  )
  e.legend(fontsize="x-small")
  for traj, label, color in ((sgd_traj, f"SGD b = {bs}", sgd_color), (gd_traj, "GD", "k")):
    f.plot(traj.step[0], traj.deficiency_margin.mean(axis=0), color=color, label=label)
  f.axhline(0, color="gray", lw=0.8, ls=":")
  f.set(
    xlabel="step",
    ylabel=r"$\sigma_{\min}(\Phi) - \|W_{1:N} - \Phi\|_F$, $\Phi$ least squares",
    title="(f) deficiency margin (mean over seeds)",
  )
  f.legend(fontsize="small")
  fig.suptitle(
    f"Minibatch SGD on deep linear regression (m = {m}, widths {_dims(p)}, float64, "
    f"{p['seeds']} seeds): batch size (Keskar et al. 2017), sampling (Harakeh 2017), balancedness"
  )
  return fig

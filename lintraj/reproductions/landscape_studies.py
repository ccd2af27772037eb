r"""The landscape studies: critical points of a deep linear autoencoder, and escape from saddles.

Each study is ``run_<name>(quick=False, out_dir=..., *, pdf=False) -> dict``, the calling convention
of :mod:`lintraj.reproductions`: it computes in float64, writes ``NAME.png`` (``NAME.pdf``) and
``NAME.json`` (the numbers) into ``out_dir`` with :func:`lintraj.reproductions.output.write_outputs`
and returns the numbers with ``files`` and ``seconds``; :mod:`lintraj.reproductions` registers
them under their ``lintraj reproduce`` names. The ``*_data`` functions return the
numbers and the arrays the figures need; ``*_figure`` draws them (matplotlib, imported lazily).
Notebooks: ``notebooks/critical_points.ipynb`` and ``notebooks/saddles.ipynb`` (quick mode when
the environment variable ``LINTRAJ_QUICK=1``).

- ``critical-points``: on the linear autoencoder of Frye et al. (16 inputs, hidden width 4,
  depth 2 and 3), run every critical-point finder from many starts (vmapped, one compiled call per
  finder) and compare with the analytic critical points: the fraction that reach a true critical
  point (:math:`\|\nabla L\|^2 < 10^{-10}`), loss and index errors against the nearest analytic
  point, which index sets are found, and how many stall at gradient-flat points.
- ``saddles``: from near the origin, a strict saddle at depth 2 and a non-strict one at depth 3,
  compare gradient descent, perturbed gradient descent and saddle-free Newton (steps to escape),
  and follow the Hessian spectrum along an escaping trajectory.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lintraj import init, landscape, losses
from lintraj.dynamics import gradient_descent, train
from lintraj.network import end_to_end
from lintraj.reproductions.output import pyplot, write_outputs

__all__ = [
  "critical_points_data",
  "critical_points_figure",
  "run_critical_points",
  "saddles_data",
  "saddles_figure",
  "run_saddles",
]

# critical-points: Frye et al.'s autoencoder size, a covariance with distinct eigenvalues.
AUTOENCODER_INPUTS, AUTOENCODER_HIDDEN, AUTOENCODER_DEPTHS = 16, 4, (2, 3)
CRITICAL_TOL = 1e-10  # ||grad||^2 below this: a critical point (Frye et al.)
INDEX_EIG_TOL = 1e-5  # eigenvalues below -this count for the index (Frye et al.)
FLAT_TOL = 1e-2  # ||H g|| / (||H|| ||g||) below this: gradient-flat (the JSON keeps every ratio)
START_SCALES = (0.05, 1.0)  # starts: Gaussian layers (std 1) scaled log-uniformly in this range

# saddles: escape from the origin of 1/2 ||W - Phi||^2, square 3x3 layers.
SADDLE_TARGET = np.diag([1.0, 0.6, 0.3])
SADDLE_DEPTHS = (2, 3)
SADDLE_INIT_STD = 1e-4  # entries of every layer at the start: a point next to the origin
SADDLE_LR = 0.1
PGD_RADIUS, PGD_GRAD_THRESHOLD, PGD_WAIT = 0.1, 1e-3, 100
SFN_LR, SFN_DAMPING = 0.5, 1e-2
ESCAPE_FRACTION = 0.9  # escaped once the loss is <= this fraction of the loss at the origin


def _run(name: str, data_fn, figure_fn, quick: bool, out_dir, pdf: bool) -> dict:
  started = time.perf_counter()
  data = data_fn(quick)
  results = write_outputs(name, out_dir, figure_fn(data), data["numbers"], pdf=pdf)
  return dict(results, seconds=time.perf_counter() - started)


# ----------------------------------------------------------------------------- critical-points


def autoencoder_covariance() -> np.ndarray:
  r"""The study's :math:`\Sigma`: eigenvalues :math:`1.6, 1.5, \dots, 0.1`, random eigenvectors
  (seed 0)."""
  eigenvalues = np.linspace(1.6, 0.1, AUTOENCODER_INPUTS)
  rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(AUTOENCODER_INPUTS,) * 2))[0]
  return (rotation * eigenvalues[None, :]) @ rotation.T


def _finders(quick: bool) -> dict:
  return {
    "gradient norm": (landscape.gradient_norm_descent, dict(steps=2000 if quick else 20000)),
    "Newton-MR": (landscape.newton_mr, dict(steps=30 if quick else 100)),
    "damped Newton": (landscape.damped_newton, dict(steps=50 if quick else 100, lr=0.5)),
  }


def _starts(dims, count: int, seed: int) -> tuple:
  keys = jax.random.split(jax.random.PRNGKey(seed), count)
  layers = jax.vmap(lambda key: init.gaussian(key, dims, std=1.0))(keys)
  scales = jnp.asarray(np.geomspace(*START_SCALES, count))
  return tuple(w * scales[:, None, None] for w in layers)


def _nearest_analytic(
  points: landscape.AutoencoderCriticalPoints, weights
) -> tuple[np.ndarray, np.ndarray]:
  """Index of the analytic point whose end-to-end projection is nearest, and the distance."""
  e2e = np.asarray(end_to_end(weights), np.float64)
  vectors = points.eigenvectors
  kept = points.components.astype(np.float64)
  # ||W - E_I E_I^T||^2 = ||W||^2 - 2 sum_{i in I} e_i^T W e_i + |I|
  diagonal = np.einsum("ai,sab,bi->si", vectors, e2e, vectors)
  squared = np.sum(e2e**2, axis=(1, 2))[:, None] - 2 * diagonal @ kept.T + kept.sum(axis=1)[None, :]
  nearest = np.argmin(squared, axis=1)
  return nearest, np.sqrt(np.maximum(squared[np.arange(len(nearest)), nearest], 0.0))


def critical_points_data(quick: bool) -> dict:
  """Run the critical-points study; returns ``{"numbers": JSON-able dict, "arrays": for the
  figure}``."""
  starts_per_finder = 8 if quick else 64
  numbers = dict(
    quick=quick,
    inputs=AUTOENCODER_INPUTS,
    hidden=AUTOENCODER_HIDDEN,
    starts_per_finder=starts_per_finder,
    critical_tol=CRITICAL_TOL,
    index_eig_tol=INDEX_EIG_TOL,
    flat_tol=FLAT_TOL,
    depths={},
  )
  arrays = {}
  with jax.enable_x64(True):
    cov = autoencoder_covariance()
    loss = landscape.autoencoder_loss(cov)
    for depth in AUTOENCODER_DEPTHS:
      dims = (AUTOENCODER_INPUTS,) + (AUTOENCODER_HIDDEN,) * (depth - 1) + (AUTOENCODER_INPUTS,)
      points = landscape.autoencoder_critical_points(cov, AUTOENCODER_HIDDEN, depth)
      starts = _starts(dims, starts_per_finder, seed=depth)
      sizes = points.components.sum(axis=1)
      per_depth = dict(
        analytic_points=len(points.loss),
        analytic_points_by_size=np.bincount(sizes).tolist(),
        analytic_minimum_loss=float(points.loss.min()),
        finders={},
      )
      arrays[depth] = dict(analytic_index=points.index, analytic_loss=points.loss, finders={})
      for name, (finder, settings) in _finders(quick).items():
        search = jax.vmap(
          lambda ws, finder=finder, settings=settings: finder(ws, loss, **settings)
        )(starts)
        found = landscape.classify(search.point, loss, grad_tol=CRITICAL_TOL, eig_tol=INDEX_EIG_TOL)
        flatness = landscape.gradient_flatness(
          search.point, loss, flat_tol=FLAT_TOL, grad_tol=CRITICAL_TOL
        )
        nearest, distance = _nearest_analytic(points, search.point)
        critical = np.asarray(found.squared_grad_norm) < CRITICAL_TOL
        flat = np.asarray(flatness.gradient_flat)
        loss_error = np.abs(np.asarray(found.loss) - points.loss[nearest])
        index_error = np.asarray(found.num_negative) - points.num_negative[nearest]
        verdicts = {
          v: int(np.sum(found.verdict[critical] == v)) for v in np.unique(found.verdict[critical])
        }
        per_depth["finders"][name] = dict(
          settings=settings,
          critical_fraction=float(critical.mean()),
          gradient_flat_fraction=float(flat.mean()),
          other_fraction=float(np.mean(~critical & ~flat)),
          critical_max_end_to_end_distance=float(distance[critical].max())
          if critical.any()
          else None,
          critical_max_loss_error=float(loss_error[critical].max()) if critical.any() else None,
          critical_index_match_fraction=float(np.mean(index_error[critical] == 0))
          if critical.any()
          else None,
          critical_index_errors=index_error[critical].tolist(),
          critical_found_by_size=np.bincount(
            sizes[nearest[critical]], minlength=AUTOENCODER_HIDDEN + 1
          ).tolist(),
          critical_found_global_minimum=int(np.sum(nearest[critical] == np.argmin(points.loss))),
          critical_verdicts=verdicts,
          final_squared_grad_norm_median=float(np.median(np.asarray(found.squared_grad_norm))),
          not_critical_flatness_ratios=np.asarray(flatness.ratio)[~critical].tolist(),
        )
        arrays[depth]["finders"][name] = dict(
          critical=critical,
          index=np.asarray(found.index),
          loss=np.asarray(found.loss),
          squared_grad_norm_history=np.asarray(search.squared_grad_norm),
        )
      numbers["depths"][str(depth)] = per_depth
  return dict(numbers=numbers, arrays=arrays)


def critical_points_figure(data: dict):
  """Per depth: loss vs index (analytic and found), outcome fractions, squared gradient norm
  histories."""
  plt = pyplot()
  arrays, numbers = data["arrays"], data["numbers"]
  depths = sorted(arrays)
  colors = dict(
    zip(next(iter(arrays.values()))["finders"], ("tab:blue", "tab:orange", "tab:green"))
  )
  fig, axes = plt.subplots(
    len(depths), 3, figsize=(13, 4 * len(depths)), constrained_layout=True, squeeze=False
  )
  for row, depth in zip(axes, depths):
    a = arrays[depth]
    ax = row[0]
    ax.scatter(
      a["analytic_index"],
      a["analytic_loss"],
      s=30,
      facecolors="none",
      edgecolors="0.6",
      label="analytic critical points",
    )
    for offset, (name, f) in zip((-0.004, 0.0, 0.004), a["finders"].items()):
      ax.scatter(
        f["index"][f["critical"]] + offset,
        f["loss"][f["critical"]],
        s=10,
        color=colors[name],
        label=name,
      )
    ax.set(
      xlabel="index (fraction of eigenvalues < -1e-5)",
      ylabel="loss",
      title=f"depth {depth}: critical points found (||g||^2 < 1e-10)",
    )
    ax.legend(fontsize="small")
    ax = row[1]
    names = list(a["finders"])
    stats = numbers["depths"][str(depth)]["finders"]
    bottom = np.zeros(len(names))
    for key, label, color in (
      ("critical_fraction", "critical", "tab:green"),
      ("gradient_flat_fraction", f"gradient-flat (r < {FLAT_TOL:g})", "tab:red"),
      ("other_fraction", "not converged", "0.7"),
    ):
      heights = np.array([stats[n][key] for n in names])
      ax.bar(names, heights, bottom=bottom, color=color, label=label)
      bottom += heights
    ax.set(
      xlabel="finder",
      ylabel="fraction of starts",
      title=f"depth {depth}: where the finders end",
      ylim=(0, 1),
    )
    ax.legend(fontsize="small")
    ax = row[2]
    for name, f in a["finders"].items():
      history = f["squared_grad_norm_history"]
      ax.loglog(
        np.arange(1, history.shape[1] + 1),
        np.median(history, axis=0),
        color=colors[name],
        label=name,
      )
    ax.axhline(CRITICAL_TOL, color="k", ls="--", lw=0.8)
    ax.set(
      xlabel="iteration + 1", ylabel=r"median $\|\nabla L\|^2$", title=f"depth {depth}: convergence"
    )
    ax.legend(fontsize="small")
  fig.suptitle(
    f"Critical points of a deep linear autoencoder (n = {AUTOENCODER_INPUTS}, hidden "
    f"{AUTOENCODER_HIDDEN}; Frye et al. 2019): finders vs the analytic set"
  )
  return fig


def run_critical_points(
  quick: bool = False, out_dir="out/critical-points", *, pdf: bool = False
) -> dict:
  """The ``critical-points`` study: writes ``critical-points.png`` (and ``.pdf`` with ``pdf=True``)
  and ``critical-points.json`` into ``out_dir``; returns the numbers with ``files`` and
  ``seconds``."""
  return _run("critical-points", critical_points_data, critical_points_figure, quick, out_dir, pdf)


# ----------------------------------------------------------------------------- saddles


def _escape_step(trajectory, threshold: float):
  """The first recorded step with loss <= threshold, or None."""
  below = np.nonzero(np.asarray(trajectory.loss) <= threshold)[0]
  return int(np.asarray(trajectory.step)[below[0]]) if below.size else None


def _spectrum_along(weights, loss, *, steps: int, chunks: int):
  """Hessian eigenvalues every ``steps // chunks`` GD steps: (steps (C+1,), eigenvalues (C+1, P),
  loss (C+1,))."""
  chunk = steps // chunks
  spectra, values = [], []
  for k in range(chunks + 1):
    if k:
      weights = gradient_descent(weights, loss, lr=SADDLE_LR, steps=chunk, record_every=chunk).final
    spectra.append(np.linalg.eigvalsh(np.asarray(landscape.hessian(weights, loss))))
    values.append(float(loss(end_to_end(weights))))
  return np.arange(chunks + 1) * chunk, np.stack(spectra), np.asarray(values)


def saddles_data(quick: bool) -> dict:
  """Run the saddles study; returns ``{"numbers": JSON-able dict, "arrays": for the figure}``."""
  steps, record_every, seeds = (3000, 10, 3) if quick else (20000, 10, 8)
  spectrum_steps, spectrum_chunks = (1000, 40) if quick else (8000, 160)
  numbers = dict(
    quick=quick,
    target_singular_values=np.diag(SADDLE_TARGET).tolist(),
    steps=steps,
    seeds=seeds,
    lr=SADDLE_LR,
    init_std=SADDLE_INIT_STD,
    escape_fraction=ESCAPE_FRACTION,
    perturbed_gd=dict(radius=PGD_RADIUS, grad_threshold=PGD_GRAD_THRESHOLD, wait=PGD_WAIT),
    saddle_free_newton=dict(lr=SFN_LR, damping=SFN_DAMPING),
    depths={},
  )
  arrays = {}
  with jax.enable_x64(True):
    loss = losses.target(SADDLE_TARGET)
    origin_loss = 0.5 * float(np.sum(SADDLE_TARGET**2))
    perturbed = landscape.perturbed_gradient_descent(
      SADDLE_LR, radius=PGD_RADIUS, grad_threshold=PGD_GRAD_THRESHOLD, wait=PGD_WAIT
    )
    optimizers = {
      "GD": optax.sgd(SADDLE_LR),
      "perturbed GD": perturbed,
      "saddle-free Newton": landscape.saddle_free_newton(SFN_LR, damping=SFN_DAMPING),
    }
    for depth in SADDLE_DEPTHS:
      dims = (SADDLE_TARGET.shape[0],) * (depth + 1)
      origin = tuple(jnp.zeros((d, d)) for d in dims[1:])
      per_depth, curves = {}, {}
      for name, optimizer in optimizers.items():
        runs = [
          train(
            init.gaussian(jax.random.PRNGKey(seed), dims, std=SADDLE_INIT_STD),
            loss,
            optimizer,
            steps=steps,
            record_every=record_every,
          )
          for seed in range(seeds)
        ]
        escapes = [_escape_step(run, ESCAPE_FRACTION * origin_loss) for run in runs]
        escaped = [e for e in escapes if e is not None]
        per_depth[name] = dict(
          escape_steps=escapes,
          escaped_fraction=len(escaped) / seeds,
          median_escape_step=float(np.median(escaped)) if escaped else None,
          final_loss_median=float(np.median([float(run.loss[-1]) for run in runs])),
        )
        curves[name] = (np.asarray(runs[0].step), np.stack([np.asarray(run.loss) for run in runs]))
      # The escaping trajectory: perturbed GD's first move from the exact origin (the gradient is 0
      # there, so it perturbs uniformly in the ball), then plain GD.
      start = train(origin, loss, perturbed, steps=1, record_every=1).final
      spectrum_step, spectrum, spectrum_loss = _spectrum_along(
        start, loss, steps=spectrum_steps, chunks=spectrum_chunks
      )
      numbers["depths"][str(depth)] = dict(
        optimizers=per_depth,
        hessian_at_origin_extremes=[
          float(x) for x in np.linalg.eigvalsh(np.asarray(landscape.hessian(origin, loss)))[[0, -1]]
        ],
        spectrum_start_min_eigenvalue=float(spectrum[0, 0]),
        spectrum_most_negative_eigenvalue=float(spectrum[:, 0].min()),
        spectrum_end_min_eigenvalue=float(spectrum[-1, 0]),
        spectrum_end_sharpness=float(spectrum[-1, -1]),
        spectrum_end_loss=float(spectrum_loss[-1]),
        two_over_lr=2 / SADDLE_LR,
      )
      arrays[depth] = dict(
        curves=curves, spectrum_step=spectrum_step, spectrum=spectrum, spectrum_loss=spectrum_loss
      )
  return dict(numbers=numbers, arrays=arrays)


def saddles_figure(data: dict):
  """Per depth: loss vs step for each optimizer, and the Hessian spectrum along an escaping
  trajectory."""
  plt = pyplot()
  arrays = data["arrays"]
  depths = sorted(arrays)
  colors = ("tab:blue", "tab:orange", "tab:green")
  fig, axes = plt.subplots(
    len(depths), 3, figsize=(15, 4 * len(depths)), constrained_layout=True, squeeze=False
  )
  for row, depth in zip(axes, depths):
    a = arrays[depth]
    ax = row[0]
    for color, (name, (step, curves)) in zip(colors, a["curves"].items()):
      for k, curve in enumerate(curves):
        ax.loglog(step + 1, curve, color=color, lw=1.0, alpha=0.7, label=name if k == 0 else None)
    ax.axhline(
      ESCAPE_FRACTION * 0.5 * float(np.sum(SADDLE_TARGET**2)),
      color="k",
      ls=":",
      lw=0.8,
      label="escape threshold",
    )
    kind = "strict" if depth == 2 else "non-strict"
    ax.set(
      xlabel="step + 1",
      ylabel="loss",
      title=f"depth {depth}: escape from the origin ({kind} saddle)",
    )
    ax.legend(fontsize="small")
    ax = row[1]
    ax.plot(a["spectrum_step"], a["spectrum"], color="0.5", lw=0.7)
    ax.plot(
      a["spectrum_step"], a["spectrum"][:, 0], color="tab:red", lw=1.5, label="smallest eigenvalue"
    )
    ax.plot(
      a["spectrum_step"],
      a["spectrum"][:, -1],
      color="tab:blue",
      lw=1.5,
      label="largest (sharpness)",
    )
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set(
      xlabel="step",
      ylabel="Hessian eigenvalue",
      title=f"depth {depth}: spectrum after one perturbation (r = {PGD_RADIUS}), then GD",
    )
    ax.legend(fontsize="small", loc="center right")
    ax = row[2]
    ax.semilogy(a["spectrum_step"], a["spectrum_loss"], color="k")
    ax.set(xlabel="step", ylabel="loss", title=f"depth {depth}: loss along that trajectory")
  fig.suptitle(
    "Escaping the origin of 1/2 ||W - Phi||^2: GD, perturbed GD (Jin et al. 2017), "
    "saddle-free Newton (Dauphin et al. 2014)"
  )
  return fig


def run_saddles(quick: bool = False, out_dir="out/saddles", *, pdf: bool = False) -> dict:
  """The ``saddles`` study: writes ``saddles.png`` (and ``.pdf`` with ``pdf=True``) and
  ``saddles.json`` into ``out_dir``; returns the numbers with ``files`` and ``seconds``."""
  return _run("saddles", saddles_data, saddles_figure, quick, out_dir, pdf)

r"""Wadia et al. 2021: whitening and second-order optimization erase what a model can learn from
its inputs; early stopping on held-out loss.

Teacher-student regression (:func:`teacher_data`): inputs :math:`x \sim \mathcal N(0, \Sigma)` in
:math:`d_0 = 32` dimensions, :math:`\Sigma = U \mathrm{diag}(k^{-1.5}) U^\top` (a random basis
:math:`U`, condition number 181), a scalar teacher :math:`y = \phi^\top x + \sigma\varepsilon`,
:math:`\phi` random and scaled so that :math:`\phi^\top \Sigma \phi = 1`. Loss
:func:`lintraj.losses.regression`, :math:`\frac{1}{2n}\|W X^\top - Y^\top\|^2`, held-out loss the
same on the test points (``validation=``). Test losses are reported **relative**: the test loss
over :math:`\frac{1}{2 n_t}\|Y_t\|^2`, the loss of predicting 0 (about 1: 0 is the label mean).
Three input transforms (:func:`transformed`): ``raw``; ``train``, PCA whitening
(:func:`lintraj.fit_whitening`, centred) fitted on the training inputs and applied to both sets;
``all``, fitted on train and test together. Whitened inputs have fewer than :math:`d_0` columns
when fewer points span them; they are padded with zero columns to :math:`d_0`, which changes no
prediction (zero inputs meet weights that get no gradient). Networks: the linear model
(:math:`N = 1`) from zero, and depths 2-4 of width 32 from small balanced inits (end-to-end std
0.01, a law invariant under :math:`W \to WQ`). GD with a learning rate per lane
:math:`0.5 / (N \lambda_{\max} s^{2-2/N})`, :math:`\lambda_{\max}` the top eigenvalue of the
training inputs' second moment and :math:`s` the norm of the least-squares end-to-end matrix.
Precision **float64**; **8 seeds** as lanes (3 in quick mode): a lane draws its own data (and
init); the teacher and :math:`\Sigma` are fixed by ``seed``.

Parts (keys of the results):

- ``sweep``: relative test loss at the end of 2000 steps and at its best record, against
  :math:`n_{\rm train} = 4 \dots 256` (:math:`n_t = 16`, :math:`\sigma = 0.1`), per transform and
  depth.
- ``high_dim``: :math:`n_{\rm train} = n_t = 16`, :math:`n_{\rm train} + n_t = d_0`, whitening
  fitted on all 32 points. Uncentred (:func:`uncentred_whitening`): the whitened points are
  orthogonal, :math:`XX^\top = 32 I`, and the linear model's test predictions stay 0 at every
  step. Centred (``lt.fit_whitening``): :math:`XX^\top = N I - \mathbf 1 \mathbf 1^\top`
  (:math:`N = 32`), so the linear model's weights :math:`W = a^\top X_{\rm train}` predict
  :math:`-S = -\sum_i a_i` at every test point; GD moves :math:`a \leftarrow a - \frac{\eta}{n}
  (K a - y)`, :math:`K = N I - \mathbf 1 \mathbf 1^\top`, so :math:`S_{k+1} = S_k -
  \frac{\eta}{n}((N - n) S_k - n \bar y)`: :math:`S_k = \frac{n \bar y}{N - n}\,(1 - (1 -
  \eta (N-n)/n)^k)` (:func:`common_shift`) [D]. The common shift is a function of the training
  labels' mean :math:`\bar y` alone, and at convergence it is :math:`-\frac{n}{N-n}\bar y`, not
  :math:`\bar y`: the sign is the opposite one. Deep networks: test predictions recorded along the
  run (``metrics=``), their spread across test points and their correlation with the test
  labels.
- ``newton``: Newton's method (:func:`lintraj.second_order.damped_newton`, damping 0,
  :math:`\eta = 0.5`) on raw inputs (:math:`n = 64 > d_0`) and GD at :math:`\eta = 0.5` on the
  same inputs whitened by the training second moment (uncentred), test predictions along both;
  and damped Newton, :math:`\eta = 1`, :math:`\lambda \in \{0, 10^{-4}, \dots, 10\}`, on
  :math:`n = 48`, :math:`\sigma = 0.5` for 200 steps: training and test loss at the end, and the
  steps to 99% of the possible decrease of the training loss, against :math:`\lambda`.
- ``digits``: scikit-learn's handwritten digits (1797 images of 8x8 pixels, shipped inside the
  package), pixels / 16, one-hot labels (10 outputs), the linear model; :math:`n_t = 16` test
  images and :math:`n_{\rm train} \in \{16, 32, 128, 512\}`; test accuracy (argmax) and relative
  test loss. Needs scikit-learn (``pip install 'lintraj[data]'``); without it this part is
  skipped with a message and the figure says so.
- ``early_stopping``: raw inputs, linear model, :math:`n_{\rm train} = d_0 = 32` (the
  interpolation threshold), :math:`\sigma = 0.5`, 256 held-out points, 20000 GD steps recorded
  every 20: training loss, held-out loss and the best record; a second run with
  ``patience=25`` stops on it.

Measured in the default run (``lintraj reproduce whitening-generalization``, float64, 8 seeds,
seed 0; 273-428 s on 2 CPU cores shared with other jobs, 133-151 s of CPU time; every number is in
``whitening-generalization.json``, the sweep's means in ``whitening-generalization-sweep.csv``):

- **High-dimensional case, exactly as derived.** Uncentred: every test prediction is 0.0 at every
  record of every seed, while the training loss reaches 0. Centred: the test predictions differ
  across test points by at most 3e-12 and follow :func:`common_shift` to 7e-13; relative test
  loss 1.16 (1.00-1.58), worse than predicting 0 because the shift has the opposite sign to the
  training labels' mean. Depths 2 / 3 / 4: relative test loss 1.29 / 1.23 / 1.33 after training
  (0.96-1.02 at the best record), correlation of the predictions with the test labels -0.19 /
  0.02 / 0.04 on average (single seeds -0.58 to 0.55); raw inputs of the same sizes: 0.11.
- **Whitened on the training set only**, every depth converges to the test predictions of
  minimum-norm least squares on the centred raw inputs (to 2.4e-11 relative, at every
  :math:`n_{\rm train}`): 0.76 / 0.21 / 0.15 / 0.078 / 0.016 at :math:`n_{\rm train}` = 4 / 16 /
  32 / 64 / 256, against raw GD's 0.49 / 0.11 / 0.05 / 0.018 / 0.009 (depth 1). Most of the gap
  below :math:`n = 128` is the centring (the model has no intercept: uncentred least squares
  gives 0.108 at 16 and 0.018 at 64); at :math:`n_{\rm train} = d_0` it is GD's path (raw least
  squares: 5.4).
- **Whitened on train + test** the loss stays near 1 up to :math:`n_{\rm train} = 16`
  (:math:`N \le d_0 + 1`) and falls after: best record 0.77 / 0.35 / 0.22 / 0.13 / 0.019 at
  :math:`n_{\rm train}` = 24 / 32 / 48 / 64 / 128.
- **Newton** equals GD on whitened inputs to 1.8e-14 (and the closed form
  :math:`(1 - (1 - \eta)^k)\, x_t^\top w^*` to 6e-15). **Damping** from 0 to 10: test loss after
  200 steps 0.65 / 0.65 / 0.56 / 0.37 / 0.32 (:math:`\lambda` = 0 / 0.01 / 0.1 / 1 / 10), training
  loss 0.055 to 0.155, median steps to 99% of the training decrease 1 / 6 / 50 / >200 / >200.
- **Digits**: whitened on all 32 / 48 images, every test image gets the same outputs (to 3e-13),
  accuracy 9% / 7% against 55% / 66% (raw) and 56% / 52% (whitened on train); at 128 and 512
  training images 77-94% for all three, with whitening on all giving a mean relative test loss
  of 71 and 311 (low-variance pixels amplified).
- **Early stopping**: best record at steps 40-160 (held-out loss 0.16-0.23, the noise level is
  0.125), 0.54-1.82 after 20000 steps; ``patience=25`` stops at steps 540-660 and keeps the best
  record (same step and weights).

The findings are recorded in docs/theory.md, "Generalization".
"""

from __future__ import annotations

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from lintraj import init, losses
from lintraj.dynamics import gradient_descent, train
from lintraj.network import end_to_end
from lintraj.reproductions.output import pyplot, write_outputs
from lintraj.second_order import damped_newton
from lintraj.sweep import batch_gradient_descent, batch_train, stack
from lintraj.whitening import fit_whitening

__all__ = [
  "run",
  "protocol",
  "teacher_data",
  "transformed",
  "uncentred_whitening",
  "common_shift",
  "load_digits",
]

NAME = "whitening-generalization"
TRANSFORMS = ("raw", "train", "all")
_ZERO_DAMPING = 1e-5  # where the figure puts lambda = 0 on its log axis


def protocol(quick: bool) -> dict:
  """The settings of a run (quick: fewer seeds, sizes, depths and steps; the same problems).

  Example:
    >>> protocol(quick=True)["n_train"], protocol(quick=False)["depths"]
    ((16, 64), (1, 2, 3, 4))
  """
  return dict(
    d0=32,
    decay=1.5,
    noise=0.1,
    n_test=16,
    n_train=(16, 64) if quick else (4, 8, 16, 24, 32, 48, 64, 128, 256),
    depths=(1,) if quick else (1, 2, 3, 4),
    init_std=1e-2,
    steps=1000 if quick else 2000,
    record_every=20,
    seeds=3 if quick else 8,
    high_dim_depths=(1, 3) if quick else (1, 2, 3, 4),
    newton_n=64,
    newton_lr=0.5,
    newton_steps=30,
    damping_n=48,
    damping_noise=0.5,
    dampings=(0.0, 1e-3, 1e-1, 10.0) if quick else (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
    damping_steps=200,
    digits_n_train=(16,) if quick else (16, 32, 128, 512),
    early_noise=0.5,
    early_n_val=256,
    early_steps=5000 if quick else 20000,
    early_patience=25,
  )


def _problem(p: dict, seed: int):
  """The input covariance's basis and spectrum and the teacher, fixed by ``seed``."""
  rng = np.random.default_rng([seed, 0])
  basis = np.linalg.qr(rng.standard_normal((p["d0"], p["d0"])))[0]
  spectrum = np.arange(1, p["d0"] + 1, dtype=np.float64) ** -p["decay"]
  teacher = rng.standard_normal(p["d0"])
  teacher /= np.sqrt(teacher @ basis @ np.diag(spectrum) @ basis.T @ teacher)
  return basis, spectrum, teacher


def teacher_data(p: dict, seed: int, lane: int, n: int, noise: float):
  r"""``n`` teacher-student examples of lane ``lane``: ``(x, y)``, ``x`` (n, d0) with rows
  :math:`\mathcal N(0, \Sigma)`, ``y`` (n, 1) :math:`= x\phi + \mathrm{noise}\,\varepsilon`
  (float64 NumPy; :math:`\Sigma` and :math:`\phi` depend on ``seed`` only, the draws on
  ``(seed, lane, n)``).

  Example:
    >>> p = protocol(quick=True)
    >>> x, y = teacher_data(p, 0, 0, 20000, 0.0)
    >>> x.shape, round(float(np.mean(y**2)), 1)   # the teacher's label variance is 1
    ((20000, 32), 1.0)
  """
  basis, spectrum, teacher = _problem(p, seed)
  rng = np.random.default_rng([seed, 1, lane, n])
  x = (rng.standard_normal((n, p["d0"])) * np.sqrt(spectrum)) @ basis.T
  y = x @ teacher[:, None] + noise * rng.standard_normal((n, 1))
  return x, y


def uncentred_whitening(x):
  r"""PCA whitening of the second moment :math:`\frac1m X^\top X` (no centring): the
  :class:`lintraj.whitening.Whitening` that :func:`lintraj.fit_whitening` fits on the rows and
  their mirror images :math:`\pm x_i` (whose mean is 0 and covariance :math:`\frac1m X^\top X`),
  with its mean set to exactly 0.

  Example:
    >>> x = np.array([[1.0, 1.0], [1.0, 3.0], [2.0, 0.0]])
    >>> xw = uncentred_whitening(x)(x)
    >>> np.allclose(np.asarray(xw).T @ np.asarray(xw) / 3, np.eye(2), atol=1e-5)
    True
  """
  fit = fit_whitening(np.concatenate([x, -x]))
  return fit._replace(mean=jnp.zeros_like(fit.mean))


def transformed(kind: str, x_train, x_test, width: int | None = None):
  r"""``(x_train, x_test)`` after the input transform ``kind``: ``"raw"`` (unchanged), ``"train"``
  (PCA whitening fitted on ``x_train``), ``"all"`` (fitted on both), ``"uncentred"`` (fitted on
  both without centring, :func:`uncentred_whitening`); padded with zero columns to ``width``.

  Example:
    >>> x = np.random.default_rng(0).standard_normal((10, 6))
    >>> a, b = transformed("all", x[:4], x[4:])
    >>> both = np.concatenate([a, b])
    >>> a.shape, np.allclose(both.T @ both / 10, np.eye(6), atol=1e-5)
    ((4, 6), True)
  """
  both = np.concatenate([x_train, x_test])
  fits = {
    "train": lambda: fit_whitening(x_train),
    "all": lambda: fit_whitening(both),
    "uncentred": lambda: uncentred_whitening(both),
  }
  if kind == "raw":
    a, b = x_train, x_test
  else:
    fit = fits[kind]()
    a, b = np.asarray(fit(x_train)), np.asarray(fit(x_test))
  if width is not None and a.shape[1] < width:
    pad = ((0, 0), (0, width - a.shape[1]))
    a, b = np.pad(a, pad), np.pad(b, pad)
  return a, b


def common_shift(y_mean: float, n_train: int, n_total: int, lr: float, steps):
  r"""The test prediction of the linear model from zero after ``steps`` GD steps on inputs
  PCA-whitened (centred) on all :math:`N` points, :math:`N - 1 \le d_0`: the same at every test
  point, :math:`-S_k`, :math:`S_k = \frac{n \bar y}{N - n}\,(1 - (1 - \eta (N - n)/n)^k)` (see the
  module docstring).

  Example:
    >>> float(common_shift(1.0, 16, 32, 0.25, 10**6))   # converged: -n ybar / (N - n)
    -1.0
  """
  rate = lr * (n_total - n_train) / n_train
  steps = np.asarray(steps, np.float64)
  return -n_train * y_mean / (n_total - n_train) * (1 - (1 - rate) ** steps)


def _dims(p: dict, depth: int, d_in: int, d_out: int = 1) -> tuple:
  return (d_in,) + (p["d0"],) * (depth - 1) + (d_out,)


def _lr(x, y, depth: int, scale: float = 0.5) -> float:
  """``scale / (N lambda_max s^(2 - 2/N))`` for inputs ``x``, labels ``y`` and depth ``N``."""
  top = np.linalg.eigvalsh(x.T @ x / len(x))[-1]
  s = np.linalg.norm(np.linalg.lstsq(x, y, rcond=None)[0])
  return scale / (depth * top * s ** (2 - 2 / depth))


def _starts(p: dict, seed: int, depth: int, dims: tuple, lanes: int):
  if depth == 1:
    return (np.zeros((lanes, dims[1], dims[0])),)
  keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), depth), lanes)
  return stack([init.balanced(k, dims, std=p["init_std"], dtype=jnp.float64) for k in keys])


def _relative(loss_value, y_test) -> np.ndarray:
  """Test loss over the loss of predicting 0, ``(1/(2 n_t)) ||Y_t||^2``."""
  return np.asarray(loss_value) / (0.5 * np.mean(np.sum(np.asarray(y_test) ** 2, axis=-1)))


def _predictions(x_tests):
  """A metric: the end-to-end matrix's predictions on every lane's test inputs, ``(n_t, lanes)``
  flattened to ``(lanes * n_t * d_N,)``; lane ``b`` reads its own block (``_own``)."""
  stacked = jnp.asarray(np.concatenate(x_tests))
  return lambda ws: (end_to_end(ws) @ stacked.T).T.reshape(-1)


def _own(traj, lanes: int, n_test: int) -> np.ndarray:
  """``(lanes, T, n_t, d_N)``: each lane's predictions on its own test inputs."""
  got = np.asarray(traj.metrics["predictions"])
  got = got.reshape(lanes, got.shape[1], lanes, n_test, -1)
  return np.stack([got[b, :, b] for b in range(lanes)])


def _gd(p, seed, depth, data, steps, record_every, *, width, metrics=None, **kwargs):
  """One batched GD call: a lane per ``(x_train, y_train, x_test, y_test)`` of ``data``."""
  lanes = len(data)
  dims = _dims(p, depth, width, data[0][1].shape[1])
  return batch_gradient_descent(
    _starts(p, seed, depth, dims, lanes),
    [losses.regression(a, y) for a, y, _, _ in data],
    lr=np.array([_lr(a, y, depth) for a, y, _, _ in data]),
    steps=steps,
    record_every=record_every,
    validation=[losses.regression(b, t) for _, _, b, t in data],
    metrics=metrics,
    **kwargs,
  )


def _sweep(p, seed, progress):
  out = {}
  for n in p["n_train"]:
    raw = [teacher_data(p, seed, b, n + p["n_test"], p["noise"]) for b in range(p["seeds"])]
    data = []
    for kind in TRANSFORMS:
      for x, y in raw:
        a, b = transformed(kind, x[:n], x[n:], p["d0"])
        data.append((a, y[:n], b, y[n:]))
    centred = np.array([_least_squares(x, y, n, centre=True) for x, y in raw])
    plain = np.array([_least_squares(x, y, n, centre=False) for x, y in raw])
    for depth in p["depths"]:
      traj = _gd(
        p, seed, depth, data, p["steps"], p["record_every"], width=p["d0"], progress=progress
      )
      rel = np.stack([_relative(traj.validation_loss[i], data[i][3]) for i in range(len(data))])
      rel = rel.reshape(len(TRANSFORMS), p["seeds"], -1)
      for k, kind in enumerate(TRANSFORMS):
        out[f"{kind}/N={depth}/n={n}"] = dict(
          n_train=n,
          depth=depth,
          transform=kind,
          step=np.asarray(traj.step[0]),
          relative_test_loss=rel[k],
          final=rel[k, :, -1],
          best=rel[k].min(axis=1),
          final_train_loss=np.asarray(traj.loss).reshape(len(TRANSFORMS), p["seeds"], -1)[k, :, -1],
          least_squares=plain,
          centred_least_squares=centred,
        )
  return out


def _least_squares(x, y, n: int, centre: bool) -> float:
  r"""Relative test loss of the minimum-norm least-squares fit (NumPy) on the training inputs,
  centred by their mean :math:`\mu` or not: :math:`w = (X - \mu)^+ y`, predictions
  :math:`(x_t - \mu) w` (the limits of GD from zero on whitened and raw inputs)."""
  mean = x[:n].mean(axis=0) if centre else np.zeros(x.shape[1])
  w = np.linalg.lstsq(x[:n] - mean, y[:n], rcond=None)[0]
  return float(_relative(0.5 * np.mean((((x[n:] - mean) @ w) - y[n:]) ** 2), y[n:]))


def _correlation(pred, labels) -> float:
  """Pearson correlation across test points (NaN when the predictions do not vary)."""
  pred, labels = np.ravel(pred), np.ravel(labels)
  if np.std(pred) <= 1e-12 * max(1.0, np.abs(pred).max()):
    return float("nan")
  return float(np.corrcoef(pred, labels)[0, 1])


def _high_dim(p, seed, progress):
  n, n_test = p["n_test"], p["n_test"]
  total = n + n_test
  raw = [teacher_data(p, seed, b, total, p["noise"]) for b in range(p["seeds"])]
  out = {}
  for kind in ("uncentred", "all"):
    data = []
    for x, y in raw:
      a, b = transformed(kind, x[:n], x[n:])
      data.append((a, y[:n], b, y[n:]))
    gram = [np.concatenate([a, b]) @ np.concatenate([a, b]).T for a, _, b, _ in data]
    for depth in p["high_dim_depths"] if kind == "all" else (1,):
      metrics = {"predictions": _predictions([b for _, _, b, _ in data])}
      traj = _gd(
        p,
        seed,
        depth,
        data,
        p["steps"],
        p["record_every"],
        width=data[0][0].shape[1],
        metrics=metrics,
        progress=progress,
      )
      pred = _own(traj, len(data), n_test)[..., 0]  # (lanes, T, n_t)
      labels = np.stack([t[:, 0] for _, _, _, t in data])
      train_mean = np.array([y.mean() for _, y, _, _ in data])
      lrs = np.array([_lr(a, y, depth) for a, y, _, _ in data])
      rel = np.stack([_relative(traj.validation_loss[i], data[i][3]) for i in range(len(data))])
      final = pred[:, -1]
      out[f"{kind}/N={depth}"] = dict(
        transform=kind,
        depth=depth,
        columns=data[0][0].shape[1],
        step=np.asarray(traj.step[0]),
        lr=lrs,
        predictions=pred,
        test_labels=labels,
        train_label_mean=train_mean,
        gram_error=np.array(
          [np.abs(g - (total * np.eye(total) - (kind == "all"))).max() for g in gram]
        ),
        max_abs_prediction=np.abs(pred).max(axis=(1, 2)),
        spread=(pred.max(axis=2) - pred.min(axis=2)).max(axis=1),
        final_spread=final.std(axis=1),
        final_mean=final.mean(axis=1),
        correlation=np.array([_correlation(final[b], labels[b]) for b in range(len(data))]),
        relative_test_loss=rel[:, -1],
        best_relative_test_loss=rel.min(axis=1),
        final_train_loss=np.asarray(traj.loss)[:, -1],
        shift_predicted=np.stack(
          [common_shift(train_mean[b], n, total, lrs[b], traj.step[0]) for b in range(len(data))]
        ),
      )
  # The best a predictor that ignores the test input can do, per lane: the test labels' mean.
  labels = np.stack([y[n:, 0] for _, y in raw])
  out["constant_oracle"] = _relative(0.5 * labels.var(axis=1), labels[:, :, None])
  return out


def _newton(p, seed, progress):
  n = p["newton_n"]
  x, y = teacher_data(p, seed, 0, n + p["n_test"], p["noise"])
  x_tr, y_tr, x_te = x[:n], y[:n], x[n:]
  fit = uncentred_whitening(x_tr)
  xw_tr, xw_te = np.asarray(fit(x_tr)), np.asarray(fit(x_te))
  kwargs = dict(steps=p["newton_steps"], record_every=1)
  eta = p["newton_lr"]
  newton = train(
    (np.zeros((1, p["d0"])),),
    losses.regression(x_tr, y_tr),
    damped_newton(eta, 0.0),
    metrics={"predictions": _predictions([x_te])},
    **kwargs,
  )
  white = gradient_descent(
    (np.zeros((1, xw_tr.shape[1])),),
    losses.regression(xw_tr, y_tr),
    lr=eta,
    metrics={"predictions": _predictions([xw_te])},
    **kwargs,
  )
  plain = gradient_descent(
    (np.zeros((1, p["d0"])),),
    losses.regression(x_tr, y_tr),
    lr=eta * _lr(x_tr, y_tr, 1, 1.0),
    metrics={"predictions": _predictions([x_te])},
    **kwargs,
  )
  least_squares = np.linalg.lstsq(x_tr, y_tr, rcond=None)[0][:, 0]
  steps = np.asarray(newton.step)
  out = dict(
    step=steps,
    newton=np.asarray(newton.metrics["predictions"]),
    whitened_gd=np.asarray(white.metrics["predictions"]),
    plain_gd=np.asarray(plain.metrics["predictions"]),
    closed_form=(1 - (1 - eta) ** steps)[:, None] * (x_te @ least_squares)[None, :],
  )
  out["max_difference"] = float(np.abs(out["newton"] - out["whitened_gd"]).max())
  out["max_difference_closed_form"] = float(np.abs(out["newton"] - out["closed_form"]).max())
  out["damping"] = _damping(p, seed, progress)
  return out


def _damping(p, seed, progress):
  n, lams = p["damping_n"], np.asarray(p["dampings"], np.float64)
  data = [teacher_data(p, seed, b, n + p["n_test"], p["damping_noise"]) for b in range(p["seeds"])]
  lanes = [(lam, x, y) for lam in lams for x, y in data]
  train_losses = [losses.regression(x[:n], y[:n]) for _, x, y in lanes]
  traj = batch_train(
    (np.zeros((len(lanes), 1, p["d0"])),),
    train_losses,
    damped_newton,
    hyperparams={"learning_rate": 1.0, "damping": np.array([lam for lam, _, _ in lanes])},
    steps=p["damping_steps"],
    record_every=1,
    validation=[losses.regression(x[n:], y[n:]) for _, x, y in lanes],
    progress=progress,
  )
  optimum = np.array([float(loss(loss.target)) for loss in train_losses])
  loss = np.asarray(traj.loss)
  excess = (loss - optimum[:, None]) / (loss[:, :1] - optimum[:, None])
  reached = excess <= 0.01
  to_99 = np.where(reached.any(1), reached.argmax(1), -1)
  rel = np.stack([_relative(traj.validation_loss[i], lanes[i][2][n:]) for i in range(len(lanes))])
  shape = (len(lams), p["seeds"])
  return dict(
    damping=lams,
    steps_to_99=to_99.reshape(shape),
    final_excess=excess[:, -1].reshape(shape),
    final_train_loss=loss[:, -1].reshape(shape),
    relative_train_loss=np.array(
      [_relative(loss[i, -1], lanes[i][2][:n]) for i in range(len(lanes))]
    ).reshape(shape),
    relative_test_loss=rel[:, -1].reshape(shape),
    best_relative_test_loss=rel.min(axis=1).reshape(shape),
  )


def load_digits():
  """scikit-learn's digits as ``(x, labels)``: (1797, 64) pixels / 16 and (1797,) ints, or None
  (with a warning naming the extra to install) when scikit-learn is not installed.

  Example:
    >>> got = load_digits()
    >>> got is None or got[0].shape == (1797, 64)
    True
  """
  try:
    from sklearn.datasets import load_digits as sklearn_digits
  except ImportError:
    warnings.warn(
      "scikit-learn is not installed, so the real-data part of whitening-generalization "
      "(scikit-learn's digits) is skipped; pip install 'lintraj[data]' to run it.",
      stacklevel=2,
    )
    return None
  x, labels = sklearn_digits(return_X_y=True)
  return x.astype(np.float64) / 16.0, labels


def _digits(p, seed, progress):
  got = load_digits()
  if got is None:
    return None
  x_all, labels_all = got
  out = {}
  for n in p["digits_n_train"]:
    data, accuracy_labels, kept = [], [], []
    raw = []
    for b in range(p["seeds"]):
      rng = np.random.default_rng([seed, 2, b, n])
      rows = rng.choice(len(x_all), n + p["n_test"], replace=False)
      x, labels = x_all[rows], labels_all[rows]
      raw.append((x, labels, np.eye(10)[labels]))
    for kind in TRANSFORMS:
      for x, labels, y in raw:
        a, b = transformed(kind, x[:n], x[n:], x.shape[1])
        data.append((a, y[:n], b, y[n:]))
        accuracy_labels.append(labels[n:])
        kept.append(fit_whitening(x).projection.shape[1])
    traj = _gd(
      p, seed, 1, data, p["steps"], p["record_every"], width=x_all.shape[1], progress=progress
    )
    final = np.asarray(traj.final[0])  # (lanes, 10, 64)
    pred = [data[i][2] @ final[i].T for i in range(len(data))]  # (n_t, 10) each
    accuracy = np.array(
      [np.mean(np.argmax(q, 1) == accuracy_labels[i]) for i, q in enumerate(pred)]
    )
    spread = np.array([np.abs(q - q.mean(axis=0)).max() for q in pred])
    rel = np.array([_relative(traj.validation_loss[i, -1], data[i][3]) for i in range(len(data))])
    shape = (len(TRANSFORMS), p["seeds"])
    for k, kind in enumerate(TRANSFORMS):
      out[f"{kind}/n={n}"] = dict(
        n_train=n,
        transform=kind,
        accuracy=accuracy.reshape(shape)[k],
        spread=spread.reshape(shape)[k],
        relative_test_loss=rel.reshape(shape)[k],
        high_dimensional=np.array(kept).reshape(shape)[k] == n + p["n_test"] - 1,
      )
  return out


def _early_stopping(p, seed, progress):
  n, d0 = p["d0"], p["d0"]
  data = []
  for b in range(p["seeds"]):
    x, y = teacher_data(p, seed, b, n + p["early_n_val"], p["early_noise"])
    data.append((x[:n], y[:n], x[n:], y[n:]))
  kwargs = dict(width=d0, progress=progress)
  full = _gd(p, seed, 1, data, p["early_steps"], p["record_every"], **kwargs)
  stopped = _gd(
    p, seed, 1, data, p["early_steps"], p["record_every"], patience=p["early_patience"], **kwargs
  )
  val = np.asarray(full.validation_loss)
  return dict(
    step=np.asarray(full.step[0]),
    train_loss=np.asarray(full.loss),
    validation_loss=val,
    best_step=np.asarray(full.best_step),
    best_validation=val.min(axis=1),
    final_validation=val[:, -1],
    patience_stopped_step=np.asarray(stopped.stopped_step),
    patience_best_step=np.asarray(stopped.best_step),
    patience_best_validation=np.array(
      [
        float(losses.regression(c, t)(np.asarray(stopped.best[0][b])))
        for b, (_, _, c, t) in enumerate(data)
      ]
    ),
    noise_floor=0.5 * p["early_noise"] ** 2,
  )


def run(
  quick: bool = False,
  out_dir=f"out/{NAME}",
  *,
  pdf: bool = False,
  seed: int = 0,
  progress: bool = False,
) -> dict:
  r"""Teacher-student regression with raw and whitened inputs, Newton's method, damped Newton,
  scikit-learn's digits and early stopping (see the module docstring for the protocol).

  Returns: ``sweep`` (keyed ``"{transform}/N={depth}/n={n_train}"``: ``relative_test_loss``
  (seeds x records), ``final``, ``best``), ``high_dim`` (keyed ``"{uncentred|all}/N={depth}"``:
  ``predictions`` (seeds x records x test points), ``spread``, ``max_abs_prediction``,
  ``shift_predicted``, ``correlation``, ``relative_test_loss``; and ``constant_oracle``),
  ``newton`` (the prediction curves, ``max_difference``; ``damping``: per damping x seed),
  ``digits`` (None without scikit-learn), ``early_stopping``, ``seconds_per_part``.

  Example:
    >>> protocol(quick=True)["d0"]
    32
    >>> import tempfile
    >>> res = run(quick=True, out_dir=tempfile.mkdtemp())  # doctest: +SKIP

  References:
    Wadia, Duckworth, Schoenholz, Dyer, Sohl-Dickstein. Whitening and second order optimization
    both make information in the dataset unusable during training, and can reduce or prevent
    generalization. ICML 2021 (arXiv 2008.07545), Sections 3-5.
  """
  start = time.perf_counter()
  p = protocol(quick)
  parts = dict(
    sweep=_sweep,
    high_dim=_high_dim,
    newton=_newton,
    digits=_digits,
    early_stopping=_early_stopping,
  )
  results = dict(name=NAME, quick=quick, protocol=p, seed=seed, precision="float64")
  seconds = {}
  with jax.enable_x64(True):
    for name, part in parts.items():
      began = time.perf_counter()
      results[name] = part(p, seed, progress)
      seconds[name] = round(time.perf_counter() - began, 2)
  results["seeds"] = p["seeds"]
  results["seconds_per_part"] = seconds
  if results["digits"] is None:
    results["digits_skipped"] = "scikit-learn is not installed (pip install 'lintraj[data]')"
  fig = _figure(p, results)
  results["seconds"] = round(time.perf_counter() - start, 2)
  return write_outputs(NAME, out_dir, fig, results, tables={"sweep": _table(results)}, pdf=pdf)


def _table(results) -> dict:
  rows = list(results["sweep"].values())
  return dict(
    transform=[r["transform"] for r in rows],
    depth=[r["depth"] for r in rows],
    n_train=[r["n_train"] for r in rows],
    mean_final_relative_test_loss=[float(np.mean(r["final"])) for r in rows],
    mean_best_relative_test_loss=[float(np.mean(r["best"])) for r in rows],
  )


def _figure(p, results):
  plt = pyplot()
  fig, axes = plt.subplots(2, 4, figsize=(22, 10), constrained_layout=True)
  colors = dict(raw="C0", train="C1", all="C2")
  names = dict(raw="raw", train="whitened on train", all="whitened on train + test")
  # (a) test loss vs n_train
  a = axes[0, 0]
  sweep = results["sweep"]
  for depth, style in zip(p["depths"], ("-", "--", ":", "-.")):
    for kind in TRANSFORMS:
      ns = p["n_train"]
      mean = [np.mean(sweep[f"{kind}/N={depth}/n={n}"]["final"]) for n in ns]
      a.semilogx(
        ns, mean, color=colors[kind], ls=style, marker="o", ms=3, label=f"{names[kind]}, N={depth}"
      )
  a.set_yscale("log")
  a.set_xticks(p["n_train"], [str(n) for n in p["n_train"]])
  a.minorticks_off()
  a.axvline(p["d0"], color="gray", lw=0.8)
  a.axvline(p["d0"] - p["n_test"], color="gray", lw=0.8, ls=":")
  a.set(
    xlabel="n_train (grey: d_0; dotted: n_train + n_test = d_0)",
    ylabel="relative test loss after training (mean over seeds)",
    title="(a) test loss vs training set size",
  )
  # (b) test loss along the trajectory at n_train = 16
  b = axes[0, 1]
  n_b = 16 if 16 in p["n_train"] else p["n_train"][0]
  for depth, style in zip(p["depths"], ("-", "--", ":", "-.")):
    for kind in TRANSFORMS:
      r = sweep[f"{kind}/N={depth}/n={n_b}"]
      b.semilogx(
        r["step"][1:],
        r["relative_test_loss"].mean(axis=0)[1:],
        color=colors[kind],
        ls=style,
        label=f"{names[kind]}, N={depth}",
      )
  b.set(
    xlabel="step",
    ylabel="relative test loss (mean over seeds)",
    title=f"(b) along the run, n_train = {n_b}, n_test = {p['n_test']}",
  )
  # (c) high-dimensional: test predictions of seed 0
  c = axes[0, 2]
  hd = results["high_dim"]
  lin, unc = hd["all/N=1"], hd["uncentred/N=1"]
  deep = hd[f"all/N={p['high_dim_depths'][-1]}"]
  c.plot(deep["step"], deep["predictions"][0], color="C7", lw=0.6)
  c.plot(lin["step"], lin["predictions"][0], color="C2", lw=2)
  c.plot(lin["step"], lin["shift_predicted"][0], "k--", lw=1.2)
  c.plot(unc["step"], unc["predictions"][0], color="C3", lw=2)
  c.plot([], [], color="C2", lw=2, label=f"linear, centred whitening: all {p['n_test']} coincide")
  c.plot([], [], "k--", label="closed form -S_k (a function of the train labels' mean)")
  c.plot([], [], color="C3", lw=2, label="linear, uncentred whitening: all stay 0")
  c.plot([], [], color="C7", lw=0.6, label=f"depth {deep['depth']}, small random init")
  c.set(
    xlabel="step",
    ylabel="test predictions (seed 0, every test point)",
    title="(c) d_0 = n_train + n_test, whitened on all",
  )
  # (d) high-dimensional deep networks
  d = axes[0, 3]
  depths = p["high_dim_depths"]
  for i, depth in enumerate(depths):
    r = hd[f"all/N={depth}"]
    d.scatter(
      np.full(p["seeds"], depth) - 0.1,
      r["relative_test_loss"],
      color="C2",
      s=12,
      label="whitened on all" if i == 0 else None,
    )
  raw_n = [sweep.get(f"raw/N={depth}/n={p['n_test']}") for depth in depths]
  for depth, r in zip(depths, raw_n):
    if r is not None:
      d.scatter(
        np.full(p["seeds"], depth) + 0.1,
        r["final"],
        color="C0",
        s=12,
        label="raw inputs (same sizes)" if depth == 1 else None,
      )
  d.set_xticks(depths, [str(depth) for depth in depths])
  d.axhline(np.mean(hd["constant_oracle"]), color="k", ls=":", label="best constant (oracle)")
  d.axhline(1.0, color="gray", lw=0.8, label="predicting 0")
  d.set(
    xlabel="depth N",
    ylabel="relative test loss after training (per seed)",
    title="(d) same sizes: deep networks, small random init",
  )
  # (e) Newton = GD on whitened data
  e = axes[1, 0]
  nw = results["newton"]
  for k in range(min(4, nw["newton"].shape[1])):
    e.plot(nw["step"], nw["whitened_gd"][:, k], color=f"C{k}", lw=3, alpha=0.4)
    e.plot(nw["step"], nw["newton"][:, k], color=f"C{k}", ls="--")
    e.plot(nw["step"], nw["plain_gd"][:, k], color=f"C{k}", ls=":")
  e.plot([], [], color="gray", lw=3, alpha=0.4, label="GD, whitened inputs")
  e.plot([], [], color="gray", ls="--", label="Newton, raw inputs")
  e.plot([], [], color="gray", ls=":", label="GD, raw inputs")
  e.set(
    xlabel="step",
    ylabel="test prediction (4 test points)",
    title=f"(e) Newton = GD on whitened inputs (diff {nw['max_difference']:.0e})",
  )
  # (f) damping
  f = axes[1, 1]
  dm = nw["damping"]
  lam = np.where(dm["damping"] > 0, dm["damping"], _ZERO_DAMPING)
  f.loglog(lam, dm["relative_test_loss"].mean(axis=1), "o-", color="C3", label="test loss")
  f.loglog(lam, dm["relative_train_loss"].mean(axis=1), "s-", color="C4", label="training loss")
  for x, steps in zip(lam, dm["steps_to_99"]):
    text = f"{np.median(steps):.0f}" if np.all(steps >= 0) else f">{p['damping_steps']}"
    f.annotate(
      text,
      (x, dm["relative_train_loss"].mean(axis=1)[list(lam).index(x)]),
      textcoords="offset points",
      xytext=(0, -12),
      ha="center",
      fontsize="x-small",
    )
  f.set(
    xlabel="damping lambda (leftmost point: lambda = 0)",
    ylabel=f"relative loss after {p['damping_steps']} steps (mean over seeds)",
    title=f"(f) damped Newton, n = {p['damping_n']} (numbers: steps to 99%)",
  )
  # (g) digits
  g = axes[1, 2]
  if results["digits"] is None:
    g.text(0.5, 0.5, "scikit-learn not installed:\npip install 'lintraj[data]'", ha="center")
    g.set_axis_off()
  else:
    for kind in TRANSFORMS:
      ns = p["digits_n_train"]
      acc = [np.mean(results["digits"][f"{kind}/n={n}"]["accuracy"]) for n in ns]
      g.semilogx(ns, acc, "o-", color=colors[kind], label=names[kind])
    g.axhline(0.1, color="gray", lw=0.8, label="chance")
    g.set_xticks(ns, [str(n) for n in ns])
    g.minorticks_off()
    g.set(
      xlabel=f"n_train (n_test = {p['n_test']})",
      ylabel="test accuracy (mean over seeds)",
      title="(g) scikit-learn digits (d_0 = 64), linear model",
    )
  # (h) early stopping
  h = axes[1, 3]
  es = results["early_stopping"]
  h.loglog(es["step"][1:], es["train_loss"][0, 1:], color="C0", label="training loss")
  h.loglog(es["step"][1:], es["validation_loss"][0, 1:], color="C1", label="held-out loss")
  h.axvline(es["best_step"][0], color="k", ls="--", label="best record")
  h.axvline(
    es["patience_stopped_step"][0],
    color="C2",
    ls=":",
    label=f"stopped (patience {p['early_patience']})",
  )
  h.axhline(es["noise_floor"], color="gray", lw=0.8, label="noise level sigma^2/2")
  h.set(
    xlabel="step",
    ylabel="loss (seed 0)",
    title=f"(h) early stopping: n_train = d_0 = {p['d0']}, noise {p['early_noise']}",
  )
  for ax in axes.ravel():
    if ax.has_data():
      ax.legend(fontsize="x-small")
  fig.suptitle(
    "Wadia et al. 2021: whitening and second-order optimization vs generalization "
    f"(teacher-student, d_0 = {p['d0']}, float64, {p['seeds']} seeds; relative test loss = "
    "test loss / loss of predicting 0)"
  )
  return fig

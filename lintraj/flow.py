r"""Gradient flow, the continuous-time limit of gradient descent, integrated with error control.

Several statements of the theory hold exactly only for the flow
:math:`\dot W_j = -\partial L^N / \partial W_j` (conservation of :math:`C_j`, the end-to-end
rule). :func:`gradient_flow` integrates it with the Dormand-Prince 5(4) embedded Runge-Kutta pair
(adaptive steps, error per step below ``atol + rtol |W|``) inside one ``lax.while_loop``, stopping
exactly at the record times, and records the same metrics as :func:`lintraj.gradient_descent`.
:func:`odeint` is the integrator itself, for any autonomous ODE on a pytree.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lintraj import _engine
from lintraj.progress import meter
from lintraj.recording import Recorder, Trajectory, record_point, value_and_grad
from lintraj.validation import check_int, check_positive

__all__ = ["gradient_flow", "odeint"]

# Dormand-Prince 5(4) (Hairer, Norsett, Wanner, Solving ODEs I, Table 5.2): stage nodes are not
# needed for an autonomous right-hand side. The last stage is the 5th-order solution (FSAL).
_STAGES = (
  (1 / 5,),
  (3 / 40, 9 / 40),
  (44 / 45, -56 / 15, 32 / 9),
  (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
  (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
  (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
# 5th-order weights minus the embedded 4th-order weights: the local error estimate.
_ERROR = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


def _combine(y, h, coefficients, ks):
  """``y + h * sum_i c_i k_i`` on pytrees (zero coefficients skipped)."""
  terms = [(c, k) for c, k in zip(coefficients, ks) if c != 0.0]
  return jax.tree_util.tree_map(
    lambda y_, *k_: y_ + h * sum(c * x for (c, _), x in zip(terms, k_)), y, *[k for _, k in terms]
  )


def _dopri_step(rhs, y, f, h):
  """One Dormand-Prince 5(4) step from ``y`` (with ``f = rhs(y)``): (y_new, rhs(y_new), error)."""
  ks = [f]
  for row in _STAGES:
    ks.append(rhs(_combine(y, h, row, ks)))
  y_new = _combine(y, h, _STAGES[-1], ks[:-1])
  error = _combine(jax.tree_util.tree_map(jnp.zeros_like, y), h, _ERROR, ks)
  return y_new, ks[-1], error


def _rms(tree) -> jnp.ndarray:
  leaves = jax.tree_util.tree_leaves(tree)
  return jnp.sqrt(sum(jnp.sum(x**2) for x in leaves) / sum(x.size for x in leaves))


def _scaled(err, y, y_new, rtol, atol):
  return jax.tree_util.tree_map(
    lambda e, a, b: e / (atol + rtol * jnp.maximum(jnp.abs(a), jnp.abs(b))), err, y, y_new
  )


def odeint(rhs, y0, times, observe, *, rtol, atol, max_steps):
  r"""Integrate the autonomous ODE :math:`\dot y = f(y)` from :math:`t = 0` and observe the
  solution at the given times.

  Dormand-Prince 5(4) with the standard step-size controller (Hairer, Norsett, Wanner, Solving
  Ordinary Differential Equations I, Sec. II.4-5): a step of size :math:`h` is accepted when the
  RMS over all components of :math:`e_i / (\mathrm{atol} + \mathrm{rtol}\max(|y_i|, |y_i'|))` is
  at most 1, where :math:`e` is the difference of the embedded 5th- and 4th-order solutions; then
  :math:`h \leftarrow h \min(10, \max(0.2, 0.9\, \mathrm{err}^{-1/5}))`. Steps are shortened to
  land exactly on each record time. Pure JAX, one ``lax.while_loop``; jittable.

  Args:
    rhs: ``f(y)``, a jittable function of a pytree returning a pytree of the same structure.
    y0: the initial state (a pytree of floating arrays).
    times: ``(R,)`` non-decreasing record times, ``times[0] >= 0``.
    observe: ``observe(y)``, the pytree stored at each record time.
    rtol, atol: relative and absolute error tolerance per step.
    max_steps: the most steps (accepted or rejected) to attempt.

  Returns:
    ``(records, y_end, n_reached, n_steps)``: the observations stacked along a leading axis of
    length ``R`` (NaN at record times not reached), the state where the integration ended (at the
    last record time when every record time was reached),
    how many record times were reached (``R`` unless ``max_steps`` ran out or the step size
    underflowed, e.g. because the solution stopped being finite), and the steps attempted.

  Example:
    >>> import jax.numpy as jnp
    >>> recs, y_end, n_reached, _ = odeint(lambda y: -y, jnp.ones(()), jnp.array([0.0, 1.0]),
    ...                                    lambda y: y, rtol=1e-6, atol=1e-9, max_steps=1000)
    >>> [round(float(x), 5) for x in recs], int(n_reached)
    ([1.0, 0.36788], 2)

  References:
    Dormand, Prince. A family of embedded Runge-Kutta formulae. J. Comput. Appl. Math. 6 (1980).
  """
  state = _ode_start(rhs, y0, times, lambda y, i: observe(y), rtol, atol)
  state = _ode_run(
    rhs, state, times, lambda y, i: observe(y), rtol, atol, max_steps, jnp.shape(times)[0]
  )
  return state.records, state.y, state.index, state.n_steps


class _OdeState(NamedTuple):
  t: Any
  y: Any
  f: Any
  h: Any
  index: Any  # record times reached
  records: Any
  n_steps: Any


def _ode_start(rhs, y0, times, observe, rtol, atol) -> _OdeState:
  """The integrator's state at ``t = 0``: no records yet, the initial step size of Hairer,
  Norsett, Wanner (Sec. II.4)."""
  times = jnp.asarray(times)
  dtype = times.dtype
  n_records = times.shape[0]
  nan_record = lambda s: jnp.full((n_records,) + s.shape, jnp.nan, s.dtype)
  recs = jax.tree_util.tree_map(nan_record, jax.eval_shape(observe, y0, 0))
  f0 = rhs(y0)
  span = jnp.maximum(times[-1], jnp.finfo(dtype).tiny)
  scale = lambda tree: _rms(_scaled(tree, y0, y0, rtol, atol))
  d0, d1 = scale(y0), scale(f0)
  h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5) | ~jnp.isfinite(d1), 1e-6 * span, 0.01 * d0 / d1)
  h0 = jnp.minimum(h0, span).astype(dtype)
  return _OdeState(
    jnp.zeros((), dtype), y0, f0, h0, jnp.zeros((), jnp.int32), recs, jnp.zeros((), jnp.int32)
  )


def _ode_run(rhs, state: _OdeState, times, observe, rtol, atol, max_steps, until) -> _OdeState:
  """Integrate until ``until`` record times are reached (or ``max_steps`` steps were attempted,
  or the step size underflowed); ``observe(y, index)`` gives the record at record time ``index``."""
  times = jnp.asarray(times)
  dtype = times.dtype
  min_step = 16 * jnp.finfo(dtype).eps

  def keep_going(state):
    # A record due at the current time is taken even when no step may follow (a record at
    # t = 0 of a zero-length span, or the last one reached as the step budget runs out).
    due = state.t >= times[jnp.minimum(state.index, times.shape[0] - 1)]
    can_step = (state.n_steps < max_steps) & (state.h > min_step * jnp.maximum(state.t, 1))
    return (state.index < until) & (due | can_step)

  def observe_now(state):
    recs = jax.tree_util.tree_map(
      lambda r, v: r.at[state.index].set(v), state.records, observe(state.y, state.index)
    )
    return state._replace(index=state.index + 1, records=recs)

  def step(state):
    t, y, f, h = state.t, state.y, state.f, state.h
    gap = times[state.index] - t
    dt = jnp.where(h * 1.01 >= gap, gap, h)  # never leave a sliver before a record time
    y_new, f_new, error = _dopri_step(rhs, y, f, dt)
    err = _rms(_scaled(error, y, y_new, rtol, atol))
    finite = jnp.isfinite(err) & jnp.all(
      jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(f_new)])
    )
    accept = finite & (err <= 1)
    factor = jnp.where(finite, jnp.clip(0.9 * jnp.maximum(err, 1e-10) ** -0.2, 0.2, 10.0), 0.2)
    t_new = jnp.where(dt == gap, times[state.index], t + dt)
    pick = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new, old)
    return state._replace(
      t=jnp.where(accept, t_new, t),
      y=pick(y_new, y),
      f=pick(f_new, f),
      h=(dt * factor).astype(dtype),
      n_steps=state.n_steps + 1,
    )

  def body(state):
    return lax.cond(state.t >= times[state.index], observe_now, step, state)

  return lax.while_loop(keep_going, body, state)


def _record_times(time, n_records=None, record_every_time=None) -> np.ndarray:
  """The record times ``0, dt, 2 dt, ...`` of a flow of duration ``time`` (validated)."""
  time = check_positive("time", time)
  if n_records is not None and record_every_time is not None:
    raise ValueError("pass at most one of n_records= and record_every_time=.")
  if record_every_time is not None:
    every = check_positive("record_every_time", record_every_time)
    count = int(math.floor(time / every * (1 + 1e-12))) + 1
    return every * np.arange(count)
  n_records = 101 if n_records is None else check_int("n_records", n_records, 2)
  return np.linspace(0.0, time, n_records)


def _flow_functions(loss, recorder: Recorder, track_every: int):
  """The right-hand side and the record of the flow on ``loss``."""

  def rhs(ws):
    return jax.tree_util.tree_map(jnp.negative, value_and_grad(ws, loss)[1])

  def observe(ws, index):
    value, grads = value_and_grad(ws, loss)
    return record_point(
      ws, value, grads, loss, ~jnp.isfinite(value), index, rec=recorder, track_every=track_every
    )

  return rhs, observe


@functools.partial(jax.jit, static_argnames=("recorder", "track_every"))
def _flow_start(weights, loss, times, rtol, atol, *, recorder, track_every) -> _OdeState:
  rhs, observe = _flow_functions(loss, recorder, track_every)
  return _ode_start(rhs, weights, times, observe, rtol, atol)


@functools.partial(jax.jit, static_argnames=("recorder", "track_every"), donate_argnums=0)
def _flow_segment(
  state, loss, times, rtol, atol, max_steps, until, *, recorder, track_every
) -> _OdeState:
  rhs, observe = _flow_functions(loss, recorder, track_every)
  return _ode_run(rhs, state, times, observe, rtol, atol, max_steps, until)


def gradient_flow(
  weights,
  loss,
  *,
  time,
  n_records: int | None = None,
  record_every_time: float | None = None,
  rtol: float = 1e-8,
  atol: float = 1e-10,
  max_steps: int = 100_000,
  track=(),
  track_every: int = 1,
  singular_values: str = "batched",
  metrics=None,
  progress=False,
) -> Trajectory:
  r"""Gradient flow on the network loss, integrated with error control, recording the theory's
  metrics at fixed times.

  .. math::
     \frac{d W_j}{dt} = -\frac{\partial L^N}{\partial W_j}(W_1, \dots, W_N), \qquad j = 1..N,

  the limit of :func:`lintraj.gradient_descent` as :math:`\eta \to 0` with :math:`t = \eta \cdot
  \mathrm{step}`. Integrated by the Dormand-Prince 5(4) pair with adaptive steps (:func:`odeint`)
  in one compiled ``lax.while_loop``; steps land exactly on the record times. Changing ``time``,
  the tolerances, the target or the data does not recompile; changing shapes or the number of
  records does.

  Args:
    weights: ``(W_1, ..., W_N)``, ``W_j`` of shape ``(d_j, d_{j-1})``.
    loss: a :class:`lintraj.losses.Loss` or a jittable function of the end-to-end matrix.
    time: the duration :math:`T > 0` of the flow.
    n_records: records at ``n_records`` evenly spaced times from 0 to ``time`` (default 101).
    record_every_time: instead, records at ``0, dt, 2 dt, ... <= time``; the flow stops at the
      last of them.
    rtol, atol: tolerances of the local error per step, relative to :math:`|W|` and absolute.
      The global error is typically 10-100 times the tolerance.
    max_steps: the most steps to attempt before giving up.
    track, track_every, singular_values, metrics: what to record besides the built-in fields,
      as in :func:`lintraj.gradient_descent` (e.g. ``track=("sharpness",)`` for the sharpness
      along the flow, ``metrics={"name": f}`` for your own functions of the weights).
    progress: True for a tqdm bar over the record times, False, or a meter
      (:class:`lintraj.progress.Meter`); the integration runs in segments of about half a
      second either way (the records do not depend on it; an interrupt takes effect within a
      segment).

  Returns:
    A :class:`lintraj.Trajectory`. Its ``step`` field holds the **time** :math:`t` of each record
    (floating, the continuous counterpart of ``lr * step`` of a GD run); ``final`` is the weights
    at the last record time (when ``max_steps`` ran out: where the integration stopped). If
    ``max_steps`` runs out (or the step size underflows) the records not reached are NaN,
    ``diverged_step`` is the first record time not reached, and a ``RuntimeWarning`` says so;
    otherwise ``diverged_step`` is None.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 3, 1), std=0.5)
    >>> traj = lt.gradient_flow(ws, lt.losses.target(jnp.array([[1.0, 0.5]])), time=20.0,
    ...                         n_records=5)
    >>> traj.step.tolist(), bool(traj.loss[-1] < 1e-6)
    ([0.0, 5.0, 10.0, 15.0, 20.0], True)

  References:
    Arora, Cohen, Hazan. On the Optimization of Deep Networks: Implicit Acceleration by
    Overparameterization. ICML 2018 (arXiv 1802.06509): gradient flow, under which the
    imbalances C_j are conserved and balanced networks follow the end-to-end rule (Theorem 1).
    Dormand, Prince. A family of embedded Runge-Kutta formulae. J. Comput. Appl. Math. 6 (1980).
  """
  weights, loss, _, rec, _ = _engine.check_run(
    "gradient_flow",
    weights,
    loss,
    steps=0,
    record_every=1,
    track=track,
    track_every=track_every,
    singular_values=singular_values,
    metrics=metrics,
    time=time,
  )
  times = _record_times(time, n_records, record_every_time)
  rtol, atol = check_positive("rtol", rtol), check_positive("atol", atol)
  max_steps = check_int("max_steps", max_steps, 1)
  track_every = track_every if rec.track else 1  # check_run checked it
  bar = meter(progress)
  dtype = weights[0].dtype
  args = (loss, jnp.asarray(times, dtype), jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype))
  static = dict(recorder=rec, track_every=track_every)
  if bar is not None:
    bar.start(len(times), desc="gradient flow")
  try:
    state = _flow_start(weights, *args, **static)
    state = _engine.drive(
      lambda s, until: _flow_segment(
        s, *args, jnp.asarray(max_steps, jnp.int32), jnp.asarray(until, jnp.int32), **static
      ),
      state,
      len(times),
      written=lambda s: int(s.index),
      report=None if bar is None else lambda s, block: bar.update(block),
    )
  finally:
    if bar is not None:
      bar.close()
  n_reached = int(state.index)
  stopped = None
  if n_reached < len(times):
    stopped = float(times[n_reached])
    warnings.warn(
      f"gradient_flow stopped before t = {stopped:g} (max_steps={max_steps} used up, or the step "
      "size underflowed because the flow stopped being finite); later records are NaN. Raise "
      "max_steps or loosen rtol/atol.",
      RuntimeWarning,
      stacklevel=2,
    )
  records = jax.device_get(state.records)
  return Trajectory(
    step=np.asarray(times, dtype), final=jax.device_get(state.y), diverged_step=stopped, **records
  )

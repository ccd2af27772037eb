"""Shared test configuration: strict rank promotion everywhere, float64 on request."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
  """Run the test body in float64 (jax.enable_x64 as a context manager, never globally)."""
  with jax.enable_x64(True):
    yield


@pytest.fixture
def compiles():
  """``compiles(name)``: how many times a jitted function called ``name`` has been compiled since
  the test began (XLA compilations reported by the public ``jax.monitoring`` events): a retrace
  guard that does not depend on jit's private cache."""
  seen = []

  def listener(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      seen.append(kwargs.get("fun_name", ""))

  jax.monitoring.register_event_duration_secs_listener(listener)
  yield lambda name: sum(fun == f"jit({name})" for fun in seen)
  jax.monitoring.unregister_event_duration_listener(listener)

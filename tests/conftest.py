"""Shared test configuration: strict rank promotion everywhere, float64 on request."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
  """Run the test body in float64 (jax.enable_x64 as a context manager, never globally)."""
  with jax.enable_x64(True):
    yield

"""Doctests in lintraj/ run with the same strict rank promotion as tests/."""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")

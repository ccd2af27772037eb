"""Doctests in lintraj/ run with the same strict rank promotion as tests/; the whole session
shares one persistent XLA compilation cache."""

import atexit
import os
import shutil
import tempfile

# One persistent compilation cache for the test session, inherited by the processes the tests
# start (notebook kernels, the command line, multi-process workers), so a program compiled once
# is not compiled again in another process. It lives in a temporary folder removed at exit; a
# cache the caller configured (JAX_COMPILATION_CACHE_DIR) is used instead. Retrace guards still
# see every compilation: jax reports the backend-compile event for cache hits too.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="lintraj-test-xla-cache-")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ.update(
    JAX_COMPILATION_CACHE_DIR=_cache,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )

import jax  # noqa: E402  (after the cache settings, which jax reads on import)

jax.config.update("jax_numpy_rank_promotion", "raise")

r"""Reproductions of the papers' figures: one module per figure, one registry of names.

Each reproduction is a function ``run(quick=False, out_dir=..., *, pdf=False, **options) -> dict``
that computes the data with the library, writes the figure (``NAME.png``, ``NAME.pdf`` with
``pdf=True``) and the numbers (``NAME.json``, tables as ``NAME-TABLE.csv``) into ``out_dir``, and
returns the numbers (with ``files``, the paths written, and ``seconds``, the run time).
``quick=True`` shrinks grids and iteration caps so the run takes seconds (the test suite and the
notebooks' CI runs use it); the default reproduces the paper's protocol, or a documented smaller
version. The command line ``lintraj reproduce NAME`` and the notebooks in ``notebooks/`` call the
same functions.

Example:
  >>> import lintraj.reproductions as rp
  >>> "arora2019-fig1" in rp.names()
  True
  >>> rp.describe("residual-failure").options
  ('pdf', 'seed', 'progress')
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

__all__ = ["Reproduction", "REGISTRY", "names", "describe", "check_options", "get", "run"]


class Reproduction(NamedTuple):
  """A registry entry.

  Attributes:
    module: the module defining ``function``.
    function: the name of its ``run(quick, out_dir, **options) -> dict`` function.
    summary: one line: the paper, the figure and what it shows.
    options: the keyword options it takes besides ``quick`` and ``out_dir`` (most take ``pdf``,
      ``seed`` and ``progress``; ``arora2019-fig1`` also ``data`` and ``full``).
  """

  module: str
  function: str
  summary: str
  options: tuple = ()


_COMMON = ("pdf", "seed", "progress")

REGISTRY = {
  "arora2019-fig1": Reproduction(
    "lintraj.reproductions.arora2019_fig1",
    "run",
    "Arora, Cohen, Golowich, Hu 2019, Figure 1: iterations to converge vs init std, layer-wise "
    "Gaussian (a) vs balanced (b) init, depths 3 and 8; (c) balancedness along a run",
    _COMMON + ("data", "full"),
  ),
  "convergence-rate": Reproduction(
    "lintraj.reproductions.convergence_rate",
    "run",
    "Arora, Cohen, Golowich, Hu 2019, Theorem 1: loss vs iteration from balanced inits with a "
    "margin, against the rate line (1 - eta c^(2(N-1)/N))^t, with margin and balancedness",
    _COMMON,
  ),
  "acceleration": Reproduction(
    "lintraj.reproductions.acceleration",
    "run",
    "Arora, Cohen, Hazan 2018: depth accelerates gradient descent on l4 regression, not on l2; "
    "the network follows the end-to-end rule",
    _COMMON,
  ),
  "saxe-modes": Reproduction(
    "lintraj.reproductions.saxe_modes",
    "run",
    "Saxe, McClelland, Ganguli 2014: sigmoidal mode learning vs the exact solution, time to "
    "learn vs 1/s, and small Gaussian vs balanced/orthogonal init as depth grows",
    _COMMON,
  ),
  "residual-failure": Reproduction(
    "lintraj.reproductions.residual_failure",
    "run",
    "Bartlett, Helmbold, Long 2018 / Arora et al. 2019 Claim 5: identity init stalls at "
    "lambda^2/2 on a target with a negative eigenvalue; escape by perturbation at depth 2 vs 4",
    _COMMON,
  ),
  "deep-matrix-factorization": Reproduction(
    "lintraj.reproductions.deep_matrix_factorization",
    "run",
    "Arora, Cohen, Hu, Luo 2019: matrix completion by depth-2/3/4 factorizations; depth "
    "separates the top singular values more sharply (implicit low-rank bias)",
    _COMMON,
  ),
  "critical-points": Reproduction(
    "lintraj.reproductions.landscape_studies",
    "run_critical_points",
    "Frye et al. 2019: critical-point finders on a deep linear autoencoder from many starts, "
    "against its analytic critical points (loss, index, gradient-flat points)",
    ("pdf",),
  ),
  "saddles": Reproduction(
    "lintraj.reproductions.landscape_studies",
    "run_saddles",
    "Kawaguchi 2016: escaping the origin, a strict saddle at depth 2 and a non-strict one at "
    "depth 3, by GD, perturbed GD and saddle-free Newton; the Hessian spectrum along the way",
    ("pdf",),
  ),
  "edge-of-stability": Reproduction(
    "lintraj.reproductions.edge_of_stability",
    "run",
    "Cohen et al. 2021 / Kreisler et al. 2023: sharpness along GD vs 2/lr on deep linear networks, "
    "the flattest minimum N sigma^(2-2/N), self-balancing of unbalanced starts to the edge",
    _COMMON,
  ),
  "minibatch-sgd": Reproduction(
    "lintraj.reproductions.minibatch_sgd",
    "run",
    "Minibatch SGD on deep linear regression (Harakeh 2017; Keskar et al. 2017): loss per epoch "
    "and per second vs batch size, sampling schemes on data sorted by label, balancedness vs GD",
    _COMMON,
  ),
  "implicit-regularization-norms": Reproduction(
    "lintraj.reproductions.implicit_regularization",
    "run",
    "Razin, Cohen 2020: 2x2 completion from det > 0 starts, depths 2-4, 1e7 GD steps: the "
    "unobserved entry and every norm grow without bound while the effective rank falls to 1",
    _COMMON,
  ),
  "sgd-stability": Reproduction(
    "lintraj.reproductions.sgd_stability",
    "run",
    "Wu, Ma, E 2018 / Keskar et al. 2017: sharpness and non-uniformity of the minima SGD reaches "
    "vs 2/lr and the non-uniformity bound across lr and batch size; escape from sharp GD minima",
    _COMMON,
  ),
  "whitening-generalization": Reproduction(
    "lintraj.reproductions.whitening_generalization",
    "run",
    "Wadia et al. 2021: test loss with raw vs whitened inputs (fitted on train or train + test), "
    "no generalization when d_0 >= n_train + n_test, Newton = GD on whitened inputs, damped "
    "Newton, scikit-learn digits, early stopping",
    _COMMON,
  ),
}


def names() -> list[str]:
  """The registered reproductions, sorted."""
  return sorted(REGISTRY)


def describe(name: str) -> Reproduction:
  """The registry entry of ``name``, or ValueError listing the names."""
  if name not in REGISTRY:
    raise ValueError(
      f"no reproduction named {name!r}; choose one of {', '.join(names())} "
      "(lintraj reproduce --list)."
    )
  return REGISTRY[name]


def get(name: str):
  """The ``run`` function of reproduction ``name``."""
  entry = describe(name)
  return getattr(importlib.import_module(entry.module), entry.function)


def check_options(name: str, options) -> Reproduction:
  """The registry entry of ``name``, or ValueError if it does not take one of ``options``."""
  entry = describe(name)
  unknown = sorted(set(options) - set(entry.options))
  if unknown:
    raise ValueError(
      f"reproduction {name!r} takes no option {', '.join(unknown)}; its options are "
      f"{', '.join(entry.options) or 'none'}."
    )
  return entry


def run(name: str, *, quick: bool = False, out_dir=None, **options) -> dict:
  """Run reproduction ``name`` and write its outputs into ``out_dir`` (default ``out/NAME``).

  Options it does not take raise ValueError (see :func:`check_options`).
  """
  check_options(name, options)
  return get(name)(quick=quick, out_dir=out_dir or f"out/{name}", **options)

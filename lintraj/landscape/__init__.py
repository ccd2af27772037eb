r"""The loss landscape of deep linear networks: Hessians, spectra, critical points, saddle escape.

Everything here works on the network loss :math:`L^N(W_1, \dots, W_N) = L^1(W_N \cdots W_1)` as a
function of the **flattened weights**
:math:`\theta = (\mathrm{vec}\,W_1, \dots, \mathrm{vec}\,W_N)`, each :math:`W_j` raveled
row-major and the layers concatenated in order (``jax.flatten_util.ravel_pytree`` of the weight
tuple); :math:`P = \sum_j d_j d_{j-1}` parameters. Hessians are :math:`P \times P` in that order.

- Curvature (from :mod:`lintraj._curvature`, which the run engine uses to track it):
  :func:`hessian` (dense, small networks), :func:`hvp` (matrix-free), :func:`top_eigenvalues` /
  :func:`bottom_eigenvalues` (Lanczos with full reorthogonalisation, one compiled loop),
  :func:`sharpness` (the top eigenvalue, jittable) and :func:`hessian_extremes` (both ends from
  one Lanczos run).
- Critical points (:mod:`lintraj.landscape.critical`): :func:`classify`,
  :func:`gradient_flatness`, and the deep linear autoencoder (:func:`autoencoder_loss`, which
  lives in :mod:`lintraj.losses`, and :func:`autoencoder_critical_points`, every analytic
  critical point).
- Critical-point finders (:mod:`lintraj.landscape.finders`), each one compiled program:
  :func:`gradient_norm_descent`, :func:`newton_mr`, :func:`damped_newton`.
- Saddle escape as optax update rules usable with :func:`lintraj.train`
  (:mod:`lintraj.landscape.escape`): :func:`perturbed_gradient_descent` and
  :func:`saddle_free_newton`.

Use float64 (``with jax.enable_x64(True):``) for critical points: the tolerances of Frye et al.
(:math:`\|\nabla L\|^2 < 10^{-10}`) are below float32 resolution.
"""

from lintraj._curvature import bottom_eigenvalues as bottom_eigenvalues
from lintraj._curvature import hessian as hessian
from lintraj._curvature import hessian_extremes as hessian_extremes
from lintraj._curvature import hvp as hvp
from lintraj._curvature import sharpness as sharpness
from lintraj._curvature import top_eigenvalues as top_eigenvalues
from lintraj.landscape.critical import AutoencoderCriticalPoints as AutoencoderCriticalPoints
from lintraj.landscape.critical import Classification as Classification
from lintraj.landscape.critical import GradientFlatness as GradientFlatness
from lintraj.landscape.critical import autoencoder_critical_points as autoencoder_critical_points
from lintraj.landscape.critical import classify as classify
from lintraj.landscape.critical import gradient_flatness as gradient_flatness
from lintraj.landscape.escape import PerturbedGradientDescentState as PerturbedGradientDescentState
from lintraj.landscape.escape import perturbed_gradient_descent as perturbed_gradient_descent
from lintraj.landscape.escape import saddle_free_newton as saddle_free_newton
from lintraj.landscape.finders import CriticalPointSearch as CriticalPointSearch
from lintraj.landscape.finders import damped_newton as damped_newton
from lintraj.landscape.finders import gradient_norm_descent as gradient_norm_descent
from lintraj.landscape.finders import newton_mr as newton_mr
from lintraj.losses import autoencoder_loss as autoencoder_loss

__all__ = [
  "hessian",
  "hvp",
  "top_eigenvalues",
  "bottom_eigenvalues",
  "sharpness",
  "hessian_extremes",
  "Classification",
  "classify",
  "GradientFlatness",
  "gradient_flatness",
  "autoencoder_loss",
  "AutoencoderCriticalPoints",
  "autoencoder_critical_points",
  "CriticalPointSearch",
  "gradient_norm_descent",
  "newton_mr",
  "damped_newton",
  "PerturbedGradientDescentState",
  "perturbed_gradient_descent",
  "saddle_free_newton",
]

"""What a new user hit in a first afternoon (issue 11): each trap gives a ValueError naming the fix
before anything is traced, or a correct result; each test fails on the code before the fix."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt
from lintraj.cli import main

DIMS = (3, 4, 2)


def _weights():
  return lt.init.balanced(jax.random.PRNGKey(0), DIMS, std=0.5)


# --- the CLI -------------------------------------------------------------------------------------


def test_run_x64_with_a_random_target(tmp_path):
  out = tmp_path / "run"
  assert (
    main(
      [
        "run",
        "--dims",
        "3,4,2",
        "--std",
        "0.5",
        "--lr",
        "0.1",
        "--steps",
        "40",
        "--record-every",
        "10",
        "--x64",
        "--no-progress",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  traj, meta = lt.load(out / "trajectory.npz")
  assert meta["x64"] and traj.loss.dtype == np.float64 and traj.final[0].dtype == np.float64


def test_summary_reports_the_final_weights_not_the_last_record(tmp_path):
  phi = np.array([[1.0, 0.5, -0.5], [0.0, 1.0, 0.25]])
  np.save(tmp_path / "phi.npy", phi)
  out = tmp_path / "run"
  assert (
    main(
      [
        "run",
        "--dims",
        "3,4,2",
        "--target",
        str(tmp_path / "phi.npy"),
        "--std",
        "0.5",
        "--lr",
        "0.02",
        "--steps",
        "105",
        "--record-every",
        "50",
        "--no-progress",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  traj, _ = lt.load(out / "trajectory.npz")
  assert traj.step.tolist() == [0, 50, 100]
  final = [np.asarray(w, np.float64) for w in traj.final]  # NumPy reference, after step 105
  w = final[1] @ final[0]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["loss_final"] == pytest.approx(0.5 * np.sum((w - phi) ** 2), rel=1e-4)
  assert summary["loss_final"] < 0.99 * float(traj.loss[-1])
  margin = np.linalg.svd(phi, compute_uv=False)[-1] - np.linalg.norm(w - phi)
  assert summary["deficiency_margin_final"] == pytest.approx(margin, rel=1e-4)


@pytest.mark.parametrize(
  "flags, match",
  [
    (["--steps", "100", "--record-every", "1000"], "--record-every 1000 is larger than --steps"),
    (["--lr", "-1"], "--lr must be a positive"),
    (["--steps", "0"], "--steps must be an integer >= 1"),
    (["--target-norm", "0"], "--target-norm must be a positive"),
  ],
)
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, match):
  assert main(["run", "--dims", "3,4,2", "--no-progress", "--out", str(tmp_path), *flags]) == 2
  err = capsys.readouterr().err
  assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "trajectory.npz").exists()


def test_target_file_of_the_wrong_shape_is_a_one_line_error(tmp_path, capsys):
  np.save(tmp_path / "phi.npy", np.ones((3, 3)))
  assert (
    main(["run", "--dims", "3,4,2", "--target", str(tmp_path / "phi.npy"), "--out", str(tmp_path)])
    == 2
  )
  assert "must be (d_N, d_0) = (2, 3)" in capsys.readouterr().err


def test_a_bug_while_running_is_not_hidden(tmp_path, monkeypatch):
  def broken(*args, **kwargs):
    raise ValueError("an internal bug")

  monkeypatch.setattr(lt, "gradient_descent", broken)
  with pytest.raises(ValueError, match="an internal bug"):
    main(["run", "--dims", "3,4,2", "--steps", "10", "--no-progress", "--out", str(tmp_path)])


def test_run_help_shows_defaults(capsys):
  with pytest.raises(SystemExit):
    main(["run", "--help"])
  text = " ".join(capsys.readouterr().out.split())
  for default in ("128,32,32,1", "0.01", "20000", "(default: 10)", "(default: balanced)"):
    assert default in text


def test_sharpness_panel_has_a_log_axis():
  traj = lt.gradient_descent(
    _weights(),
    lt.losses.target(jnp.ones((2, 3))),
    lr=0.01,
    steps=20,
    track=("sharpness",),
    track_every=1,
  )
  assert lt.plotting.plot_sharpness(traj, lr=0.01).get_yscale() == "log"


# --- weights, losses, keys, metrics --------------------------------------------------------------


def test_float64_weights_outside_x64_are_refused():
  with jax.enable_x64(True):
    weights = _weights()
  assert weights[0].dtype == jnp.float64  # a JAX array keeps float64 after the context exits
  with pytest.raises(ValueError, match=r"jax.enable_x64\(True\).*or cast them to float32"):
    lt.gradient_descent(weights, lt.losses.target(jnp.ones((2, 3))), lr=0.1, steps=3)


def test_float64_numpy_weights_still_become_float32():
  weights = [np.asarray(w, np.float64) for w in _weights()]
  assert all(w.dtype == jnp.float32 for w in lt.network.check_weights(weights))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_weights_are_refused(dtype):
  weights = tuple(w.astype(dtype) for w in _weights())
  with pytest.raises(ValueError, match=f"dtype {jnp.dtype(dtype)}.*cast the weights to float32"):
    lt.gradient_descent(weights, lt.losses.target(jnp.ones((2, 3))), lr=0.1, steps=3)


@pytest.mark.parametrize(
  "make",
  [
    lambda: lt.losses.target(jnp.ones((2, 3)) * (1 + 1j)),
    lambda: lt.losses.regression(np.eye(3), np.ones(3) * 1j),
    lambda: lt.losses.matrix_completion(np.ones((2, 3), bool), np.ones((2, 3)) * 1j),
  ],
)
def test_complex_data_are_refused(make):
  with pytest.raises(ValueError, match="complex"):
    make()


def _raises_without_a_message(w):
  raise RuntimeError()


@pytest.mark.parametrize(
  "fn, match",
  [
    (
      lambda w: w**2,
      r"real scalar; got shape \(2, 3\), dtype float32\. Reduce it to one number of a \(2, 3\) ",
    ),
    (
      lambda w: jnp.sum(w) * 1j,
      r"real scalar; got dtype complex64\. Return a real floating value \(gradient descent needs "
      r"one\), e.g. jnp.abs\(z\) \*\* 2 for a complex z\.$",
    ),
    (lambda w: jnp.sum(w).astype(jnp.int32), "real scalar; got dtype int32"),
    (lambda w: (jnp.sum(w), jnp.sum(w)), r"real scalar; got tuple\. Reduce it to one number"),
    (
      lambda w: float(w[0, 0]),
      r"'<lambda>' cannot be traced by JAX on a \(2, 3\) end-to-end matrix "
      r"\(ConcretizationTypeError: Abstract tracer.*\); write it with jax.numpy only \(no "
      r"float\(w\), np.\* on w or Python branches on its values\)\.$",
    ),
    (lambda w: np.sum(np.asarray(w)), r"\(TracerArrayConversionError: The numpy"),
    (_raises_without_a_message, r"'_raises_without_a_message' cannot .*\(RuntimeError: \); write"),
  ],
)
def test_check_loss_refuses_what_gradient_descent_cannot_run(fn, match):
  with pytest.raises(ValueError, match=match):
    lt.losses.check_loss(fn, DIMS)
  with pytest.raises(ValueError, match=match):
    lt.losses.check_loss(lt.losses.Loss(fn), _weights())


def test_check_loss_accepts_losses_and_uses_the_end_to_end_shape():
  seen = []

  def loss(w):
    seen.append((w.shape, w.dtype))
    return jnp.sum(w**2)

  assert lt.losses.check_loss(loss, DIMS).fn is loss
  with jax.enable_x64(True):
    lt.losses.check_loss(loss, _weights())
  assert seen == [((2, 3), jnp.float32), ((2, 3), jnp.float64)]
  target = lt.losses.target(jnp.ones((2, 3)))
  assert lt.losses.check_loss(target, DIMS) is target


@pytest.mark.parametrize(
  "init",
  [
    lambda key: lt.init.balanced(key, DIMS, std=0.1),
    lambda key: lt.init.gaussian(key, DIMS, std=0.1),
    lambda key: lt.init.orthogonal(key, DIMS),
  ],
)
def test_inits_take_legacy_and_typed_keys_and_refuse_an_int(init):
  legacy, typed = init(jax.random.PRNGKey(0)), init(jax.random.key(0))
  assert all(np.array_equal(a, b) for a, b in zip(legacy, typed, strict=True))
  with pytest.raises(ValueError, match=r"use jax.random.PRNGKey\(0\)|e.g. jax.random.PRNGKey\(0\)"):
    init(0)


def test_init_by_name():
  key = jax.random.PRNGKey(1)
  by_name = {
    name: lt.init.by_name(name)(key, (3, 3, 3), 0.5)
    for name in ("balanced", "gaussian", "orthogonal", "residual")
  }
  reference = dict(
    balanced=lt.init.balanced(key, (3, 3, 3), std=0.5),
    gaussian=lt.init.gaussian(key, (3, 3, 3), std=0.5),
    orthogonal=lt.init.orthogonal(key, (3, 3, 3), scale=0.5),
    residual=lt.init.residual((3, 3, 3)),
  )
  for name, weights in by_name.items():
    assert all(np.array_equal(a, b) for a, b in zip(weights, reference[name], strict=True)), name
  with pytest.raises(ValueError, match="balanced, gaussian, orthogonal, residual"):
    lt.init.by_name("xavier")


def test_deficiency_margin_of_a_target_of_the_wrong_shape():
  with pytest.raises(ValueError, match=r"target has shape \(3, 3\); it must be .* \(2, 3\)"):
    lt.metrics.deficiency_margin(_weights(), jnp.ones((3, 3)))
  with pytest.raises(ValueError, match="target has shape"):
    lt.metrics.deficiency_margin(_weights(), jnp.ones((1, 3)))  # would broadcast


def test_reproduce_with_a_missing_data_file_is_a_one_line_error(tmp_path, capsys):
  assert main(["reproduce", "arora2019-fig1", "--data", str(tmp_path / "none.csv")]) == 2
  assert "no such file" in capsys.readouterr().err

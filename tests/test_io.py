"""save/load: exact round trips of single and batched trajectories, clear errors on bad files."""

import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lintraj as lt


@pytest.fixture(scope="module")
def runs():
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  loss = lt.losses.target(jnp.ones((2, 3)) / 2)
  single = lt.gradient_descent(ws, loss, lr=0.1, steps=23, record_every=4, stop_at_loss=0.05)
  diverged = lt.gradient_descent(
    (jnp.array([[10.0]]), jnp.array([[0.05]])), lt.losses.target(jnp.ones((1, 1))), lr=1.0, steps=60
  )
  batch_ws, lrs, _ = lt.sweep.grid("gaussian", (3, 4, 2), std=[0.3, 3.0], lr=[0.05, 0.5])
  batched = lt.batch_gradient_descent(
    batch_ws, loss, lr=lrs, steps=23, record_every=4, stop_at_loss=0.05
  )
  return dict(single=single, diverged=diverged, batched=batched)


def _assert_round_trip(saved: lt.Trajectory, loaded: lt.Trajectory):
  for name, value in saved._asdict().items():
    back = getattr(loaded, name)
    if value is None or isinstance(value, int):
      assert back == value and type(back) is type(value), name
      continue
    for a, b in zip(jax.tree_util.tree_leaves(value), jax.tree_util.tree_leaves(back), strict=True):
      a = np.asarray(a)
      assert isinstance(b, np.ndarray) and b.dtype == a.dtype and b.shape == a.shape, name
      assert a.tobytes() == b.tobytes(), name  # bit for bit, NaNs included


@pytest.mark.parametrize("kind", ["single", "diverged", "batched"])
def test_round_trip_is_exact(runs, kind, tmp_path):
  traj = runs[kind]
  path = lt.save(
    tmp_path / "run.npz", traj, dims=[3, 4, 2], init="balanced", lr=0.1, seed=0, steps=23
  )
  loaded, meta = lt.load(path)
  _assert_round_trip(traj, loaded)
  assert meta["dims"] == [3, 4, 2] and meta["init"] == "balanced" and meta["steps"] == 23
  assert meta["versions"] == {
    "lintraj": lt.__version__,
    "jax": jax.__version__,
    "numpy": np.__version__,
  }
  assert sorted(os.listdir(tmp_path)) == ["run.npz"]


def test_round_trip_flags_and_float64(runs, tmp_path, x64):
  assert isinstance(runs["single"].stopped_step, int) and isinstance(
    runs["diverged"].diverged_step, int
  )
  assert runs["batched"].diverged_step.shape == (4,) and np.any(runs["batched"].diverged_step >= 0)
  ws = lt.init.balanced(jax.random.PRNGKey(1), (3, 4, 2), std=0.5, dtype=jnp.float64)
  traj = lt.gradient_descent(ws, lt.losses.target(jnp.ones((2, 3))), lr=0.1, steps=7)
  loaded, _ = lt.load(lt.save(tmp_path / "f64.npz", traj))
  assert loaded.loss.dtype == np.float64 and loaded.stopped_step is None
  _assert_round_trip(traj, loaded)


def _corrupt(path, how):
  data = bytearray(open(path, "rb").read())
  if how == "truncated":
    data = data[: len(data) // 2]
  elif how == "flipped":
    middle = len(data) // 3
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
  elif how == "garbage":
    data = bytearray(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
  elif how == "empty":
    data = bytearray()
  open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "flipped", "garbage", "empty"])
def test_corrupted_file_gives_a_clear_error(runs, tmp_path, how):
  path = lt.save(tmp_path / "run.npz", runs["batched"])
  _corrupt(path, how)
  with pytest.raises(ValueError, match="truncated or corrupted"):
    lt.load(path)


def test_foreign_files_are_refused(tmp_path):
  np.savez(tmp_path / "plain.npz", loss=np.ones(3))
  with pytest.raises(ValueError, match="not a readable lintraj"):
    lt.load(tmp_path / "plain.npz")
  header = np.frombuffer(b'{"fields": {"loss": {"array": true}}, "metadata": {}}', np.uint8)
  np.savez(tmp_path / "partial.npz", __metadata__=header)
  with pytest.raises(ValueError, match="not a lintraj trajectory"):
    lt.load(tmp_path / "partial.npz")
  np.savez(tmp_path / "pickled.npz", __metadata__=header, loss=np.array([{"a": 1}], dtype=object))
  with pytest.raises(ValueError, match="not a readable lintraj"):  # allow_pickle=False
    lt.load(tmp_path / "pickled.npz")
  with pytest.raises(FileNotFoundError):
    lt.load(tmp_path / "missing.npz")


def test_failed_save_keeps_the_old_file(runs, tmp_path):
  path = lt.save(tmp_path / "run.npz", runs["single"], note="first")
  with pytest.raises(ValueError, match="JSON"):
    lt.save(path, runs["batched"], bad=object())
  assert sorted(os.listdir(tmp_path)) == ["run.npz"]
  loaded, meta = lt.load(path)
  assert meta["note"] == "first"
  _assert_round_trip(runs["single"], loaded)
  assert zipfile.is_zipfile(path)


def test_checkpoints_and_trajectories_are_not_confused(runs, tmp_path):
  saved = lt.save(tmp_path / "run.npz", runs["single"])
  with pytest.raises(ValueError, match="saved trajectory, not a checkpoint"):
    lt.resume(saved)
  ws = lt.init.balanced(jax.random.PRNGKey(0), (3, 4, 2), std=0.5)
  lt.gradient_descent(
    ws,
    lt.losses.target(jnp.ones((2, 3))),
    lr=0.1,
    steps=6,
    checkpoint=tmp_path / "c.npz",
    checkpoint_every=2,
  )
  with pytest.raises(ValueError, match="checkpoint, not a saved trajectory"):
    lt.load(tmp_path / "c.npz")


def test_metadata_arrays_come_back_exactly(runs, tmp_path):
  _, _, table = lt.sweep.grid("gaussian", (3, 4, 2), std=[0.3, 3.0], lr=[0.05, 0.5])
  extra = {"ints": np.arange(3, dtype=np.int16), "nested": [np.float32(0.25), np.eye(2)[None]]}
  path = lt.save(
    tmp_path / "run.npz", runs["single"], table=table, extra=extra, n=np.int64(7), lr=0.1
  )
  _, meta = lt.load(path)
  assert meta["table"].keys() == table.keys() and meta["lr"] == 0.1
  pairs = [(meta["table"][name], value) for name, value in table.items()] + [
    (meta["extra"]["ints"], extra["ints"]),
    (meta["extra"]["nested"][1], extra["nested"][1]),
  ]
  for back, value in pairs:
    assert isinstance(back, np.ndarray) and back.dtype == value.dtype and back.shape == value.shape
    assert back.tobytes() == value.tobytes()
  assert meta["extra"]["nested"][0] == 0.25 and meta["n"] == 7 and type(meta["n"]) is int


@pytest.mark.parametrize(
  "value, match", [(np.array([object()]), "object array"), (object(), "JSON-serialisable")]
)
def test_metadata_that_needs_pickle_is_refused(runs, tmp_path, value, match):
  with pytest.raises(ValueError, match=match):
    lt.save(tmp_path / "run.npz", runs["single"], bad=value)
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_get_the_usual_permissions(runs, tmp_path, umask, mode):
  old = os.umask(umask)
  try:
    path = lt.save(tmp_path / "run.npz", runs["single"])
  finally:
    os.umask(old)
  assert os.stat(path).st_mode & 0o777 == mode

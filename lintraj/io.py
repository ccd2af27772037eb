"""File formats: trajectories (:func:`save`, :func:`load`) and checkpoints
(:func:`write_checkpoint`, :func:`read_checkpoint`), ``.npz`` of arrays with JSON metadata, never
pickle. Continuing a run from its checkpoint is :func:`lintraj.resume`
(:mod:`lintraj.checkpoint`)."""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import zipfile

import jax
import numpy as np

from lintraj.losses import Loss, as_loss
from lintraj.recording import Trajectory

__all__ = ["save", "load"]

_METADATA_KEY = "__metadata__"
_STEP_FIELDS = ("diverged_step", "stopped_step")


def _versions():
  import lintraj

  return {"lintraj": lintraj.__version__, "jax": jax.__version__, "numpy": np.__version__}


def _write_npz(path, arrays: dict, header: dict) -> str:
  """Write ``arrays`` and the JSON ``header`` to ``path`` atomically (temporary file, then
  rename)."""
  path = os.fspath(path)
  try:
    meta_json = json.dumps(dict(header, versions=_versions()))
  except TypeError as err:
    raise ValueError(
      f"metadata must be JSON-serialisable (numbers, strings, lists, dicts) or arrays: {err}"
    ) from None
  arrays = dict(arrays, **{_METADATA_KEY: np.frombuffer(meta_json.encode(), dtype=np.uint8)})
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
  umask = os.umask(0)
  os.umask(umask)
  try:
    os.chmod(tmp, 0o666 & ~umask)  # as open() would make it (mkstemp makes files 0600)
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def _read_npz(path, what: str):
  """``(arrays, header)`` of a file written by :func:`_write_npz`, or ValueError if unreadable."""
  path = os.fspath(path)
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
    header = json.loads(arrays.pop(_METADATA_KEY).tobytes().decode())
    if not isinstance(header, dict):
      raise ValueError("its metadata is not a JSON object")
  except FileNotFoundError:
    raise
  except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as err:
    raise ValueError(
      f"{path} is not a readable lintraj {what} file (truncated or corrupted?): "
      f"{type(err).__name__}: {err}"
    ) from None
  return arrays, header


def _metadata_arrays(value, path: list, arrays: dict):
  """``value`` for JSON: its NumPy/JAX arrays moved into ``arrays`` (``path`` to each under its
  key ``metadata/i``, the JSON holding None there), NumPy scalars as Python numbers."""
  if isinstance(value, dict):
    return {k: _metadata_arrays(v, path + [k], arrays) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_metadata_arrays(v, path + [i], arrays) for i, v in enumerate(value)]
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (np.ndarray, jax.Array)):
    value = np.asarray(value)
    if value.dtype.hasobject:
      raise ValueError(
        f"metadata {'/'.join(map(str, path))} is an object array, which needs "
        "pickle; pass numbers, strings or arrays of numbers."
      )
    arrays[f"metadata/{len(arrays)}"] = (path, value)
    return None
  return value


def _restore_metadata_arrays(metadata: dict, paths: dict, arrays: dict) -> dict:
  """``metadata`` with the arrays :func:`save` stored under ``paths`` put back in place."""
  for key, path in paths.items():
    *parents, last = path
    node = metadata
    for part in parents:
      node = node[part]
    node[last] = arrays[key]
  return metadata


def save(path, trajectory: Trajectory, **metadata) -> str:
  r"""Write a trajectory (single or batched) and metadata to ``path`` (.npz).

  Arrays keep their dtype and values bit for bit; tuple fields are stored entry by entry. The
  metadata are JSON-serialisable values (numbers, strings, lists, dicts), NumPy or JAX arrays
  (stored as arrays: :func:`load` gives back NumPy arrays of the same dtype and values, e.g. the
  ``table`` of :func:`lintraj.sweep.grid`) and NumPy scalars (given back as Python numbers);
  tuples come back as lists, and no value goes through pickle. The file is written to a temporary
  name and renamed, so a crash never leaves a half-written file; it gets the permissions a new
  file gets (``0o666`` less the umask). Versions of lintraj, jax and numpy are added to the
  metadata.

  Example:
    >>> import jax, jax.numpy as jnp, lintraj as lt, tempfile, os
    >>> ws = lt.init.balanced(jax.random.PRNGKey(0), (2, 2, 1), std=0.5)
    >>> traj = lt.gradient_descent(ws, lt.losses.target(jnp.ones((1, 2))), lr=0.1, steps=10)
    >>> path = lt.save(os.path.join(tempfile.mkdtemp(), "run.npz"), traj, lr=0.1)
    >>> loaded, meta = lt.load(path)
    >>> bool((loaded.loss == traj.loss).all()), meta["lr"]
    (True, 0.1)
    >>> meta = lt.load(lt.save(path, traj, table={"lr": jnp.array([0.1, 0.2])}))[1]
    >>> meta["table"]["lr"].dtype
    dtype('float32')
  """
  arrays, fields = {}, {}
  for name, value in trajectory._asdict().items():
    if isinstance(value, tuple):
      fields[name] = {"tuple": len(value)}
      arrays.update({f"{name}/{i}": np.asarray(v) for i, v in enumerate(value)})
    elif isinstance(value, dict):
      fields[name] = {"dict": list(value)}
      arrays.update({f"{name}/{k}": np.asarray(v) for k, v in value.items()})
    elif value is None:
      fields[name] = {"none": True}
    else:
      fields[name] = {"array": True}
      arrays[name] = np.asarray(value)
  placed = {}
  metadata = _metadata_arrays(metadata, [], placed)
  arrays.update({key: value for key, (_, value) in placed.items()})
  return _write_npz(
    path,
    arrays,
    {
      "fields": fields,
      "metadata": metadata,
      "metadata_arrays": {key: p for key, (p, _) in placed.items()},
    },
  )


def load(path):
  """Read a file written by :func:`save`: returns ``(trajectory, metadata)``.

  Arrays come back as NumPy arrays, bit-identical to what was saved (``diverged_step`` and
  ``stopped_step`` of a single run as int or None). The metadata holds what was passed to
  :func:`save` and ``"versions"`` (of lintraj, jax and numpy that wrote the file). A truncated,
  corrupted or foreign file raises ``ValueError`` saying so.
  """
  arrays, header = _read_npz(path, "trajectory")
  if "checkpoint" in header:
    raise ValueError(
      f"{os.fspath(path)} is a checkpoint, not a saved trajectory; continue it with "
      "lintraj.resume(path)."
    )
  try:
    values = {}
    for name, kind in header["fields"].items():
      if "tuple" in kind:
        values[name] = tuple(arrays[f"{name}/{i}"] for i in range(kind["tuple"]))
      elif "dict" in kind:
        values[name] = {k: arrays[f"{name}/{k}"] for k in kind["dict"]}
      elif "none" in kind:
        values[name] = None
      else:
        value = arrays[name]
        values[name] = value.item() if name in _STEP_FIELDS and value.ndim == 0 else value
    metadata = _restore_metadata_arrays(
      header["metadata"], header.get("metadata_arrays", {}), arrays
    )
    return Trajectory(**values), {"versions": header.get("versions"), **metadata}
  except (KeyError, TypeError, AttributeError) as err:
    raise ValueError(
      f"{os.fspath(path)} is not a lintraj trajectory file (missing or unknown "
      f"entry {err}); was it written by lintraj.save?"
    ) from None


def _tree_to_arrays(tree, prefix: str, arrays: dict):
  """A JSON description of a pytree of None/tuple/list/str-keyed dict/array, its arrays added to
  ``arrays``."""
  if tree is None:
    return None
  if isinstance(tree, (tuple, list)):
    return {
      type(tree).__name__: [_tree_to_arrays(x, f"{prefix}/{i}", arrays) for i, x in enumerate(tree)]
    }
  if isinstance(tree, dict) and all(isinstance(k, str) for k in tree):
    return {"dict": {k: _tree_to_arrays(v, f"{prefix}/{k}", arrays) for k, v in tree.items()}}
  try:
    arrays[prefix] = np.asarray(tree)
  except (TypeError, ValueError, RuntimeError):
    raise ValueError(
      f"the loss's data contain a {type(tree).__name__}, which a checkpoint cannot "
      "store; use arrays in tuples, lists or dicts."
    ) from None
  return {"array": prefix}


def _tree_from_arrays(spec, arrays: dict):
  if spec is None:
    return None
  if "array" in spec:
    return arrays[spec["array"]]
  if "dict" in spec:
    return {k: _tree_from_arrays(v, arrays) for k, v in spec["dict"].items()}
  (kind,) = spec
  return {"tuple": tuple, "list": list}[kind](_tree_from_arrays(x, arrays) for x in spec[kind])


def function_reference(fn):
  """``"module:qualname"`` of a function importable by name (defined at the top level of an
  importable module, not ``__main__``, not a lambda or closure), else None: a checkpoint stores
  functions this way, never their code."""
  module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
  if not module or module == "__main__" or "<" in qualname:
    return None
  try:
    return f"{module}:{qualname}" if resolve(f"{module}:{qualname}") is fn else None
  except ImportError:
    return None


def resolve(reference: str):
  """The function named by :func:`function_reference`'s ``"module:qualname"``."""
  module, qualname = reference.split(":")
  value = importlib.import_module(module)
  for part in qualname.split("."):
    value = getattr(value, part, None)
  return value


def _loss_spec(loss: Loss, prefix: str, arrays: dict) -> dict:
  """The JSON header of a loss (its function by reference), its arrays added under ``prefix``."""
  return dict(
    name=loss.name,
    fn=function_reference(loss.fn),
    data=_tree_to_arrays(loss.data, f"{prefix}/data", arrays),
    target=_tree_to_arrays(loss.target, f"{prefix}/target", arrays),
    examples=None if loss.examples is None else list(loss.examples),
  )


def _stored_loss(spec: dict, arrays: dict, given, path: str, what: str) -> Loss:
  """The loss a checkpoint stored (``what``: the run's argument, ``loss`` or ``validation``),
  its function resolved by reference or taken from ``given``, whose data and target must equal
  the stored ones."""
  stored = Loss(
    None,
    data=_tree_from_arrays(spec["data"], arrays),
    target=_tree_from_arrays(spec["target"], arrays),
    name=spec["name"],
  )
  stored.examples = None if spec.get("examples") is None else tuple(spec["examples"])
  if given is None:
    if spec["fn"] is None:
      raise ValueError(
        f"{path} was written by a run with the {what} {spec['name']!r}, a function lintraj "
        f"cannot import by itself; pass it: lintraj.resume(path, {what}=...)."
      )
    stored.fn = resolve(spec["fn"])
    return stored
  given = as_loss(given)
  given_fn = function_reference(given.fn)
  if spec["fn"] is not None and given_fn is not None and given_fn != spec["fn"]:
    raise ValueError(
      f"{path} was run with the {what} function {spec['fn']}, not {given_fn}; "
      f"pass the {what} the run was started with."
    )
  mine, kept = (given.data, given.target), (stored.data, stored.target)
  same = jax.tree_util.tree_structure(mine) == jax.tree_util.tree_structure(kept) and all(
    np.array_equal(np.asarray(a), b)
    for a, b in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(kept))
  )
  if not same:
    raise ValueError(
      f"the {what} passed to resume has other data or target than the one {path} was "
      f"run with; pass the same {what}."
    )
  return given


def write_checkpoint(
  path, run: str, *, call: dict, arrays: dict, loss: Loss, state_arrays: dict, validation=None
) -> str:
  """Write a checkpoint of a run atomically: its call (JSON and arrays), its loss (and held-out
  loss) and its state.

  Args:
    path: where (a ``.npz`` file).
    run: the run function's name (``"gradient_descent"``, ``"train"``, ...).
    call: JSON-serialisable arguments of the run.
    arrays: its array arguments (NumPy).
    loss: its :class:`lintraj.losses.Loss` (data and target are stored; the function by reference
      if it is importable, else :func:`lintraj.resume` needs ``loss=``).
    state_arrays: the state, NumPy arrays by name.
    validation: the run's ``validation=`` loss, stored like ``loss``, or None.

  Under ``jax.distributed.initialize()`` only process 0 writes (the others return the path).
  """
  if jax.process_index() != 0:
    return os.fspath(path)
  loss_arrays = {}
  header = {"checkpoint": run, "call": call, "loss": _loss_spec(loss, "loss", loss_arrays)}
  if validation is not None:
    header["validation"] = _loss_spec(validation, "validation", loss_arrays)
  all_arrays = {
    **{f"call/{k}": v for k, v in arrays.items()},
    **loss_arrays,
    **{f"state/{k}": v for k, v in state_arrays.items()},
  }
  return _write_npz(path, all_arrays, header)


def read_checkpoint(path, loss=None, validation=None):
  """``(run, call, arrays, loss, state_arrays, validation)`` from a file written by
  :func:`write_checkpoint` (``validation`` None for a run without held-out data).

  ``loss`` (``validation``) replaces the stored loss function (needed when it is not a lintraj
  loss); its data and target must equal the stored ones.
  """
  arrays, header = _read_npz(path, "checkpoint")
  path = os.fspath(path)
  if "checkpoint" not in header:
    raise ValueError(
      f"{path} is a saved trajectory, not a checkpoint; read it with lintraj.load(path)."
    )
  try:
    spec, held_out = header["loss"], header.get("validation")
    call = {k[len("call/") :]: v for k, v in arrays.items() if k.startswith("call/")}
    state = {k[len("state/") :]: v for k, v in arrays.items() if k.startswith("state/")}
    run, call_header = header["checkpoint"], header["call"]
    for stored in filter(None, (spec, held_out)):  # every stored array is there
      _tree_from_arrays(stored["data"], arrays), _tree_from_arrays(stored["target"], arrays)
  except (KeyError, TypeError, ValueError) as err:
    raise ValueError(f"{path} is not a complete lintraj checkpoint (missing {err}).") from None
  loss = _stored_loss(spec, arrays, loss, path, "loss")
  if held_out is not None:
    validation = _stored_loss(held_out, arrays, validation, path, "validation")
  elif validation is not None:
    raise ValueError(f"{path} is of a run without validation=; resume it without validation.")
  return run, call_header, call, loss, state, validation

"""Mutation testing of lintraj, one module at a time (docs/mutation-testing.md).

    python tools/mutation.py                      # every module in [tool.mutmut.modules]
    python tools/mutation.py lintraj/init.py      # one (or a few) of them
    python tools/mutation.py --list               # the module -> tests table
    python tools/mutation.py lintraj/flow.py --only 'lintraj.flow.x_gradient_flow*'  # some mutants

For each module: copy the repository (its tracked and untracked, not ignored files) to
WORKDIR/<module>, rewrite the copy's [tool.mutmut] section so that mutmut mutates only that module
and runs only that module's tests (pyproject.toml, [tool.mutmut.modules]), run `mutmut run` there,
and print mutants, killed, survived, timed out and wall time per module, with the diff of every
survivor (also written to WORKDIR/<module>/survivors.txt and WORKDIR/summary.json). The
repository itself is never written to. Needs the dev extra (mutmut); not run by CI.

On a shared machine, run it on one core: `taskset -c 1 python tools/mutation.py ...` (the script
limits XLA and BLAS to one thread; --max-children sets how many mutants run at once).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _config() -> dict:
  return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]


def _toml_value(value) -> str:
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (int, float)):
    return repr(value)
  if isinstance(value, str):
    return json.dumps(value)
  return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def _mutmut_section(base: dict, module: str, tests: list[str]) -> str:
  settings = {k: v for k, v in base.items() if not isinstance(v, dict)}
  settings.update(only_mutate=[module], pytest_add_cli_args_test_selection=tests)
  lines = ["[tool.mutmut]"] + [f"{k} = {_toml_value(v)}" for k, v in settings.items()]
  return "\n".join(lines) + "\n"


def _copy_repository(dest: Path) -> None:
  if dest.exists():
    shutil.rmtree(dest)
  files = subprocess.run(
    ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd=ROOT,
    capture_output=True,
    check=True,
  ).stdout.split(b"\0")
  for name in filter(None, (f.decode() for f in files)):
    source = ROOT / name
    if source.is_file():
      (dest / name).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(source, dest / name)


def _rewrite_pyproject(copy: Path, section: str) -> None:
  path = copy / "pyproject.toml"
  text = path.read_text()
  # Drop [tool.mutmut] and its sub-tables, keep every other section.
  text = re.sub(r"(?ms)^\[tool\.mutmut(\.[^\]]*)?\]\n.*?(?=^\[(?!tool\.mutmut)|\Z)", "", text)
  path.write_text(text.rstrip() + "\n\n" + section)


def _results(copy: Path, module: str) -> tuple[dict, list[str]]:
  from mutmut.stats import status_by_exit_code

  meta = json.loads((copy / "mutants" / (module + ".meta")).read_text())
  counts: dict[str, int] = {}
  survivors = []
  for name, code in sorted(meta["exit_code_by_key"].items()):
    status = status_by_exit_code[code]
    counts[status] = counts.get(status, 0) + 1
    if status != "killed":
      survivors.append((name, status))
  return counts, survivors


# Collects one test file and exits 3 when that started a JAX backend (and so XLA's threads).
_COLLECT_CHECK = """
import sys, pytest
from jax._src import xla_bridge
pytest.main(["--collect-only", "-q", "-p", "no:randomly", "-p", "no:xdist", sys.argv[1]])
sys.exit(3 if xla_bridge.backends_are_initialized() else 0)
"""


def _starts_jax_at_collection(tests: list[str], env: dict) -> list[str]:
  """The test files whose collection makes a JAX array. mutmut forks every mutant from a process
  that has collected the tests: XLA's threads running there deadlock the forked mutants (they
  count as timeouts, and a run loses an hour), so such a selection is refused before it starts."""
  files = sorted({test.split("::")[0] for test in tests})
  return [
    f
    for f in files
    if subprocess.run(
      [sys.executable, "-c", _COLLECT_CHECK, f], cwd=ROOT, env=env, capture_output=True
    ).returncode
    == 3
  ]


def run_module(
  module: str, tests: list[str], workdir: Path, max_children: int, only: list[str] = ()
) -> dict:
  name = module.replace("/", "_").removesuffix(".py")
  copy = workdir / name
  cache = workdir / "xla-cache"  # shared by every mutant: keyed by the compiled program
  cache.mkdir(parents=True, exist_ok=True)
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false",
    OMP_NUM_THREADS="1",
    OPENBLAS_NUM_THREADS="1",
    MKL_NUM_THREADS="1",
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=str(cache),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  starting = _starts_jax_at_collection(tests, env)
  if starting:
    print(
      f"{module}: {', '.join(starting)} make a JAX array at collection (a parametrize argument "
      "or a module-level value): forked mutants would deadlock. Build it inside the test (pass "
      "a lambda); see docs/mutation-testing.md.",
      file=sys.stderr,
    )
    return dict(module=module, tests=tests, error="jax at collection", wall_s=0)
  _copy_repository(copy)
  _rewrite_pyproject(copy, _mutmut_section(_config(), module, tests))
  mutmut = [sys.executable, "-c", "from mutmut.__main__ import cli; cli()"]
  start = time.monotonic()
  with open(copy / "mutmut.log", "w") as log:
    rc = subprocess.run(
      mutmut + ["run", "--max-children", str(max_children), *only],
      cwd=copy,
      env=env,
      stdout=log,
      stderr=log,
    ).returncode
  wall = time.monotonic() - start
  if rc != 0 or not (copy / "mutants" / (module + ".meta")).exists():
    print(f"{module}: mutmut failed (exit {rc}); see {copy / 'mutmut.log'}", file=sys.stderr)
    return dict(module=module, tests=tests, error=rc, wall_s=round(wall))
  if "os.fork() was called" in (copy / "mutmut.log").read_text():
    # JAX started in the fork server after all (a fixture, a plugin): forked mutants can deadlock.
    print(f"{module}: warning: JAX was initialized before forking; see mutmut.log", file=sys.stderr)
  counts, survivors = _results(copy, module)
  with open(copy / "survivors.txt", "w") as out:
    for mutant, status in survivors:
      diff = subprocess.run(
        mutmut + ["show", mutant], cwd=copy, env=env, capture_output=True, text=True
      ).stdout
      out.write(f"## {status}: {mutant}\n{diff}\n")
  total = sum(counts.values()) - counts.get("not checked", 0)  # --only leaves some unchecked
  killed = counts.get("killed", 0) + counts.get("timeout", 0)
  return dict(
    module=module,
    tests=tests,
    mutants=total,
    counts=counts,
    score=round(100 * killed / total, 1) if total else None,
    wall_s=round(wall),
    survivors=[f"{status}: {mutant}" for mutant, status in survivors],
  )


def main(argv=None) -> int:
  modules = _config()["modules"]
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("modules", nargs="*", help=f"default: all of {', '.join(modules)}")
  parser.add_argument("--workdir", type=Path, default=Path("/tmp/lintraj-mutation"))
  parser.add_argument("--max-children", type=int, default=1, help="mutants run at once")
  parser.add_argument("--list", action="store_true", help="print the module -> tests table")
  parser.add_argument(
    "--only",
    nargs="+",
    default=[],
    metavar="NAME",
    help="run only these mutants (names or globs, e.g. 'lintraj.flow.x_gradient_flow*'); the "
    "others count as 'not checked'",
  )
  args = parser.parse_args(argv)
  if args.list:
    for module, tests in modules.items():
      print(module, "->", " ".join(tests))
    return 0
  unknown = [m for m in args.modules if m not in modules]
  if unknown:
    parser.error(f"not in [tool.mutmut.modules]: {', '.join(unknown)}")
  args.workdir = args.workdir.resolve()
  if args.workdir.is_relative_to(ROOT):
    parser.error("--workdir must lie outside the repository")
  summary = []
  for module in args.modules or list(modules):
    print(f"{module}: mutating, tests {' '.join(modules[module])}", flush=True)
    summary.append(run_module(module, modules[module], args.workdir, args.max_children, args.only))
    (args.workdir / "summary.json").write_text(json.dumps(summary, indent=1))
  print(
    f"\n{'module':<22} {'mutants':>7} {'killed':>6} {'survived':>8} {'timeout':>7} "
    f"{'other':>5} {'score':>6} {'wall':>6}"
  )
  for r in summary:
    if "error" in r:
      print(f"{r['module']:<22} mutmut failed (exit {r['error']})")
      continue
    c = r["counts"]
    other = r["mutants"] - c.get("killed", 0) - c.get("survived", 0) - c.get("timeout", 0)
    print(
      f"{r['module']:<22} {r['mutants']:>7} {c.get('killed', 0):>6} {c.get('survived', 0):>8} "
      f"{c.get('timeout', 0):>7} {other:>5} {r['score']:>5}% {r['wall_s']:>5}s"
    )
  for r in summary:
    for s in r.get("survivors", []):
      print(f"  {r['module']}: {s}")
  print(f"\ndiffs: {args.workdir}/<module>/survivors.txt")
  return 0


if __name__ == "__main__":
  sys.exit(main())

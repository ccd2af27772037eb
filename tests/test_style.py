"""The code passes ruff's lint and is formatted as ruff formats it (configured in pyproject.toml:
line length 100, 2-space indent). Fix with ``ruff format . && ruff check --fix .``."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).parent.parent
PATHS = ["lintraj", "tests", "benchmarks", "tools", "conftest.py"]


@pytest.fixture(scope="module")
def ruff():
  path = shutil.which("ruff")
  assert path is not None, "ruff is not installed: pip install -e '.[test]' installs it"
  return path


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(ruff, args):
  done = subprocess.run([ruff, *args, *PATHS], cwd=ROOT, capture_output=True, text=True)
  assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]

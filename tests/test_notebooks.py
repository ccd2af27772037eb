"""Every notebook in notebooks/ runs top to bottom in quick mode (LINTRAJ_QUICK=1); a failing cell
fails the test. Outputs go to a temporary folder (LINTRAJ_OUT); the notebooks on disk are not
changed."""

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
  names = {path.stem for path in NOTEBOOKS}
  assert {
    "arora2019-fig1",
    "convergence-rate",
    "acceleration",
    "saxe-modes",
    "residual-failure",
    "deep-matrix-factorization",
    "minibatch-sgd",
    "sgd-stability",
    "implicit-regularization-norms",
    "whitening-generalization",
  } <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch):
  monkeypatch.setenv("LINTRAJ_QUICK", "1")
  monkeypatch.setenv("LINTRAJ_OUT", str(tmp_path))
  notebook = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(
    notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
  )
  client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
  text = "".join(
    output.get("text", "")
    for cell in notebook.cells
    if cell.cell_type == "code"
    for output in cell.get("outputs", [])
  )
  assert "quick" in text.lower(), "the notebook did not report running in quick mode"

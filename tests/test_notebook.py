"""docs/first_competition.ipynb runs green in a real Jupyter kernel (nbclient), as a notebook user
runs it: FoldClassifier, fk.predict, your own model, a submission, on a slice of the real data."""

from __future__ import annotations

import shutil

import pytest
from conftest import FMNIST_DIR, REPO, _have_fmnist, missing


@pytest.mark.slow
def test_the_notebook_runs_in_a_real_kernel_and_reads_well(tmp_path, monkeypatch):
    if not _have_fmnist():
        missing(f"real Fashion-MNIST not found in {FMNIST_DIR}")
    import nbformat
    from nbclient import NotebookClient

    notebook = tmp_path / "first_competition.ipynb"
    shutil.copy(REPO / "docs/first_competition.ipynb", notebook)
    nb = nbformat.read(notebook, as_version=4)
    monkeypatch.setenv("FKAGGLE_DATA", str(FMNIST_DIR))  # the kernel inherits it
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    stdout = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "out-of-fold CV 0." in stdout and "held-out test accuracy 0." in stdout, stdout
    assert "rows sum to [1. 1. 1. 1. 1. 1. 1. 1.]" in stdout and "your own model: CV 0." in stdout, stdout
    assert "submissions/notebook.csv" in stdout and (tmp_path / "submissions/notebook.csv").is_file()
    assert "Traceback" not in text and "\r" not in stdout  # results read cleanly: no bar redraws in stdout
    assert (tmp_path / "oof" / "mine" / "manifest.json").is_file()  # the same run folders the CLI writes

"""The Python API as documented: docs/python.md's notebook session runs exactly as written, and
what it returns is what the CLI sees."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli

import fmnist_kaggle as fk


def _doc_session() -> str:
    text = (REPO / "docs" / "python.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 3, "docs/python.md holds one runnable session, its own-model and predict/estimator sequels"
    return "\n".join(blocks)


def test_import_is_light_and_the_api_is_documented():
    code = (
        "import sys, fmnist_kaggle as fk; fk.__version__; print(sorted(m for m "
        "in ('torch', 'sklearn', 'pandas', 'kaggle', 'ray') if m in sys.modules))"
    )
    import subprocess

    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
    for name in fk.__all__:
        obj = getattr(fk, name)
        assert callable(obj) or name == "__version__", name
        assert name.startswith("_") or (obj.__doc__ or "").strip(), f"fmnist_kaggle.{name} has no docstring"
    with pytest.raises(AttributeError):
        fk.no_such_function  # noqa: B018


@pytest.mark.slow
def test_the_documented_notebook_session_runs_as_written(tmp_path, fmnist, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a fresh folder: no competition config, no `fkaggle init`
    scope: dict = {}
    exec(compile(_doc_session(), "docs/python.md", "exec"), scope)  # noqa: S102
    a, b, stacked, record = scope["a"], scope["b"], scope["stacked"], scope["record"]
    assert a.oof_logits.shape == (3000, 10) and a.test_logits.shape == (1000, 10)
    assert np.array_equal(a.labels, fmnist["y_train"][:3000]) and a.cv["acc"] > 0.7 and b.cv["acc"] > 0.7
    assert a.identity["folds_fingerprint"] == b.identity["folds_fingerprint"]
    assert 0.7 < stacked.cv_acc <= 1 and stacked.details["nested_per_fold"]
    csv = Path(record["csv"])
    assert csv.read_text().splitlines()[0] == "Id,Label" and len(csv.read_text().splitlines()) == 1001
    assert record["test"]["acc"] > 0.7
    out = capsys.readouterr().out
    assert "nested CV" in out and "test accuracy" in out and "your own model: CV" in out
    assert scope["mine"].cv["acc"] > 0.5 and scope["mine"].manifest["model"] == "tiny_mlp"
    assert scope["pred"].proba.shape == (5, 10) and scope["clf"].cv_ > 0.5 and "FoldClassifier: CV" in out
    assert not hasattr(scope["unfitted"], "run_") and scope["unfitted"].get_params() == scope["clf"].get_params()
    # the same runs, seen by the CLI
    listed = run_cli("runs", "--json", cwd=tmp_path)
    assert listed.returncode == 0 and {r["run"] for r in __import__("json").loads(listed.stdout)} >= {
        "fast-s0",
        "fast-s1",
        "mine",
    }


def test_arrays_are_checked_like_files(tmp_path):
    x = np.zeros((20, 28, 28), np.uint8)
    with pytest.raises(fk.DataError, match="only 1 distinct label"):
        fk.load_competition(X=x, y=np.ones(20))
    with pytest.raises(fk.DataError, match="expected 784"):
        fk.load_competition(X=np.zeros((20, 30, 30)), y=np.arange(20) % 2)
    comp = fk.load_competition(X=x.astype(np.float32) / 255, y=np.arange(20) % 2 + 1, X_test=x[:5])
    assert (
        comp.train_set.label_values == (1, 2)
        and len(comp.test_set) == 5
        and comp.test_set.ids.tolist() == [1, 2, 3, 4, 5]
    )
    with pytest.raises(fk.FkaggleError, match="not both"):
        fk.load_competition("competition/competition.toml", X=x, y=np.arange(20) % 2)

"""`fkaggle validate`: every problem of a submission file is listed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from fmnist_kaggle.data.competition import Competition
from fmnist_kaggle.data.submission_file import read_predictions, submission_csv, validate_text
from fmnist_kaggle.errors import FkaggleError


@pytest.fixture()
def comp(five_class_npy) -> Competition:
    f = five_class_npy
    return Competition(name="five", train=f["train"], test=f["test"], sample_submission=f["sample"])


def _good(comp: Competition) -> str:
    n = len(comp.test_set)
    return submission_csv(comp, np.arange(n) % 5)


def test_good_file_is_valid_and_uses_original_labels(comp):
    text = _good(comp)
    assert validate_text(text, comp) == []
    lines = text.splitlines()
    assert lines[0] == "Id,Category" and lines[1] == "1,1" and lines[5] == "5,5"


@pytest.mark.parametrize(
    "mutate,fragment",
    [
        (lambda ls: ["id,label"] + ls[1:], "header is 'id,label', expected Id,Category"),
        (lambda ls: ls[:-1], "rows, expected"),
        (lambda ls: ls[:2] + [ls[1]] + ls[3:], "duplicate id"),
        (lambda ls: [ls[0], "1,9"] + ls[2:], "label(s) outside ['1', '2', '3', '4', '5']"),
        (lambda ls: [ls[0], "1,0"] + ls[2:], "label(s) outside"),
        (lambda ls: [ls[0], "1,"] + ls[2:], "blank id/label"),
        (lambda ls: [ls[0], "1,2,3"] + ls[2:], "without exactly 2 fields"),
        (lambda ls: ls[:1] + ["999,1"] + ls[2:], "ids differ from the test set (1 missing, 1 unknown: missing"),
    ],
)
def test_each_problem_is_reported(comp, mutate, fragment):
    lines = _good(comp).splitlines()
    problems = validate_text("\n".join(mutate(lines)) + "\n", comp)
    assert any(fragment in p for p in problems), problems


def test_rows_in_another_order_are_valid_with_a_note_and_score_by_id(tmp_path, comp):
    lines = _good(comp).splitlines()
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text(
        "\ufeff" + "\n".join([lines[0], *reversed(lines[1:])]) + "\n\n"
    )  # BOM, reversed rows, a trailing blank line
    args = ["--train", str(comp.train), "--test", str(comp.test), "--sample-submission", str(comp.sample_submission)]
    res = run_cli("validate", str(shuffled), *args, "--json")
    out = json.loads(res.stdout)
    assert res.returncode == 0 and out["valid"] and "Kaggle joins on Id" in out["notes"][0]
    ordered = tmp_path / "ordered.csv"
    ordered.write_text(_good(comp))
    assert np.array_equal(read_predictions(shuffled, comp), read_predictions(ordered, comp))


def test_several_problems_are_all_listed_by_the_cli(tmp_path, comp, five_class_npy):
    lines = _good(comp).splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(["Id,Label", lines[2], lines[1], "x,7"] + lines[4:]) + "\n")
    res = run_cli(
        "validate",
        str(bad),
        "--train",
        str(comp.train),
        "--test",
        str(comp.test),
        "--sample-submission",
        str(comp.sample_submission),
    )
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) >= 3 and all(line.startswith(str(bad)) for line in err)
    assert "Traceback" not in res.stderr


def test_sample_submission_must_match_test_size(tmp_path, five_class_npy):
    f = five_class_npy
    short = tmp_path / "short.csv"
    short.write_text("Id,Category\n1,1\n")
    comp = Competition(name="five", train=f["train"], test=f["test"], sample_submission=short)
    with pytest.raises(FkaggleError, match="sample submission has 1 rows but the test file"):
        submission_csv(comp, np.zeros(len(comp.test_set), dtype=int))

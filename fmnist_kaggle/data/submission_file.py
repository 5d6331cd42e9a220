"""Submission files in the competition's layout: writing, validating, reading them back."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.data.competition import Competition, read_sample_submission
from fmnist_kaggle.data.images import plain_label
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.storage import atomic, csvfile, files
from fmnist_kaggle.storage.artifacts import read_file, read_json, utc_now
from fmnist_kaggle.storage.layout import SubmissionFiles
from fmnist_kaggle.storage.schemas import SUBMISSION_RECORD

MAX_SUBMISSION_BYTES = 256 << 20


@dataclass(frozen=True)
class Layout:
    """What a submission must look like: header, ids in order, allowed labels."""

    id_column: str
    label_column: str
    ids: list[str]
    allowed: list[str]


def layout(comp: Competition) -> Layout:
    test = comp.test_set
    if test is None:
        raise FkaggleError("the competition has no test file; submissions need one")
    allowed = [str(v) for v in comp.train_set.label_values]
    if comp.sample_submission is not None:
        sample = read_sample_submission(comp)
        ids = sample.iloc[:, 0].tolist()
        if len(ids) != len(test):
            raise FkaggleError(
                f"sample submission has {len(ids)} rows but the test file {len(test)}", comp.sample_submission
            )
        if not test.ids_synthesized and [str(i) for i in test.ids] != ids:
            raise FkaggleError("sample submission ids differ from the test file's ids", comp.sample_submission)
        return Layout(sample.columns[0], sample.columns[1], ids, allowed)
    return Layout(comp.id_column, comp.label_column, [str(i) for i in test.ids], allowed)


def submission_csv(comp: Competition, pred_class: np.ndarray) -> str:
    """CSV text: ids in test order, class indices mapped back to the original label values."""
    lay = layout(comp)
    if len(pred_class) != len(lay.ids):
        raise FkaggleError(f"{len(pred_class)} predictions for {len(lay.ids)} test rows")
    values = np.asarray(comp.train_set.label_values)[np.asarray(pred_class)]
    return csvfile.csv_text(
        [{lay.id_column: i, lay.label_column: plain_label(v)} for i, v in zip(lay.ids, values)],
        [lay.id_column, lay.label_column],
    )


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_submission(
    comp: Competition, test_logprobs: np.ndarray, out: SubmissionFiles, provenance: dict[str, Any]
) -> dict[str, Any]:
    """Write NAME.test_logprobs.npy, NAME.csv, then NAME.json naming the CSV's SHA-256.

    The record is written last and readers check the hash, so a crash between the writes
    can never leave a record that describes another CSV than the one on disk.
    """
    if not np.isfinite(test_logprobs).all():
        raise FkaggleError("blended test predictions hold NaN or infinite values; refused", out.csv)
    text = submission_csv(comp, test_logprobs.argmax(1))
    problems = validate_text(text, comp)
    if problems:  # never write a file we would refuse to submit
        raise FkaggleError("generated submission fails validation: " + "; ".join(problems[:3]), out.csv)
    atomic.save_npy(out.logprobs, test_logprobs.astype(np.float32))
    atomic.write_text(out.csv, text)
    meta = {
        "file": out.csv.name,
        "sha256": sha256(text),
        "created": utc_now(),
        "competition": comp.name,
        "slug": comp.slug,
        "rows": len(test_logprobs),
        **provenance,
        "submissions": [],
    }
    atomic.write_json(out.record, meta)
    return meta


def read_record(out: SubmissionFiles) -> dict[str, Any] | None:
    """NAME.json when it describes the NAME.csv on disk; None when there is no record."""
    if not out.record.exists():
        return None
    meta = read_json(out.record, "submission record", SUBMISSION_RECORD)
    if not out.csv.exists() or meta["sha256"] != hashlib.sha256(read_file(out.csv, "submission file")).hexdigest():
        raise FkaggleError(
            f"describes another version of {out.csv.name} (an interrupted or edited "
            "write); re-run `fkaggle blend` or remove the record",
            out.record,
        )
    return meta


def _rows(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))  # a BOM is harmless, as on Kaggle
    while rows and not any(cell.strip() for cell in rows[-1]):  # so are trailing blank lines
        rows.pop()
    return rows


def validate_text(text: str, comp: Competition) -> list[str]:
    """Every problem with a submission's content (empty list: valid). Kaggle joins rows on
    the id, so any row order is valid (see `notes`)."""
    lay = layout(comp)
    rows = _rows(text)
    if not rows:
        return ["file is empty"]
    problems = []
    header = [h.strip() for h in rows[0]]
    if header != [lay.id_column, lay.label_column]:
        problems.append(f"header is {','.join(header)!r}, expected {lay.id_column},{lay.label_column}")
    body = rows[1:]
    if len(body) != len(lay.ids):
        problems.append(f"{len(body)} rows, expected {len(lay.ids)}")
    bad_width = [i + 2 for i, r in enumerate(body) if len(r) != 2]
    if bad_width:
        problems.append(f"{len(bad_width)} row(s) without exactly 2 fields (first at line {bad_width[0]})")
    ids = [r[0].strip() if r else "" for r in body]
    labels = [r[1].strip() if len(r) > 1 else "" for r in body]
    blanks = [i + 2 for i, (a, b) in enumerate(zip(ids, labels)) if not a or not b]
    if blanks:
        problems.append(f"{len(blanks)} blank id/label value(s) (first at line {blanks[0]})")
    seen, dups = set(), []
    for i in ids:
        if i in seen:
            dups.append(i)
        seen.add(i)
    if dups:
        problems.append(f"{len(dups)} duplicate id(s), e.g. {dups[0]!r}")
    missing, extra = set(lay.ids) - set(ids), set(ids) - set(lay.ids)
    if missing or extra:
        order = {i: n for n, i in enumerate(lay.ids)}
        named = [f"missing {_few(sorted(missing, key=order.get))}" if missing else ""]
        named += [f"unknown {_few(sorted(extra, key=_sort_key))}" if extra else ""]
        problems.append(
            f"ids differ from the test set ({len(missing)} missing, {len(extra)} unknown: "
            f"{'; '.join(n for n in named if n)})"
        )
    allowed = set(lay.allowed)
    bad = [
        lab for lab in labels if lab and lab not in allowed
    ]  # exactly as the competition writes them: no 1.0, +1, nan
    if bad:
        problems.append(f"{len(bad)} label(s) outside {sorted(allowed, key=_sort_key)}, e.g. {bad[0]!r}")
    return problems


def _few(ids: list[str], n: int = 5) -> str:
    """The first few ids, as written: '7, 12, 40 and 3 more'."""
    shown = ", ".join(repr(i) for i in ids[:n])
    return shown + (f" and {len(ids) - n} more" if len(ids) > n else "")


def _sort_key(s: str) -> tuple[int, Any]:
    return (0, int(s)) if s.lstrip("-").isdigit() else (1, s)


def notes(text: str, comp: Competition) -> list[str]:
    """Harmless differences from the sample submission, worth a line."""
    ids = [r[0].strip() for r in _rows(text)[1:] if r]
    lay = layout(comp)
    if ids != lay.ids and sorted(ids) == sorted(lay.ids):
        first = next(i for i, (a, b) in enumerate(zip(ids, lay.ids)) if a != b)
        return [
            f"rows are not in the test file's order (first difference at line {first + 2}); "
            f"fine: Kaggle joins on {lay.id_column}"
        ]
    return []


def check_file(path: str | Path, comp: Competition) -> tuple[str, list[str], list[str]]:
    """(text, problems, notes) of a submission file, read once ('' text when not UTF-8)."""
    try:
        text = files.read_text(path, "submission file", limit=MAX_SUBMISSION_BYTES)
    except FkaggleError as exc:
        if "not UTF-8" in str(exc):
            return "", ["file is not UTF-8 text"], []
        raise
    problems = validate_text(text, comp)
    return text, problems, [] if problems else notes(text, comp)


def validate_file(path: str | Path, comp: Competition) -> list[str]:
    return check_file(path, comp)[1]


def read_predictions(path: str | Path, comp: Competition) -> np.ndarray:
    """Class indices (0..K-1) of a valid submission file, in test order."""
    text, problems, _ = check_file(path, comp)
    if problems:
        raise FkaggleError("invalid submission: " + "; ".join(problems), path)
    classes = [str(v) for v in comp.train_set.label_values]
    by_id = {r[0].strip(): classes.index(r[1].strip()) for r in _rows(text)[1:]}  # validated: each is a class
    return np.array([by_id[i] for i in layout(comp).ids])  # joined on the id, as Kaggle scores

"""Submission files in the competition's layout, their provenance, and their validation."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle import atomic
from fmnist_kaggle.competition import Competition
from fmnist_kaggle.errors import FkaggleError


def read_sample_submission(comp: Competition) -> Any:
    import pandas as pd

    path = comp.sample_submission
    if path is None:
        raise FkaggleError("the competition has no sample submission")
    if not Path(path).exists():
        raise FkaggleError("sample submission not found", path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise FkaggleError(f"cannot read sample submission ({str(exc).splitlines()[0]})", path) from None
    if df.shape[1] != 2:
        raise FkaggleError(f"sample submission has {df.shape[1]} columns, expected 2 (id, label)", path)
    return df


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
            raise FkaggleError(f"sample submission has {len(ids)} rows but the test file {len(test)}", comp.sample_submission)
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
    out = io.StringIO()
    out.write(f"{lay.id_column},{lay.label_column}\n")
    for i, v in zip(lay.ids, values):
        out.write(f"{i},{int(v)}\n")
    return out.getvalue()


def write_submission(comp: Competition, pred_class: np.ndarray, target: str | Path, provenance: dict[str, Any]) -> tuple[Path, Path]:
    """Write NAME.csv and NAME.json (provenance) atomically; returns both paths."""
    target = Path(target)
    text = submission_csv(comp, pred_class)
    problems = validate_text(text, comp)
    if problems:  # never write a file we would refuse to submit
        raise FkaggleError("generated submission fails validation: " + "; ".join(problems[:3]), target)
    meta = {
        "file": target.name,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "competition": comp.name,
        "slug": comp.slug,
        "rows": len(pred_class),
        **provenance,
        "submissions": [],
    }
    atomic.write_text(target, text)
    atomic.write_json(target.with_suffix(".json"), meta)
    return target, target.with_suffix(".json")


def validate_text(text: str, comp: Competition) -> list[str]:
    """Every problem with a submission's content (empty list: valid)."""
    import csv

    lay = layout(comp)
    rows = list(csv.reader(io.StringIO(text)))
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
    if ids != lay.ids[: len(ids)] or len(ids) != len(lay.ids):
        missing = set(lay.ids) - set(ids)
        extra = set(ids) - set(lay.ids)
        if missing or extra:
            problems.append(f"ids differ from the test set ({len(missing)} missing, {len(extra)} unknown)")
        elif not dups:
            first = next(i for i, (a, b) in enumerate(zip(ids, lay.ids)) if a != b)
            problems.append(f"ids are not in the test order (first difference at line {first + 2})")
    allowed = set(lay.allowed)
    bad = [lab for lab in labels if lab and _norm_label(lab) not in allowed]
    if bad:
        problems.append(f"{len(bad)} label(s) outside {sorted(allowed, key=_sort_key)}, e.g. {bad[0]!r}")
    return problems


def _norm_label(text: str) -> str:
    try:
        f = float(text)
        return str(int(f)) if f == int(f) else text
    except ValueError:
        return text


def _sort_key(s: str) -> tuple[int, Any]:
    return (0, int(s)) if s.lstrip("-").isdigit() else (1, s)


def validate_file(path: str | Path, comp: Competition) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise FkaggleError("submission file not found", path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return ["file is not UTF-8 text"]
    return validate_text(text, comp)


def read_predictions(path: str | Path, comp: Competition) -> np.ndarray:
    """Class indices (0..K-1) of a valid submission file, in test order."""
    import pandas as pd

    problems = validate_file(path, comp)
    if problems:
        raise FkaggleError("invalid submission: " + "; ".join(problems), path)
    df = pd.read_csv(path, dtype=str)
    values = np.array([int(_norm_label(v)) for v in df.iloc[:, 1]])
    return np.searchsorted(np.asarray(comp.train_set.label_values), values)

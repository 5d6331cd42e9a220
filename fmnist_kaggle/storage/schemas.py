"""JSON Schemas of the records the workspace reads back (docs/artifacts.md), and the one check.

Only what readers rely on is required: types and ranges of the keys they index, so a record
edited by hand, written by another version or planted is one line naming the file and the key,
never a traceback or an endless loop (`data.folds = 10**12`). Extra keys are allowed.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 0}
_NUMBER = {"type": ["number", "null"]}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
MAX_FOLDS = 1000  # far above any sane k; bounds every loop over a record's folds

RECORD = {  # a verified artifact: {file, bytes, sha256[, shape, dtype]}
    "type": "object",
    "required": ["file", "bytes", "sha256"],
    "properties": {
        "file": _STR,
        "bytes": _INT,
        "sha256": _SHA256,
        "shape": {"type": "array", "items": _INT},
        "dtype": _STR,
    },
}
_RECORDS = {"type": "object", "additionalProperties": RECORD}
IDENTITY = {
    "type": "object",
    "required": ["data_fingerprint", "folds_fingerprint", "config"],
    "properties": {
        "data_fingerprint": _STR,
        "folds_fingerprint": _STR,
        "test_fingerprint": {"type": ["string", "null"]},
        "config": {"type": "object"},
        "teacher_fingerprint": _STR,
        "distill_fingerprint": _STR,
        "init_fingerprint": _STR,
    },
}
_SCORES = {"type": "object", "required": ["acc", "logloss"], "properties": {"acc": _NUMBER, "logloss": _NUMBER}}

MANIFEST = {
    "type": "object",
    "required": ["schema", "run", "created", "model", "config", "identity", "data", "files", "seeds"],
    "properties": {
        "schema": {"type": "integer"},
        "run": _STR,
        "created": _STR,
        "model": _STR,
        "config": {
            "type": "object",
            "required": ["model", "model_kwargs"],
            "properties": {"model": _STR, "model_kwargs": {"type": "object"}},
        },
        "identity": IDENTITY,
        "seeds": {"type": "array", "items": _INT, "minItems": 1},
        "data": {
            "type": "object",
            "required": ["folds", "num_classes", "rows"],
            "properties": {
                "folds": {"type": "integer", "minimum": 2, "maximum": MAX_FOLDS},
                "num_classes": {"type": "integer", "minimum": 2, "maximum": 100_000},
                "rows": _INT,
                "label_values": {"type": "array"},
                "class_names": {"type": "array", "items": _STR},
                "source": {"type": ["object", "null"]},
            },
        },
        "files": _RECORDS,
        "cv": {"anyOf": [_SCORES, {"type": "null"}]},
        "test_metrics": {"anyOf": [_SCORES, {"type": "null"}]},
        "predicted_from": {"type": "object", "required": ["run"], "properties": {"run": _STR}},
    },
}

DONE_MARKER = {  # fold_K/metrics.json and fold_K/seed_S.json
    "type": "object",
    "required": ["identity", "artifacts"],
    "properties": {
        "identity": IDENTITY,
        "artifacts": _RECORDS,
        "fold": _INT,
        "seed": _INT,
        "seeds": {"type": "array", "items": {"type": "object"}},
    },
}

FOLD_ASSIGNMENT = {
    "type": "object",
    "required": ["data_fingerprint", "folds", "folds_fingerprint"],
    "properties": {
        "data_fingerprint": _STR,
        "folds": {"type": "integer", "minimum": 2, "maximum": MAX_FOLDS},
        "folds_fingerprint": _STR,
        "rows": _INT,
    },
}

SUBMISSION_RECORD = {
    "type": "object",
    "required": ["sha256"],
    "properties": {"sha256": _SHA256, "runs": {"type": "array"}, "best_single": {"type": ["object", "null"]}},
}

AUTOPILOT_STATE = {
    "type": "object",
    "required": ["schema", "sessions", "runs", "order"],
    "properties": {
        "schema": {"type": "integer", "minimum": 2},
        "sessions": {"type": "array", "items": {"type": "object"}},
        "runs": {"type": "object", "additionalProperties": {"type": "object", "required": ["run", "entry", "status"]}},
        "order": {"type": "array", "items": _STR},
    },
}

AUTOPILOT_SPEEDS = {
    "type": "object",
    "required": ["schema", "machines"],
    "properties": {
        "schema": {"type": "integer"},
        "machines": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["train_ips", "predict_ips"],
                    "properties": {
                        "train_ips": {"type": "number", "exclusiveMinimum": 0},
                        "predict_ips": {"type": "number", "exclusiveMinimum": 0},
                        "refresh_ips": {"type": "number", "minimum": 0},
                    },
                },
            },
        },
    },
}

DUPLICATES = {
    "type": "object",
    "required": ["train_groups", "train_rows", "conflicting_label_groups", "test_groups", "train_test_rows"],
    "properties": {k: {"type": "integer", "minimum": 0} for k in ("train_groups", "train_rows", "test_groups")},
}

DRIFT = {"type": "object", "required": ["auc"], "properties": {"auc": _NUMBER, "verdict": _STR}}


def schema_problem(obj: Any, schema: dict[str, Any]) -> str | None:
    """The first way `obj` breaks `schema`, as `key.path: what is wrong` (None when it fits)."""
    from jsonschema import Draft202012Validator

    errors = sorted(
        Draft202012Validator(schema).iter_errors(obj),
        key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
    )
    if not errors:
        return None
    err = errors[0]
    where = ".".join(str(p) for p in err.absolute_path) or "top level"
    return f"{where}: {err.message[:160]}"

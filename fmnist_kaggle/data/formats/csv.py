"""CSV pixel rows: `label,pixel1..pixel784`, `pixel0..783`, with or without an id column or a
header, 0..255 or 0..1, gzip'd or a single zipped CSV. Parsed once, then served from a cache
keyed by the file's hash."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_kaggle.data.formats._common import ID_COLUMNS, LABEL_COLUMNS, NUM_PIXELS, Raw, _is_number, _to_uint8
from fmnist_kaggle.errors import DataError
from fmnist_kaggle.storage import atomic, files
from fmnist_kaggle.storage.artifacts import present, read_file

SUFFIXES = (".csv", ".csv.gz", ".tsv")
DOWNLOAD_SUFFIXES = (".csv", ".csv.zip", ".csv.gz", ".tsv")
log = logging.getLogger(__name__)
CACHE_VERSION = 3  # 2: the arrays' SHA-256 recorded and checked on every read; 3: labels kept as text
CSV_CAP = 1 << 30  # the 60,000-row Fashion-MNIST CSV is 133 MB


def csv_limit() -> int:
    return min(files.max_bytes(), CSV_CAP)


def by_content(head: bytes) -> bool:
    return False  # the fallback: what no other format claims is read as CSV


def read(path: Path, labels_path: Path | None, use_cache: bool = True) -> Raw:
    raw, raw.scale = _cached_csv(path, use_cache)
    return raw


def _read_csv(path: Path) -> Raw:
    import pandas as pd

    raw = files.read_bytes(path, "CSV file", csv_limit())  # gunzip ourselves: one clear error, bombs capped
    if not raw.strip():
        raise DataError("empty file", path)
    sep = "\t" if path.name.lower().endswith(".tsv") else ","
    try:
        df = pd.read_csv(io.BytesIO(raw), sep=sep, engine=_csv_engine())
    except Exception as exc:  # parser errors come in many types; all mean "bad CSV"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot parse CSV ({msg})", path) from None
    if len(df) == 0:
        raise DataError("no data rows", path)
    columns = [str(c).strip() for c in df.columns]
    header = [str(c) for c in df.columns]  # as written: the label column is read again by its name
    if all(_is_number(c) for c in columns):  # headerless file: first row is data
        df = pd.read_csv(io.BytesIO(raw), sep=sep, header=None, engine=_csv_engine())
        header = []
        ncol = df.shape[1]
        if ncol not in (NUM_PIXELS, NUM_PIXELS + 1):
            raise DataError(f"expected 784 pixel columns (plus an optional label), found {ncol} columns", path)
        columns = (["label"] if ncol == NUM_PIXELS + 1 else []) + [f"pixel{i}" for i in range(NUM_PIXELS)]
    df.columns = columns
    lower = {c.lower(): c for c in columns}
    pixel_cols = [c for c in columns if re.fullmatch(r"(pixel|px|p)?_?\d+", c, flags=re.I)]
    label_col = next((lower[n] for n in LABEL_COLUMNS if n in lower), None)
    id_col = next((lower[n] for n in ID_COLUMNS if n in lower), None)
    if id_col is None:
        id_col = next((c for c in columns if c.lower().endswith("id") and c not in pixel_cols and c != label_col), None)
    others = [c for c in columns if c not in pixel_cols and c not in (label_col, id_col)]
    if others:
        raise DataError(f"unexpected column(s) {', '.join(others[:3])}: expected label, id and pixel columns", path)
    if len(pixel_cols) != NUM_PIXELS:
        raise DataError(f"expected 784 pixel columns, found {len(pixel_cols)}", path)
    pixels = _numeric_block(df, pixel_cols, path)
    targets = None
    if label_col is not None:  # as text: '01' stays '01', 'NA' and 'None' are words (images.py tells them apart)
        targets = _label_texts(raw, sep, header[columns.index(label_col)] if header else None)
    ids = None if id_col is None else df[id_col].to_numpy()
    return Raw(pixels, targets, ids, id_col, (pixel_cols[0], pixel_cols[-1]))


def _label_texts(raw: bytes, sep: str, name: str | None) -> np.ndarray:
    """The label column as the text of its cells (`name`; None: the first column of a headerless
    file), nothing taken for missing but an empty cell."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:  # pandas' own parser: slower, the same cells
        import pandas as pd

        first = 0 if name is None else name
        header = None if name is None else 0
        col = pd.read_csv(io.BytesIO(raw), sep=sep, header=header, usecols=[first], dtype=str, keep_default_na=False)
        return col.iloc[:, 0].to_numpy(dtype=object)
    key = "f0" if name is None else name
    table = pcsv.read_csv(
        io.BytesIO(raw),
        read_options=pcsv.ReadOptions(autogenerate_column_names=name is None),
        parse_options=pcsv.ParseOptions(delimiter=sep),
        convert_options=pcsv.ConvertOptions(
            include_columns=[key], column_types={key: pa.string()}, strings_can_be_null=False, null_values=[]
        ),
    )
    return np.array(table.column(0).to_pylist(), dtype=object)


def _csv_engine() -> str:
    try:
        import pyarrow  # noqa: F401

        return "pyarrow"
    except ImportError:
        return "c"


def _numeric_block(df: Any, cols: list[str], path: Path) -> np.ndarray:
    import pandas as pd

    block = df[cols]
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(block[c]) or pd.api.types.is_bool_dtype(block[c])]
    if bad:
        col = block[bad[0]]
        conv = pd.to_numeric(col, errors="coerce")
        row = int(np.flatnonzero(conv.isna().to_numpy() & col.notna().to_numpy())[0]) if conv.isna().any() else 0
        raise DataError(f"non-numeric pixel value {col.iloc[row]!r} in column {bad[0]} (row {row + 1})", path)
    values = block.to_numpy()
    if values.dtype.kind == "f":
        nan = np.isnan(values)
        if nan.any():
            r, c = np.argwhere(nan)[0]
            raise DataError(f"missing/NaN pixel value in column {cols[c]} (row {r + 1})", path)
    return values


def _cache_dir() -> Path:
    return Path(os.environ.get("FKAGGLE_CACHE") or Path.home() / ".cache" / "fmnist_kaggle")


def _arrays_digest(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """SHA-256 over the cached arrays (name, dtype, shape, bytes) and their metadata."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read_cache(cache: Path) -> tuple[Raw, str] | None:
    """The cached parse, when the file is a regular file whose arrays match the hash it records
    (an edited or torn cache is rebuilt, never trusted)."""
    try:
        with np.load(io.BytesIO(read_file(cache, "CSV cache")), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "meta"}
            meta = json.loads(str(z["meta"]))
        digest = meta.pop("sha256", None)
        if digest != _arrays_digest(arrays, meta):
            log.warning(f"{cache}: cache does not match its recorded hash (edited?); parsing the CSV again")
            return None
        raw = Raw(
            arrays["pixels"], arrays.get("targets"), arrays.get("ids"), meta["id_column"], tuple(meta["pixel_columns"])
        )
        return raw, meta["scale"]
    except Exception:  # noqa: BLE001  (an unreadable cache, whatever the error, is rebuilt)
        return None


def _cached_csv(path: Path, use_cache: bool) -> tuple[Raw, str]:
    """Parse a CSV once; later loads of the same bytes come from an .npz cache (verified)."""
    digest = hashlib.blake2b(files.read_bytes(path, "CSV file", csv_limit()), digest_size=16).hexdigest()
    cache = _cache_dir() / f"csv-v{CACHE_VERSION}-{digest}.npz"
    if use_cache and present(cache):
        cached = _read_cache(cache)
        if cached is not None:
            return cached
    raw = _read_csv(path)
    raw.pixels, scale = _to_uint8(raw.pixels, path)
    if use_cache:
        arrays = {"pixels": raw.pixels}
        if raw.targets is not None:  # text labels as a unicode array (npz refuses object arrays)
            arrays["targets"] = raw.targets.astype(str) if raw.targets.dtype.kind == "O" else raw.targets
        if raw.ids is not None:  # npz refuses object arrays: string ids are stored as str
            arrays["ids"] = raw.ids.astype(str) if raw.ids.dtype.kind == "O" else raw.ids
        meta = {"id_column": raw.id_column, "pixel_columns": list(raw.pixel_columns or ()), "scale": scale}
        meta["sha256"] = _arrays_digest(arrays, meta)
        try:
            atomic.save_npz(cache, meta=np.array(json.dumps(meta)), **arrays)
        except OSError:
            pass  # a read-only cache folder must not break loading
    return raw, scale

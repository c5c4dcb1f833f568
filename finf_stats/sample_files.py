"""Reading users' samples from files (.npy, .csv, .txt/.tsv), with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from finf_stats.validation import SampleError

SUFFIXES = (".npy", ".csv", ".txt", ".tsv", ".dat")


def read_samples(path: str | os.PathLike[str], column: str | int | None = None) -> np.ndarray:
    """Read a 1-D sample (or a 2-D candidates x samples array from ``.npy``).

    ``.npy`` files are loaded without pickle. Text files hold one value per line, or columns
    (comma-separated for ``.csv``, whitespace otherwise); ``column`` picks one by header name
    or 0-based index (required when there are several columns, ignored when there is one).
    A header line is detected when the first row is not numeric.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"sample file not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise SampleError(f"{p}: unsupported file type {suffix!r}; use one of "
                          f"{', '.join(SUFFIXES)}")
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as err:
            raise SampleError(f"{p}: not a numeric .npy array ({err})") from None
        if column is not None and arr.ndim == 2:
            index = int(column)
            if not 0 <= index < arr.shape[1]:
                raise SampleError(f"{p}: column {index} out of range (0..{arr.shape[1] - 1})")
            arr = arr[:, index]
        return np.asarray(arr, dtype=float)
    delimiter = "," if suffix == ".csv" else None
    lines = [ln for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise SampleError(f"{p} holds no values")
    first = lines[0].split(delimiter)
    header = None
    try:
        [float(v) for v in first]
    except ValueError:
        header = [h.strip() for h in first]
        lines = lines[1:]
    try:
        rows = [[float(v) if v.strip() else np.nan for v in ln.split(delimiter)] for ln in lines]
    except ValueError as err:
        raise SampleError(f"{p}: non-numeric value ({err})") from None
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise SampleError(f"{p}: rows have different numbers of columns {sorted(widths)}")
    table = np.asarray(rows, dtype=float).reshape(len(rows), -1)
    if table.shape[1] == 1:
        return table[:, 0]
    if column is None:
        names = ", ".join(header) if header else f"0..{table.shape[1] - 1}"
        raise SampleError(f"{p} has {table.shape[1]} columns ({names}); choose one with --column")
    if isinstance(column, str) and not column.isdigit():
        if header is None or column not in header:
            raise SampleError(f"{p}: no column named {column!r} (columns: {header})")
        index = header.index(column)
    else:
        index = int(column)
        if not 0 <= index < table.shape[1]:
            raise SampleError(f"{p}: column {index} out of range (0..{table.shape[1] - 1})")
    return table[:, index]

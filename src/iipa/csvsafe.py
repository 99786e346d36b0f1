"""CSV cells that a spreadsheet will not run as formulas (OWASP "CSV injection").

A text cell starting with ``= + - @``, a tab or a carriage return is prefixed with a single
quote, which spreadsheets show as text. Numbers stay numbers: only strings are touched,
so a negative score is written as ``-0.42``, while a post id ``-AbC`` becomes ``'-AbC``.
Every CSV that iipa writes for people to open (score tables, rejects, study exports and
reports, fetch reports, experiment tables) goes through here; pairs tables written as CSV
are data read back by iipa (ids must round-trip), see ``iipa.pairs.table.write_pairs``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: iipa.output (and so `iipa --help`) stays pandas-free
    import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Every CSV iipa writes ends its lines with \n, as DuckDB and Spark do and Unix tools expect
# (the csv module's default is \r\n, pandas' is the platform's).
CSV_LINE_END = "\n"


def neutralise(value: Any) -> Any:
    """``value`` with a leading ``'`` if it is text a spreadsheet would take for a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells are neutralised (numeric columns untouched)."""
    import pandas as pd

    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(neutralise)
    return out


def frame_to_csv(df: pd.DataFrame, target: Any, **kwargs: Any) -> None:
    """``df.to_csv(target, **kwargs)`` with text cells neutralised (``index=False`` by default)."""
    kwargs.setdefault("index", False)
    kwargs.setdefault("lineterminator", CSV_LINE_END)
    neutralise_frame(df).to_csv(target, **kwargs)


class SafeWriter:
    """``csv.writer`` whose rows are neutralised cell by cell."""

    def __init__(self, fh: IO[str], **kwargs: Any) -> None:
        kwargs.setdefault("lineterminator", CSV_LINE_END)
        self._w = csv.writer(fh, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow([neutralise(v) for v in row])


class SafeDictWriter(csv.DictWriter):
    """``csv.DictWriter`` whose values are neutralised (the header is ours, left as is)."""

    def __init__(self, fh: IO[str], fieldnames: Any, **kwargs: Any) -> None:
        kwargs.setdefault("lineterminator", CSV_LINE_END)
        super().__init__(fh, fieldnames, **kwargs)

    def writerow(self, rowdict: dict[str, Any]) -> Any:
        return super().writerow({k: neutralise(v) for k, v in rowdict.items()})


def sql_neutralise(expr: str) -> str:
    """The same rule as a SQL expression (DuckDB), for CSVs written by ``COPY``."""
    return (f"CASE WHEN left(CAST({expr} AS VARCHAR), 1) IN ('=', '+', '-', '@', chr(9), chr(13)) "
            f"THEN '''' || CAST({expr} AS VARCHAR) ELSE CAST({expr} AS VARCHAR) END")

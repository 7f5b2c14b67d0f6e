"""Tables of statistics: equal-length numpy columns that print as aligned text, write CSV and turn
into pandas DataFrames (pandas optional).

Column names carry their unit, and the text shows each in a readable form: ``_ns`` columns in the
chosen time unit (:mod:`kperf.tracing.units`), ``_frac`` columns as percent, other floats with a few
digits.  :func:`align_columns` lays out every text table of kperf (these and ``Profile.table()``).
CSV files are written atomically (:mod:`kperf.tracing.atomic`).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from kperf.dialect.errors import KperfError

from .atomic import atomic_file
from .units import ns_per


def fmt_float(x: float, digits: int) -> str:
    """``"1,234.5"``; NaN (no value) as ``"-"``."""
    if x != x:
        return "-"
    return f"{x:,.{digits}f}"


def align_columns(heads: Sequence[str], cells: Sequence[Sequence[str]], right: Sequence[bool], *,
                  sep: str = "  ", min_widths: Sequence[int] | None = None) -> list[str]:
    """The header line, a rule and one line per row of text columns (``cells[column][row]``).

    Each column is as wide as its widest entry (at least ``min_widths``), numbers (``right``)
    right-aligned; trailing blanks are dropped.
    """
    widths = [max([len(h), m] + [len(c) for c in cs])
              for h, cs, m in zip(heads, cells, min_widths or [0] * len(heads), strict=True)]

    def line(parts):
        return sep.join(p.rjust(w) if r else p.ljust(w) for p, w, r in zip(parts, widths, right, strict=True)
                        ).rstrip()

    n = len(cells[0]) if cells else 0
    return ([line(heads), "-" * (sum(widths) + len(sep) * (len(widths) - 1))]
            + [line([c[i] for c in cells]) for i in range(n)])


def _float_digits(name: str) -> int:
    """Digits shown of a float column that has no unit suffix."""
    if name.endswith("ghz"):
        return 3
    if name.endswith(("_over_mean", "_cv", "waves")) or name.startswith("value"):
        return 2
    return 1


def _text_column(name: str, col: np.ndarray, time_unit: str, ns: float) -> tuple[str, list[str]]:
    """(header, cells) of one column as the text table shows it."""
    if name.endswith("_ns"):
        return name[:-3] + f"_{time_unit}", [fmt_float(x / ns, 3) for x in col.tolist()]
    if name.endswith("_frac"):
        return name[:-5] + " %", [fmt_float(100 * x, 1) for x in col.tolist()]
    if col.dtype.kind == "f":
        return name, [fmt_float(x, _float_digits(name)) for x in col.tolist()]
    return name, [str(x) for x in col.tolist()]


@dataclasses.dataclass
class Table:
    """A named table: equal-length numpy columns, printable, exportable.

    Attributes:
        name: short identifier (the CSV file stem, e.g. ``"scopes"``).
        title: a line shown above the text table.
        columns: ``{column name: 1-D numpy array}`` in display order.
        notes: lines shown under the text table (caveats, dropped data).
    """

    name: str
    title: str
    columns: dict[str, np.ndarray]
    notes: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts of Python values (for JSON, tests, small tables)."""
        cols = {k: v.tolist() for k, v in self.columns.items()}
        return [{k: cols[k][i] for k in cols} for i in range(len(self))]

    def where(self, **match) -> list[dict[str, Any]]:
        """Rows whose columns equal the given values, e.g. ``t.where(scope="mma")``."""
        return [r for r in self.rows() if all(r[k] == v for k, v in match.items())]

    def select(self, mask: np.ndarray) -> Table:
        return Table(self.name, self.title, {k: v[mask] for k, v in self.columns.items()}, list(self.notes))

    def to_csv(self, path: str | os.PathLike) -> str:
        """Write the table as CSV (raw values: ns, cycles, fractions; NaN as empty), atomically."""
        path = pathlib.Path(path)
        cols = {k: v.tolist() for k, v in self.columns.items()}
        with atomic_file(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(list(cols))
            for i in range(len(self)):
                w.writerow(["" if isinstance(cols[k][i], float) and cols[k][i] != cols[k][i] else cols[k][i]
                            for k in cols])
        return str(path)

    def to_pandas(self):
        """A ``pandas.DataFrame`` of the columns (pandas is optional: ``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise KperfError("pandas is not installed", fix="pip install pandas (or use to_csv())") from e
        return pd.DataFrame({k: v for k, v in self.columns.items()})

    def to_text(self, time_unit: str = "us", max_rows: int | None = None) -> str:
        """Aligned text: ``_ns`` columns in ``time_unit``, ``_frac`` columns as percent."""
        ns = ns_per(time_unit)
        n = len(self) if max_rows is None else min(len(self), max_rows)
        shown = [_text_column(name, col[:n], time_unit, ns) for name, col in self.columns.items()]
        right = [col.dtype.kind in "fiub" for col in self.columns.values()]
        out = [self.title] + align_columns([h for h, _ in shown], [c for _, c in shown], right)
        if n < len(self):
            out.append(f"... {len(self) - n} more rows (to_csv() writes all)")
        if not len(self):
            out.append("(no rows)")
        out += [f"note: {x}" for x in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()


class Tables:
    """Named statistics tables (``self.tables``): ``x[name]`` is one, ``str(x)`` prints ``x.to_text()``,
    ``to_csv(dir)`` writes one CSV per table (``<csv_prefix><name>.csv``), ``to_pandas()`` gives
    ``{name: DataFrame}``."""

    tables: dict[str, Table]
    csv_prefix = ""

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self, time_unit: str = "us", max_rows: int | None = 40) -> str:
        return "\n\n".join(t.to_text(time_unit, max_rows) for t in self.tables.values())

    def to_csv(self, out_dir: str | os.PathLike) -> dict[str, str]:
        out = pathlib.Path(out_dir)
        return {n: t.to_csv(out / f"{self.csv_prefix}{n}.csv") for n, t in self.tables.items()}

    def to_pandas(self) -> dict:
        return {n: t.to_pandas() for n, t in self.tables.items()}

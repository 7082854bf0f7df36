"""The export formats: JSON Lines, CSV and Parquet, each turning rows into bytes a chunk at a time.

A writer never holds more than what it has not handed out yet: the exporter takes its bytes
(`take`) every megabyte or so and sends them on. Parquet holds one row group's columns until the
group is full, so its memory is bounded by `ROW_GROUP_ROWS` and `ROW_GROUP_BYTES`, not by the
crawl's size; a group costs a few times its text while it is encoded (the Python values, Arrow's
copy, the encoded pages), so groups are kept smaller than analytics engines would pick for
themselves. (What grows with the crawl is the footer's metadata, a few kilobytes per group.)
pyarrow is an optional extra (`parquet`), imported only for a Parquet export.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Mapping
from typing import Any, Protocol

from pipeline.errors import ExportFailed, InvalidExport
from pipeline.export.columns import BODY, BOOL, FLOAT, INT, TIME, Selection, as_json, flat_value, nested_row, value_at

FORMATS = ("jsonl", "csv", "parquet")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
ROW_GROUP_ROWS = 2_000
ROW_GROUP_BYTES = 8 * 1024 * 1024
PARQUET_EXTRA = "parquet"


class RowWriter(Protocol):
    def write(self, document: Mapping[str, Any]) -> None:
        """Add the row of one page document."""

    def pending(self) -> int:
        """Bytes (or characters) written but not taken yet."""

    def take(self) -> bytes:
        """The bytes written since the last `take`."""

    def close(self) -> None:
        """Finish the output (Parquet's footer); `take` then returns the rest."""

    def discard(self) -> None:
        """Give up: release what the writer holds, writing nothing more."""


def row_writer(format: str, selection: Selection) -> RowWriter:
    """The writer for `format`; `InvalidExport` for an unknown one, or Parquet without pyarrow."""
    if format == "jsonl":
        return JsonLinesWriter(selection)
    if format == "csv":
        return CsvWriter(selection)
    if format == "parquet":
        return ParquetWriter(selection)
    raise InvalidExport(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")


class JsonLinesWriter:
    """One JSON object per line, UTF-8, in the document's own shape (dates as ISO 8601)."""

    def __init__(self, selection: Selection) -> None:
        self._selection = selection
        self._buffer = bytearray()

    def write(self, document: Mapping[str, Any]) -> None:
        self._buffer += as_json(nested_row(document, self._selection)).encode() + b"\n"

    def pending(self) -> int:
        return len(self._buffer)

    def take(self) -> bytes:
        data, self._buffer = bytes(self._buffer), bytearray()
        return data

    def close(self) -> None:
        pass

    def discard(self) -> None:
        pass


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


class CsvWriter:
    """RFC 4180 CSV in UTF-8: a header of column names, then one line per page."""

    def __init__(self, selection: Selection) -> None:
        self._columns = selection.columns
        self._text = io.StringIO()
        self._csv = csv.writer(self._text)
        self._csv.writerow([c.name for c in self._columns])

    def write(self, document: Mapping[str, Any]) -> None:
        self._csv.writerow([csv_cell(flat_value(c, value_at(document, c.path))) for c in self._columns])

    def pending(self) -> int:
        return self._text.tell()

    def take(self) -> bytes:
        data = self._text.getvalue().encode()
        self._text.seek(0)
        self._text.truncate()
        return data

    def close(self) -> None:
        pass

    def discard(self) -> None:
        pass


class _Drain:
    """The file object pyarrow writes to: it keeps the bytes until they are taken."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0
        self.pending = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.chunks.append(chunk)
        self.position += len(chunk)
        self.pending += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.pending = 0
        return data


def _import_pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise InvalidExport(
            f"the parquet format needs pyarrow, which is not installed: install the {PARQUET_EXTRA!r} extra "
            f"(pip install 'pipeline[{PARQUET_EXTRA}]' or uv sync --extra {PARQUET_EXTRA})"
        ) from None
    return pyarrow, pyarrow.parquet


class ParquetWriter:
    """Parquet written a row group at a time; numbers, flags and times keep their types, lists
    and objects are JSON text as in CSV."""

    def __init__(
        self, selection: Selection, row_group_rows: int = ROW_GROUP_ROWS, row_group_bytes: int = ROW_GROUP_BYTES
    ) -> None:
        self._pa, parquet = _import_pyarrow()
        pa = self._pa
        types = {INT: pa.int64(), FLOAT: pa.float64(), BOOL: pa.bool_(), TIME: pa.timestamp("us", tz="UTC")}
        self._columns = selection.columns
        self._schema = pa.schema([pa.field(c.name, types.get(c.kind, pa.string())) for c in self._columns])
        self._rows_per_group, self._bytes_per_group = row_group_rows, row_group_bytes
        self._values: list[list[Any]] = [[] for _ in self._columns]
        self._rows = 0
        self._bytes = 0
        self._drain = _Drain()
        self._file = pa.PythonFile(self._drain, mode="w")
        # Bodies are all different: a dictionary of them would cost memory and save nothing.
        dictionary = [c.name for c in self._columns if c.name != BODY]
        self._writer = parquet.ParquetWriter(self._file, self._schema, use_dictionary=dictionary)
        self._closed = False

    def write(self, document: Mapping[str, Any]) -> None:
        for column, values in zip(self._columns, self._values, strict=True):
            value = flat_value(column, value_at(document, column.path))
            values.append(value)
            if isinstance(value, str):
                self._bytes += len(value)
        self._rows += 1
        if self._rows >= self._rows_per_group or self._bytes >= self._bytes_per_group:
            self._write_group()

    def _write_group(self) -> None:
        if not self._rows:
            return
        pa = self._pa
        arrays = []
        for field, values in zip(self._schema, self._values, strict=True):
            try:
                arrays.append(pa.array(values, type=field.type))
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                reason = f"column {field.name} has a value Parquet cannot store as {field.type}: {exc}"
                raise ExportFailed(reason) from exc
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        self._values = [[] for _ in self._columns]
        self._rows = self._bytes = 0

    def pending(self) -> int:
        return self._drain.pending

    def take(self) -> bytes:
        return self._drain.take()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._write_group()
        finally:
            self._finish()

    def discard(self) -> None:
        if not self._closed:
            self._values = [[] for _ in self._columns]
            self._finish()

    def _finish(self) -> None:
        self._closed = True
        self._writer.close()
        self._file.close()

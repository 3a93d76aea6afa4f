"""Spreadsheets: .xlsx through openpyxl (read-only, values not formulas) and .csv through the csv module.

Each sheet becomes Markdown tables of whole rows under (title, sheet name), the header row (the sheet's
first non-empty row) repeated in every piece so that each chunk reads on its own.
"""

from __future__ import annotations

import csv
import io
from typing import Final

from chatbot.errors import PayloadTooLarge
from chatbot.ingest.loaders.document import Limits, Loaded, Section, label, table_sections
from chatbot.ingest.loaders.text import decode_text
from chatbot.ingest.loaders.zipped import open_zip

MAX_CELLS: Final = 2_000_000


def load_xlsx(data: bytes, stem: str, limits: Limits) -> Loaded:
    """One run of tables per sheet; the workbook's title, else the stem."""
    open_zip(data, limits.max_unpacked_bytes)
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        title = label(book.properties.title or "")[0] or stem
        sections: list[Section] = []
        cells = 0
        for sheet in book.worksheets:
            rows: list[list[str]] = []
            for row in sheet.iter_rows(values_only=True):
                cells += len(row)
                if cells > MAX_CELLS:
                    raise PayloadTooLarge(
                        f"The workbook has more than {MAX_CELLS:,} cells.", code="document_too_large"
                    )
                rows.append(["" if v is None else str(v) for v in row])
            sections.extend(table_sections((title, label(sheet.title)[0]), _trim_columns(rows)))
    finally:
        book.close()
    return title, tuple(sections)


def load_csv(data: bytes, stem: str, limits: Limits) -> Loaded:
    """A .csv (or .tsv) file: its rows as tables; the delimiter is sniffed from the first lines."""
    del limits
    text = decode_text(data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if row]
    if sum(len(row) for row in rows) > MAX_CELLS:
        raise PayloadTooLarge(f"The table has more than {MAX_CELLS:,} cells.", code="document_too_large")
    return stem, tuple(table_sections((stem,), rows))


def _trim_columns(rows: list[list[str]]) -> list[list[str]]:
    """Rows without the empty columns a sheet's used range often carries on the right."""
    width = max((max((i + 1 for i, v in enumerate(row) if v.strip()), default=0) for row in rows), default=0)
    return [row[:width] for row in rows]

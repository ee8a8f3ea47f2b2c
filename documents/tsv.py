"""Parse and export the tab-separated files behind shared documents.

Pure standard library, no Django: the documents app calls `parse_tsv` on an
upload (in a worker thread, since a large file takes a noticeable fraction of
a second) and `export_tsv` to hand a document back as a download.

The dialect read by `parse_tsv`:

- The first physical line is the header; every later line is a row.
- Fields are separated by tabs. A field that *starts* with `"` is quoted like
  CSV: it may contain tabs, line breaks and `""` for a literal quote, and ends
  at a `"` followed by a tab, a line break or the end of the file. A quote
  anywhere else is literal (`5" screen`). If the closing quote of a field is
  followed by anything else (`"Hello" she said`), the field was never meant
  as a quoted one and is kept literally, up to the next tab or line break.
- Lines end with `\\n`, `\\r\\n` or `\\r`; nothing else (form feeds, U+2028)
  breaks a line. Line numbers in errors and warnings are physical lines, so a
  quoted field that spans lines advances the count.
- A body line that holds nothing but tabs is a row of empty cells (and one
  of tabs and spaces a row of those cells); a blank line (empty, or only
  spaces, with no tab) is skipped silently, so a trailing blank line or two
  add no rows.
- Rows keep the fields they have: a row shorter than the header is short
  (its missing cells are empty), and a row longer than the header adds
  generated columns `column_<n>` (empty in the other rows). Rows are not
  padded here, so that a file of short rows under a wide header costs its own
  size, not rows x columns; `pad_row` pads one row where a table is shown or
  written out. Both cases are reported in `ParsedTSV.padded_lines`/`warnings`.
- Column names are made usable: an empty name becomes `column_<n>` and
  repeated names get suffixes (`name`, `name_2`), also reported.

Files plainly separated by another character (see `_other_separator`: no tab
in the first 64 KiB, and a header and lines split by one of `,;|^:` into the
same number of fields) are not taken silently as one-column documents:
comma- and semicolon-separated files are read as CSV (`csv` module
semantics: quoted fields, `""`, a quote elsewhere literal) with a warning
that says so; colon-, pipe- and caret-separated ones are read as TSV (one
column) with a warning naming the separator, since those characters are
common inside single cells (times, URLs, patterns) and a wrong split would
be worse than an unsplit line the person can fix.
"""

import csv
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

__all__ = [
    "ERROR_CODES",
    "ParsedTSV",
    "TSVError",
    "TSVErrorCode",
    "TSVLimits",
    "PackedTSV",
    "export_lines",
    "export_tsv",
    "json_pack",
    "pack_tsv",
    "pad_row",
    "parse_tsv",
]

TSVErrorCode = Literal[
    "too_large",
    "empty",
    "binary",
    "encoding",
    "empty_header",
    "unmatched_quote",
    "field_too_long",
    "too_many_columns",
]
ERROR_CODES: Final[frozenset[str]] = frozenset(get_args(TSVErrorCode))

# Past this many ragged lines, warnings end with one summary line instead of a
# line each: they are meant to be read by the person who uploaded the file.
MAX_RAGGED_WARNINGS: Final = 100


@dataclass(frozen=True)
class TSVLimits:
    """Upper bounds that keep one upload from exhausting a worker."""

    max_bytes: int = 10 * 1024 * 1024
    max_columns: int = 1000
    max_field_chars: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_columns", "max_field_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"TSVLimits.{name} must be at least 1.")


DEFAULT_LIMITS: Final = TSVLimits()


class TSVError(ValueError):
    """A file that cannot be read as a TSV document.

    `code` is one of `ERROR_CODES`, for programs; `message` is a sentence for
    the person who uploaded the file and starts with "Line N: " when `line`
    (1-based physical line) is known.
    """

    code: TSVErrorCode
    line: int | None
    message: str

    def __init__(self, code: TSVErrorCode, detail: str, line: int | None = None) -> None:
        self.code = code
        self.line = line
        self.detail = detail
        self.message = detail if line is None else f"Line {line}: {detail}"
        super().__init__(self.message)

    def __reduce__(self) -> tuple[type["TSVError"], tuple[TSVErrorCode, str, int | None]]:
        return (type(self), (self.code, self.detail, self.line))


@dataclass(frozen=True)
class ParsedTSV:
    """A parsed file: the column names and the rows as the file gives them.

    Every row has between 1 and `len(columns)` cells; the cells a row lacks
    (at its end) are empty, and `pad_row` adds them. `padded_lines` are the
    1-based lines of rows whose number of fields differed from the header's;
    `warnings` says, for a person, what was changed (read as comma-separated,
    rows padded, columns added or renamed). `encoding` is the one the file was
    decoded with, `delimiter` the character the rows were split on.
    """

    columns: list[str]
    rows: list[list[str]]
    padded_lines: list[int]
    encoding: Literal["utf-8", "utf-8-sig", "utf-16"]
    warnings: list[str] = field(default_factory=list)
    delimiter: str = "\t"


@dataclass(frozen=True)
class PackedTSV:
    """A file parsed by `pack_tsv`: the rows, `rows_per_pack` at a time, in packed form.

    `packs[n]` is `pack(rows[n * rows_per_pack : (n + 1) * rows_per_pack])` of
    the rows `parse_tsv` would return; `row_count` counts them. `ragged_count`
    is the number of rows whose number of fields differed from the header's
    (`len(ParsedTSV.padded_lines)`); the lines themselves are only in `warnings`.
    `delimiter` is the one the rows were split on (`,` or `;` for a file read as CSV).
    """

    columns: list[str]
    packs: list[str]
    row_count: int
    ragged_count: int
    encoding: Literal["utf-8", "utf-8-sig", "utf-16"]
    warnings: list[str] = field(default_factory=list)
    delimiter: str = "\t"


def parse_tsv(data: bytes, *, limits: TSVLimits = DEFAULT_LIMITS) -> ParsedTSV:
    """Parse an uploaded TSV file, or raise `TSVError` naming the first problem.

    Checks run in this order: size (before anything is decoded), binary
    signatures, encoding and NUL bytes, emptiness, then the rows from the top
    of the file down, so of the errors in rows the first one is reported.

    Time is linear in the size of the file whatever its quoting; memory is the
    decoded text plus the rows (the text is read in place, never as a list of
    its lines).
    """
    header, body, encoding, read = _read(data, limits)
    rows: list[list[str]] = []
    collected = _Collected(len(header), keep_lines=True)
    width = len(header)
    for line, fields in body:
        if len(fields) != width:
            collected.add_ragged(line, len(fields))
        rows.append(fields)
    collected.row_count = len(rows)
    columns, warnings = collected.names_and_warnings(header)
    return ParsedTSV(
        columns=columns,
        rows=rows,
        padded_lines=[line for line, _ in collected.ragged],
        encoding=encoding,
        warnings=read.warnings + warnings,
        delimiter=read.delimiter,
    )


def json_pack(rows: list[list[str]]) -> str:
    """Rows as compact JSON text: the `pack` that documents store (one per chunk)."""
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def pack_tsv(
    data: bytes,
    *,
    pack: Callable[[list[list[str]]], str],
    rows_per_pack: int,
    limits: TSVLimits = DEFAULT_LIMITS,
) -> PackedTSV:
    """`parse_tsv`, keeping only `pack(rows)` for every `rows_per_pack` rows as they are read.

    For storing an upload: the rows never exist all at once as lists of str
    (about 60 bytes per cell and 60 per row more than the file takes), only
    `rows_per_pack` of them at a time, so the memory is the decoded text plus
    the packed form (for JSON text, about the file's size). Errors are those
    of `parse_tsv`, raised at the same point of the file.
    """
    if rows_per_pack < 1:
        raise ValueError("rows_per_pack must be at least 1.")
    header, body, encoding, read = _read(data, limits)
    packs: list[str] = []
    batch: list[list[str]] = []
    collected = _Collected(len(header), keep_lines=False)
    width = len(header)
    for line, fields in body:
        if len(fields) != width:
            collected.add_ragged(line, len(fields))
        collected.row_count += 1
        batch.append(fields)
        if len(batch) == rows_per_pack:
            packs.append(pack(batch))
            batch = []
    if batch:
        packs.append(pack(batch))
    columns, warnings = collected.names_and_warnings(header)
    return PackedTSV(
        columns=columns,
        packs=packs,
        row_count=collected.row_count,
        ragged_count=collected.ragged_count,
        encoding=encoding,
        warnings=read.warnings + warnings,
        delimiter=read.delimiter,
    )


def pad_row(row: list[str], width: int) -> list[str]:
    """`row` with empty cells added up to `width` (the row itself when it is that long)."""
    missing = width - len(row)
    return row + [""] * missing if missing > 0 else row


def export_tsv(columns: list[str], rows: Iterable[list[str]]) -> str:
    """Write a header and rows as TSV text that `parse_tsv` reads back.

    The text of `export_lines`, joined: see there.
    """
    return "".join(export_lines(columns, rows))


def export_lines(columns: list[str], rows: Iterable[list[str]]) -> Iterator[str]:
    """The lines of a TSV file of a header and rows, one at a time, for streaming.

    Each line ends with `\\n` (the last one too). A row shorter than the
    header is padded with empty cells (documents store rows as the file gave
    them); a cell containing a tab, a line break or `"` is quoted CSV-style,
    with `""` for a literal quote.

    Formula injection: every cell, header included, that begins with `=`,
    `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so that a
    spreadsheet shows it as text instead of evaluating it. This follows the
    OWASP advice literally and so also applies to signed numbers: `-3.5`
    becomes `'-3.5`. Telling a harmless number from a crafted payload is the
    kind of guess that injection relies on (`-2+3+cmd|...` starts like a
    number); the price is that a spreadsheet opening the export shows such
    numbers as text, apostrophe included. These cells come back from
    `parse_tsv(export_tsv(...).encode())` with their `'`; every other cell
    comes back unchanged, and so do header names, unless `parse_tsv` renames
    them (an empty or repeated name).

    A row of one empty or whitespace cell would read back as a blank line
    and be skipped, so that cell is written quoted (`""`).

    Raises `ValueError` (when it gets there) if there are no columns, if a row
    has more cells than there are columns, or if a cell contains a NUL
    character (which `parse_tsv` refuses as binary).
    """
    width = len(columns)
    if width == 0:
        raise ValueError("export_tsv needs at least one column.")
    yield _export_line(columns, "The header") + "\n"
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            if len(row) > width:
                raise ValueError(
                    f"Row {number} has {len(row)} cells; expected at most {width}, one per column."
                )
            row = pad_row(row, width)
        yield _export_line(row, f"Row {number}") + "\n"


# --- Decoding -----------------------------------------------------------------

_UTF8_BOM: Final = b"\xef\xbb\xbf"
_UTF16_LE_BOM: Final = b"\xff\xfe"
_UTF16_BE_BOM: Final = b"\xfe\xff"
_UTF32_BOMS: Final = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")

# Files people upload by mistake. Only signatures that no text file starts with.
_BINARY_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx or .ods spreadsheet is one)"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (such as .xls)"),
)


def _reject_known_binary_formats(data: bytes) -> None:
    for signature, description in _BINARY_SIGNATURES:
        if data.startswith(signature):
            raise TSVError(
                "binary",
                f"This looks like {description}, not tab-separated text. "
                "Export the data as TSV (UTF-8) and upload that file.",
            )


def _decode(data: bytes) -> tuple[str, Literal["utf-8", "utf-8-sig", "utf-16"]]:
    if data.startswith(_UTF32_BOMS):
        raise TSVError(
            "encoding",
            "the file is UTF-32, which is not supported; save it as UTF-8 and upload it again.",
            line=1,
        )
    if data.startswith((_UTF16_LE_BOM, _UTF16_BE_BOM)):
        return _decode_utf16(data), "utf-16"
    if data.startswith(_UTF8_BOM):
        return _decode_utf8(data[len(_UTF8_BOM) :]), "utf-8-sig"
    return _decode_utf8(data), "utf-8"


def _decode_utf8(body: bytes) -> str:
    nul = body.find(b"\x00")
    if nul != -1:
        line = _count_byte_line_breaks(body[:nul]) + 1
        if _looks_like_utf16_without_bom(body):
            raise TSVError(
                "encoding",
                "the file looks like UTF-16 without a byte-order mark; "
                "save it as UTF-8 (or UTF-16 with a BOM) and upload it again.",
                line=line,
            )
        raise TSVError(
            "binary",
            "the file contains a NUL byte, so it is binary data, not tab-separated text.",
            line=line,
        )
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        line = _count_byte_line_breaks(body[: error.start]) + 1
        raise TSVError(
            "encoding",
            f"the file is not valid UTF-8 (byte 0x{body[error.start]:02X} cannot be decoded); "
            "it may be Latin-1 or Windows-1252. Save it as UTF-8 and upload it again.",
            line=line,
        ) from None


def _decode_utf16(data: bytes) -> str:
    codec = "utf-16-le" if data.startswith(_UTF16_LE_BOM) else "utf-16-be"
    body = data[2:]
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as error:
        before = body[: error.start].decode(codec, errors="replace")
        raise TSVError(
            "encoding",
            f"the UTF-16 text is damaged here ({error.reason}); "
            "save the file again as UTF-8 and upload it.",
            line=_count_line_breaks(before) + 1,
        ) from None
    nul = text.find("\x00")
    if nul != -1:
        raise TSVError(
            "binary",
            "the file contains a NUL character, so it is binary data, not tab-separated text.",
            line=_count_line_breaks(text[:nul]) + 1,
        )
    return text


def _looks_like_utf16_without_bom(body: bytes) -> bool:
    """True when NULs fill every other byte, as in mostly-ASCII UTF-16 text."""
    sample = body[:1024]
    even, odd = sample[0::2], sample[1::2]
    if len(odd) < 2:
        return False
    for zeros, others in ((odd, even), (even, odd)):
        if zeros.count(0) >= 0.9 * len(zeros) and others.count(0) <= 0.1 * len(others):
            return True
    return False


def _count_line_breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _count_byte_line_breaks(data: bytes) -> int:
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def _format_size(size: int) -> str:
    if size < 1024:
        return f"{size:,} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:,.1f} KB".replace(".0 ", " ")
    return f"{size / (1024 * 1024):,.1f} MB".replace(".0 ", " ")


# --- Splitting into rows ------------------------------------------------------

# A body row: its 1-based physical line and its fields (not padded).
_Row = tuple[int, list[str]]
# What `_split_plain` and `_split_quoted` return: the header's fields, the
# body rows, and (line, field count) for each body row whose count differs
# from the header's.
_Split = tuple[list[str], list[list[str]], list[tuple[int, int]]]

# One field and what ends it (a tab, a line break, the end of the text):
# either quoted (`""` pairs and other characters, then a closing quote that
# ends the field; pairs are taken left to right, as `_closing_quote` does), or
# literal up to the next tab or line break: an unquoted field, or one whose
# closing quote is followed by text (`"Hello" she said`).
_FIELD: Final = re.compile(
    r'"([^"]*(?:""[^"]*)*)"(\t|\r\n|\r|\n|\Z)|([^\t\r\n]*)(\t|\r\n|\r|\n|\Z)'
)
# `_plain_lines` splits this many characters (and the rest of their line) at a time.
_PLAIN_BLOCK: Final = 64 * 1024
# A physical line with its line break (`\n`, `\r\n` or `\r`; the last line may
# have none), as `io.StringIO(text, newline="").readlines()` splits them.
_LINE: Final = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_MATCHED_TEXT: Final = re.Match.group
# After csv refuses a row, the exact reader reads this many rows before csv
# tries again, twice as many each time csv fails again at once, up to the
# maximum: a file whose every row csv refuses (`"a"b`) is then read by the
# exact reader alone, instead of paying a csv restart per row.
_FIRST_BURST: Final = 1
_MAX_BURST: Final = 4096


@dataclass(frozen=True)
class _HowRead:
    """How `_read` split the text: the delimiter, and what to tell the person about it."""

    delimiter: str = "\t"
    warnings: list[str] = field(default_factory=list)


def _read(
    data: bytes, limits: TSVLimits
) -> tuple[list[str], Iterator[_Row], Literal["utf-8", "utf-8-sig", "utf-16"], _HowRead]:
    """Check and decode `data`; its header, then its body rows as they are read."""
    if len(data) > limits.max_bytes:
        size, limit = _format_size(len(data)), _format_size(limits.max_bytes)
        if size == limit or limits.max_bytes < 1024:  # not "10 MB, over the 10 MB limit"
            size, limit = f"{len(data):,} bytes", f"{limits.max_bytes:,}-byte"
        raise TSVError("too_large", f"The file is {size}, over the {limit} limit.")
    _reject_known_binary_formats(data)
    text, encoding = _decode(data)
    if not text or text.isspace():
        raise TSVError(
            "empty",
            ("The file holds nothing but whitespace" if text else "The file is empty")
            + "; the first line must name the columns.",
        )
    how = _HowRead()
    separator = _other_separator(text)
    if separator is not None:
        name, plural, columns = separator
        if name in _READ_AS_CSV:
            how = _HowRead(
                name,
                [
                    f"The file has no tabs and its lines are separated by {plural}, "
                    f"so it was read as {_SEPARATOR_NAMES[name]}-separated (CSV), "
                    f"{columns} columns."
                ],
            )
        else:
            how = _HowRead(
                warnings=[
                    f"The file has no tabs; its lines look separated by {plural} ({name!r}) "
                    f"into {columns} fields, but it was read as tab-separated: one column. "
                    "Save it with tabs between the fields to get one column per field."
                ]
            )
    if how.delimiter != "\t":
        rows = _csv_rows(text, how.delimiter, limits)
    elif '"' in text:
        rows = _quoted_rows(text, limits)
    else:
        rows = _plain_rows(text, limits)
    _, header = next(rows)
    return header, rows, encoding, how


# --- Files separated by something else ------------------------------------------

# The characters `_other_separator` recognises, most likely first, and their names.
_SEPARATOR_NAMES: Final = {
    ",": "comma",
    ";": "semicolon",
    "|": "pipe",
    "^": "caret",
    ":": "colon",
}
# Those read as CSV with them; the others only get a warning.
_READ_AS_CSV: Final = frozenset(",;")
# The sample `_other_separator` looks at: at most this many characters, and lines.
_SNIFF_CHARS: Final = 64 * 1024
_SNIFF_LINES: Final = 100
# The share of the sample's body lines that must split like the header.
_SNIFF_AGREEMENT: Final = 0.8


def _other_separator(text: str) -> tuple[str, str, int] | None:
    """(separator, its plural name, the header's field count) when `text` is plainly
    separated by one of `_SEPARATOR_NAMES` instead of tabs, else None.

    Plainly: no tab in the sample (its first `_SNIFF_CHARS` characters, whole
    lines, at most `_SNIFF_LINES` of them), the header splits into at least two
    fields on the separator (read as CSV, so quoted separators do not count),
    and so do at least `_SNIFF_AGREEMENT` of the sample's other lines that
    hold any text, into the same number. Of several candidates, the one most lines agree on,
    then the one giving more fields, then the first in `_SEPARATOR_NAMES`.
    Costs one pass over the sample per candidate, whatever the file's size;
    a TSV file (a tab anywhere in the sample) costs one `find`.
    """
    sample = text[:_SNIFF_CHARS]
    if "\t" in sample:
        return None
    lines = _LINE.findall(sample)[:_SNIFF_LINES]
    if len(text) > len(sample) and len(lines) > 1:
        lines.pop()  # cut short by the sample's end
    best: tuple[float, int, int, str] | None = None
    for order, candidate in enumerate(_SEPARATOR_NAMES):
        if candidate not in sample:
            continue
        reader = csv.reader(lines, delimiter=candidate)
        try:
            # Blank lines and lines of separators alone (rows of empty cells) say nothing.
            rows = [row for row in reader if any(cell.strip() for cell in row)]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width, body = len(rows[0]), rows[1:]
        agreement = sum(len(row) == width for row in body) / len(body) if body else 1.0
        if agreement >= _SNIFF_AGREEMENT:
            score = (agreement, width, -order, candidate)
            best = score if best is None or score > best else best
    if best is None:
        return None
    separator = best[3]
    return separator, _SEPARATOR_NAMES[separator] + "s", best[1]


def _csv_rows(text: str, delimiter: str, limits: TSVLimits) -> Iterator[_Row]:
    """The rows of a comma- (or semicolon-) separated file, as the `csv` module reads them.

    Python's default (excel) dialect with `delimiter`: a field that starts
    with `"` is quoted, `""` is a literal quote in it, and a quote anywhere
    else is literal. Blank lines (nothing, or only spaces) are skipped, as in
    TSV files; a line of separators only is a row of empty cells. A quote that
    never closes is an error naming the line its row starts on (csv itself
    would swallow the rest of the file into the field), found by a NUL line
    after the text: `_decode` guarantees the text holds no NUL of its own.
    The header comes first.
    """
    reader = csv.reader(
        itertools.chain(map(_MATCHED_TEXT, _LINE.finditer(text)), ["\x00"]),
        delimiter=delimiter,
    )
    max_columns, max_field_chars = limits.max_columns, limits.max_field_chars
    header_read = False
    line = 1  # where the next row starts
    try:
        for fields in reader:
            row_line, line = line, reader.line_num + 1
            if fields and fields[-1].endswith("\x00"):
                if fields == ["\x00"]:
                    return
                raise TSVError(
                    "unmatched_quote",
                    "unmatched quote (the field opened in this row never closes). "
                    'Inside a quoted field, write a literal quote as "".',
                    line=row_line,
                )
            if not fields or (len(fields) == 1 and (not fields[0] or fields[0].isspace())):
                if header_read:
                    continue
                fields = fields or [""]
            if len(fields) > max_columns:
                raise _too_many_columns(row_line, limits)
            if max(map(len, fields)) > max_field_chars:
                for column, value in enumerate(fields, start=1):
                    if len(value) > max_field_chars:
                        raise _field_too_long(row_line, column, len(value), limits)
            if not header_read:
                _check_header(fields)
                header_read = True
            yield row_line, fields
    except csv.Error as error:  # only a field over csv.field_size_limit()
        raise TSVError(
            "field_too_long",
            f"a field is longer than {csv.field_size_limit():,} characters ({error}).",
            line=line,
        ) from None


def _split_plain(text: str, limits: TSVLimits) -> _Split:
    """All of `_plain_rows` at once (tests compare it with a reference reader)."""
    return _split(_plain_rows(text, limits))


def _split_quoted(text: str, limits: TSVLimits) -> _Split:
    """All of `_quoted_rows` at once (tests compare it with a reference reader)."""
    return _split(_quoted_rows(text, limits))


def _split(rows: Iterator[_Row]) -> _Split:
    _, header = next(rows)
    body: list[list[str]] = []
    ragged: list[tuple[int, int]] = []
    for line, fields in rows:
        if len(fields) != len(header):
            ragged.append((line, len(fields)))
        body.append(fields)
    return header, body, ragged


def _plain_rows(text: str, limits: TSVLimits) -> Iterator[_Row]:
    """Text without any `"`: no field can span lines. The header comes first."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = _plain_lines(text)
    first = next(lines)
    header = first.split("\t")
    _check_line(header, first, 1, limits)
    _check_header(header)
    yield 1, header
    width = len(header)
    max_field_chars = limits.max_field_chars
    for number, line in enumerate(lines, start=2):
        if not line or (line.isspace() and "\t" not in line):
            continue
        fields = line.split("\t")
        if len(fields) != width or len(line) > max_field_chars:
            _check_line(fields, line, number, limits)
        yield number, fields


def _plain_lines(text: str) -> Iterator[str]:
    """What `text.split("\\n")` returns, one line at a time: no list of every line."""
    start = 0
    while True:
        end = text.find("\n", start + _PLAIN_BLOCK)
        if end == -1:
            yield from text[start:].split("\n")
            return
        yield from text[start:end].split("\n")
        start = end + 1


def _quoted_rows(text: str, limits: TSVLimits) -> Iterator[_Row]:
    """Text with quotes: the C `csv` reader for speed, `_read_quoted_row` for exactness.

    In strict mode `csv` reads this module's dialect, but raises where
    `_read_quoted_row` has an answer (a closing quote followed by text, a
    field over `csv.field_size_limit()`) or a more precise error (the line an
    unmatched quote opened on). From a row that `csv` refuses, or that exceeds
    a limit (whose error names the line of the field, not of the row),
    `_read_quoted_row` reads a burst of rows (see `_FIRST_BURST`), and `csv`
    resumes after them. Both read the text in place, forward only: each csv
    run and the probe of its lines scan their stretch of text once, so the
    whole is linear in the text however often the readers take turns.
    tests/documents/test_tsv.py checks the result against a reference reader.
    The header comes first.
    """
    size = len(text)
    max_columns = limits.max_columns
    max_field_chars = limits.max_field_chars
    width: int | None = None  # the header's, once read
    position, line = 0, 1  # where the next row starts
    burst = _FIRST_BURST
    while position < size:
        # csv needs the line ends, to keep line breaks inside quoted fields.
        reader = csv.reader(
            map(_MATCHED_TEXT, _LINE.finditer(text, position)),
            delimiter="\t",
            quotechar='"',
            doublequote=True,
            strict=True,
        )
        probe = _LineProbe(text, position, line)
        start_line = line
        rows_read = 0
        reread_line: int | None = None
        try:
            for fields in reader:
                row_line, line = line, start_line + reader.line_num
                if width is not None and (
                    not fields
                    # One whitespace cell is a blank line, unless quoted (`" "`).
                    or (
                        len(fields) == 1
                        and (not fields[0] or fields[0].isspace())
                        and probe.line(row_line).group().isspace()
                    )
                ):
                    continue
                fields = fields or [""]
                if len(fields) > max_columns or max(map(len, fields)) > max_field_chars:
                    reread_line = row_line
                    break
                rows_read += 1
                if width is None:
                    _check_header(fields)
                    width = len(fields)
                yield row_line, fields
        except csv.Error:
            reread_line = line
        if reread_line is None:
            return
        burst = min(2 * burst, _MAX_BURST) if rows_read < burst else _FIRST_BURST
        line = reread_line
        position = probe.line(line).start()
        for _ in range(burst):
            row_start, row_line = position, line
            fields, position, line = _read_quoted_row(text, position, line, limits)
            if width is None:
                _check_header(fields)
                width = len(fields)
            elif len(fields) == 1 and (not fields[0] or fields[0].isspace()):
                physical = text[row_start:position]
                if not physical or physical.isspace():
                    continue
            yield row_line, fields
            if position >= size:
                return


class _LineProbe:
    """The physical lines of `text` from `position` (line `line`) on, found by one forward scan.

    Asked only for lines at or after the last one it gave, so all its answers
    together cost one scan of the stretch of text they cover.
    """

    def __init__(self, text: str, position: int, line: int) -> None:
        self._lines = _LINE.finditer(text, position)
        self._line = line - 1
        self._match: re.Match[str] | None = None

    def line(self, number: int) -> re.Match[str]:
        if number != self._line or self._match is None:
            assert number > self._line, "a probe only moves forward"
            self._match = next(itertools.islice(self._lines, number - self._line - 1, None))
            self._line = number
        return self._match


def _read_quoted_row(
    text: str, position: int, line: int, limits: TSVLimits
) -> tuple[list[str], int, int]:
    """Read one row starting at `position` on physical line `line`.

    Returns the fields, the position after the row's line break, and the
    physical line number there. One match of `_FIELD` per field.
    """
    fields: list[str] = []
    max_field_chars = limits.max_field_chars
    match = _FIELD.match
    while True:
        found = match(text, position)
        assert found is not None  # the unquoted alternative matches anywhere
        quoted, quoted_end, value, end = found.groups()
        if quoted is not None:
            value = quoted.replace('""', '"') if '"' in quoted else quoted
            field_line = line
            if "\n" in quoted or "\r" in quoted:
                line += _count_line_breaks(quoted)
            end = quoted_end
        else:
            field_line = line
            if value.startswith('"') and _closing_quote(text, position + 1) == -1:
                raise TSVError(
                    "unmatched_quote",
                    "unmatched quote (the field opened here never closes). "
                    'Inside a quoted field, write a literal quote as "".',
                    line=field_line,
                )
        position = found.end()
        if len(value) > max_field_chars:
            raise _field_too_long(field_line, len(fields) + 1, len(value), limits)
        fields.append(value)
        if len(fields) > limits.max_columns:
            raise _too_many_columns(field_line, limits)
        if end != "\t":
            break
    if end:
        line += 1
    return fields, position, line


def _closing_quote(text: str, start: int) -> int:
    """Index of the first `"` from `start` that is not half of a `""` pair, or -1."""
    while True:
        quote = text.find('"', start)
        if quote == -1 or not text.startswith('"', quote + 1):
            return quote
        start = quote + 2


def _check_line(fields: list[str], line_text: str, line: int, limits: TSVLimits) -> None:
    """Limits for a row read from one physical line (no quoted fields)."""
    if len(fields) > limits.max_columns:
        raise _too_many_columns(line, limits)
    if len(line_text) > limits.max_field_chars:
        for column, value in enumerate(fields, start=1):
            if len(value) > limits.max_field_chars:
                raise _field_too_long(line, column, len(value), limits)


def _check_header(header: list[str]) -> None:
    if not any(name.strip() for name in header):
        raise TSVError(
            "empty_header",
            "the header row has no column names; the first line must name the columns.",
            line=1,
        )


def _field_too_long(line: int, column: int, length: int, limits: TSVLimits) -> TSVError:
    return TSVError(
        "field_too_long",
        f"field {column} is {length:,} characters long; "
        f"the limit is {limits.max_field_chars:,} characters per field.",
        line=line,
    )


def _too_many_columns(line: int, limits: TSVLimits) -> TSVError:
    return TSVError(
        "too_many_columns",
        f"the row has more than {limits.max_columns:,} fields; "
        f"at most {limits.max_columns:,} columns are allowed.",
        line=line,
    )


# --- Building the result ------------------------------------------------------


class _Collected:
    """What the body rows say about the table: how many (`row_count`, kept by
    the caller), how wide, which were ragged.

    `ragged` holds (line, field count) of every ragged row when `keep_lines`,
    else only of the first MAX_RAGGED_WARNINGS (the warnings name no more):
    a file of a million short rows then costs no million-entry list.
    """

    def __init__(self, header_width: int, *, keep_lines: bool) -> None:
        self.header_width = header_width
        self.width = header_width
        self.row_count = 0
        self.ragged_count = 0
        self.ragged: list[tuple[int, int]] = []
        self._keep_lines = keep_lines

    def add_ragged(self, line: int, count: int) -> None:
        """Row `line` has `count` fields, not the header's number."""
        self.ragged_count += 1
        if self._keep_lines or self.ragged_count <= MAX_RAGGED_WARNINGS:
            self.ragged.append((line, count))
        if count > self.width:
            self.width = count

    def names_and_warnings(self, header: list[str]) -> tuple[list[str], list[str]]:
        header_width, width = self.header_width, self.width
        columns, warnings = _column_names(header, width)
        if width > header_width:
            added = ", ".join(columns[header_width:])
            warnings.append(
                f"Some rows have more fields than the header's {header_width}; "
                f"added columns {added}, empty in the rows that lack them."
            )
        for line, count in self.ragged[:MAX_RAGGED_WARNINGS]:
            if count < header_width:
                warnings.append(f"Line {line} had {count} of {header_width} fields; padded.")
            else:
                warnings.append(
                    f"Line {line} had {count} fields, more than the header's {header_width}; "
                    f"the extra ones are in {', '.join(columns[header_width:count])}."
                )
        if self.ragged_count > MAX_RAGGED_WARNINGS:
            warnings.append(
                f"{self.ragged_count - MAX_RAGGED_WARNINGS:,} more lines had a number of fields "
                "different from the header's; they were padded the same way."
            )
        return columns, warnings


def _column_names(header: list[str], width: int) -> tuple[list[str], list[str]]:
    """Usable, unique names for `width` columns, and a warning per change."""
    notes: list[tuple[int, str]] = []
    names: list[str] = []
    for position in range(1, width + 1):
        name = header[position - 1] if position <= len(header) else ""
        if name.strip():
            names.append(name)
            continue
        names.append(f"column_{position}")
        if position <= len(header):
            notes.append(
                (position, f"Column {position} has no name; it is called column_{position}.")
            )
    # Names as written are reserved first, so a suffixed copy never takes a
    # name that a later column really has (`a`, `a`, `a_2` -> `a`, `a_3`, `a_2`).
    taken = set(names)
    seen: set[str] = set()
    unique: list[str] = []
    for position, name in enumerate(names, start=1):
        if name in seen:
            suffix = 2
            while f"{name}_{suffix}" in taken:
                suffix += 1
            renamed = f"{name}_{suffix}"
            taken.add(renamed)
            notes.append(
                (
                    position,
                    f'Column {position} repeats the name "{name}"; it is called "{renamed}".',
                )
            )
            name = renamed
        seen.add(name)
        unique.append(name)
    return unique, [note for _, note in sorted(notes)]


# --- Export -------------------------------------------------------------------

_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_NEEDS_QUOTES: Final = re.compile('[\t\n\r"]')


def _export_cell(cell: str) -> str:
    if cell.startswith(_FORMULA_STARTS):
        cell = "'" + cell
    # A leading U+FEFF in the very first cell would be read back as a BOM.
    if _NEEDS_QUOTES.search(cell) or cell.startswith("\ufeff"):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _export_line(cells: list[str], what: str) -> str:
    exported = [_export_cell(cell) for cell in cells]
    line = "\t".join(exported)
    if "\x00" in line:
        raise ValueError(f"{what} contains a NUL character, which a TSV file cannot hold.")
    if not line or (line.isspace() and "\t" not in line):
        exported[0] = f'"{exported[0]}"'
        line = "\t".join(exported)
    return line

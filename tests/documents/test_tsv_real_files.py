"""documents.tsv against real files from public projects (tests/documents/corpus/real).

Where each file comes from, and its licence: corpus/real/SOURCES.md. Every
file parses or is refused with a reason; files read as TSV give the rows that
Python's `csv` module gives them (tab delimiter, its default quoting), files
read as CSV the rows `csv` gives with their separator. Where we differ from
`csv` or refuse a file, the lists below say which files and why.
"""

import csv
import io
import re
from pathlib import Path

import pytest

from documents.tsv import ERROR_CODES, ParsedTSV, TSVError, parse_tsv

REAL = Path(__file__).resolve().parent / "corpus" / "real"
FILES = sorted(
    str(path.relative_to(REAL))
    for path in REAL.rglob("*")
    if path.is_file() and path.suffix != ".md"
)
QIIME = "qiime2_qiime2/qiime2/metadata/tests/data/"
EBAY = "eBay_tsv-utils/"
FRICTIONLESS = "frictionlessdata_frictionless-py/data/"

# Refused, and rightly: what the person uploading it is told. (qiime2's
# invalid/non-utf-8.tsv and simple-utf-16*.txt, which qiime2 refuses, are UTF-16
# with a byte-order mark, which we read.)
REFUSED = {
    EBAY + "tsv-filter/tests/input_emptyfile.tsv": "empty",
    EBAY + "tsv-join/tests/input_emptyfile.tsv": "empty",
    EBAY + "tsv-pretty/tests/emptyfile.tsv": "empty",
    EBAY + "tsv-select/tests/input_emptyfile.tsv": "empty",
    EBAY + "tsv-summarize/tests/empty_file.tsv": "empty",
    # Latin-1 bytes: decoding them as UTF-8 would make up characters.
    EBAY + "tsv-pretty/tests/invalid_unicode.tsv": "encoding",
    # Starts with two blank lines: our header is the first line, so it names no
    # columns (qiime2 skips leading blank lines; we say which line is wrong).
    QIIME + "valid/empty-rows.tsv": "empty_header",
}

# Read as CSV (their own separator), with a warning saying so.
READ_AS_CSV = {
    EBAY + "tsv-pretty/tests/input_comma_delim.tsv": ",",
    FRICTIONLESS + "accent.csv": ";",
    FRICTIONLESS + "blank-rows.csv": ",",
    FRICTIONLESS + "delimiter.csv": ";",
    FRICTIONLESS + "duplicate-headers.csv": ",",
    FRICTIONLESS + "escaping.csv": ",",
    FRICTIONLESS + "issue-1009-comma.csv": ",",
    FRICTIONLESS + "issue-1009-semicolon.csv": ";",
    FRICTIONLESS + "table.csv": ",",
    "w3c_csvw/tests/test005.csv": ",",
    "w3c_csvw/tests/test006.csv": ",",
    "w3c_csvw/tests/test007.csv": ",",
    "w3c_csvw/tests/test008.csv": ",",
    "w3c_csvw/tests/test009.csv": ",",
}

# Read as one column, with a warning naming the separator they plainly use.
WARNED_SEPARATOR = {
    EBAY + "tsv-filter/tests/input2_pipe-sep.tsv": "|",
    EBAY + "tsv-join/tests/input_2x3_colon.tsv": ":",
    EBAY + "tsv-split/tests/input4x58_colon-delim.tsv": ":",
}

# Separated by something else, but not plainly enough to say so; read as TSV.
NOT_PLAINLY_SEPARATED = {
    # Colons, but its cells hold tabs (the test is about exactly that): a tab
    # in the sample means TSV.
    EBAY + "tsv-join/tests/input_5x4_colon.tsv": "tabs in cells",
    # Carets, but rows of 2, 3 and 4 fields under a 2-field header.
    EBAY + "tsv-select/tests/input_2plus_hat_delim.tsv": "ragged",
    # Commas, but a comment line ("# clean this data!") comes before the header.
    FRICTIONLESS + "countries.csv": "comment first",
    # `@` is not among the separators we look for.
    EBAY + "tsv-sample/tests/input2x7_atsign.tsv": "at-sign",
}


def parsed_or_error(name: str) -> ParsedTSV | TSVError:
    try:
        return parse_tsv((REAL / name).read_bytes())
    except TSVError as error:
        return error


def csv_rows(parsed: ParsedTSV, name: str) -> list[list[str]]:
    """What `csv` reads from the file, blank lines left out as `csv.DictReader` does."""
    text = (REAL / name).read_bytes().decode(parsed.encoding)
    if parsed.encoding == "utf-16":
        text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=parsed.delimiter)
    return [row for row in reader if row]


def renamed_columns(parsed: ParsedTSV) -> set[int]:
    """0-based positions of the header's columns that `parse_tsv` renamed (and said so)."""
    return {int(n) - 1 for w in parsed.warnings for n in re.findall(r"^Column (\d+) ", w)}


def test_the_corpus_is_real_sized_and_has_its_sources() -> None:
    sources = (REAL / "SOURCES.md").read_text()
    assert len(FILES) >= 150
    assert sum((REAL / name).stat().st_size for name in FILES) < 2 * 1024 * 1024
    for folder in {name.split("/")[0] for name in FILES}:
        assert f"`{folder}/`" in sources


@pytest.mark.parametrize("name", FILES)
def test_real_file_is_read_or_refused_as_listed(name: str) -> None:
    result = parsed_or_error(name)

    if isinstance(result, TSVError):
        assert result.code in ERROR_CODES
        assert (name, result.code) == (name, REFUSED.get(name))
        return
    assert name not in REFUSED
    assert result.delimiter == READ_AS_CSV.get(name, "\t")
    separated = [w for w in result.warnings if "no tabs" in w]
    if name in READ_AS_CSV:
        name_of = {",": "comma", ";": "semicolon"}[result.delimiter]
        assert f"read as {name_of}-separated" in separated[0]
    elif name in WARNED_SEPARATOR:
        assert f"({WARNED_SEPARATOR[name]!r})" in separated[0]
    else:
        assert separated == []


@pytest.mark.parametrize("name", [name for name in FILES if name not in REFUSED])
def test_rows_agree_with_the_csv_module(name: str) -> None:
    parsed = parse_tsv((REAL / name).read_bytes())
    header, *body = csv_rows(parsed, name)

    assert parsed.rows == body
    renamed = renamed_columns(parsed)
    assert [c for n, c in enumerate(header) if n not in renamed] == [
        c for n, c in enumerate(parsed.columns[: len(header)]) if n not in renamed
    ]


def test_the_lists_name_only_corpus_files() -> None:
    listed = {*REFUSED, *READ_AS_CSV, *WARNED_SEPARATOR, *NOT_PLAINLY_SEPARATED}
    assert listed <= set(FILES)
    for name in NOT_PLAINLY_SEPARATED:
        assert parse_tsv((REAL / name).read_bytes()).delimiter == "\t"

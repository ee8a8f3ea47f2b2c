"""documents.tsv: reading uploaded TSV files and writing them back out."""

import json
import pickle
import random
import re
from pathlib import Path
from typing import Any

import pytest

from documents import tsv
from documents.tsv import (
    ERROR_CODES,
    ParsedTSV,
    TSVError,
    TSVLimits,
    export_tsv,
    pack_tsv,
    pad_row,
    parse_tsv,
)

CORPUS = Path(__file__).resolve().parent / "corpus"
BAD: dict[str, dict[str, Any]] = json.loads((CORPUS / "bad" / "MANIFEST.json").read_text())
GOOD: dict[str, dict[str, Any]] = json.loads((CORPUS / "good" / "MANIFEST.json").read_text())
NO_LIMITS = TSVLimits(max_bytes=10**9, max_columns=10**6, max_field_chars=10**9)


def parse(text: str, **limits: int) -> ParsedTSV:
    return parse_tsv(text.encode(), limits=TSVLimits(**limits))


def error_of(data: str | bytes, **limits: int) -> TSVError:
    if isinstance(data, str):
        data = data.encode()
    with pytest.raises(TSVError) as caught:
        parse_tsv(data, limits=TSVLimits(**limits))
    return caught.value


def table(parsed: ParsedTSV) -> tuple[list[str], list[list[str]]]:
    """The table a person sees: every row padded to the columns."""
    return parsed.columns, [pad_row(row, len(parsed.columns)) for row in parsed.rows]


# --- The corpus ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_is_refused_with_its_code_and_line(name: str) -> None:
    expected = BAD[name]

    error = error_of((CORPUS / "bad" / name).read_bytes(), **expected["limits"])

    assert (error.code, error.line) == (expected["code"], expected["line"])
    assert str(error) == error.message
    if expected["line"] is None:
        assert not error.message.startswith("Line")
    else:
        assert error.message.startswith(f"Line {expected['line']}: ")


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_file_parses_to_the_expected_table(name: str) -> None:
    expected = GOOD[name]

    parsed = parse_tsv((CORPUS / "good" / name).read_bytes())

    assert {
        "encoding": parsed.encoding,
        "columns": parsed.columns,
        "rows": table(parsed)[1],
        "padded_lines": parsed.padded_lines,
        "warnings": parsed.warnings,
    } == expected


def test_bad_corpus_has_a_file_for_every_error_code() -> None:
    assert {entry["code"] for entry in BAD.values()} == ERROR_CODES


@pytest.mark.parametrize("folder, manifest", [("bad", BAD), ("good", GOOD)])
def test_every_corpus_file_is_in_its_manifest(folder: str, manifest: dict[str, Any]) -> None:
    assert sorted(path.name for path in (CORPUS / folder).glob("*.tsv")) == sorted(manifest)


# --- Quoting ------------------------------------------------------------------


def test_quoted_field_may_contain_tabs_line_breaks_and_doubled_quotes() -> None:
    parsed = parse('a\tb\n"tab\there"\t"two\nlines, ""quoted"""\n')

    assert parsed.rows == [["tab\there", 'two\nlines, "quoted"']]


def test_quote_inside_an_unquoted_field_is_literal() -> None:
    parsed = parse('size\tnote\n5" screen\ta "b" c\n')

    assert parsed.rows == [['5" screen', 'a "b" c']]


def test_closing_quote_followed_by_text_keeps_the_whole_field_literal() -> None:
    parsed = parse('a\tb\n"Hello" she said\tx\n"ok"\t"fine"\n')

    assert parsed.rows == [['"Hello" she said', "x"], ["ok", "fine"]]


def test_rows_after_a_literal_quoted_field_keep_their_line_numbers() -> None:
    parsed = parse('a\tb\n"x"y\t1\n"multi\nline"\t2\nshort\n')

    assert table(parsed)[1] == [['"x"y', "1"], ["multi\nline", "2"], ["short", ""]]
    assert parsed.padded_lines == [5]


def test_unmatched_quote_reports_the_line_where_it_opened() -> None:
    error = error_of('a\tb\n1\t"opens here\n3\t4\n5\t6\n')

    assert (error.code, error.line) == ("unmatched_quote", 2)
    assert error.message.startswith("Line 2: unmatched quote (the field opened here never closes).")


def test_quote_as_the_last_character_of_the_file_is_unmatched() -> None:
    error = error_of('a\tb\n1\t2\n3\t"')

    assert (error.code, error.line) == ("unmatched_quote", 3)


def test_doubled_quotes_do_not_close_a_quoted_field() -> None:
    error = error_of('a\n"only ""pairs"" here\n')

    assert (error.code, error.line) == ("unmatched_quote", 2)


def test_line_numbers_count_the_physical_lines_inside_quoted_fields() -> None:
    parsed = parse('a\tb\n"x\ny\r\nz\r"\t1\nshort\n')

    assert table(parsed)[1] == [["x\ny\r\nz\r", "1"], ["short", ""]]
    assert parsed.padded_lines == [6]


def test_quoted_field_longer_than_the_csv_module_limit_is_read_when_limits_allow() -> None:
    long_value = "x" * 200_000

    parsed = parse(f'a\tb\n"{long_value}"\t1\n2\t3\n', max_field_chars=300_000)

    assert parsed.rows == [[long_value, "1"], ["2", "3"]]


# --- Lines --------------------------------------------------------------------


@pytest.mark.parametrize("body", ["1\t2\n3\t4\n", '1\t"2"\n3\t"4"\n'], ids=["plain", "quoted"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_lf_crlf_and_cr_line_ends_read_the_same(body: str, newline: str) -> None:
    parsed = parse(("a\tb\n" + body).replace("\n", newline))

    assert table(parsed) == (["a", "b"], [["1", "2"], ["3", "4"]])


@pytest.mark.parametrize("quote", ["", '"'], ids=["plain", "quoted"])
def test_trailing_line_break_does_not_add_a_row(quote: str) -> None:
    assert parse(f"a\n{quote}1{quote}\n").rows == [["1"]]
    assert parse(f"a\n{quote}1{quote}").rows == [["1"]]


@pytest.mark.parametrize("quote", ["", '"'], ids=["plain", "quoted"])
def test_blank_and_whitespace_only_body_lines_are_skipped_silently(quote: str) -> None:
    parsed = parse(f"a\tb\n\n{quote}1{quote}\t2\n  \n \r\n3\t4\n\n\n")

    assert parsed.rows == [["1", "2"], ["3", "4"]]
    assert parsed.padded_lines == []
    assert parsed.warnings == []


@pytest.mark.parametrize("quote", ["", '"'], ids=["plain", "quoted"])
def test_a_line_of_tabs_is_a_row_of_empty_cells(quote: str) -> None:
    parsed = parse(f"a\tb\tc\n{quote}1{quote}\t2\t3\n\t\t\n \t \t\r\n\t\n4\t5\t6\n")

    assert table(parsed)[1] == [
        ["1", "2", "3"],
        ["", "", ""],
        [" ", " ", ""],
        ["", "", ""],
        ["4", "5", "6"],
    ]
    assert parsed.padded_lines == [5]


def test_quoted_whitespace_is_a_row_not_a_blank_line() -> None:
    parsed = parse('a\tb\n" "\t\n""\n')

    assert table(parsed)[1] == [[" ", ""], ["", ""]]


@pytest.mark.parametrize("quote", ["", '"'], ids=["plain", "quoted"])
def test_form_feeds_and_unicode_line_separators_do_not_end_a_line(quote: str) -> None:
    cell = "1\x0c2\u20283\x854\x1c5\x0b6"

    parsed = parse(f"a\tb\n{quote}{cell}{quote}\t7\n")

    assert parsed.rows == [[cell, "7"]]


# --- Ragged rows and column names ---------------------------------------------


@pytest.mark.parametrize("quote", ["", '"'], ids=["plain", "quoted"])
def test_short_row_is_kept_short_shown_padded_and_reported(quote: str) -> None:
    parsed = parse(f"a\tb\tc\n{quote}1{quote}\t2\t3\n\n4\t5\n")

    assert parsed.rows == [["1", "2", "3"], ["4", "5"]]
    assert table(parsed)[1] == [["1", "2", "3"], ["4", "5", ""]]
    assert parsed.padded_lines == [4]
    assert parsed.warnings == ["Line 4 had 2 of 3 fields; padded."]


@pytest.mark.parametrize("quote", ["", '"'], ids=["plain", "quoted"])
def test_long_row_adds_generated_columns_that_are_empty_in_every_other_row(quote: str) -> None:
    parsed = parse(f"a\tb\n{quote}1{quote}\t2\n3\t4\t5\t6\n7\t8\n")

    assert parsed.rows == [["1", "2"], ["3", "4", "5", "6"], ["7", "8"]]
    assert table(parsed) == (
        ["a", "b", "column_3", "column_4"],
        [["1", "2", "", ""], ["3", "4", "5", "6"], ["7", "8", "", ""]],
    )
    assert parsed.padded_lines == [3]
    assert parsed.warnings == [
        "Some rows have more fields than the header's 2; "
        "added columns column_3, column_4, empty in the rows that lack them.",
        "Line 3 had 4 fields, more than the header's 2; the extra ones are in column_3, column_4.",
    ]


def test_generated_column_name_never_takes_a_name_from_the_header() -> None:
    parsed = parse("column_3\tb\n1\t2\t3\n")

    assert parsed.columns == ["column_3", "b", "column_3_2"]


def test_repeated_column_names_get_numbered_suffixes() -> None:
    parsed = parse("name\tname\tname\tage\n1\t2\t3\t4\n")

    assert parsed.columns == ["name", "name_2", "name_3", "age"]
    assert parsed.warnings == [
        'Column 2 repeats the name "name"; it is called "name_2".',
        'Column 3 repeats the name "name"; it is called "name_3".',
    ]


def test_header_only_file_has_columns_and_no_rows() -> None:
    parsed = parse("a\tb\n")

    assert table(parsed) == (["a", "b"], [])
    assert parsed.padded_lines == []


def test_warnings_about_ragged_lines_end_in_a_summary_after_the_cap() -> None:
    parsed = parse("a\tb\n" + "1\n" * 150)

    assert len(parsed.padded_lines) == 150
    assert len(parsed.warnings) == tsv.MAX_RAGGED_WARNINGS + 1
    assert parsed.warnings[-1].startswith("50 more lines had a number of fields")


# --- Limits -------------------------------------------------------------------


@pytest.mark.parametrize("quote", ["", '"'], ids=["plain", "quoted"])
def test_field_at_the_default_limit_is_accepted_and_one_character_more_is_refused(
    quote: str,
) -> None:
    at_limit = "x" * 100_000

    assert parse(f"a\tb\n1\t{quote}{at_limit}{quote}\n").rows == [["1", at_limit]]
    error = error_of(f"a\tb\n1\t2\n3\t{quote}{at_limit}y{quote}\n")
    assert (error.code, error.line) == ("field_too_long", 3)
    assert "field 2 is 100,001 characters long" in error.message


@pytest.mark.parametrize("quote", ["", '"'], ids=["plain", "quoted"])
def test_thousand_columns_are_accepted_and_one_more_is_refused(quote: str) -> None:
    header = "\t".join(f"c{n}" for n in range(1000))
    row = f"{quote}x{quote}\t" * 999 + "x"

    assert len(parse(f"{header}\n{row}\n").columns) == 1000
    error = error_of(f"{header}\n{row}\n{row}\tone too many\n")
    assert (error.code, error.line) == ("too_many_columns", 3)


def test_too_many_columns_in_the_header_is_refused() -> None:
    error = error_of("a\tb\tc\td\n", max_columns=3)

    assert (error.code, error.line) == ("too_many_columns", 1)


def test_row_over_the_column_limit_is_refused_even_though_long_rows_extend_the_header() -> None:
    error = error_of('a\tb\n"1"\t2\n1\t2\t3\t4\n', max_columns=3)

    assert (error.code, error.line) == ("too_many_columns", 3)


def test_field_too_long_inside_a_multi_line_row_names_the_line_the_field_starts_on() -> None:
    error = error_of('a\tb\tc\n"x\ny"\t"z\n\n"\t' + "w" * 20 + "\n", max_field_chars=10)

    assert (error.code, error.line) == ("field_too_long", 5)
    assert "field 3" in error.message


def test_size_limit_is_checked_before_anything_is_decoded() -> None:
    png = (CORPUS / "bad" / "png_image.tsv").read_bytes()

    error = error_of(png, max_bytes=len(png) - 1)

    assert (error.code, error.line) == ("too_large", None)


def test_file_of_exactly_the_size_limit_is_accepted() -> None:
    data = b"a\tb\n1\t2\n"

    assert parse_tsv(data, limits=TSVLimits(max_bytes=len(data))).rows == [["1", "2"]]


def test_too_large_message_gives_both_sizes() -> None:
    error = error_of(b"x" * (10 * 1024 * 1024 + 1))

    assert error.message == "The file is 10,485,761 bytes, over the 10,485,760-byte limit."


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_columns"):
        TSVLimits(max_columns=0)


# --- Encodings and binary data ------------------------------------------------


def test_bad_utf8_after_a_bom_reports_its_line() -> None:
    error = error_of(b"\xef\xbb\xbfa\n\xff\n")

    assert (error.code, error.line) == ("encoding", 2)
    assert "0xFF" in error.message


def test_nul_in_utf16_text_is_binary_with_its_line() -> None:
    error = error_of(b"\xff\xfe" + "a\nb\n\x00\n".encode("utf-16-le"))

    assert (error.code, error.line) == ("binary", 3)


def test_error_is_a_value_error_that_survives_pickling() -> None:
    error = error_of('a\n"x\n')

    copy = pickle.loads(pickle.dumps(error))

    assert isinstance(copy, TSVError)
    assert isinstance(copy, ValueError)
    assert (copy.code, copy.line, copy.message) == (error.code, error.line, error.message)


# --- Files separated by something else ----------------------------------------


def test_comma_separated_file_is_read_as_csv_with_a_warning() -> None:
    parsed = parse(
        'name,city,note\nAda,London,"likes ""tea"", a lot"\n\n,,\nBob,"Paris,\nFrance"\n'
        "Cy,Rome,x\nDi,Oslo,y\nEd,Bern,z\n"
    )

    assert parsed.delimiter == ","
    assert table(parsed) == (
        ["name", "city", "note"],
        [
            ["Ada", "London", 'likes "tea", a lot'],
            ["", "", ""],
            ["Bob", "Paris,\nFrance", ""],
            ["Cy", "Rome", "x"],
            ["Di", "Oslo", "y"],
            ["Ed", "Bern", "z"],
        ],
    )
    assert parsed.padded_lines == [5]
    assert "read as comma-separated" in parsed.warnings[0]
    assert parsed.warnings[1] == "Line 5 had 2 of 3 fields; padded."


def test_semicolon_separated_file_with_decimal_commas_is_read_on_semicolons() -> None:
    parsed = parse("Name;Wert;Anteil\nA;1,5;0,25\nB;2,5;0,75\n")

    assert parsed.delimiter == ";"
    assert parsed.rows == [["A", "1,5", "0,25"], ["B", "2,5", "0,75"]]
    assert "read as semicolon-separated" in parsed.warnings[0]


@pytest.mark.parametrize("separator, name", [("|", "pipes"), ("^", "carets"), (":", "colons")])
def test_pipe_caret_and_colon_files_are_one_column_with_a_warning_naming_it(
    separator: str, name: str
) -> None:
    text = "a|b|c\n1|2|3\n4|5|6\n".replace("|", separator)

    parsed = parse(text)

    assert (parsed.delimiter, parsed.columns) == ("\t", [f"a{separator}b{separator}c"])
    assert parsed.warnings == [
        f"The file has no tabs; its lines look separated by {name} ({separator!r}) into 3 "
        "fields, but it was read as tab-separated: one column. "
        "Save it with tabs between the fields to get one column per field."
    ]


@pytest.mark.parametrize(
    "text",
    [
        "name\taddress\nAda\t12 Main St, London, UK\nBob\t1, rue X, Paris\n",
        "name\nSmith, John\nDoe, Jane\n",
        "a,b\nplain line\nanother one\nand a third\nfour\n",
        "time\n12:30\n13:45\n",
        "url\nhttps://example.org/a\nhttps://example.org/b\n",
    ],
    ids=["commas-in-tsv-cells", "one-column-with-commas", "header-only-looks-csv", "times", "urls"],
)
def test_genuine_tsv_files_with_commas_or_colons_in_cells_stay_tsv(text: str) -> None:
    parsed = parse(text)

    assert parsed.delimiter == "\t"
    assert parsed.rows == [line.split("\t") for line in text.splitlines()[1:]]
    assert not any("separated" in warning for warning in parsed.warnings)


def test_only_a_sample_is_looked_at_to_choose_the_separator() -> None:
    # No tab in the first 64 KiB: read as CSV, though a tab comes later (in a cell).
    text = "a,b\n" + "1,2\n" * 20_000 + "3,x\ty\n"

    parsed = parse(text)

    assert parsed.delimiter == ","
    assert parsed.rows[-1] == ["3", "x\ty"]
    # A 2 MB line is cut off at the end of the sample, not read to its end.
    assert tsv._other_separator("a,b\n1,2\n" + "x," * 1_000_000) == (",", "commas", 2)


def test_unmatched_quote_in_a_csv_file_names_the_line_of_its_row() -> None:
    error = error_of('a,b\n1,2\n3,"never closed\n4,5\n')

    assert (error.code, error.line) == ("unmatched_quote", 3)


def test_limits_apply_to_files_read_as_csv() -> None:
    rows = "a,b\n" + "1,2\n" * 9
    error = error_of(rows + ",".join("x" * 5) + "\n", max_columns=4)
    assert (error.code, error.line) == ("too_many_columns", 11)
    error = error_of(rows + "3," + "x" * 50 + "\n", max_field_chars=40)
    assert (error.code, error.line) == ("field_too_long", 11)


def test_packing_a_csv_file_gives_the_rows_of_parse() -> None:
    data = ("a,b\n" + "".join(f'{n},"x{n}"\n' for n in range(250))).encode()

    packed = pack_tsv(data, pack=json.dumps, rows_per_pack=100)

    assert (packed.delimiter, packed.row_count, len(packed.packs)) == (",", 250, 3)
    assert [row for pack in packed.packs for row in json.loads(pack)] == parse_tsv(data).rows
    assert packed.warnings == parse_tsv(data).warnings


# --- Export -------------------------------------------------------------------


def test_export_writes_header_and_rows_each_ending_in_a_line_feed() -> None:
    assert export_tsv(["a", "b"], [["1", "2"], ["3", "4"]]) == "a\tb\n1\t2\n3\t4\n"


def test_export_quotes_cells_with_tabs_line_breaks_and_quotes() -> None:
    exported = export_tsv(["a"], [["x\ty"], ["x\ny"], ["x\ry"], ['5" screen'], ["plain"]])

    assert exported == 'a\n"x\ty"\n"x\ny"\n"x\ry"\n"5"" screen"\nplain\n'


def test_export_neutralises_formula_cells_in_rows_and_header() -> None:
    exported = export_tsv(
        ["=HYPERLINK(1)", "b", "c", "d", "e", "f"],
        [["=SUM(A1)", "+1", "-3.5", "@cmd", "\tx", "\rx"]],
    )

    assert exported == (
        "'=HYPERLINK(1)\tb\tc\td\te\tf\n'=SUM(A1)\t'+1\t'-3.5\t'@cmd\t\"'\tx\"\t\"'\rx\"\n"
    )


def test_export_leaves_cells_that_merely_contain_formula_characters_alone() -> None:
    cells = ["a=b", " =1", "3-2", "'quoted", "e@mail"]

    assert export_tsv(["a", "b", "c", "d", "e"], [cells]).splitlines()[1].split("\t") == cells


def test_export_of_a_row_of_empty_cells_reads_back_as_a_row() -> None:
    exported = export_tsv(["a", "b"], [["", ""], [" ", ""], ["1", "2"]])

    assert parse(exported).rows == [["", ""], [" ", ""], ["1", "2"]]
    assert parse(export_tsv(["a"], [[""], [" "], ["1"]])).rows == [[""], [" "], ["1"]]


def test_export_accepts_any_iterable_of_rows() -> None:
    assert export_tsv(["n"], ([str(n)] for n in range(2))) == "n\n0\n1\n"


def test_export_pads_short_rows_to_the_columns() -> None:
    assert (
        export_tsv(["a", "b", "c"], [["1"], ["2", "3"], [""]]) == "a\tb\tc\n1\t\t\n2\t3\t\n\t\t\n"
    )


def test_export_refuses_a_row_longer_than_the_columns() -> None:
    with pytest.raises(ValueError, match="Row 2 has 3 cells; expected at most 2"):
        export_tsv(["a", "b"], [["1", "2"], ["3", "4", "5"]])


def test_export_refuses_no_columns_and_nul_characters() -> None:
    with pytest.raises(ValueError, match="at least one column"):
        export_tsv([], [])
    with pytest.raises(ValueError, match="NUL"):
        export_tsv(["a"], [["x\x00y"]])


# Characters that stress quoting, line ends, formula prefixes and encodings.
CELL_PIECES = ["a", "Z", "0", " ", "\t", "\n", "\r", "\r\n", '"', '""', "'", "=", "+", "-", "@"]
CELL_PIECES += ["é", "東", "🚀", "\x0c", "\u2028", "\x1c", "\ufeff"]


def random_cell(rng: random.Random) -> str:
    return "".join(rng.choices(CELL_PIECES, k=rng.randint(0, 6)))


def neutralised(cell: str) -> str:
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


@pytest.mark.parametrize("seed", range(20))
def test_export_then_parse_returns_every_cell_with_formulas_neutralised(seed: int) -> None:
    rng = random.Random(seed)
    width = rng.randint(1, 6)
    columns = [f"col{n}{random_cell(rng)}" for n in range(width)]
    rows = [[random_cell(rng) for _ in range(width)] for _ in range(rng.randint(0, 30))]
    rows.append([""] * width)

    exported = export_tsv(columns, rows)

    for encoding in ("utf-8", "utf-16"):
        parsed = parse_tsv(exported.encode(encoding))
        assert parsed.columns == [neutralised(name) for name in columns]
        assert parsed.rows == [[neutralised(cell) for cell in row] for row in rows]
        assert (parsed.padded_lines, parsed.warnings) == ([], [])


# --- Both readers against a reference -----------------------------------------


class UnmatchedQuote(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def reference_split(text: str) -> tuple[list[str], list[list[str]], list[tuple[int, int]]]:
    """The dialect of documents/tsv.py's docstring, read one character at a time.

    Returns what the module's splitters return: header, body rows, and
    (line, field count) of ragged rows. Raises TSVError for an empty header,
    UnmatchedQuote for a quote that never closes, whichever comes first.
    """
    size = len(text)
    position, line = 0, 1
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    while position < size:
        row_start, row_line = position, line
        fields: list[str] = []
        while True:
            value = None
            if position < size and text[position] == '"':
                cursor = position + 1
                while True:
                    if cursor == size:
                        raise UnmatchedQuote(line)
                    if text[cursor] == '"':
                        if cursor + 1 < size and text[cursor + 1] == '"':
                            cursor += 2
                            continue
                        break
                    cursor += 1
                if cursor + 1 == size or text[cursor + 1] in "\t\r\n":
                    raw = text[position + 1 : cursor]
                    value = raw.replace('""', '"')
                    line += len(re.findall(r"\r\n|\r|\n", raw))
                    position = cursor + 1
            if value is None:
                end = position
                while end < size and text[end] not in "\t\r\n":
                    end += 1
                value, position = text[position:end], end
            fields.append(value)
            if position < size and text[position] == "\t":
                position += 1
                continue
            break
        physical = text[row_start:position]
        if position < size:
            position += 2 if text.startswith("\r\n", position) else 1
            line += 1
        if header is None:
            if not any(name.strip() for name in fields):
                raise TSVError("empty_header", "empty header", line=1)
            header = fields
        elif physical and (not physical.isspace() or "\t" in physical):
            rows.append((row_line, fields))
    assert header is not None
    ragged = [(line, len(fields)) for line, fields in rows if len(fields) != len(header)]
    return header, [fields for _, fields in rows], ragged


TEXT_PIECES = ["a", "b", "é", " ", "\t", "\n", "\r", "\r\n", '"', '"', '""', "\x0c", "\u2028"]
TEXT_PIECES += ['"x"', '\t"', '"\t', '"\n', "\x85", "\x1c"]


def random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    texts = ["".join(rng.choices(TEXT_PIECES, k=rng.randint(1, 40))) for _ in range(count)]
    return [text for text in texts if text.strip()]


def split_or_error(split: Any, text: str) -> Any:
    try:
        return split(text)
    except UnmatchedQuote as unmatched:
        return ("unmatched_quote", unmatched.line)
    except TSVError as error:
        return (error.code, error.line)


@pytest.mark.parametrize("seed", range(5))
def test_quoted_text_reader_agrees_with_the_reference_reader(seed: int) -> None:
    for text in random_texts(seed, 1000):
        expected = split_or_error(reference_split, text)
        actual = split_or_error(lambda text: tsv._split_quoted(text, NO_LIMITS), text)
        assert actual == expected, repr(text)


@pytest.mark.parametrize("seed", range(5))
def test_quote_free_text_reader_agrees_with_the_reference_reader(seed: int) -> None:
    for text in random_texts(seed, 1000):
        text = text.replace('"', "q")
        expected = split_or_error(reference_split, text)
        actual = split_or_error(lambda text: tsv._split_plain(text, NO_LIMITS), text)
        assert actual == expected, repr(text)


@pytest.mark.parametrize("seed", range(5))
def test_quoted_text_reader_agrees_with_the_reference_reader_on_long_files(seed: int) -> None:
    # Hundreds of rows, many of them refused by csv: the exact reader's bursts
    # and csv's restarts take turns many times within one file.
    rng = random.Random(seed)
    pieces = TEXT_PIECES + ['"a"b\n', '"x"\n', "q\n", '"a"b\t"c"\n'] * 3
    text = "h\tk\n" + "".join(rng.choices(pieces, k=rng.randint(1000, 4000)))

    expected = split_or_error(reference_split, text)

    assert split_or_error(lambda text: tsv._split_quoted(text, NO_LIMITS), text) == expected


# --- Pathological quoting: read right, in one pass (timings: bench/tsv_parse.py) ---


def test_rows_of_quote_a_quote_b_are_read_literally() -> None:
    parsed = parse("h\n" + '"a"b\n' * 20_000)

    assert parsed.rows == [['"a"b']] * 20_000
    assert (parsed.padded_lines, parsed.warnings) == ([], [])


def test_long_text_between_a_quote_and_a_quote_x_is_one_literal_field() -> None:
    long = "a" * 90_000

    parsed = parse("h\tk\n" + f'"{long}"x\t1\n' * 3)

    assert parsed.rows == [[f'"{long}"x', "1"]] * 3


def test_quotes_that_look_unmatched_close_on_later_lines_or_are_reported() -> None:
    parsed = parse("h\tk\n" + 'a\t"b\n' * 5_000 + 'x\t"y"\n')

    assert parsed.rows == [["a", '"b']] * 5_000 + [["x", "y"]]
    error = error_of("h\tk\n" + 'a\t"b\n' * 5_000)
    assert (error.code, error.line) == ("unmatched_quote", 5_001)


def test_a_quoted_field_spanning_the_file_is_one_cell_within_the_field_limit() -> None:
    body = "text\n" * 10_000

    assert parse(f'h\n"{body}"\n', max_field_chars=60_000).rows == [[body]]
    error = error_of(f'h\n"{body}"\n', max_field_chars=40_000)
    assert (error.code, error.line) == ("field_too_long", 2)


def test_rows_of_tabs_and_millions_of_short_lines_keep_every_cell_and_line() -> None:
    header = "\t".join(f"c{n}" for n in range(1000))
    wide = parse(f"{header}\n" + "\t" * 999 + "x\n")
    short = parse("h\n" + "x\n" * 300_000 + '"y"\n')

    assert wide.rows == [[""] * 999 + ["x"]]
    assert len(short.rows) == 300_001 and short.rows[-1] == ["y"]


def test_plain_lines_are_those_of_split_whatever_the_block_boundaries() -> None:
    rng = random.Random(7)
    for size in (0, 1, tsv._PLAIN_BLOCK - 1, tsv._PLAIN_BLOCK, 3 * tsv._PLAIN_BLOCK + 5):
        text = "".join(rng.choices(["a", "\n", "bb", "\t", "\n\n"], k=size))
        assert list(tsv._plain_lines(text)) == text.split("\n")


@pytest.mark.parametrize(
    "text",
    ["a\tb\n1\n2\t3\t4\n" * 150, 'a\tb\n"1"\t2\n"x"y\n' * 120, "a\n"],
    ids=["plain ragged", "quoted ragged", "header only"],
)
def test_packing_gives_the_rows_of_parse_in_packs(text: str) -> None:
    parsed = parse(text)

    packed = pack_tsv(text.encode(), pack=json.dumps, rows_per_pack=7)

    rows = [row for pack in packed.packs for row in json.loads(pack)]
    assert rows == parsed.rows and packed.row_count == len(parsed.rows)
    assert all(len(json.loads(pack)) == 7 for pack in packed.packs[:-1])
    assert (packed.columns, packed.warnings) == (parsed.columns, parsed.warnings)
    assert packed.ragged_count == len(parsed.padded_lines)

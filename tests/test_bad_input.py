"""Bad input gets one clear seglib error naming the file and the problem; nothing else escapes."""

from __future__ import annotations

import csv
import gzip
import io
import zipfile

import pandas as pd
import pytest

from seglib.clean import clean_file, clean_transactions
from seglib.errors import InputError, ParameterError, SeglibError
from seglib.load import DEFAULT_COLUMNS

HEADER = list(DEFAULT_COLUMNS.values())


def row(cust="BBID_1", date="2016-05-24", amount="72"):
    return [cust, date, amount, "1980-01-02", "male", "625011", "4986", "1", "1", "NONPROMO", "9", "Payback"]


GOOD = [row(), row("BBID_2", "2016-05-25", "10")]


def csv_text(rows=GOOD, header=HEADER) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    return buf.getvalue()


def text_file(text, name="t.csv", encoding="utf-8"):
    def make(tmp_path):
        path = tmp_path / name
        path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
        return path

    return make


def missing(tmp_path):
    return tmp_path / "nope.csv"


def directory(tmp_path):
    (tmp_path / "folder.csv").mkdir()
    return tmp_path / "folder.csv"


def empty_parquet(tmp_path):
    path = tmp_path / "empty.parquet"
    pd.DataFrame({c: pd.Series([], dtype=str) for c in HEADER}).to_parquet(path)
    return path


def xlsx(tmp_path):
    path = tmp_path / "export.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("xl/workbook.xml", "<workbook/>")
    return path


def truncated_gzip(tmp_path):
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(csv_text().encode() * 50)[:60])
    return path


renamed = [h if h != "customerID" else "customerId" for h in HEADER]
twice = [h if h != "PinCode" else "sale_price_after_promo" for h in HEADER]


def parquet_with_a_column_twice(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "twice.parquet"
    columns = [pa.array(["BBID_1"]), pa.array(["2016-05-24"]), pa.array(["72"]), pa.array(["5"])]
    pq.write_table(pa.table(columns, names=["customerID", "transactionDate", "sale_price_after_promo",
                                            "sale_price_after_promo"]), path)
    return path


# id, file maker, keyword arguments of clean_file, error type, words the message must contain
CASES = [
    ("missing file", missing, {}, InputError, ["file not found"]),
    ("directory", directory, {}, InputError, ["not a file"]),
    ("empty file", text_file(""), {}, InputError, ["empty"]),
    ("blank lines only", text_file("\n  \n\n"), {}, InputError, ["empty"]),
    ("header only", text_file(csv_text(rows=[])), {}, InputError, ["header but no data rows"]),
    ("gzip header only", text_file(gzip.compress(csv_text(rows=[]).encode()), "t.csv.gz"), {}, InputError,
     ["header but no data rows"]),
    ("parquet without rows", empty_parquet, {}, InputError, ["no data rows"]),
    ("required column absent", text_file(csv_text(header=renamed)), {}, InputError,
     ["'customerID'", "not found", "did you mean 'customerId'", "Columns found"]),
    ("mapped column absent", text_file(csv_text()), {"columns": {"amount": "revenue"}}, InputError,
     ["'revenue'", "not found", "Columns found"]),
    ("no parseable date", text_file(csv_text([row(date="soon"), row(date="32/13/2016")])), {}, InputError,
     ["transactionDate", "no date parseable"]),
    ("date_format matching nothing", text_file(csv_text()), {"date_format": "%d/%m/%Y"}, InputError,
     ["transactionDate", "date_format='%d/%m/%Y'"]),
    ("no numeric amount", text_file(csv_text([row(amount="abc"), row(amount="")])), {}, InputError,
     ["sale_price_after_promo", "no numeric amount"]),
    ("no customer id", text_file(csv_text([row(cust=""), row(cust="BBID_")])), {}, InputError,
     ["customerID", "no non-empty customer id"]),
    ("utf-16 without encoding", text_file(csv_text(), encoding="utf-16"), {}, InputError,
     ["unreadable encoding", "utf-16"]),
    ("wrong explicit encoding", text_file(csv_text([row(cust="BBID_é")]), encoding="latin-1"),
     {"encoding": "ascii"}, InputError, ["cannot be decoded as ascii"]),
    ("unknown codec", text_file(csv_text()), {"encoding": "klingon"}, ParameterError, ["encoding='klingon'"]),
    ("unknown role", text_file(csv_text()), {"columns": {"cust": "customerID"}}, ParameterError,
     ["'cust'", "choose one of", "'customer_id'"]),
    ("required role disabled", text_file(csv_text()), {"columns": {"date": None}}, ParameterError,
     ["'date'", "required"]),
    ("columns not a mapping", text_file(csv_text()), {"columns": ["customerID"]}, ParameterError,
     ["columns must be a mapping"]),
    ("bad date_format", text_file(csv_text()), {"date_format": "%Q"}, ParameterError, ["date_format='%Q'"]),
    ("as_of today", text_file(csv_text()), {"as_of": "today"}, ParameterError, ["as_of='today'"]),
    ("as_of not a date", text_file(csv_text()), {"as_of": "2017-13-45"}, ParameterError, ["as_of="]),
    ("empty age range", text_file(csv_text()), {"min_age": 60, "max_age": 20}, ParameterError,
     ["min_age=60", "max_age=20"]),
    ("age not a number", text_file(csv_text()), {"min_age": "15"}, ParameterError, ["min_age='15'"]),
    ("drop_duplicates not a bool", text_file(csv_text()), {"drop_duplicates": "yes"}, ParameterError,
     ["drop_duplicates='yes'"]),
    ("truncated gzip", truncated_gzip, {}, InputError, ["cannot read"]),
    ("not parquet", text_file(csv_text(), "t.parquet"), {}, InputError, ["not a Parquet file"]),
    ("excel workbook", xlsx, {}, InputError, ["zip archive", "CSV"]),
    ("unterminated quote", text_file(csv_text() + 'BBID_3,"2016-05-26,1\n'), {}, InputError,
     ["not a readable CSV"]),
    ("a column name twice", text_file(csv_text(header=twice)), {}, InputError,
     ["'sale_price_after_promo' more than once", "columns 3 and 6", "rename"]),
    ("a column name twice after trimming", text_file(csv_text(header=[h if h != "Gender" else " DOB"
                                                                      for h in HEADER])), {}, InputError,
     ["'DOB' more than once"]),
    ("a parquet column twice", parquet_with_a_column_twice, {}, InputError,
     ["'sale_price_after_promo' more than once"]),
    ("max_amount not positive", text_file(csv_text()), {"max_amount": 0}, ParameterError, ["max_amount=0"]),
    ("min_date after max_date", text_file(csv_text()), {"min_date": "2017-01-01", "max_date": "2016-01-01"},
     ParameterError, ["min_date='2017-01-01'", "max_date='2016-01-01'"]),
    ("every line malformed", text_file(csv_text(rows=[row() + ["x"], row() + ["y"]])), {}, InputError,
     ["no readable rows", "number of fields"]),
]  # fmt: skip


@pytest.mark.parametrize("make, kwargs, error, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_error(tmp_path, make, kwargs, error, words):
    path = make(tmp_path)
    with pytest.raises(error) as info:
        clean_file(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert "\n" not in message  # one line, as the CLI prints it


def test_there_are_at_least_fifteen_cases():
    assert len(CASES) >= 15


def test_seglib_errors_are_value_errors_a_caller_can_catch():
    assert issubclass(InputError, SeglibError) and issubclass(InputError, ValueError)
    assert issubclass(ParameterError, SeglibError) and issubclass(ParameterError, ValueError)


@pytest.mark.parametrize(
    "raw, error, word",
    [
        ("not a frame", ParameterError, "DataFrame"),
        (pd.DataFrame({"customer_id": ["1"], "amount": ["2"]}), InputError, "date"),
        (pd.DataFrame({"customer_id": [], "date": [], "amount": []}), InputError, "no data rows"),
    ],
)
def test_bad_frames_given_to_the_cleaner(raw, error, word):
    with pytest.raises(error, match=word):
        clean_transactions(raw)


def test_only_some_bad_rows_are_cleaned_not_rejected(tmp_path):
    rows = [row(), row(date="soon"), row(amount="abc"), row(cust=""), row() + ["extra"]]
    path = text_file(csv_text(rows))(tmp_path)
    clean, report = clean_file(path)
    assert len(clean) == 1 and clean["row"].tolist() == [1]
    assert report.rows_read == 5
    assert {k: v for k, v in report.rows_dropped.items() if v} == {
        "unparseable_date": 1,
        "unparseable_amount": 1,
        "missing_customer_id": 1,
        "malformed_line": 1,
    }

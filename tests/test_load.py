"""Reading transaction files: formats, encodings, column roles, date-format detection."""

from __future__ import annotations

import csv
import gzip
import io

import numpy as np
import pandas as pd
import pytest

from seglib.errors import InputError, ParameterError
from seglib.load import (
    DATE_FORMATS,
    DEFAULT_COLUMNS,
    DETECT_SAMPLE,
    REQUIRED_ROLES,
    ROLES,
    by_value,
    detect_date_format,
    distinct_counts,
    load_transactions,
    parse_dates,
    resolve_columns,
)

HEADER = list(DEFAULT_COLUMNS.values())
ROWS = [
    # customerID, transactionDate, amount, DOB, Gender, PinCode, store, till, txn, promo, product, discount
    ["BBID_0042", "2016-05-24", "72", "NANA", "", "999999", "4986", "13", "079027", "NONPROMO", "0108",
     "Payback"],
    ["BBID_7", "2016-05-25", "-12.5", "1980-01-02", "female", "625011", "4986", "2", "1", "0000869304", "9",
     "T24Club,Payback"],
    ["BBID_7", "2016-05-26", "0", "", "male", "", "2655", "3", "2", "LOCALPROMO", "10", "NA"],
]  # fmt: skip


def write_csv(path, header=HEADER, rows=ROWS, encoding="utf-8", sep=",", bom=False):
    buf = io.StringIO()
    csv.writer(buf, delimiter=sep, lineterminator="\n").writerows([header, *rows])
    data = buf.getvalue().encode(encoding)
    if bom:
        data = b"\xef\xbb\xbf" + data
    path.write_bytes(data)
    return path


@pytest.fixture
def csv_file(tmp_path):
    return write_csv(tmp_path / "t.csv")


def test_role_constants_are_consistent():
    assert set(DEFAULT_COLUMNS) == set(ROLES) - {"quantity", "unit_price"}  # no default: mapped explicitly
    assert set(REQUIRED_ROLES) <= set(ROLES)
    assert REQUIRED_ROLES == ROLES[:3]
    assert len(set(DEFAULT_COLUMNS.values())) == len(DEFAULT_COLUMNS)


def test_values_are_kept_as_text_exactly(csv_file):
    df = load_transactions(csv_file)
    assert list(df.columns) == [r for r in ROLES if r in DEFAULT_COLUMNS]
    assert all(pd.api.types.is_string_dtype(df[c]) for c in df.columns)
    assert df.loc[1, "customer_id"] == "BBID_0042"
    assert df.loc[1, "dob"] == "NANA"
    assert df.loc[1, "promo_code"] == "NONPROMO"
    assert df.loc[2, "promo_code"] == "0000869304"  # leading zeros survive
    assert df.loc[1, "transaction"] == "079027"
    assert df.loc[3, "discounts"] == "NA"  # never turned into a missing value by the reader
    assert df.loc[1, "gender"] == "" and df.loc[3, "dob"] == ""  # empty cells are ""


def test_index_is_the_one_based_data_row(csv_file):
    df = load_transactions(csv_file)
    assert df.index.name == "row"
    assert df.index.tolist() == [1, 2, 3]


def test_attrs_record_source_encoding_mapping_and_formats(csv_file):
    df = load_transactions(csv_file)
    a = df.attrs
    assert a["source"] == str(csv_file)
    assert a["input_encoding"] == "utf-8"
    assert a["columns"] == DEFAULT_COLUMNS
    assert a["date_format"] == "%Y-%m-%d" and a["dob_format"] == "%Y-%m-%d"
    assert a["malformed_rows"] == [] and a["delimiter"] == ","


def test_gzip_by_suffix_and_by_magic_bytes_and_parquet_read_the_same(tmp_path, csv_file):
    expected = load_transactions(csv_file)
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(csv_file.read_bytes()))
    no_suffix = tmp_path / "export.dat"
    no_suffix.write_bytes(gzip.compress(csv_file.read_bytes()))
    pq = tmp_path / "t.parquet"
    pd.read_csv(csv_file, dtype=str, keep_default_na=False).to_parquet(pq)
    for path in (gz, no_suffix, pq):
        got = load_transactions(path)
        pd.testing.assert_frame_equal(got, expected)


def test_parquet_typed_columns_become_text(tmp_path):
    pq = tmp_path / "typed.parquet"
    pd.DataFrame(
        {
            "customerID": pd.array([42, 7, None], dtype="Int64"),
            "transactionDate": pd.to_datetime(["2016-05-24", "2016-05-25", None]),
            "sale_price_after_promo": [72.0, -12.5, np.nan],
            "flag": [True, False, None],
        }
    ).to_parquet(pq)
    df = load_transactions(pq, {"gender": "flag"})
    assert df["customer_id"].tolist() == ["42", "7", ""]
    assert df["date"].tolist() == ["2016-05-24", "2016-05-25", ""]
    assert df["amount"].tolist() == ["72", "-12.5", ""]
    assert df["gender"].tolist() == ["True", "False", ""]


def test_columns_override_default_and_fall_back(tmp_path):
    header = ["cust", "order_date", "revenue", "DOB", "Gender"]
    path = write_csv(tmp_path / "mine.csv", header, [["a1", "2016-01-02", "3", "1990-01-01", "m"]])
    df = load_transactions(path, {"customer_id": "cust", "date": "order_date", "amount": "revenue"})
    assert list(df.columns) == ["customer_id", "date", "amount", "dob", "gender"]  # DOB, Gender by default
    assert df.attrs["columns"]["customer_id"] == "cust"


def test_role_mapped_to_none_is_disabled(csv_file):
    df = load_transactions(csv_file, {"pincode": None, "dob": None})
    assert "pincode" not in df and "dob" not in df
    assert df.attrs["dob_format"] is None


def test_two_roles_may_share_a_column(csv_file):
    df = load_transactions(csv_file, {"product": "store_code"})
    assert df["product"].tolist() == df["store"].tolist()


def test_unknown_role_lists_the_valid_roles(csv_file):
    with pytest.raises(ParameterError, match="customer_id") as info:
        load_transactions(csv_file, {"cust": "customerID"})
    assert "'cust'" in str(info.value) and str(csv_file) in str(info.value)


def test_resolve_columns_suggests_close_matches():
    with pytest.raises(InputError, match="did you mean 'customerId'"):
        resolve_columns(["customerId", "transactionDate", "sale_price_after_promo"])


def test_utf8_bom_header_is_recognised(tmp_path):
    df = load_transactions(write_csv(tmp_path / "bom.csv", bom=True))
    assert df.attrs["input_encoding"] == "utf-8"
    assert df.index.size == 3


def test_latin1_is_used_when_utf8_fails(tmp_path):
    rows = [r.copy() for r in ROWS]
    rows[0][4] = "fémale"
    df = load_transactions(write_csv(tmp_path / "l1.csv", rows=rows, encoding="latin-1"))
    assert df.attrs["input_encoding"] == "latin-1"
    assert df.loc[1, "gender"] == "fémale"


def test_explicit_encoding_is_used(tmp_path):
    path = write_csv(tmp_path / "u16.csv", encoding="utf-16")
    df = load_transactions(path, encoding="utf-16")
    assert df.attrs["input_encoding"] == "utf-16"
    assert df.loc[1, "promo_code"] == "NONPROMO"


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_other_separators_are_detected_from_the_header(tmp_path, sep):
    df = load_transactions(write_csv(tmp_path / "s.csv", sep=sep))
    assert df.attrs["delimiter"] == sep
    assert df.loc[2, "amount"] == "-12.5"


def test_lines_with_extra_fields_are_left_out_and_counted(tmp_path):
    rows = [r.copy() for r in ROWS]
    rows[1] = rows[1] + ["EXTRA"]
    df = load_transactions(write_csv(tmp_path / "bad.csv", rows=rows))
    assert df.index.tolist() == [1, 3]  # row numbers are those of the file
    assert df.attrs["malformed_rows"] == [2]


def test_short_lines_and_trailing_delimiters_are_not_malformed(tmp_path):
    rows = [ROWS[0][:3], ROWS[1] + [""], ROWS[2]]
    df = load_transactions(write_csv(tmp_path / "short.csv", rows=rows))
    assert df.attrs["malformed_rows"] == []
    assert df.loc[1, "dob"] == "" and df.loc[2, "discounts"] == "T24Club,Payback"


@pytest.mark.parametrize(
    "values, expected",
    [
        (["2016-05-24", "2016-12-31"], "%Y-%m-%d"),
        (["2016-05-24 10:30:00", "2016-12-31 23:59:59"], "%Y-%m-%d %H:%M:%S"),
        (["24/05/2016", "13/01/2017"], "%d/%m/%Y"),
        (["05/24/2016", "01/13/2017"], "%m/%d/%Y"),
        (["24.05.2016"], "%d.%m.%Y"),
        (["01/02/2016", "03/04/2016"], "%d/%m/%Y"),  # ambiguous: the tie goes to day-first
        (["05/24/2016", "05/25/2016", "24/05/2016"], "%m/%d/%Y"),  # the format parsing most values wins
        (["", "NANA", "garbage"], None),
    ],
)
def test_detect_date_format(values, expected):
    assert detect_date_format(pd.Series(values)) == expected


def test_detection_weights_values_by_frequency():
    values = pd.Series(["24/05/2016"] * 5 + ["05/24/2016", "05/25/2016"])
    assert detect_date_format(values) == "%d/%m/%Y"


_DATE_POOL = ["2016-05-24", " 2016-05-24", "24/05/2016", "05/24/2016", "13/01/2017 ", "01/02/2016", "",
              " ", "NANA", "2016-05-24 10:30:00", "24.05.2016", "20160524", "2016/05/24", "31/02/2016", "x1",
              "1e5", "12-25-2016", "25-12-2016 10:00", "1700-01-01", "2300-01-01"]


def _every_format_on_every_value(values):
    """The definition of detect_date_format: each format parses the whole (weighted) sample."""
    text = values.astype(str).str.strip()
    counts = text[text != ""].value_counts(sort=False).iloc[:DETECT_SAMPLE]
    best, best_n = None, 0
    for fmt in DATE_FORMATS:
        parsed = parse_dates(pd.Series(counts.index, dtype=text.dtype), fmt)
        n = int(counts.to_numpy()[parsed.notna().to_numpy()].sum())
        if n > best_n:
            best, best_n = fmt, n
    return best


@pytest.mark.parametrize("seed", range(4))
def test_detection_stopping_early_picks_the_format_parsing_every_value_picks(seed):
    """Formats that can no longer win stop parsing: the choice is that of parsing the whole sample."""
    rng = np.random.default_rng(seed)
    for _ in range(40):
        pool = rng.choice(_DATE_POOL, size=rng.integers(1, len(_DATE_POOL) + 1), replace=False)
        values = pd.Series(rng.choice(pool, size=rng.integers(1, 300)))
        assert detect_date_format(values) == _every_format_on_every_value(values), values.tolist()
    # more distinct values than the first slice, the winner decided late in the sample
    days = pd.date_range("2001-01-01", periods=400).strftime("%d/%m/%Y").tolist()
    values = pd.Series(days[:300] + [d.replace("/", "-") for d in days[300:]] * 4)
    assert detect_date_format(values) == _every_format_on_every_value(values) == "%d-%m-%Y"


@pytest.mark.parametrize("seed", range(3))
def test_distinct_counts_are_the_value_counts_of_the_trimmed_non_empty_values(seed):
    rng = np.random.default_rng(seed)
    values = pd.Series(rng.choice([" a", "a", "a ", "b", "", "  ", "c", " b "], size=200))
    text = values.str.strip()
    expected = text[text != ""].value_counts(sort=False)
    got = distinct_counts(values)
    assert got.index.tolist() == expected.index.tolist()  # order of first appearance
    assert got.tolist() == expected.tolist()
    assert distinct_counts(pd.Series(["", " "])).empty and distinct_counts(pd.Series([], dtype=str)).empty


def test_date_formats_prefer_iso_then_day_first():
    assert DATE_FORMATS[0] == "%Y-%m-%d"
    assert DATE_FORMATS.index("%d/%m/%Y") < DATE_FORMATS.index("%m/%d/%Y")


def test_parse_dates_never_reads_the_clock_or_out_of_range_dates():
    values = pd.Series(["now", "today", "1500-01-01", "2016-05-24"])
    for fmt in ("ISO8601", "%Y-%m-%d"):
        got = parse_dates(values, fmt)
        assert got.dtype == "datetime64[ns]"
        assert got.isna().tolist() == [True, True, True, False]
    assert parse_dates(values, None).isna().all()


AWKWARD_CSV = {
    "quotes": 'customerID,transactionDate,sale_price_after_promo\n1,"2016-01-02",3\n2,"he said ""hi""",4\n'
              '3,ab"c,5\n4,"q"r,6\n5,"x,y",7\n',
    "crlf_blank_lines": "customerID,transactionDate,sale_price_after_promo\r\n1,2016-01-02,2\r\n\r\n"
                        "3, 4 ,\r\n",
    "placeholders": "customerID,transactionDate,sale_price_after_promo\nNA,NaN,null\n007,-0,None\n,,\n",
    "line_break_in_value": 'customerID,transactionDate,sale_price_after_promo\nü,日本,1\n"multi\nline",x,2\n',
    "no_final_newline": "customerID,transactionDate,sale_price_after_promo\n1,2016-01-02,2",
    "bom_and_cr": "\ufeffcustomerID,transactionDate,sale_price_after_promo\r1,2016-01-02,2\r",
    "malformed": "customerID,transactionDate,sale_price_after_promo\n1,2016-01-02,2\n2,2016-01-03,3,9\n4\n",
    "latin1": "customerID,transactionDate,sale_price_after_promo\ncafé,2016-01-02,2\n",
    # columns no role maps are parsed (and checked) but not converted by the fast reader
    "unmapped_columns": 'customerID,store_description,transactionDate,note,sale_price_after_promo\n'
                        '1,"A, B",2016-01-02,"x\ny",3\n2,C,2016-01-03,,4\n',
    "unmapped_malformed": "customerID,extra,transactionDate,sale_price_after_promo\n1,a,2016-01-02,3\n"
                          "2,b,2016-01-03,4,9\n",
    "padded_header": " customerID , transactionDate,sale_price_after_promo,extra\n1,2016-01-02,3,z\n",
}


@pytest.mark.parametrize("name", sorted(AWKWARD_CSV))
@pytest.mark.parametrize("gz", [False, True])
def test_fast_reader_gives_pandas_frame(tmp_path, monkeypatch, name, gz):
    # CSVs are read by pyarrow when it can; the frame (values, dtypes, attrs) is pandas' reader's
    import seglib.load as load

    data = AWKWARD_CSV[name].encode("latin-1" if name == "latin1" else "utf-8")
    path = tmp_path / ("t.csv.gz" if gz else "t.csv")
    path.write_bytes(gzip.compress(data) if gz else data)
    fast = load_transactions(path)
    monkeypatch.setattr(load, "_parse_csv_arrow", lambda *args: None)
    slow = load_transactions(path)
    pd.testing.assert_frame_equal(fast, slow)
    assert fast.attrs == slow.attrs


def test_by_value_calls_func_once_per_distinct_value():
    values = pd.Series(["b", "a", "b", "", "a", "c"], index=[10, 11, 12, 13, 14, 15], name="id")
    seen = []

    def upper(u):
        seen.append(u.tolist())
        return u.str.upper()

    assert seen == [] and by_value(values, upper) is not None
    assert seen == [["b", "a", "", "c"]]  # the distinct values, in order of appearance, once
    pd.testing.assert_series_equal(by_value(values, upper), values.str.upper())


@pytest.mark.parametrize("sizes", [[3, 4, 2], [2**40, 2**30, 5]])  # the second needs renumbering
def test_combined_codes_number_the_combinations_in_their_order(sizes):
    from seglib.load import combined_codes

    rng = np.random.default_rng(len(sizes) + sizes[0] % 7)
    codes = [rng.integers(0, min(m, 4), 500) for m in sizes]  # few distinct values: many repeats
    rows = list(zip(*(c.tolist() for c in codes)))
    key = combined_codes(zip(codes, sizes), sort=True)
    for i, j in rng.integers(0, 500, (2000, 2)):
        assert (key[i] == key[j]) == (rows[i] == rows[j])
        assert (key[i] < key[j]) == (rows[i] < rows[j])  # lexicographic order kept through renumbering
    unsorted = combined_codes(iter(list(zip(codes, sizes))))  # any iterable; equality only
    assert pd.Series(unsorted).duplicated().tolist() == pd.Series(rows).duplicated().tolist()

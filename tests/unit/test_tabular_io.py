"""Reading and writing user tables: every bad input is one ConfigError line naming the file; writes are atomic."""
from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ganforge.data.table_io as tio
from ganforge.data.table_io import TABLE_SUFFIXES, TableWarning, clean_table, read_table, write_table
from ganforge.registry import ConfigError


def _file(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _error(path: Path, **kwargs: object) -> str:
    """read_table's ConfigError message, checked to be one line that names the file."""
    with pytest.raises(ConfigError) as info:
        read_table(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert path.name in message
    return message


def _quiet_read(path: Path, **kwargs: object) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("error", TableWarning)  # a clean file reads without a word
        return read_table(path, **kwargs)


def _example() -> pd.DataFrame:
    return pd.DataFrame({
        "x": [0.5, -1.25, np.nan, 3.0],
        "n": [1, 2, 3, 4],
        "colour": ["red", "green", None, "blue, dark"],  # a delimiter inside a value is quoted
        "flag": [True, False, True, True],
        "when": pd.to_datetime(["2021-01-05", "2021-02-01 10:30", "2022-12-31", "2020-02-29"], format="ISO8601"),
        "note": ['say "hi"', "two\nlines", "plain", "x"],
    })


# ---------------------------------------------------------------------------------------------- bad inputs


def test_a_missing_file(tmp_path):
    assert "does not exist" in _error(tmp_path / "nowhere.csv")


def test_a_folder(tmp_path):
    (tmp_path / "data.csv").mkdir()
    assert "folder" in _error(tmp_path / "data.csv")


@pytest.mark.parametrize("content", [b"", b"  \n\n\t \r\n", b"\xef\xbb\xbf\n"], ids=["0 bytes", "whitespace", "BOM"])
def test_an_empty_file(tmp_path, content):
    assert "is empty" in _error(_file(tmp_path, "empty.csv", content))


def test_an_empty_gzip_file(tmp_path):
    assert "is empty" in _error(_file(tmp_path, "empty.csv.gz", gzip.compress(b"")))


def test_a_header_without_rows(tmp_path):
    assert "has a header but no rows" in _error(_file(tmp_path, "head.csv", "a,b,c\n"))
    assert "has a header but no rows" in _error(_file(tmp_path, "head2.csv", "a,b,c\n\n\n"))


def test_a_ragged_row_names_its_line(tmp_path):
    message = _error(_file(tmp_path, "ragged.csv", "a,b\n1,2\n3,4\n5,6,7\n8,9\n"))
    assert "row 4 has 3 fields but the header has 2" in message


def test_a_ragged_first_row_is_not_silently_made_an_index(tmp_path):
    # pandas would quietly use the extra leading field as the index and shift every column.
    message = _error(_file(tmp_path, "ragged1.csv", "a,b\n1,2,3\n4,5,6\n"))
    assert "row 2 has 3 fields but the header has 2" in message


def test_a_short_row_is_filled_with_missing_values(tmp_path):
    df = _quiet_read(_file(tmp_path, "short.csv", "a,b\n1,2\n3\n"))
    assert df["a"].tolist() == [1, 3] and np.isnan(df["b"].iloc[1])


def test_an_unclosed_quote(tmp_path):
    assert "never closed" in _error(_file(tmp_path, "quote.csv", 'a,b\n1,2\n3,"open\n4,5\n'))


def test_binary_garbage(tmp_path):
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))
    assert "does not look like a text table" in _error(_file(tmp_path, "garbage.csv", b"a,b\n" + garbage))


def test_binary_without_nul_bytes(tmp_path):
    controls = bytes(range(1, 9)) * 200
    assert "does not look like a text table" in _error(_file(tmp_path, "controls.csv", b"a,b\n" + controls))


def test_a_zip_archive(tmp_path):
    assert "zip archive" in _error(_file(tmp_path, "book.xlsx", b"PK\x03\x04" + b"\x00" * 50))


def test_text_that_does_not_decode_in_the_given_encoding(tmp_path):
    path = _file(tmp_path, "cafe.csv", "name\ncafé\n".encode("cp1252"))
    message = _error(path, encoding="utf-8")
    assert "does not look like a text table" in message and "utf-8" in message


def test_an_unknown_encoding(tmp_path):
    assert "unknown encoding" in _error(_file(tmp_path, "a.csv", "a\n1\n"), encoding="klingon")


def test_a_bad_delimiter(tmp_path):
    with pytest.raises(ConfigError, match="one character"):
        read_table(_file(tmp_path, "a.csv", "a\n1\n"), delimiter=",,")


def test_duplicate_column_names_are_named(tmp_path):
    message = _error(_file(tmp_path, "dup.csv", "a,b,a,c, b\n1,2,3,4,5\n"))
    assert "duplicate column names" in message
    assert "'a' (columns 1 and 3)" in message and "'b' (columns 2 and 5)" in message
    assert "'c'" not in message


def test_an_unreadable_parquet_file(tmp_path):
    assert "not a readable Parquet file" in _error(_file(tmp_path, "broken.parquet", b"PAR1" + b"\x07" * 100))


def test_a_truncated_parquet_file(tmp_path):
    good = tmp_path / "good.parquet"
    _example().to_parquet(good)
    data = good.read_bytes()
    assert "not a readable Parquet file" in _error(_file(tmp_path, "cut.parquet", data[: len(data) // 2]))


def test_a_parquet_name_on_another_file(tmp_path):
    assert "not a readable Parquet file" in _error(_file(tmp_path, "csv.parquet", "a,b\n1,2\n"))


def test_a_gz_name_on_a_plain_file(tmp_path):
    assert "not gzip-compressed" in _error(_file(tmp_path, "plain.csv.gz", "a,b\n1,2\n"))


def _random_rows(n: int = 3000) -> str:
    rng = np.random.default_rng(1)  # random text: it does not compress away to a few bytes
    return "a,b\n" + "".join(f"{v:.17g},{w:.17g}\n" for v, w in rng.normal(size=(n, 2)))


@pytest.mark.parametrize("cut", [0.5, 0.99, 0.0])
def test_a_truncated_gzip_file(tmp_path, cut):
    data = gzip.compress(_random_rows().encode())
    path = _file(tmp_path, "cut.csv.gz", data[: max(12, int(len(data) * cut))])
    assert "truncated or corrupt gzip" in _error(path)


def test_a_corrupt_gzip_file(tmp_path):
    data = bytearray(gzip.compress(_random_rows().encode()))
    data[len(data) // 2] ^= 0xFF
    assert "truncated or corrupt gzip" in _error(_file(tmp_path, "bad.csv.gz", bytes(data)))


# ---------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", TABLE_SUFFIXES)
def test_round_trip(tmp_path, suffix):
    df = _example()
    path = tmp_path / f"table{suffix}"
    write_table(df, path)
    back = _quiet_read(path)
    assert back.dtypes.map(str).tolist() == df.dtypes.map(str).tolist()
    pd.testing.assert_frame_equal(_same_missing(back), _same_missing(df))


def _same_missing(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(object).where(df.notna(), None)  # a text file reads None back as NaN


def test_gzip_is_found_by_its_content_not_its_name(tmp_path):
    path = _file(tmp_path, "data.csv", gzip.compress(b"a,b\n1,2\n3,4\n"))
    assert _quiet_read(path).to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def test_parquet_is_found_by_its_content_not_its_name(tmp_path):
    path = tmp_path / "data.bin"
    _example().to_parquet(path)
    pd.testing.assert_frame_equal(_quiet_read(path), _example())


def test_gzipped_parquet(tmp_path):
    plain = tmp_path / "t.parquet"
    _example().to_parquet(plain)
    path = _file(tmp_path, "t.parquet.gz", gzip.compress(plain.read_bytes()))
    pd.testing.assert_frame_equal(_quiet_read(path), _example())


def test_one_row_is_enough(tmp_path):
    assert _quiet_read(_file(tmp_path, "one.csv", "a,b\n1,x\n")).shape == (1, 2)


def test_an_all_missing_column_is_kept(tmp_path):
    df = _quiet_read(_file(tmp_path, "gap.csv", "a,b,c\n1,,x\n2,,y\n"))
    assert list(df.columns) == ["a", "b", "c"] and df["b"].isna().all()


# ---------------------------------------------------------------------------------------------- encodings


def test_a_utf8_bom_is_stripped(tmp_path):
    df = _quiet_read(_file(tmp_path, "bom.csv", b"\xef\xbb\xbfname,v\n" + "café,1\n".encode()))
    assert list(df.columns) == ["name", "v"] and df["name"][0] == "café"


def test_utf8_is_read_as_utf8_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(tio, "_CHUNK", 7)  # multi-byte characters fall across the scan's chunks
    df = _quiet_read(_file(tmp_path, "utf8.csv", "name,v\n" + "".join(f"café ñandú €{i},{i}\n" for i in range(50))))
    assert df["name"][3] == "café ñandú €3"


def test_a_windows_file_is_read_as_cp1252_with_a_warning(tmp_path):
    path = _file(tmp_path, "win.csv", "name;price\ncafé;2\n“quoted”;3\n".encode("cp1252"))
    with pytest.warns(TableWarning, match="cp1252") as record:
        df = read_table(path)
    assert len([w for w in record if "cp1252" in str(w.message)]) == 1 and "win.csv" in str(record[0].message)
    assert df["name"].tolist() == ["café", "“quoted”"] and df["price"].tolist() == [2, 3]


def test_bytes_that_cp1252_lacks_fall_back_to_latin1(tmp_path):
    path = _file(tmp_path, "latin.csv", b"name\nx\x81y\n")  # 0x81 is undefined in cp1252
    with pytest.warns(TableWarning, match="latin-1"):
        assert read_table(path)["name"][0] == "x\x81y"


def test_a_windows_character_far_into_the_file_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(tio, "_CHUNK", 64)  # the scan must decode every chunk, not stop at the first text
    text = "name,v\n" + "".join(f"plain{i},{i}\n" for i in range(200)) + "café,1\n"
    with pytest.warns(TableWarning, match="cp1252"):
        df = read_table(_file(tmp_path, "late.csv", text.encode("cp1252")))
    assert df["name"].iloc[-1] == "café" and len(df) == 201


def test_an_empty_parquet_file(tmp_path):
    path = tmp_path / "none.parquet"
    _example().iloc[:0].to_parquet(path)
    assert "has columns but no rows" in _error(path)


def test_a_given_encoding_is_used(tmp_path):
    path = _file(tmp_path, "win.csv", "name\ncafé\n".encode("cp1252"))
    assert _quiet_read(path, encoding="cp1252")["name"][0] == "café"


def test_utf16_with_a_bom(tmp_path):
    path = _file(tmp_path, "excel.txt", "a\tb\ncafé\t1\n".encode("utf-16"))  # Excel's "Unicode text"
    assert _quiet_read(path).to_dict("list") == {"a": ["café"], "b": [1]}


# ---------------------------------------------------------------------------------------------- delimiters


@pytest.mark.parametrize("sep", [";", "|", "\t", ","])
def test_the_delimiter_is_detected(tmp_path, sep):
    text = sep.join(["a", "b", "c"]) + "\n" + "".join(sep.join([str(i), f"v{i}", f"{i}.5"]) + "\n" for i in range(5))
    df = _quiet_read(_file(tmp_path, "t.txt", text))
    assert list(df.columns) == ["a", "b", "c"] and df["c"].tolist() == [0.5, 1.5, 2.5, 3.5, 4.5]


def test_a_semicolon_file_with_decimal_commas_keeps_its_columns(tmp_path):
    df = read_table(_file(tmp_path, "eu.csv", "name;price\nx;1,5\ny;2,25\n"))
    assert list(df.columns) == ["name", "price"]


def test_one_column_falls_back_by_suffix(tmp_path):
    assert list(_quiet_read(_file(tmp_path, "one.tsv", "a b\nx,y\nz,w\n")).columns) == ["a b"]
    assert list(_quiet_read(_file(tmp_path, "one.csv", "a b\nx\ny\n")).columns) == ["a b"]


def test_a_given_delimiter_is_used(tmp_path):
    path = _file(tmp_path, "t.csv", "a;b,c\n1;2,3\n")
    assert list(_quiet_read(path, delimiter=",").columns) == ["a;b", "c"]
    assert list(_quiet_read(path, delimiter=";").columns) == ["a", "b,c"]
    assert list(_quiet_read(_file(tmp_path, "t2.csv", "a\tb\n1\t2\n"), delimiter="\\t").columns) == ["a", "b"]


def test_quoted_fields_with_newlines(tmp_path):
    df = _quiet_read(_file(tmp_path, "q.csv", 'id,text\n1,"first line\nsecond, line"\n2,"a ""quote"""\n3,plain\n'))
    assert df["id"].tolist() == [1, 2, 3]
    assert df["text"].tolist() == ["first line\nsecond, line", 'a "quote"', "plain"]


def test_crlf_line_ends(tmp_path):
    df = _quiet_read(_file(tmp_path, "dos.csv", "a,b\r\n1,x\r\n2,y\r\n"))
    assert df.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


# ---------------------------------------------------------------------------------------------- cleaning


def test_infinities_become_missing_with_a_warning(tmp_path):
    path = _file(tmp_path, "inf.csv", "a,b,c\ninf,1,x\n-inf,2,y\n3,inf,z\n4,5,w\n")
    with pytest.warns(TableWarning) as record:
        df = read_table(path)
    messages = [str(w.message) for w in record]
    assert any("'a': 2 infinite" in m and "inf.csv" in m for m in messages)
    assert any("'b': 1 infinite" in m for m in messages)
    assert df["a"].isna().tolist() == [True, True, False, False] and df["b"].isna().sum() == 1


def test_a_mostly_numeric_column_becomes_numeric(tmp_path):
    rows = [str(i) for i in range(18)] + ["oops", "n/a?"]
    with pytest.warns(TableWarning, match="column 'v' is mostly numbers") as record:
        df = read_table(_file(tmp_path, "mixed.csv", "v\n" + "\n".join(rows) + "\n"))
    message = str(record[0].message)
    assert "2 value(s)" in message and "'oops'" in message and "'n/a?'" in message
    assert df["v"].dtype == float and df["v"].isna().sum() == 2 and df["v"][17] == 17


def test_a_column_with_too_much_text_stays_text(tmp_path):
    rows = [str(i) for i in range(8)] + ["a", "b"]  # 80% numbers
    df = _quiet_read(_file(tmp_path, "text.csv", "v\n" + "\n".join(rows) + "\n"))
    assert df["v"].dtype == object and df["v"][0] == "0"


def test_datetimes_are_detected(tmp_path):
    df = _quiet_read(_file(tmp_path, "d.csv", "iso,dmy,text,mon\n"
                                              "2021-01-05,05/01/2021,2021-01-05,Jan\n"
                                              "2021-03-04T10:30:00,25/12/2021,soon,Feb\n"
                                              ",13/02/2020,2021-02-01,Mar\n"))
    assert str(df["iso"].dtype) == "datetime64[ns]" and pd.isna(df["iso"][2])
    assert df["iso"][1] == pd.Timestamp("2021-03-04 10:30")
    # The first value is ambiguous; the later ones say the day comes first.
    assert df["dmy"].tolist() == [pd.Timestamp("2021-01-05"), pd.Timestamp("2021-12-25"), pd.Timestamp("2020-02-13")]
    assert df["text"].dtype == object  # not every value is a date
    assert df["mon"].dtype == object  # month names alone are not dates


def test_booleans_are_detected(tmp_path):
    df = _quiet_read(_file(tmp_path, "b.csv", "f,g,h\ntrue,TRUE,true\nFalse,,yes\nTRUE,false,false\n"))
    assert df["f"].dtype == bool and df["f"].tolist() == [True, False, True]
    assert str(df["g"].dtype) == "boolean" and df["g"].isna().tolist() == [False, True, False] and df["g"][0]
    assert df["h"].dtype == object


def test_clean_table_on_a_frame_does_not_change_it():
    df = pd.DataFrame({" a ": [1.0, np.inf], 3: ["1", "2"], "c": ["true", "false"], "d": [np.nan, np.nan]},
                      index=[7, 7])  # a repeated index label must not upset the column assignment
    before = df.copy()
    with pytest.warns(TableWarning, match="column 'a': 1 infinite") as record:
        cleaned, messages = clean_table(df)
    pd.testing.assert_frame_equal(df, before)
    assert messages == [str(w.message) for w in record]
    assert list(cleaned.columns) == ["a", "3", "c", "d"]
    assert cleaned["3"].tolist() == [1, 2] and cleaned["c"].dtype == bool and cleaned["d"].isna().all()
    assert cleaned.index.tolist() == [7, 7]


def test_clean_table_is_idempotent():
    df = pd.DataFrame({"v": ["1", "x"] + [str(i) for i in range(20)], "w": ["2021-01-01"] * 22})
    with pytest.warns(TableWarning, match="mostly numbers"):
        cleaned, _ = clean_table(df)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TableWarning)
        again, messages = clean_table(cleaned)
    assert messages == []
    pd.testing.assert_frame_equal(again, cleaned)


def test_clean_table_rejects_names_that_collide_once_stripped():
    with pytest.raises(ConfigError, match="duplicate column names: 'a'"):
        clean_table(pd.DataFrame([[1, 2]], columns=["a", " a"]))


# ---------------------------------------------------------------------------------------------- writing


def test_the_suffixes():
    assert set(TABLE_SUFFIXES) == {".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet"}


def test_an_unknown_suffix_names_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as info:
        write_table(_example(), tmp_path / "out.xlsx")
    message = str(info.value)
    assert "out.xlsx" in message and "\n" not in message
    assert all(s in message for s in TABLE_SUFFIXES)
    assert not (tmp_path / "out.xlsx").exists()


def test_the_parent_folder_is_created(tmp_path):
    path = tmp_path / "new" / "deeper" / "out.csv"
    write_table(_example(), path)
    assert path.exists()


def test_the_formats_follow_the_suffix(tmp_path):
    write_table(_example(), tmp_path / "t.tsv")
    write_table(_example(), tmp_path / "t.csv.gz")
    write_table(_example(), tmp_path / "t.parquet")
    assert (tmp_path / "t.tsv").read_text().startswith("x\tn\tcolour")
    assert gzip.decompress((tmp_path / "t.csv.gz").read_bytes()).startswith(b"x,n,colour")
    assert (tmp_path / "t.parquet").read_bytes()[:4] == b"PAR1"


def test_gzip_output_is_reproducible(tmp_path):
    write_table(_example(), tmp_path / "a.csv.gz")
    write_table(_example(), tmp_path / "b.csv.gz")
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()


def test_parquet_gets_string_column_names(tmp_path):
    write_table(pd.DataFrame({0: [1], 1: ["x"]}), tmp_path / "t.parquet")
    assert list(read_table(tmp_path / "t.parquet").columns) == ["0", "1"]


@pytest.mark.parametrize("suffix, method", [(".csv", "to_csv"), (".csv.gz", "to_csv"), (".parquet", "to_parquet")])
@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), RuntimeError("killed")])
def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch, suffix, method, failure):
    path = tmp_path / f"out{suffix}"
    write_table(pd.DataFrame({"old": [1, 2]}), path)
    old = path.read_bytes()

    def half_written(self, target, *args, **kwargs):
        # The crash comes after some bytes reached the disk (the target is a path or an open file).
        if isinstance(target, (str, os.PathLike)):
            Path(target).write_bytes(b"half a fi")
        else:
            target.write("half a fi")
            target.flush()
        raise failure

    monkeypatch.setattr(pd.DataFrame, method, half_written)
    expected = ConfigError if isinstance(failure, OSError) else RuntimeError
    with pytest.raises(expected) as info:
        write_table(pd.DataFrame({"new": [3]}), path)
    if expected is ConfigError:
        assert "No space left on device" in str(info.value) and path.name in str(info.value)
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary file is left behind


def test_writing_onto_a_folder_is_one_line(tmp_path):
    (tmp_path / "taken.csv").mkdir()
    with pytest.raises(ConfigError, match="cannot write table"):
        write_table(_example(), tmp_path / "taken.csv")
    assert os.listdir(tmp_path) == ["taken.csv"]

"""Tests of the shared label-file parsing: text rows, NAME VALUE pairs, scores and the bad-row policy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from faceattr.data.readers.labelfiles import (
    MAX_ROW_WARNINGS,
    BadRows,
    parse_score,
    read_pairs,
    text_rows,
)
from faceattr.errors import DatasetError


def test_text_rows_drop_a_byte_order_mark_and_skip_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes("\ufeffa.jpg 1\r\n\r\n  \nb.jpg 2\n".encode())
    assert list(text_rows(path)) == [(1, ["a.jpg", "1"]), (4, ["b.jpg", "2"])]


def test_text_rows_of_a_binary_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes(b"a.jpg 1\n\xff\xfe\n")
    with pytest.raises(DatasetError, match="not a UTF-8 text file") as error:
        list(text_rows(path))
    assert error.value.path == path


def test_read_pairs_refuses_a_repeated_name_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("a.jpg 1\nb.jpg 2\na.jpg 3\n")
    with pytest.raises(DatasetError, match="a.jpg appears again \\(first on line 1\\)") as error:
        read_pairs(path, int, BadRows(path, "error"))
    assert error.value.line == 3


def test_read_pairs_checks_every_row_but_keeps_only_the_wanted_ones(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("a.jpg 1\nb.jpg x\nc.jpg 3\n")
    bad_rows = BadRows(path, "skip")
    assert read_pairs(path, int, bad_rows, wanted={"c.jpg"}) == {"c.jpg": 3}
    assert bad_rows.count == 1


def test_bad_rows_warn_a_limited_number_of_times(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad_rows = BadRows(tmp_path / "labels.txt", "skip")
    with caplog.at_level(logging.WARNING, logger="faceattr.data.readers.labelfiles"):
        for line in range(1, MAX_ROW_WARNINGS + 6):
            bad_rows.report("bad", line)
    assert bad_rows.count == MAX_ROW_WARNINGS + 5
    assert sum("skipping a bad row" in message for message in caplog.messages) == MAX_ROW_WARNINGS
    assert "further bad rows are skipped without a warning" in caplog.text


def test_bad_rows_refuse_an_unknown_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'ignore' is not one of error, skip"):
        BadRows(tmp_path / "labels.txt", "ignore")


@pytest.mark.parametrize("text", ["nan", "inf", "0.99", "5.01", "three"])
def test_parse_score_refuses_anything_but_a_number_in_1_to_5(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text)):
        parse_score(text)

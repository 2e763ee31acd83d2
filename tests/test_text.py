"""spark_nb._text: what a terminal, a widget or a spreadsheet gets of text from elsewhere."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark_nb._text import csv_cell, inert


@pytest.mark.parametrize("attack, shown", [
    ("Audio URL missing\x1b[2K\x1b[1A\rAll good", "Audio URL missing All good"),  # erase the line, move up
    ("copy \x1b]52;c;ZXZpbA==\x07this", "copy this"),  # OSC 52 writes the clipboard
    ("title \x1b]0;pwned\x1b\\ok", "title ok"),  # OSC terminated by ST
    ("8-bit \x9b2K CSI", "8-bit  CSI"),
    ("bidi \u202egnp.exe\u202c zero\u200bwidth", "bidi gnp.exe zerowidth"),
    ("two\nlines\r\nand\ttab", "two lines  and tab"),
    ("nul\x00 bell\x07 del\x7f", "nul bell del"),
    ("no\u00a0break", "no break"),
])
def test_escape_sequences_and_controls_are_removed_whole(attack: str, shown: str) -> None:
    assert inert(attack) == shown


def test_newlines_may_be_kept_and_text_cut_with_an_ellipsis() -> None:
    assert inert("a\r\nb\x1b[31m", newlines=True) == "a\n\nb"
    assert inert("x" * 50, limit=10) == "x" * 9 + "…"
    assert inert("plain text, ünïcode and 漢字") == "plain text, ünïcode and 漢字"


@given(st.text())
def test_nothing_inert_returns_can_drive_a_terminal(text: str) -> None:
    shown = inert(text)
    assert shown.isprintable()
    assert "\x1b" not in shown and "\n" not in shown and "\r" not in shown


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://x\",\"y\")", "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)",
                                  "\t=1", "\r=1", "  =1", "\uff1d1+1", "\x1b[0m=1"])
def test_a_cell_a_spreadsheet_would_evaluate_is_written_as_text(cell: str) -> None:
    written = csv_cell(cell)
    assert isinstance(written, str) and written.startswith("'")
    buffer = io.StringIO()
    csv.writer(buffer).writerow([written])
    assert next(csv.reader(io.StringIO(buffer.getvalue())))[0].startswith("'")


def test_ordinary_cells_and_numbers_are_kept() -> None:
    assert csv_cell("portrait-01") == "portrait-01"
    assert csv_cell(5.25) == 5.25 and csv_cell(0) == 0
    assert csv_cell(None) == ""
    assert csv_cell("a,b \"quoted\"") == "a,b \"quoted\""

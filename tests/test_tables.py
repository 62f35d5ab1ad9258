"""The shared table renderer: text, padded markdown and unpadded markdown layouts, exactly."""

import pytest

from rramfx.tables import table_lines

HEADER = ("#", "layer", "MACs")
ROWS = [(1, "conv1", "1,728"), (12, "fc", "64")]


def test_text_table_pads_columns_and_strips_trailing_spaces():
    assert table_lines(HEADER, ROWS, "><>") == [
        " #  layer   MACs",
        "--  -----  -----",
        " 1  conv1  1,728",
        "12  fc        64",
    ]
    assert table_lines(("a", "b"), [("x", "")], "<<") == ["a  b", "-  -", "x"]  # the empty last cell stripped


def test_markdown_table_marks_right_aligned_columns():
    assert table_lines(HEADER, ROWS, "><>", markdown=True) == [
        "|   # | layer |  MACs |",
        "| --: | ----- | ----: |",
        "|   1 | conv1 | 1,728 |",
        "|  12 | fc    |    64 |",
    ]


def test_unpadded_markdown_table():
    assert table_lines(("p", "0%"), [("p = 0", "**91.00**")], "<>", markdown=True, pad=False) == [
        "| p | 0% |", "|---|---:|", "| p = 0 | **91.00** |"]


def test_aligns_must_fit_the_header():
    with pytest.raises(ValueError, match="one '<' or '>' per column \\(3\\), got '<>'"):
        table_lines(HEADER, ROWS, "<>")
    with pytest.raises(ValueError, match="got '<\\^>'"):
        table_lines(HEADER, ROWS, "<^>")

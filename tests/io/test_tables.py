"""Numbers as text: error bars, spreads over seeds, tables."""

import math

from flatscope.io.tables import as_number, fixed, format_number, format_table, spread_cell


def test_as_number_keeps_only_finite_numbers():
    assert as_number(2) == 2.0 and as_number(1.5) == 1.5
    for value in (None, True, "1", math.nan, math.inf, [1]):
        assert as_number(value) is None


def test_numbers_with_errors():
    assert format_number(None) == "n/a"
    assert format_number(123.456) == "123.5"
    assert format_number(123.456, 0.01234) == "123.5 ± 0.012"


def test_spread_is_shown_to_two_significant_digits_and_the_mean_to_the_same_place():
    assert spread_cell([1.0, 2.0, 3.0]) == "2.0 ± 1.0"
    assert spread_cell([0.9, 0.91], decimals=1, scale=100.0) == "90.5 ± 0.7"
    assert spread_cell([123.456]) == "123.5"  # one seed: no spread
    assert fixed(0.012345, 2) == "0.012"


def test_tables_pad_columns_or_write_markdown():
    rows = [("a", "1"), ("bbb", "22")]
    assert format_table(("name", "n"), rows, markdown=False).splitlines() == [
        "name  n",
        "a     1",
        "bbb   22",
    ]
    assert format_table(("name", "n"), rows, markdown=True).splitlines()[:2] == [
        "| name | n |",
        "|---|---|",
    ]

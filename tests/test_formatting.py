"""One way to write a share, a change and a size: the CLI, the report pages and the logs agree."""

from __future__ import annotations

from tuneflow.formatting import UNDEFINED, byte_size, percent, points


def test_sizes_are_in_decimal_units_with_one_decimal():
    assert [byte_size(n) for n in (0, 999, 1000, 150_550, 15_205_550_000)] == [
        "0 B", "999 B", "1.0 kB", "150.6 kB", "15.2 GB"]
    # Rounding up to the next unit, not "1000.0 kB"; past the largest unit, thousands separated.
    assert (byte_size(999_960), byte_size(5 * 10**15)) == ("1.0 MB", "5,000.0 TB")


def test_shares_and_changes_read_the_same_everywhere_and_undefined_is_one_mark():
    assert (percent(0.8123), percent(0.8123, digits=1), points(0.025), points(-0.001, digits=2)) == (
        "81.23%", "81.2%", "+2.5 points", "-0.10 points")
    assert {percent(None), percent(float("nan")), points(None)} == {UNDEFINED}

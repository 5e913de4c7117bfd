"""Progress in a log: whole lines every tenth of the work, no carriage returns
(smartassign.progress); a tqdm bar on a terminal."""

from __future__ import annotations

import io

from smartassign.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_every_tenth_of_the_work():
    log = io.StringIO()
    assert list(progress(range(250), desc="check", unit="pair", stream=log)) == list(range(250))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == 10
    assert lines[0].startswith("check: 25/250 (10 %), ")
    assert lines[-1].startswith("check: 250/250 (100 %), ") and lines[-1].endswith(":00")


def test_a_short_loop_gets_a_line_per_item_and_an_unsized_one_none():
    log = io.StringIO()
    list(progress(iter("abc"), desc="x", unit="it", total=3, stream=log))
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == [
        "x: 1/3 (33 %)",
        "x: 2/3 (66 %)",
        "x: 3/3 (100 %)",
    ]
    quiet = io.StringIO()
    assert list(progress(iter("abc"), desc="x", unit="it", stream=quiet)) == ["a", "b", "c"]
    assert quiet.getvalue() == ""


def test_a_terminal_gets_a_bar_and_disabled_progress_nothing():
    terminal = Terminal()
    list(progress(range(5), desc="restore", unit="image", stream=terminal))
    assert "\r" in terminal.getvalue() and "restore" in terminal.getvalue()
    off = Terminal()
    assert list(progress(range(5), desc="restore", unit="image", enabled=False, stream=off)) == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert off.getvalue() == ""

"""``journeys simulate`` progress moves with the work, on a terminal or not.

With ``--speed`` the simulator makes a day's lines long before the pace lets them out,
so progress is the delivery time of the line just sent across the simulated span, not
the days made (which read 100% at the start). Without a terminal (a log, a pipe) it is
a plain line every few seconds instead of a bar that nobody sees.
"""

from __future__ import annotations

import pytest

from cli.commands import simulate
from cli.commands.simulate import _Progress


def test_paced_progress_follows_the_lines_sent_not_the_days_made(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(simulate, "PLAIN_EVERY_S", 0.0)
    progress = _Progress(2, (1_000, 5_000), terminal=False)
    progress.update(days_done=2, deliver_ms=2_000, lines=1234)  # both days made, a quarter sent
    assert progress.fraction == 0.25
    assert capsys.readouterr().err == "journeys simulate: 25% (1,234 lines, simulated time 1970-01-01T00:00Z)\n"
    progress.close()
    assert progress.fraction == 1.0


def test_unpaced_progress_counts_days_and_stays_quiet_between_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(simulate, "PLAIN_EVERY_S", 3600.0)
    progress = _Progress(4, None, terminal=False)
    progress.update(days_done=1, deliver_ms=0, lines=10)
    assert progress.fraction == 0.25
    assert capsys.readouterr().err == ""  # the first plain line comes after PLAIN_EVERY_S

"""Progress when the output is redirected: a line at least every interval, with an ETA."""

import io
import time

from specfair.measure.progress import progress_bar, progress_line


def test_redirected_progress_is_never_silent_longer_than_its_interval():
    out = io.StringIO()  # not a terminal
    with progress_bar(3, "answers", interval=0.05, stream=out) as advance:
        advance("a")
        time.sleep(0.3)  # one long item: the heartbeat still reports
        advance("b")
        advance("c")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[answers] 0/3") and lines[0].endswith("ETA ?")
    beats = [ln for ln in lines if ln.startswith("[answers] 1/3")]
    assert len(beats) >= 3, lines  # ~6 heartbeats in 0.3 s at 0.05 s
    assert "ETA 0:00:0" in beats[-1] and beats[-1].endswith(" a")
    assert lines[-1].startswith("[answers] 3/3") and "ETA 0:00:00" in lines[-1]


def test_progress_line_eta_from_the_rate_so_far():
    assert progress_line("x", 1, 4, 60.0) == "[x] 1/4 elapsed 0:01:00 ETA 0:03:00"
    assert progress_line("x", 0, 4, 5.0, "p") == "[x] 0/4 elapsed 0:00:05 ETA ? p"

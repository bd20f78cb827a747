"""Progress bar: short logs off a terminal, in-place redraws on one."""

from __future__ import annotations

import io

from drq.imaging.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_stream_gets_at_most_ten_lines_plus_final() -> None:
    stream = io.StringIO()
    with Progress(1000, "eval", stream=stream) as progress:
        for i in range(1000):
            progress.update(psnr=30.0 + i / 1000)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10  # each tenth once; the last one is the final line, not repeated on close
    assert lines[0].startswith("eval [##..................] 100/1000  10%")
    assert lines[-1].startswith("eval [####################] 1000/1000 100%")
    assert lines[-1].endswith("psnr=30.9990")


def test_few_steps_and_early_close() -> None:
    stream = io.StringIO()
    progress = Progress(3, "q", stream=stream)
    progress.update()
    progress.close()
    progress.close()  # idempotent
    progress.update()  # ignored after close
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("q [#######.............] 1/3  33%")
    assert lines[1] == lines[1].rstrip() and "1/3" in lines[1]


def test_unknown_total_prints_only_the_final_count() -> None:
    stream = io.StringIO()
    with Progress(0, "calib", stream=stream) as progress:
        progress.update(5, layer="body.0")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("calib 5 ") and lines[0].endswith("layer=body.0")


def test_terminal_redraws_in_place() -> None:
    stream = _Tty()
    progress = Progress(2, "x", stream=stream)
    progress.update()
    progress.update()
    progress.close()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and text.startswith("\rx [")
    assert text.count("\r") == 3  # first update, the final update (always drawn), close

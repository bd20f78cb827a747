"""A minimal text progress bar for long loops (evaluation, calibration) that keeps CI logs short.

On a terminal the line is redrawn in place with ``\\r``; on anything else (a CI log, a file) it prints
a new line only each time another tenth of the total is done, plus the final line, so a log holds at
most about eleven lines per bar.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_BAR_WIDTH = 20
_TTY_REDRAW_S = 0.1  # redraw at most ten times a second on a terminal
_LOG_STEPS = 10  # lines per bar when not a terminal (plus the final one)


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


class Progress:
    """Progress of `total` steps, labelled, written to `stream` (stderr by default).

    Usable as a context manager; `close` is idempotent.
    """

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None) -> None:
        """Start a bar.

        Args:
            total: Number of steps expected (0 or less: unknown, the count is shown without a bar).
            label: Shown at the start of the line.
            stream: Where to write; ``sys.stderr`` at construction time if None.
        """
        self.total = int(total)
        self.label = label
        self.count = 0
        self.postfix: dict[str, object] = {}
        self._stream = stream if stream is not None else sys.stderr
        isatty = getattr(self._stream, "isatty", None)
        self._tty = bool(isatty()) if callable(isatty) else False
        self._started = time.perf_counter()
        self._last_draw = -1.0
        self._logged_step = 0  # tenths already printed (non-terminal)
        self._final_written = False
        self._closed = False

    def line(self) -> str:
        """The current progress line (no line ending)."""
        elapsed = time.perf_counter() - self._started
        parts = [self.label] if self.label else []
        if self.total > 0:
            done = min(self.count, self.total)
            filled = round(_BAR_WIDTH * done / self.total)
            parts.append("[" + "#" * filled + "." * (_BAR_WIDTH - filled) + "]")
            parts.append(f"{self.count}/{self.total} {100 * done // self.total:3d}%")
        else:
            parts.append(str(self.count))
        parts.append(f"{elapsed:.1f}s")
        parts.extend(f"{key}={_format_value(value)}" for key, value in self.postfix.items())
        return " ".join(parts)

    def update(self, n: int = 1, **postfix: object) -> None:
        """Advance by `n` steps; keyword values replace the shown ``key=value`` pairs of the same name."""
        if self._closed:
            return
        self.count += n
        self.postfix.update(postfix)
        finished = self.total > 0 and self.count >= self.total
        if self._tty:
            now = time.perf_counter()
            if finished or now - self._last_draw >= _TTY_REDRAW_S:
                self._last_draw = now
                self._stream.write("\r" + self.line() + "\x1b[K")
                self._stream.flush()
            return
        if self.total <= 0:
            return  # unknown length: only the final line on close
        step = min(_LOG_STEPS, _LOG_STEPS * self.count // self.total)
        if step > self._logged_step:
            self._logged_step = step
            self._write_line()
            self._final_written = finished

    def _write_line(self) -> None:
        self._stream.write(self.line() + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Finish the bar: write the final line (terminal: end the redrawn line). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._tty:
            self._stream.write("\r" + self.line() + "\x1b[K\n")
            self._stream.flush()
        elif not self._final_written:
            self._write_line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

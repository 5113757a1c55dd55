"""What the command line prints: tables, the watch's progress line and events (no domain logic here)."""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Sequence, TextIO

from pyexputils.runner.watch import Tally


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths))).rstrip()
        for r in rows
    )


def minutes(m: int | None) -> str:
    if m is None:
        return "default"
    return f"{m // 60}:{m % 60:02d}:00"


class WatchDisplay:
    """A live progress line on a terminal; plain log lines otherwise; JSON events with ``json``."""

    def __init__(self, quiet: bool = False, json: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.quiet = quiet
        self.json = json
        self.out: TextIO = out if out is not None else sys.stdout  # the streams of now, not of import time
        self.err: TextIO = err if err is not None else sys.stderr
        self.live = not quiet and not json and self.err.isatty()
        self._last = ""

    def event(self, kind: str, **fields: Any) -> None:
        if self.json:
            self.out.write(json.dumps({"event": kind, "time": round(time.time(), 3), **fields}) + "\n")
            self.out.flush()

    def log(self, text: str) -> None:
        if self.json:
            return
        if self.live and self._last:
            self.err.write("\r\033[K")
        self.err.write(f"watch: {text}\n")
        if self.live and self._last:
            self.err.write(self._last)
        self.err.flush()

    def progress(self, t: Tally, note: str = "") -> None:
        causes = " ".join(f"{c}:{n}" for c, n in sorted(t.causes.items()) if c != "COMPLETED")
        pct = t.done / t.total if t.total else 1.0
        bar = "#" * int(pct * 30) + "-" * (30 - int(pct * 30))
        line = (
            f"[{bar}] {t.done}/{t.total} done, {t.live} queued/running, {len(t.finals)} final"
            + (f", {t.unknown} held back" if t.unknown else "")
            + (f" | ended so far: {causes}" if causes else "")
            + (f" | {note}" if note else "")
        )
        self.event("progress", total=t.total, done=t.done, active=t.live, submitted=t.resubmitted, deferred=t.deferred,
                   unknown=t.unknown, final=len(t.finals), causes=dict(t.causes), note=note)  # fmt: skip
        if self.live:
            self._last = line
            self.err.write("\r\033[K" + line)
            self.err.flush()
        elif not self.json and not self.quiet and line != self._last:
            self._last = line
            self.err.write(f"watch: {line}\n")
            self.err.flush()

    def close(self) -> None:
        if self.live and self._last:
            self.err.write("\n")
            self.err.flush()

"""What the command line prints: tables, the watch's progress line and events (no domain logic here)."""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Sequence, TextIO

from pyexputils.runner.plan import ArrayPlan
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


def _hours(core: float | None) -> str:
    return "-" if core is None else f"{core / 60:.2f}"


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f}s" if s < 90 else f"{s / 60:.1f}m"


def arrayMemory(a: ArrayPlan) -> str:
    """What one task of ``a`` asks in memory, as sbatch is told."""
    if a.mem_mb is not None:
        return f"{a.mem_mb}M"
    for key in ("mem_per_cpu", "mem_per_gpu"):
        if key in a.sbatch:
            return f"{a.sbatch[key]}/{key.rsplit('_', 1)[1]}"
    return "default"


def costTable(arrays: Sequence[tuple[str, ArrayPlan]]) -> str:
    """Per array (its tag and plan): what it asks and what it will cost; predicted where run times are
    measured (``-`` otherwise)."""
    rows = [["array", "settings", "tasks", "runs/task", "cpus/task", "mem/task", "time/task", "predicted/task",
             "core-h asked", "core-h predicted"]]  # fmt: skip
    for tag, a in arrays:
        rows.append([tag, a.label or "-", str(a.size), str(a.runs_per_task), str(a.cpus_per_task), arrayMemory(a),
                     minutes(a.time_minutes), _seconds(a.predicted_s), _hours(a.coreMinutes() if a.time_minutes else None),
                     _hours(a.predicted_core_minutes)])  # fmt: skip
    return table(rows)


def efficiencyTable(rows: Sequence[dict[str, Any]]) -> str:
    """``status --efficiency``: per array, used / requested time and memory (as seff)."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.0%}"

    out = [["array", "tasks ended", "runs", "timeouts", "time/task", "core-h asked", "core-h used", "time used",
            "mem/task", "peak mem/run", "mem used"]]  # fmt: skip
    for r in rows:
        out.append([r["tag"], f"{r['tasks_ended']}/{r['tasks']}", str(r["runs"]), str(r["timeouts"]),
                    minutes(None if r["time_requested_min"] is None else int(r["time_requested_min"])),
                    "-" if r["core_hours_requested"] is None else f"{r['core_hours_requested']:.2f}",
                    f"{r['core_hours_used']:.2f}", pct(r["time_efficiency"]),
                    "-" if r["mem_requested_mb"] is None else f"{r['mem_requested_mb']:.0f}M",
                    "-" if r["mem_max_mb"] is None else f"{r['mem_max_mb']:.0f}M", pct(r["mem_efficiency"])])  # fmt: skip
    return table(out)


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

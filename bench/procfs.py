"""A process's /proc/PID/stat fields and CPU seconds, for the benches that time processes they did not wait
for (bench/suite.py, bench/transcode.py). Standard library only: bench/suite.py runs on the system Python."""

from __future__ import annotations

import os
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int | str) -> list[str]:
    """The fields after the command name (which may hold spaces and parentheses): state is [0], the parent
    pid [1], user and system jiffies [11] and [12], the start time [19]. OSError once the process is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(fields: list[str]) -> float:
    """User and system CPU seconds of `stat_fields`' process (its waited-for children not included)."""
    return (int(fields[11]) + int(fields[12])) / HZ

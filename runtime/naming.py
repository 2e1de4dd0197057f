"""What the Prefect UI shows: runs named after their input (`subtitles · demo.mp4`, not `arboreal-dragonfly`),
one artifact card per input, a stage-timing table per run.

`run_named_after("subtitles", "video")` is a `flow_run_name` callable: Prefect calls it when the run starts
and it reads the run's own parameters, so runs from the CLI, a deployment, a trigger or the upload page are
named alike. The upload page names the runs it creates with `input_label` too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import PurePath


def input_label(job: str, inputs: Sequence[str]) -> str:
    """`transcode · clip.mp4`; several inputs: `enhance · a.jpg +2`; none: the job alone."""
    names = [PurePath(str(i)).name or str(i) for i in inputs if i]
    if not names:
        return job
    more = f" +{len(names) - 1}" if len(names) > 1 else ""
    return f"{job} · {names[0]}{more}"


def artifact_key(kind: str, name: str | PurePath) -> str:
    """`subtitles-demo-mp4`: one artifact card per input, not one card every video overwrites.

    Prefect keys allow lowercase letters, digits and dashes; a name that loses characters on the way
    (字幕.mp4) gets a short hash of itself so two such inputs keep apart.
    """
    base = PurePath(str(name)).name
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:48]
    if not base.isascii() or len(base) > 48:
        slug = f"{slug}-{hashlib.sha1(base.encode()).hexdigest()[:6]}".strip("-")
    return f"{kind}-{slug or 'input'}"


def stage_timing_table(kind: str, name: str | PurePath, seconds: dict[str, float]) -> None:
    """Each stage's wall time and share, one table per input (`subtitles-timing-demo-mp4`)."""
    from prefect.artifacts import create_table_artifact

    total = sum(seconds.values())
    rows = [
        {"stage": stage, "seconds": round(s, 2), "share": f"{100 * s / (total or 1.0):.0f}%"}
        for stage, s in seconds.items()
    ]
    label = PurePath(str(name)).name
    create_table_artifact(
        rows,
        key=artifact_key(f"{kind}-timing", name),
        description=f"{kind} of {label}: {total:.1f} s in {len(rows)} stages",
    )


def run_named_after(job: str, parameter: str) -> Callable[[], str]:
    """A `flow_run_name` callable naming the run after the file(s) in its `parameter`."""

    def name() -> str:
        from prefect.runtime import flow_run

        value = (flow_run.parameters or {}).get(parameter)
        values = list(value) if isinstance(value, list | tuple) else [value]
        return input_label(job, [str(v) for v in values if v])

    name.__name__ = f"{job}_run_name"
    return name

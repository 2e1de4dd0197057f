"""Names the Prefect UI shows: a run after its input (`subtitles · demo.mp4`), not `arboreal-dragonfly`.

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


def run_named_after(job: str, parameter: str) -> Callable[[], str]:
    """A `flow_run_name` callable naming the run after the file(s) in its `parameter`."""

    def name() -> str:
        from prefect.runtime import flow_run

        value = (flow_run.parameters or {}).get(parameter)
        values = list(value) if isinstance(value, list | tuple) else [value]
        return input_label(job, [str(v) for v in values if v])

    name.__name__ = f"{job}_run_name"
    return name

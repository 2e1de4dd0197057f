"""Progress a person can act on: a Prefect progress artifact saying how far, how fast, and how long is left.

`report = StageProgress("mp4_smooth of clip.mp4", media_seconds=12.0); report(0.4); report.done()` shows
`mp4_smooth of clip.mp4: 40% · 2.1x realtime · 9 s left`, then `... done in 14.3 s`. A stage counting
items rather than media time gives `items=120, unit="batches"`: `OCR of clip.mp4: 50% · 3.2 batches/s ·
19 s left`. Transcode, OCR and speech recognition report through this one class, so the UI reads
alike everywhere. Updates are throttled (each one is an API call and server time); the first and the
last are always sent.
"""

from __future__ import annotations

import time


def describe_progress(
    what: str,
    fraction: float,
    elapsed: float,
    media_seconds: float | None = None,
    *,
    items: int | None = None,
    unit: str = "items",
) -> str:
    """`what: 40% · 2.1x realtime · 9 s left` (media stages) or `what: 40% · 3.0 items/s · 9 s left`.

    Speed is shown only when the work's size is known (media length or item count), time left once any
    work is done.
    """
    parts = [f"{what}: {100.0 * fraction:.0f}%"]
    if fraction > 0 and elapsed > 0:
        if media_seconds:
            parts.append(f"{fraction * media_seconds / elapsed:.1f}x realtime")
        elif items:
            parts.append(f"{fraction * items / elapsed:.1f} {unit}/s")
        parts.append(f"{elapsed * (1.0 - fraction) / fraction:.0f} s left")
    return " · ".join(parts)


class StageProgress:
    """One progress artifact per stage run, updated with speed and time left at most every `every` s."""

    def __init__(
        self,
        what: str,
        *,
        media_seconds: float | None = None,
        items: int | None = None,
        unit: str = "items",
        key: str | None = None,
        every: float = 5.0,
    ) -> None:
        from prefect.artifacts import create_progress_artifact

        self.what, self.media_seconds, self.every = what, media_seconds, every
        self.items, self.unit = items, unit
        self.started = time.monotonic()
        self.last, self.shown = 0.0, 0.0
        self.text = f"{what}: waiting"
        self.artifact_id = create_progress_artifact(0.0, key=key, description=self.text)

    def __call__(self, fraction: float) -> None:
        from prefect.artifacts import update_progress_artifact

        now = time.monotonic()
        if now - self.last >= self.every and self.shown + 0.01 <= fraction < 1.0:
            self.last, self.shown = now, fraction
            self.text = describe_progress(
                self.what, fraction, now - self.started, self.media_seconds, items=self.items, unit=self.unit
            )
            update_progress_artifact(self.artifact_id, round(100.0 * fraction, 1), description=self.text)

    def done(self) -> None:
        from prefect.artifacts import update_progress_artifact

        took = time.monotonic() - self.started
        self.text = f"{self.what}: done in {took:.1f} s"
        if took > 0 and (self.media_seconds or self.items):
            whole = describe_progress("", 1.0, took, self.media_seconds, items=self.items, unit=self.unit)
            self.text += " · " + whole.split(" · ")[1]  # the mean speed
        update_progress_artifact(self.artifact_id, 100.0, description=self.text)

"""Progress a person can act on: a Prefect progress artifact saying how far, how fast, and how long is left.

`report = StageProgress("mp4_smooth of clip.mp4", media_seconds=12.0); report(0.4); report.done()` shows
`mp4_smooth of clip.mp4: 40% · 2.1x realtime · 9 s left`, then `... done in 14.3 s`. Updates are throttled
(each one is an API call and server time); the first and the last are always sent.
"""

from __future__ import annotations

import time


def describe_progress(
    what: str, fraction: float, elapsed: float, media_seconds: float | None = None
) -> str:
    """`what: 40% · 2.1x realtime · 9 s left` (speed only when the media's length is known)."""
    parts = [f"{what}: {100.0 * fraction:.0f}%"]
    if fraction > 0 and elapsed > 0:
        if media_seconds:
            parts.append(f"{fraction * media_seconds / elapsed:.1f}x realtime")
        parts.append(f"{elapsed * (1.0 - fraction) / fraction:.0f} s left")
    return " · ".join(parts)


class StageProgress:
    """One progress artifact per stage run, updated with speed and time left at most every `every` s."""

    def __init__(
        self, what: str, *, media_seconds: float | None = None, key: str | None = None, every: float = 5.0
    ) -> None:
        from prefect.artifacts import create_progress_artifact

        self.what, self.media_seconds, self.every = what, media_seconds, every
        self.started = time.monotonic()
        self.last, self.shown = 0.0, 0.0
        self.artifact_id = create_progress_artifact(0.0, key=key, description=f"{what}: waiting")

    def __call__(self, fraction: float) -> None:
        from prefect.artifacts import update_progress_artifact

        now = time.monotonic()
        if now - self.last >= self.every and self.shown + 0.01 <= fraction < 1.0:
            self.last, self.shown = now, fraction
            text = describe_progress(self.what, fraction, now - self.started, self.media_seconds)
            update_progress_artifact(self.artifact_id, round(100.0 * fraction, 1), description=text)

    def done(self) -> None:
        from prefect.artifacts import update_progress_artifact

        took = time.monotonic() - self.started
        update_progress_artifact(self.artifact_id, 100.0, description=f"{self.what}: done in {took:.1f} s")

"""The names of the block documents bootstrap saves: one constant per block type, all here.

A document is named after its block type's slug, so the UI's Blocks page lists `yivideo-run-policy`,
`yivideo-gpu-policy`, ... rather than a column of "default"s. Servers bootstrapped before this naming hold
the documents as `default`: reading a shipped name falls back to that document (`names_to_try`), and
bootstrap copies it to the new name once, keeping the user's edits.
"""

from __future__ import annotations

RUN_POLICY = "yivideo-run-policy"  # blocks/policy.py RunPolicy (YIVIDEO_RUN_POLICY in prefect.yaml)
ALERT_RULES = "yivideo-alert-rules"  # blocks/policy.py AlertRules
GPU_POLICY = "yivideo-gpu-policy"  # gpu/policy.py GpuPolicy (YIVIDEO_GPU_POLICY overrides it)
SUBTITLE_SETTINGS = "yivideo-subtitle-settings"  # blocks/subtitles.py SubtitleConfig
SHIPPED = frozenset({RUN_POLICY, ALERT_RULES, GPU_POLICY, SUBTITLE_SETTINGS})
LEGACY = "default"  # what bootstrap named every one of them before


def names_to_try(name: str) -> tuple[str, ...]:
    """`name`, then the pre-rename `default` document when `name` is one bootstrap ships."""
    return (name, LEGACY) if name in SHIPPED else (name,)

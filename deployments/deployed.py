"""The deployed flows: entrypoint name -> (module, flow, crash re-runs capped).

deployments/entrypoints.py serves them to Prefect (prefect.yaml points there); deployments/zygote.py imports
their modules ahead of the runs. A crashed run is scheduled again by bootstrap's automation;
refuse_crash_loops caps how often. No imports here: reading this table costs nothing.
"""

DEPLOYED: dict[str, tuple[str, str, bool]] = {
    "extract_subtitles": ("flows.subtitles", "extract_subtitles", True),
    "enhance_images": ("flows.enhance", "enhance_images", True),
    "enhance_yardstick": ("flows.enhance", "enhance_yardstick", False),
    "fuse_subtitles": ("flows.fuse", "fuse_subtitles", True),
    "run_pipeline": ("flows.pipeline", "run_pipeline", True),
    "transcode": ("flows.transcode", "transcode", True),
    "transcribe": ("flows.transcribe", "transcribe", True),
    "sweep_inbox": ("deployments.inbox", "sweep_inbox", False),
}

"""Photo enhancement: seconds per image with the model resident vs reloaded for every image.

    .venv/bin/python bench/enhance.py [--engines realesrgan-ncnn:MODEL,gfpgan] [--images 4] [--size 256x256]

Columns: loads done, the first image's seconds, the later images' mean, the mean over all, CPU seconds per
image (all threads), and seconds per image spent getting the engine (a load, or a lookup when resident).

The seed (PhotoEnhanceAI) went from 12.9 s to 4.9 s per image by keeping GFPGAN loaded. Here each engine
enhances the same generated faces twice: once through `core.models.resident_model` (loaded once), once
with `evict()` before every image (loaded every time); `load_count()` proves how many loads happened.
gfpgan runs only where its extra is installed, on untrained weights in the real checkpoint formats
(`aligned` mode, so every image is one full GFPGAN pass; load and inference cost do not depend on the
weight values). Plain functions, no Prefect: this measures the model, not orchestration.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models import evict, load_count  # noqa: E402
from samples.images import make_face_set  # noqa: E402
from stages.enhance.engines import load_engine  # noqa: E402
from stages.enhance.enhance import enhance_image  # noqa: E402
from stages.enhance.settings import EnhanceSettings  # noqa: E402


def settings_for(engine: str, work: Path, scale: float) -> EnhanceSettings | None:
    if engine != "gfpgan":
        model = None
        if ":" in engine:  # realesrgan-ncnn:realesrgan-x4plus
            engine, model = engine.split(":", 1)
        return EnhanceSettings(engine=engine, model=model, scale=scale)
    if not all(importlib.util.find_spec(m) for m in ("torch", "gfpgan", "basicsr", "facexlib")):
        print("gfpgan: skipped (the gfpgan extra is not installed; see README 'Photo enhancement')")
        return None
    from samples.images import write_untrained_gfpgan_weights

    paths = write_untrained_gfpgan_weights(work / "weights")
    return EnhanceSettings(engine="gfpgan", scale=1, aligned=True, **paths)


def run(
    images: list[Path], out: Path, settings: EnhanceSettings, *, reload: bool
) -> tuple[list[float], list[float], list[float], int]:
    """Per image: wall seconds, CPU seconds (all threads; steadier than wall time on a shared machine) and
    the wall seconds of getting the engine (a load, or a lookup of the resident one); and the loads done."""
    evict()
    loads = load_count("enhance", settings.engine)
    wall, cpu, getting = [], [], []
    for image in images:
        if reload:
            evict()
        started, started_cpu = time.perf_counter(), time.process_time()
        engine = load_engine(settings)
        getting.append(time.perf_counter() - started)
        enhance_image(image, out / image.name, settings, engine)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return wall, cpu, getting, load_count("enhance", settings.engine) - loads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engines", default="realesrgan-ncnn,gfpgan", help="realesrgan-ncnn:MODEL picks a model"
    )
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--scale", type=float, default=2.0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = make_face_set(work / "in", args.images, size=(width, height))
        print(f"{args.images} images {width}x{height}, scale {args.scale:g} (gfpgan: aligned, scale 1)")
        print(
            f"{'engine':24} {'mode':9} {'loads':>5} {'first s':>8} {'later s':>8} {'wall s/img':>10} "
            f"{'cpu s/img':>9} {'engine s/img':>12}"
        )
        for engine in args.engines.split(","):
            settings = settings_for(engine, work, args.scale)
            if settings is None:
                continue
            started = time.perf_counter()
            load_engine(settings)  # warm-up: imports and first-time initialisation stay out of the figures
            evict()
            print(f"{engine:24} warm-up (imports + one load): {time.perf_counter() - started:.2f} s")
            wall_means, cpu_means = {}, {}
            for mode in ("resident", "reload"):
                wall, cpu, getting, loads = run(
                    images, work / engine / mode, settings, reload=mode == "reload"
                )
                wall_means[mode], cpu_means[mode] = statistics.mean(wall), statistics.mean(cpu)
                later = statistics.mean(wall[1:]) if len(wall) > 1 else wall[0]
                print(
                    f"{engine:24} {mode:9} {loads:5d} {wall[0]:8.2f} {later:8.2f} {wall_means[mode]:10.2f} "
                    f"{cpu_means[mode]:9.2f} {statistics.mean(getting):12.2f}"
                )
            print(
                f"{engine:24} reload / resident per image: wall "
                f"{wall_means['reload'] / wall_means['resident']:.2f}x, "
                f"cpu {cpu_means['reload'] / cpu_means['resident']:.2f}x"
            )
            evict()
    return 0


if __name__ == "__main__":
    sys.exit(main())

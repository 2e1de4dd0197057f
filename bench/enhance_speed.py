"""Photo enhancement speed per engine/model, input size and scale on this machine's CPU, and the memory that
tiling keeps bounded.

    flock /tmp/bench.lock .venv/bin/python bench/enhance_speed.py [--sizes 128,256,512,1024] [--scales 2,4]
        [--engines opencv-classic,realesrgan-ncnn:realesr-animevideov3,...] [--budget 300] [--tile 256]

Every measurement runs in a fresh process (so its peak memory is its own): the engine is loaded and warmed up
on a 32 px image first, then one square crop of scikit-image's astronaut photo, resized to SIZE px, is
enhanced SCALE times. Columns: wall and CPU seconds (all threads), megapixels out per second, the process's
peak resident memory, and how far the image pushed that peak above the loaded engine's. A size is skipped
(and said so) when the previous size's time x 4 would pass `--budget` seconds. Last, the largest size that
ran is measured again with `--tile 0` (whole image at once) to show what tiling saves. Raw engines (faces
off): the face step adds a detection of ~0.1-1 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENGINES = (
    "opencv-classic",
    "realesrgan-ncnn:realesr-animevideov3",
    "realesrgan-ncnn:realesrgan-x4plus-anime",
    "realesrgan-ncnn:realesrgan-x4plus",
)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_one(engine_spec: str, size: int, scale: int, tile: int) -> dict:
    """In this process: load + warm the engine, then time one SIZE px photo at SCALE."""
    import cv2

    from samples.images import real_photo
    from stages.enhance.engines import load_engine
    from stages.enhance.settings import EnhanceSettings

    engine_name, _, model = engine_spec.partition(":")
    settings = EnhanceSettings(engine=engine_name, model=model or None, scale=scale, tile=tile, faces="off")
    photo = real_photo("astronaut")
    image = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
    engine = load_engine(settings)
    engine.enhance(cv2.resize(photo, (32, 32), interpolation=cv2.INTER_AREA), settings)
    loaded = _peak_mb()
    started, started_cpu = time.perf_counter(), time.process_time()
    out = engine.enhance(image, settings).image
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return {
        "wall": wall,
        "cpu": cpu,
        "out": f"{out.shape[1]}x{out.shape[0]}",
        "mpx_s": out.shape[0] * out.shape[1] / 1e6 / wall,
        "peak_mb": _peak_mb(),
        "image_mb": _peak_mb() - loaded,
    }


def run_child(engine: str, size: int, scale: int, tile: int) -> dict:
    command = [sys.executable, __file__, "--one", engine, str(size), str(scale), str(tile)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--sizes", default="128,256,512,1024")
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds one measurement may take")
    parser.add_argument("--no-whole", action="store_true", help="skip the tile 0 comparison")
    parser.add_argument("--one", nargs=4, metavar=("ENGINE", "SIZE", "SCALE", "TILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        engine, size, scale, tile = args.one
        print(json.dumps(measure_one(engine, int(size), int(scale), int(tile))))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"astronaut crops, CPU ({__import__('os').cpu_count()} cores), tile {args.tile}, fresh process each"
    )
    print(
        f"{'engine':40} {'size':>5} {'x':>2} {'tile':>5} {'out':>10} {'wall s':>8} {'cpu s':>8} "
        f"{'MPx/s':>7} {'peak MB':>8} {'image MB':>8}"
    )

    def show(engine, size, scale, tile, r):
        print(
            f"{engine:40} {size:5d} {scale:2d} {tile:5d} {r['out']:>10} {r['wall']:8.2f} {r['cpu']:8.2f} "
            f"{r['mpx_s']:7.3f} {r['peak_mb']:8.0f} {r['image_mb']:8.0f}",
            flush=True,
        )

    for engine in args.engines.split(","):
        for scale in (int(s) for s in args.scales.split(",")):
            last, largest = None, 0
            for size in sizes:
                estimate = last * (size / largest) ** 2 if last is not None else 0.0
                if estimate > args.budget:
                    print(f"{engine:40} {size:5d} {scale:2d} skipped: ~{estimate:.0f} s > {args.budget:g} s")
                    continue
                result = run_child(engine, size, scale, args.tile)
                show(engine, size, scale, args.tile, result)
                last, largest = result["wall"], size
            if largest and largest > args.tile > 0 and not args.no_whole:
                show(engine, largest, scale, 0, run_child(engine, largest, scale, 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())

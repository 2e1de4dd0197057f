"""Photo enhancement speed, memory and quality per engine/model, input size and scale on this machine's CPU.

    flock /tmp/bench.lock .venv/bin/python bench/enhance_speed.py [--sizes 256,512,1024,2048] [--scales 2,4]
        [--engines default,realesrgan-ncnn:waifu2x-photo,...] [--budget 300] [--tile 256] [--no-quality]
        [--memory-probe TILES]

Every measurement runs in a fresh process (so its peak memory is its own): the engine is loaded and warmed up
on a 32 px image first, then one square crop of scikit-image's astronaut photo, resized to SIZE px, is
enhanced SCALE times. `default` is the stage as a user gets it (model chosen by content, faces kept faithful);
the others are raw engines (faces off). Columns: wall and CPU seconds (all threads), megapixels out per
second, the process's peak resident memory, and how far the image pushed that peak above the loaded engine's;
then the yardstick's quality at that scale (stages/enhance/yardstick.py: scikit-image's astronaut, chelsea and
coffee shrunk SCALE times and enhanced back; mean PSNR, SSIM and NIQE, and bicubic's for comparison), measured
once per engine and scale. A size is skipped (and said so) when the previous size's time x 4 would pass
`--budget` seconds. `--memory-probe N` measures peak memory alone where a whole run would take hours (the RRDB
networks at 4096 px): the network runs on the first N tiles of each pass (the first row: full-size tiles with
context), the other tiles are Lanczos copies, so every buffer of the real run is held (input, output, faces)
and the network's working set is its largest tile's; its wall and CPU columns are not the model's. The load
average is printed first and last: wall seconds on a shared machine are inflated by it, CPU seconds much less.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENGINES = (
    "default",
    "opencv-classic",
    "realesrgan-ncnn:waifu2x-photo",
    "realesrgan-ncnn:realesr-animevideov3",
    "realesrgan-ncnn:realesrgan-x4plus-anime",
    "realesrgan-ncnn:realesrgan-x4plus",
)


def _peak_mb() -> float:
    """This process's own peak RSS (VmHWM). ru_maxrss would carry the forking parent's peak across exec."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024.0


def network_tiles_only(count: int, settings) -> None:
    """--memory-probe: the ncnn engine runs its network on `count` tiles of the largest shape (a tile with
    context on every side, where the working set peaks); every other tile is a Lanczos copy."""
    import cv2

    from stages.enhance.engines.realesrgan import NcnnNetworks, model_spec

    network, done = NcnnNetworks.run, [0]

    def run(self, index, piece):
        step = self.passes[index]
        bound = model_spec(step.model).max_tile
        side = min(settings.tile or bound, bound) + 2 * settings.tile_pad
        if done[0] < count and piece.shape[:2] == (side, side):
            done[0] += 1
            return network(self, index, piece)
        size = (piece.shape[1] * step.native, piece.shape[0] * step.native)
        return cv2.resize(piece, size, interpolation=cv2.INTER_LANCZOS4)

    NcnnNetworks.run = run


def measure_one(engine_spec: str, size: int, scale: int, tile: int, probe: int = 0) -> dict:
    """In this process: load + warm the engine, then time one SIZE px photo at SCALE."""
    import cv2

    from samples.images import real_photo
    from stages.enhance.enhance import enhance_array
    from stages.enhance.yardstick import method_settings

    method, _, faces = engine_spec.partition("+")  # realesrgan-ncnn:MODEL+faces: with faithful faces
    settings = replace(method_settings(method, scale), tile=tile)
    settings = replace(settings, faces="faithful") if faces else settings
    photo = real_photo("astronaut")
    image = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
    enhance_array(cv2.resize(photo, (32, 32), interpolation=cv2.INTER_AREA), settings)
    loaded = _peak_mb()
    if probe:
        network_tiles_only(probe, settings)
    started, started_cpu = time.perf_counter(), time.process_time()
    out, used = enhance_array(image, settings)
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return {
        "wall": wall,
        "cpu": cpu,
        "out": f"{out.image.shape[1]}x{out.image.shape[0]}",
        "mpx_s": out.image.shape[0] * out.image.shape[1] / 1e6 / wall,
        "peak_mb": _peak_mb(),
        "image_mb": _peak_mb() - loaded,
        "model": used.model or used.engine,
    }


def quality_one(engine_spec: str, scale: int) -> dict:
    """The yardstick's means over scikit-image's photo set at SCALE, for this method and for bicubic."""
    from samples.images import PHOTO_SET, real_photo
    from stages.enhance.yardstick import mean_scores, score_photo

    scores = [
        s
        for name in PHOTO_SET
        for s in score_photo(name, real_photo(name), ("bicubic", engine_spec), scale=scale)
    ]
    means = {s.method: s for s in mean_scores(scores)}
    mine, bicubic = means[engine_spec], means["bicubic"]
    return {
        "psnr": mine.psnr,
        "ssim": mine.ssim,
        "niqe": mine.niqe,
        "bicubic_ssim": bicubic.ssim,
        "bicubic_niqe": bicubic.niqe,
    }


def run_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_line() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--sizes", default="256,512,1024,2048")
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds one measurement may take")
    parser.add_argument("--no-quality", action="store_true", help="skip the yardstick columns")
    parser.add_argument("--memory-probe", type=int, default=0, metavar="TILES", help="peak memory only")
    parser.add_argument(
        "--one", nargs=5, metavar=("ENGINE", "SIZE", "SCALE", "TILE", "P"), help=argparse.SUPPRESS
    )
    parser.add_argument("--quality-of", nargs=2, metavar=("ENGINE", "SCALE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        engine, size, scale, tile, probe = args.one
        print(json.dumps(measure_one(engine, int(size), int(scale), int(tile), int(probe))))
        return 0
    if args.quality_of:
        print(json.dumps(quality_one(args.quality_of[0], int(args.quality_of[1]))))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    probe = f", MEMORY PROBE: the network on {args.memory_probe} tiles only" if args.memory_probe else ""
    print(
        f"astronaut crops, CPU ({os.cpu_count()} cores), tile {args.tile}, fresh process each{probe}; "
        f"{load_line()}"
    )
    print(
        f"{'engine':38} {'size':>5} {'x':>2} {'out':>10} {'wall s':>8} {'cpu s':>8} {'MPx/s':>7} "
        f"{'peak MB':>8} {'image MB':>8} | {'PSNR':>6} {'SSIM':>6} {'NIQE':>6} (bicubic SSIM, NIQE)",
        flush=True,
    )
    for engine in args.engines.split(","):
        for scale in (int(s) for s in args.scales.split(",")):
            quality = "" if args.no_quality else _quality_text(run_child("--quality-of", engine, str(scale)))
            last, largest = None, 0
            for size in sizes:
                estimate = last * (size / largest) ** 2 if last is not None else 0.0
                if estimate > args.budget and not args.memory_probe:
                    print(f"{engine:38} {size:5d} {scale:2d} skipped: ~{estimate:.0f} s > {args.budget:g} s")
                    continue
                r = run_child("--one", engine, str(size), str(scale), str(args.tile), str(args.memory_probe))
                print(
                    f"{engine:38} {size:5d} {scale:2d} {r['out']:>10} {r['wall']:8.2f} {r['cpu']:8.2f} "
                    f"{r['mpx_s']:7.3f} {r['peak_mb']:8.0f} {r['image_mb']:8.0f} | {quality}",
                    flush=True,
                )
                last, largest = r["wall"], size
    print(load_line())
    return 0


def _quality_text(q: dict) -> str:
    bicubic = f"({q['bicubic_ssim']:.4f}, {q['bicubic_niqe']:.2f})"
    return f"{q['psnr']:6.2f} {q['ssim']:6.4f} {q['niqe']:6.2f} {bicubic}"


if __name__ == "__main__":
    sys.exit(main())

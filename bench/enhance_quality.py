"""Photo enhancement quality on real photographs: every engine and model against bicubic and Lanczos.

    flock /tmp/bench.lock .venv/bin/python bench/enhance_quality.py [--photos astronaut,chelsea,...]
        [--methods bicubic,lanczos,...] [--scale 4] [--pictures DIR]

Each photo (scikit-image's shipped photographs: astronaut, chelsea, coffee, camera, rocket, motorcycle) is
shrunk SCALE times by area averaging and enhanced back; PSNR and SSIM (luminance) against the original, NIQE
(no reference, lower is more natural) of the result, and the seconds each method took. The table is the same
as the `enhance-yardstick` flow's artifact (`python -m flows.enhance --yardstick`). With --pictures, side-by-
side pictures (input, bicubic, anime model, default, original; and each face found) are written there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samples.images import MORE_PHOTOS, PHOTO_SET, write_real_photos  # noqa: E402
from stages.enhance.yardstick import METHODS, format_table, score_and_picture  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=",".join(PHOTO_SET + MORE_PHOTOS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--pictures", default=None, help="folder for side-by-side pictures")
    args = parser.parse_args()
    methods = args.methods.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        pictures = Path(args.pictures or Path(tmp) / "pictures")
        scores = []
        for path in write_real_photos(Path(tmp) / "photos", tuple(args.photos.split(","))):
            found, saved = score_and_picture(path, methods, args.scale, pictures)
            scores += found
            print(f"{path.stem}: done ({sum(s.seconds for s in found):.1f} s)", file=sys.stderr, flush=True)
            if args.pictures:
                print("\n".join(f"  {p}" for p in saved), file=sys.stderr)
    print(
        f"x{args.scale} from an area downscale; PSNR dB and SSIM of the luminance vs the original; "
        "NIQE of the result (lower is more natural); seconds on this CPU"
    )
    print(format_table(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())

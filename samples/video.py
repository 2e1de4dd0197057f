"""Videos with burned-in subtitles drawn by ffmpeg's drawtext from a script of (start, end, text).

Because we draw the text ourselves, the ground truth (text and timing) is exact. Each line's text goes
through a textfile, so any characters (CJK, quotes, colons) reach drawtext without escaping trouble.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from samples.media_cache import cached_media

CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
)

BACKGROUNDS = {
    "dark": "color=c=0x203040:s={w}x{h}:r={fps}",
    # colours named: "random" (the default) draws them from the clock even with a seed (ffmpeg 5.1), so two
    # renders differed and a pale one lost a line of the corpus (the media cache kept it for 30 days)
    "gradient": "gradients=s={w}x{h}:r={fps}:speed=0.02:seed=1:c0=0x2a4d8f:c1=0xc8782b",
    "busy": "testsrc2=s={w}x{h}:r={fps}",  # moving pattern and colours behind the text
    "mandelbrot": "mandelbrot=s={w}x{h}:r={fps}",
}

STYLES = {
    "white": "fontcolor=white:borderw=3:bordercolor=black",
    "yellow": "fontcolor=yellow:borderw=3:bordercolor=black",
    "shadow": "fontcolor=white:shadowx=3:shadowy=3:shadowcolor=black",
}


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str
    style: str = "white"


def cjk_font() -> str:
    for candidate in CJK_FONT_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    raise FileNotFoundError("no Noto CJK font found: apt-get install fonts-noto-cjk")


def _escape_path(path: Path) -> str:
    return str(path).replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")


@cached_media("out")
def make_subtitled_video(
    out: str | Path,
    cues: list[Cue],
    *,
    duration: float,
    size: tuple[int, int] = (1280, 720),
    fps: int = 25,
    background: str = "dark",
    font_size: int | None = None,
    bottom_margin: int | None = None,
    logo: bool = False,
    clock: bool = False,
    audio: bool = True,
    crf: int = 23,
) -> Path:
    """Render `cues` over a synthetic background into an H.264 MP4 (with a sine audio track by default)."""
    out = Path(out)
    w, h = size
    font = cjk_font()
    fs = font_size or max(18, h // 18)
    margin = bottom_margin if bottom_margin is not None else h // 12
    workdir = Path(tempfile.mkdtemp(prefix="subvid-"))
    filters = []
    for i, cue in enumerate(cues):
        textfile = workdir / f"cue{i}.txt"
        textfile.write_text(cue.text, encoding="utf-8")
        filters.append(
            f"drawtext=fontfile='{_escape_path(Path(font))}':textfile='{_escape_path(textfile)}':"
            f"fontsize={fs}:{STYLES[cue.style]}:line_spacing={fs // 4}:"
            f"x=(w-text_w)/2:y=h-text_h-{margin}:enable='gte(t,{cue.start:.3f})*lt(t,{cue.end:.3f})'"
        )
    if logo:
        logo_file = workdir / "logo.txt"
        logo_file.write_text("YiVideo TV", encoding="utf-8")
        filters.append("drawbox=x=20:y=20:w=220:h=56:color=0x8040a0@0.9:t=fill")
        filters.append(
            f"drawtext=fontfile='{_escape_path(Path(font))}':textfile='{_escape_path(logo_file)}':"
            f"fontsize=32:fontcolor=white:x=36:y=30"
        )
    if clock:
        filters.append(
            f"drawtext=fontfile='{_escape_path(Path(font))}':text='%{{pts\\:hms}}':"
            f"fontsize=28:fontcolor=white:box=1:boxcolor=black@0.6:x=w-tw-24:y=24"
        )
    graph = f"[0:v]{','.join(filters) if filters else 'null'},format=yuv420p[v]"
    script = workdir / "graph.txt"
    script.write_text(graph, encoding="utf-8")
    bg = BACKGROUNDS[background].format(w=w, h=h, fps=fps)
    cmd = ["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", bg]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
    cmd += ["-filter_complex_script", str(script), "-map", "[v]"]
    if audio:
        cmd += ["-map", "1:a", "-c:a", "aac", "-b:a", "64k"]
    cmd += [
        "-t",
        f"{duration:.3f}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        str(out),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"ffmpeg could not render {out}: {exc.stderr.decode()[-500:]}") from exc
    finally:
        for f in workdir.iterdir():
            f.unlink()
        workdir.rmdir()
    return out


def repeat_video(video: Path, times: int) -> Path:
    """`video` played `times` times in a row, next to it (ffmpeg's concat demuxer, stream copy: seconds
    for an hour of 720p, where rendering one took over an hour on a loaded machine)."""
    out = video.with_name(f"{video.stem}-x{times}.mp4")
    if out.exists():
        return out
    listing = video.with_name(f"{video.stem}-x{times}.txt")
    listing.write_text("".join(f"file '{video.resolve()}'\n" for _ in range(times)), encoding="utf-8")
    part = out.with_suffix(".part.mp4")
    cmd = ["ffmpeg", "-y", "-v", "error", "-nostdin", "-f", "concat", "-safe", "0", "-i", str(listing)]
    subprocess.run([*cmd, "-c", "copy", str(part)], check=True, capture_output=True, timeout=600)
    part.rename(out)
    return out


def demo_script() -> list[Cue]:
    """A short mixed Chinese/English script: the sample the demo and the quickstart use."""
    return [
        Cue(0.5, 2.5, "欢迎使用 YiVideo"),
        Cue(2.5, 4.5, "Subtitles from pixels"),
        Cue(5.0, 7.0, "字幕识别完成", "yellow"),
        Cue(7.5, 9.5, "Goodbye 再见"),
    ]


def benchmark_script(duration: float = 60.0, count: int = 20) -> list[Cue]:
    """~`count` subtitles spread over `duration` seconds, alternating languages and gaps."""
    lines = [
        "今天天气很好",
        "We ship the pipeline today",
        "这是第三条字幕",
        "GPU slots stay busy",
        "模型只加载一次",
        "Subtitles that are right",
        "欢迎来到直播间",
        "Nothing lost when a worker dies",
        "视频转码已经完成",
        "Speech and text together",
        "请注意字幕时间",
        "Timing within a frame or two",
        "我们使用普罗菲特",
        "Ray scales it out",
        "批量处理照片",
        "One bad image never sinks the batch",
        "下一站是北京",
        "Keyframes change here",
        "谢谢大家观看",
        "See you next time",
    ]
    slot = duration / count
    cues = []
    for i in range(count):
        start = round(i * slot + 0.3, 2)
        end = round(start + slot * (0.9 if i % 3 else 0.7), 2)
        cues.append(
            Cue(start, min(end, duration), lines[i % len(lines)], "yellow" if i % 4 == 3 else "white")
        )
    return cues


def corpus_script() -> list[Cue]:
    """The hard cases of burned-in subtitles, 30 s: mixed scripts, styles, no-gap changes, repeats."""
    return [
        Cue(0.5, 2.5, "今天我们去北京"),
        Cue(2.5, 4.5, "Hello world, this is a test"),  # back to back, no gap
        Cue(5.0, 6.5, "好", "yellow"),  # one character
        Cue(7.0, 9.0, "同一句话"),
        Cue(9.8, 11.5, "同一句话"),  # the same line again after a gap: two events
        Cue(12.0, 14.5, "第一行字幕\nSecond line here"),  # two lines
        Cue(15.0, 17.0, "Mixed 中英文 subtitles", "yellow"),
        Cue(17.6, 19.4, "第一条字幕", "shadow"),
        Cue(19.4, 21.2, "第二条字幕", "shadow"),  # one character differs, no gap: two events
        Cue(21.8, 23.9, "The quick brown fox"),
        Cue(24.3, 26.6, "再见 Goodbye!", "yellow"),
        Cue(27.1, 29.3, "最后一句"),
    ]


def busy_script() -> list[Cue]:
    """Lines over a moving, colourful background."""
    return [
        Cue(0.4, 2.4, "背景在动"),
        Cue(2.4, 4.6, "Moving background test"),
        Cue(5.2, 7.5, "字幕仍然清楚", "yellow"),
        Cue(8.0, 10.2, "Still readable"),
    ]

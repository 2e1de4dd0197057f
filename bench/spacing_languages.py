"""Would a word-list spacing repair help German, French, Spanish subtitles? Glues fixed vs real words split.

    pip install wordfreq==3.1.1     # not a dependency: this bench decides whether it should become one
    .venv/bin/python bench/spacing_languages.py [--known-top 300000]

OCR drops the space between words ("Wirsehen uns"); the English repair (stages/subtitles/spacing.py,
wordninja) runs for English only. Candidate rules on wordfreq's lists (they ship in its wheel, offline):
  camel     a run the language's whole list does not know is cut where a lower-case letter meets an upper-case
            one, when both sides are listed words (zipf >= 3): "DieStraße" -> "Die Straße" (German nouns are
            capitalised; a compound never has an inner capital)
  function  camel, then a run the list does not know is cut in two where one side is one of the language's
            100 most frequent words and the other has zipf >= 4: "Wirsehen" -> "Wir sehen"
Glues: every adjacent word pair of the language corpus's lines (samples/footage_languages.py), glued one at a
time; fixed = the line comes back exactly. Clean lines changed: the lines as written, repaired. Compounds:
the list's own words ranked below `--known-top` (>= 8 letters, German ones capitalised as nouns), with only
the top `--known-top` words counted as known: they stand for the real compounds a list does not hold
("Bahnhofstraße" is listed, a new compound is not); each one split is a word broken.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RUN = re.compile(r"[^\W\d_]{3,}")
CAMEL = re.compile(r"(?<=[a-zß-ÿ])(?=[A-ZÀ-Þ])")


class ListRepair:
    """One rule over one language's list; `known` is the list's top `known_top` words."""

    def __init__(self, lang: str, rule: str, known_top: int) -> None:
        import wordfreq

        top = wordfreq.top_n_list(lang, known_top)
        self.lang, self.rule, self.known, self.function = lang, rule, set(top), set(top[:100])
        self.zipf = wordfreq.zipf_frequency

    def _listed(self, word: str, zipf: float) -> bool:
        return self.zipf(word.lower(), self.lang) >= zipf

    def split(self, run: str) -> str:
        if run.lower() in self.known:
            return run
        parts = CAMEL.split(run)
        if len(parts) > 1 and all(len(p) >= 2 and self._listed(p, 3.0) for p in parts):
            return " ".join(parts)
        if self.rule == "function":
            low = run.lower()
            for cut in range(2, len(run) - 1):
                a, b = low[:cut], low[cut:]
                if (a in self.function and self._listed(b, 4.0)) or (
                    b in self.function and self._listed(a, 4.0)
                ):
                    return f"{run[:cut]} {run[cut:]}"
        return run

    def __call__(self, text: str) -> str:
        return RUN.sub(lambda m: self.split(m.group(0)), text)


def corpus_lines(lang: str) -> list[str]:
    from samples.footage import ass_plain_text
    from samples.footage_languages import language_case

    return [ass_plain_text(event.text) for event in language_case(lang).case.events]


def glued(line: str) -> list[str]:
    """The line with each adjacent pair of words glued, one pair at a time."""
    words = line.split(" ")
    return [
        " ".join([*words[:k], words[k] + words[k + 1], *words[k + 2 :]])
        for k in range(len(words) - 1)
        if re.search(r"[^\W\d_]$", words[k]) and re.match(r"[^\W\d_]", words[k + 1])
    ]


def unlisted_words(lang: str, known_top: int) -> list[str]:
    import wordfreq

    rest = wordfreq.top_n_list(lang, 10**7)[known_top:]
    words = [w for w in rest if len(w) >= 8 and re.fullmatch(r"[^\W\d_]+", w)]
    return [w.capitalize() for w in words] if lang == "de" else words


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langs", default="de,fr,es")
    parser.add_argument(
        "--known-top", type=int, default=300000, help="words counted as known for the split test"
    )
    args = parser.parse_args()
    try:
        import wordfreq
    except ImportError:
        print("wordfreq is not installed: pip install wordfreq==3.1.1")
        return 1
    print("| lang | rule | glues fixed | clean lines changed | unlisted real words split | list load s |")
    print("|---|---|---|---|---|---|")
    for lang in args.langs.split(","):
        lines = corpus_lines(lang)
        cases = [(g, line) for line in lines for g in glued(line)]
        start = time.perf_counter()
        wordfreq.zipf_frequency("a", lang)  # the list loads on first use
        load_s = time.perf_counter() - start
        words = unlisted_words(lang, args.known_top)
        for rule in ("camel", "function"):
            full, held = ListRepair(lang, rule, 10**7), ListRepair(lang, rule, args.known_top)
            fixed = sum(full(g) == line for g, line in cases)
            changed = sum(full(line) != line for line in lines)
            broken = [w for w in words if held(w) != w]
            shown = ", ".join(held(w) for w in broken[:3])
            share = f"{len(broken)}/{len(words)} ({len(broken) / max(1, len(words)):.1%})"
            print(
                f"| {lang} | {rule} | {fixed}/{len(cases)} | {changed}/{len(lines)} "
                f"| {share} {shown} | {load_s:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

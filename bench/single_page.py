"""Citations of single-page sentences: verified rate of true quotes (as extracted, and with curly
apostrophes) and false ✓ on altered ones (two words swapped, a word replaced by its opposite), on
the corpus PDFs; and the same sentences as claims without quotation marks: opened by "According to
the document, ", with "also" inserted mid-sentence (true), with two words swapped, a word replaced by
its opposite, or "only" inserted (false). Also false: a quote with a relation or operator symbol
changed ("≤" for "<", "≠" for "=", "−" for "+", "‰" for "%"; kind "symbol") or a figure changed (its
minus sign dropped, its decimal point moved one place: "32.8" for "3.28"; kind "figure"). A swap of two words that read the same (case and punctuation
aside: "The" and "the", "gel" and "gel."), or of a "word" without letters or digits ("." or "≤": swapping
two such symbols is a separate check's, app.citations._same_symbols), is no sample; a claim's words are swapped
without its final period.

    .venv/bin/python bench/single_page.py [--per-doc 40] [--seed 3] [--show]

Each sample: a sentence of 40-250 characters and 6+ words on one page, quoted and cited as
"[doc 1, p. M]" with M the page's prompt marker.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.citations import parse_and_verify  # noqa: E402
from app.textutil import sentence_spans  # noqa: E402
from ingest import read_document  # noqa: E402
from ingest.prompt import citation_labels  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DOCS = ["r-intro.pdf", "gnuplot.pdf", "hsaur-inference.pdf", "debian-history-fr.pdf", "acm-sigconf.pdf",
        "latexsheet-de.pdf", "pari-refcard.pdf", "sexam-ar.pdf"]
OPPOSITE = {"increase": "decrease", "increases": "decreases", "larger": "smaller", "smaller": "larger",
            "before": "after", "after": "before", "first": "last", "last": "first", "maximum": "minimum",
            "minimum": "maximum", "left": "right", "right": "left", "more": "less", "less": "more",
            "true": "false", "false": "true", "lower": "upper", "upper": "lower", "high": "low", "low": "high",
            "possible": "impossible", "input": "output", "output": "input", "all": "no", "same": "different",
            "include": "exclude", "always": "sometimes", "above": "below", "below": "above", "start": "end",
            "end": "start"}


SYMBOL = {"<": "\u2264", "\u2264": "<", ">": "\u2265", "\u2265": ">", "=": "\u2260", "\u2260": "=", "+": "\u2212",
          "\u2212": "+", "\u00b1": "+", "%": "\u2030", "\u2248": "="}
_SYMBOL = re.compile("|".join(map(re.escape, SYMBOL)))
_FIGURE = re.compile(r"(?<![\w.])[-\u2212](?=\d)|(?<![\w.])(\d+)\.(\d)(\d*)(?![\d.])")


def _symbol_changed(text: str) -> str | None:
    """The sentence with its first relation or operator symbol changed (SYMBOL), or None."""
    m = _SYMBOL.search(text)
    return None if m is None else text[:m.start()] + SYMBOL[m.group()] + text[m.end():]


def _figure_changed(text: str) -> str | None:
    """The sentence with its first signed or decimal number changed: the sign dropped, the decimal
    point moved one digit right ("3.28" -> "32.8", "1.5" -> "15"), or None."""
    m = _FIGURE.search(text)
    if m is None:
        return None
    new = "" if m.group(1) is None else m.group(1) + m.group(2) + ("." + m.group(3) if m.group(3) else "")
    return text[:m.start()] + new + text[m.end():]


def _key(word: str) -> str:
    """A word as the check reads it: letters and digits, case aside."""
    return re.sub(r"\W", "", word).casefold()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-doc", type=int, default=40)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--show", action="store_true", help="print each altered quote that is verified")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tally = {k: [0, 0] for k in ("true", "curly", "swap", "opposite", "claim lead-in", "claim also", "claim swap",
                                  "claim opposite", "claim only", "symbol", "figure")}
    for name in DOCS:
        doc = read_document(CORPUS / name)
        shown = citation_labels(doc.pages)
        sents = [(i, " ".join(p.text[s.start:s.end].split())) for i, p in enumerate(doc.pages)
                 for s in sentence_spans(p.text)]
        sents = [(i, t) for i, t in sents if 40 <= len(t) <= 250 and len(t.split()) >= 6]
        for i, text in rng.sample(sents, min(args.per_doc, len(sents))):
            words = text.split()
            a, b = sorted(rng.sample(range(len(words)), 2))
            swapped = words[:a] + [words[b]] + words[a + 1:b] + [words[a]] + words[b + 1:]
            # a claim is the sentence without its final period (moved inside, it would end the claim there)
            pw = words[:-1] + [words[-1].rstrip(".")]
            claim_swapped = [w for w in pw[:a] + [pw[b]] + pw[a + 1:b] + [pw[a]] + pw[b + 1:] if w]
            differ = _key(words[a]) != _key(words[b]) and "" not in (_key(words[a]), _key(words[b]))   # "The"/"the", "."
            k = next((j for j, w in enumerate(words) if w.lower() in OPPOSITE), None)
            opposite = None if k is None else words[:k] + [OPPOSITE[words[k].lower()]] + words[k + 1:]
            plain, mid = text.rstrip("."), len(words) // 2
            for kind, quote in (("true", text), ("curly", text.replace("'", "\u2019")),
                                ("swap", " ".join(swapped) if differ else None),
                                ("opposite", opposite and " ".join(opposite)),
                                ("claim lead-in", "According to the document, " + plain[0].lower() + plain[1:]),
                                ("claim also", " ".join(words[:mid] + ["also"] + words[mid:]).rstrip(".")),
                                ("claim swap", " ".join(claim_swapped) if differ else None),
                                ("claim opposite", opposite and " ".join(opposite).rstrip(".")),
                                ("claim only", " ".join(words[:mid] + ["only"] + words[mid:]).rstrip(".")),
                                ("symbol", _symbol_changed(text)), ("figure", _figure_changed(text))):
                if quote is None:
                    continue
                cite = f"[doc 1, p. {shown[i]}]"
                answer = f"{quote} {cite}." if kind.startswith("claim") else f"\u201c{quote}\u201d {cite}"
                c = parse_and_verify(answer, [doc])[1][0]
                tally[kind][0] += c.verified
                tally[kind][1] += 1
                if args.show and c.verified != (kind in ("true", "curly", "claim lead-in", "claim also")):
                    print(f"{name} p.{i + 1} {kind} {c.verified} {c.score} {quote!r}")
    print("verified: " + ", ".join(f"{k} {v}/{n}" for k, (v, n) in tally.items()))


if __name__ == "__main__":
    main()

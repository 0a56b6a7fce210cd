"""Retrieval quality of the extractive engine per language: known-item search over the passages of
real corpus documents, the current word forms against the ones before 2026-11-29 (every word
stemmed in English; search_form dropping only combining marks), in the same run. Then the time
search_form takes over every page of each document, translating only the non-ASCII runs (now) against
translating the whole text (before), and whether both give the same text.

    .venv/bin/python bench/multilingual_retrieval.py [--corpus ../shared/corpus] [--queries 200]

Each query is 4 words of one passage (3+ letters, not numbers) as the page writes them ("as
written"), then the same words with the Arabic article "ال" added or removed ("reworded", as a
question may say "مدرسة" of a page's "المدرسة"). A hit is that passage ranked first; MRR over the
top 10. Words are drawn with a fixed seed, so runs compare.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import Stemmer  # noqa: E402

import ingest.normalize as normalize  # noqa: E402
from app.answerers import extractive  # noqa: E402
from ingest import read_document  # noqa: E402

DOCS = ("sexam-ar.pdf", "debian-history-fr.pdf", "latexsheet-de.pdf", "hsaur-inference.pdf")
_ARABIC = re.compile("[\u0600-\u06ff]")


def reworded(word: str) -> str:
    if not _ARABIC.match(word):
        return word
    return word[2:] if word.startswith("ال") and len(word) > 4 else "ال" + word


def queries(index, n: int, seed: int = 7) -> list[tuple[int, list[str]]]:
    rng = random.Random(seed)
    picked = []
    for i, p in enumerate(index.passages):
        words = sorted({w for w in re.findall(r"\w+", p.text) if len(w) >= 3 and not w.isdigit()})
        if len(words) >= 8:
            picked.append((i, rng.sample(words, 4)))
    return rng.sample(picked, min(n, len(picked)))


def score(index, qs, form) -> tuple[float, float]:
    hits, rr = 0, 0.0
    for want, words in qs:
        got = index.search(extractive.terms(" ".join(form(w) for w in words)), 10)
        ranks = [r for r, (p, _) in enumerate(got, 1) if p is index.passages[want]]
        hits += ranks[:1] == [1]
        rr += 1 / ranks[0] if ranks else 0.0
    return hits / len(qs), rr / len(qs)


def old_search_form(text: str) -> str:
    """search_form before: NFKC, case-folded, combining marks dropped (after NFD), CJK bigrams."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if text.isascii():
        return text
    marks = {c: None for c, v in normalize._search_table().items() if v is None and c != 0x640}
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).translate(marks))
    return normalize._CJK_RUN.sub(normalize._cjk_words, text)


def whole_text_search_form(text: str) -> str:
    """search_form translating the whole text (before translating only its non-ASCII runs)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if text.isascii():
        return text
    text = normalize._GERSHAYIM.sub("", text.translate(normalize._search_table()))
    return normalize._CJK_RUN.sub(normalize._cjk_words, text)


def best_of(fn, texts: list[str], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for t in texts:
            fn(t)
        best = min(best, time.perf_counter() - t0)
    return best


def speed(corpus: Path) -> None:
    print(f"\n{'document':24} {'pages':>5} {'whole text ms':>13} {'runs ms':>8} {'ratio':>6} same")
    total = [0.0, 0.0]
    for name in (*DOCS, "acm-sigconf.pdf", "r-intro.pdf", "gnuplot.pdf"):
        texts = [p.text for p in read_document(corpus / name).pages]
        before, now = best_of(whole_text_search_form, texts), best_of(normalize.search_form, texts)
        same = [whole_text_search_form(t) for t in texts] == [normalize.search_form(t) for t in texts]
        total = [total[0] + before, total[1] + now]
        print(f"{name:24} {len(texts):5} {before * 1e3:13.1f} {now * 1e3:8.1f} {before / now:6.2f} {same}")
    print(f"{'all':24} {'':5} {total[0] * 1e3:13.1f} {total[1] * 1e3:8.1f} {total[0] / total[1]:6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpus")
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    new = (extractive._stemmer, extractive.search_form)
    old = (Stemmer.Stemmer("english"), old_search_form)
    print(f"{'document':24} {'queries':>7} {'form':10} {'hit@1 before':>12} {'after':>6} {'MRR before':>10} {'after':>6}")
    for name in DOCS:
        doc = read_document(args.corpus / name)
        results = {}
        for label, (stemmer, form) in (("before", old), ("after", new)):
            extractive._stemmer, extractive.search_form = stemmer, form
            index = extractive._Index([doc])
            qs = queries(index, args.queries)
            results[label] = [score(index, qs, str), score(index, qs, reworded)]
        extractive._stemmer, extractive.search_form = new
        for k, form in enumerate(("as written", "reworded")):
            if form == "reworded" and not name.endswith("-ar.pdf"):
                continue
            (h0, m0), (h1, m1) = results["before"][k], results["after"][k]
            print(f"{name:24} {len(qs):7} {form:10} {h0:12.3f} {h1:6.3f} {m0:10.3f} {m1:6.3f}")
    speed(args.corpus)


if __name__ == "__main__":
    main()

"""State-store bench: time to first token of a second question vs the first, and stored bytes.

    python bench/cache.py [--sizes 4096 16384 65536] [--doc-tokens 8192] [--threads 1]

One run, on a tiny random checkpoint (the bench/engine.py shape: hidden 256, 8 layers with 1
attention layer, 4 experts top-2, vocab 4096, fp32) and real corpus text:

* for each document-set size (4K, 16K, 64K document tokens; documents of --doc-tokens tokens,
  consecutive pages of the corpus PDFs), on a fresh data folder: TTFT of a first question (cold:
  every document prefilled and stored) and of a second question (warm: prefix from RAM), and, as
  the baseline of the in-place follow-up, the same warm question while another continuation of the
  documents' state lives (so it copies their K/V, as every follow-up did until 2026-11-28);
* then in a fresh process (a new Python, states from SQLite + blob files): TTFT of the same
  second question (disk) and of a third one (RAM again);
* stored bytes per cached token against `engine.state.state_bytes` (per entry and whole chain);
* each ask drops the answerer's kept conversation state first (bench/conversation.py measures
  that), so the figures stay those of the documents' cache;
* the storage choice: per-boundary deltas (what the store keeps) vs a whole state per boundary,
  bytes and restore time of the 64K prefix.

Targets (issue 4): warm <= 1/50 of cold at 64K; warm within 2x from 4K to 64K; stored bytes per
cached token <= 1.1x the theory. Engine load time is not part of TTFT (reported apart). One
thread by default: on a shared 2-core machine two OpenMP threads made timings swing 10x.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.testing import BENCH_CONFIG as _ENGINE_BENCH  # noqa: E402

BENCH_CONFIG = dict(_ENGINE_BENCH, max_position_embeddings=131072)   # room for 64K documents + question
CORPUS = Path(os.environ.get("JAMBADOCS_CORPUS", ROOT.parent / "shared" / "corpus"))
SOURCES = ["gnuplot.pdf", "r-intro.pdf", "debian-history-fr.pdf", "hsaur-inference.pdf", "acm-sigconf.pdf"]
Q1, Q2, Q3 = "Which command sets the title of a plot?", "And how is the key placed?", "Which page shows it?"
MAX_NEW = 1  # TTFT only: with one new token the first piece (or the end) is exactly the first token


def make_documents(tokenizer, total_tokens: int, doc_tokens: int) -> list:
    """Documents of about `doc_tokens` tokens each (consecutive real pages, the last one cut to fit),
    `total_tokens` in all."""
    from ingest import Page, read_document
    from ingest.prompt import PromptBuilder, document_text

    pb = PromptBuilder(tokenizer)
    pages = [(doc, p) for doc in (read_document(CORPUS / name) for name in SOURCES) for p in doc.pages if p.text]
    docs, start, left = [], 0, total_tokens
    while left > max(64, total_tokens // 50):
        want, doc, kept = min(doc_tokens, left), pages[start % len(pages)][0], []
        while pages[start % len(pages)][0] is doc:
            kept.append(pages[start % len(pages)][1])
            start += 1
            n = pb.count_tokens(document_text(dataclasses.replace(doc, pages=kept)))
            if n >= want:
                over = n - want  # cut the last page so the document is about `want` tokens
                last = kept[-1]
                cut = max(1, int(len(last.text) * (1 - over / max(1, pb.count_tokens(last.text)))))
                kept[-1] = Page(last.number, last.label, last.text[:cut])
                break
        d = dataclasses.replace(doc, pages=kept)
        docs.append(d)
        left -= pb.count_tokens(document_text(d))
    return docs


def ask(answerer, docs, question, history=()) -> dict:
    from app.answerers.base import AnswerRequest

    done, cpu_ttft = None, None
    # what is measured here is the documents' cache: the state a chat's last prompt leaves (continued by
    # its next question, bench/conversation.py) is dropped, so each ask prefills its whole tail as before
    answerer._turn = None
    cpu0 = time.process_time()  # CPU seconds of this process: less sensitive to a busy machine than wall time
    for ev in answerer.answer(AnswerRequest(docs, question, list(history), max_new_tokens=MAX_NEW)):
        if ev.kind == "token" and cpu_ttft is None:
            cpu_ttft = time.process_time() - cpu0
        if ev.kind == "done":
            done = ev
            if cpu_ttft is None:  # the one new token had no text of its own: it ended the answer
                cpu_ttft = time.process_time() - cpu0
    omitted = done.timings.get("omitted") or {}
    return {"text": done.text, "ttft_cpu_s": cpu_ttft, "omitted_summary": omitted.get("summary", ""),
            **{k: v for k, v in done.timings.items() if k != "omitted"}}


def answerer_for(ckpt: Path, data_dir: Path, eng=None):
    from app.answerers.jamba import JambaAnswerer
    from app.config import Settings

    return JambaAnswerer(Settings(data_dir=data_dir, model=str(ckpt), engine="jamba",
                                  cache_bytes=64 * 1024**3), engine=eng)


def best_of(n: int, fn) -> dict:
    """The run with the smallest TTFT of `n` identical asks (the machine is shared)."""
    return min((fn() for _ in range(n)), key=lambda r: r["ttft_s"])


def fresh_child(ckpt: Path, work: Path, sizes: list[int], doc_tokens: int) -> None:
    """In a new process: load the engine, then ask Q2 (prefix from SQLite + blobs) and Q3 (from RAM)."""
    out = {}
    hist = [("user", Q1), ("assistant", "...")]
    for n in sizes:
        a = answerer_for(ckpt, work / f"data-{n}")
        t0 = time.perf_counter()
        a.engine
        load_s = time.perf_counter() - t0
        docs = make_documents(a.engine.tokenizer, n, doc_tokens)
        first = ask(a, docs, Q2, hist)  # the first read of this process: from disk

        def from_disk():
            a._warm = None  # forget the RAM copy: restore from SQLite + blobs again
            return ask(a, docs, Q2, hist)

        disk = best_of(2, from_disk)
        ram = best_of(3, lambda: ask(a, docs, Q3, hist + [("user", Q2), ("assistant", "...")]))
        out[n] = {"load_s": load_s, "first": first, "disk": min(first, disk, key=lambda r: r["ttft_s"]), "ram": ram}
    print(json.dumps(out))


def storage_choice(eng, store, keys: list[str]) -> dict:
    """Deltas (stored) vs a whole state per boundary, from the chain the answerer stored:
    bytes on disk and time to restore the whole prefix."""
    from app.state_store import StateStore, join_all

    deltas = [store.read(k) for k in keys]
    parts = [eng.state_from_bytes(b) for b in deltas]
    wholes = [join_all(parts[: i + 1]).to_bytes() for i in range(len(parts))]
    res = {"boundaries": len(keys), "tokens": parts[-1].n_tokens,
           "delta_bytes": sum(map(len, deltas)), "whole_bytes": sum(map(len, wholes))}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, blobs in (("delta", deltas), ("whole", wholes)):
            st = StateStore(Path(tmp) / kind)
            for i, blob in enumerate(blobs):
                st.put(keys[i], keys[i - 1] if i else "", eng.fingerprint, i, 0, 0, blob)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                if kind == "delta":
                    assert st.restore(eng, keys).depth == len(keys)
                else:  # one whole state: read + verify + parse the last boundary only
                    eng.state_from_bytes(st.read(keys[-1]))
                times.append(time.perf_counter() - t0)
            res[f"{kind}_restore_s"] = min(times)
            t0 = time.perf_counter()  # the parts of it: file read + the store's checksum, engine parse (+ its checksum), joins
            raw = [st.read(k) for k in (keys if kind == "delta" else keys[-1:])]
            res[f"{kind}_read_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            got = [eng.state_from_bytes(b) for b in raw]
            res[f"{kind}_parse_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            join_all(got)
            res[f"{kind}_join_s"] = time.perf_counter() - t0
            st.close()
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[4096, 16384, 65536])
    ap.add_argument("--doc-tokens", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fresh-child", nargs=2, metavar=("CKPT", "WORK"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    if a.fresh_child:
        fresh_child(Path(a.fresh_child[0]), Path(a.fresh_child[1]), a.sizes, a.doc_tokens)
        return

    from engine import load_engine, state_bytes
    from engine.testing import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = write_tiny_checkpoint(work / "ckpt", seed=0, **BENCH_CONFIG)
        eng = load_engine(ckpt)
        dtype = str(eng.dtype).removeprefix("torch.")
        shown = {k: BENCH_CONFIG[k] for k in ("hidden_size", "num_hidden_layers", "num_key_value_heads", "vocab_size")}
        print(f"tiny checkpoint: {json.dumps(shown)}, {dtype}, {a.threads} threads, "
              f"documents of ~{a.doc_tokens} tokens", flush=True)
        rows, hist = {}, [("user", Q1), ("assistant", "...")]
        for n in a.sizes:
            ans = answerer_for(ckpt, work / f"data-{n}", eng)
            docs = make_documents(eng.tokenizer, n, a.doc_tokens)
            cold = ask(ans, docs, Q1)
            warm = best_of(3, lambda: ask(ans, docs, Q2, hist))
            # baseline for the in-place follow-up: the same ask while a continuation of the documents'
            # state is alive (as every earlier answer's was taken to be until 2026-11-28), so it copies the
            # K/V; a fresh one each time (an ask that copied leaves the documents' rows in its copy)
            def copying_ask():
                _, held = eng.prefill([1], ans._warm.state, logits="none")
                result = ask(ans, docs, Q2, hist)
                del held
                return result

            warm_copy = best_of(3, copying_ask)
            st = ans.store.stats()
            doc_prefix = warm["cached_tokens"]
            theory_chain = state_bytes(eng.config, doc_prefix, dtype)
            per_entry = []
            _, path = ans.store.stored_path(ans._warm.keys)
            for key in path:
                row = ans.store.entry(key)
                per_entry.append(row.nbytes / state_bytes(eng.config, row.n_tokens - row.offset, dtype))
            rows[n] = {"docs": len(docs), "doc_prefix_tokens": doc_prefix, "cold": cold, "warm": warm,
                       "warm_copy": warm_copy,
                       "stored_bytes": st["bytes"], "entries": st["entries"],
                       "min_entry_tokens": ans._min_entry_tokens(eng),
                       "bytes_per_token": st["bytes"] / doc_prefix,
                       "theory_bytes_per_token": theory_chain / doc_prefix,
                       "chain_ratio": st["bytes"] / theory_chain, "max_entry_ratio": max(per_entry)}
            print(f"{n:>6} doc tokens ({len(docs)} docs, {st['entries']} entries, prefix {doc_prefix}): "
                  f"cold TTFT {cold['ttft_s']:.2f} s, "
                  f"warm {warm['ttft_s'] * 1000:.1f} ms (1/{cold['ttft_s'] / warm['ttft_s']:.0f}; CPU "
                  f"{cold['ttft_cpu_s']:.2f} s vs {warm['ttft_cpu_s'] * 1000:.1f} ms; copying the K/V "
                  f"{warm_copy['ttft_s'] * 1000:.1f} ms, {warm_copy['ttft_s'] / warm['ttft_s']:.2f}x); stored "
                  f"{st['bytes'] / 2**20:.1f} MiB = {rows[n]['bytes_per_token']:.0f} B/token, "
                  f"{rows[n]['chain_ratio']:.3f}x theory (max entry {rows[n]['max_entry_ratio']:.3f}x)", flush=True)
            if n == max(a.sizes):
                choice = storage_choice(eng, ans.store, path)
            ans.store.close()
        proc = subprocess.run([sys.executable, __file__, "--fresh-child", str(ckpt), str(work), "--threads",
                               str(a.threads), "--doc-tokens", str(a.doc_tokens), "--sizes", *map(str, a.sizes)],
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.exit(f"fresh process failed:\n{proc.stderr}")
        fresh = {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
        for n in a.sizes:
            f = fresh[n]
            print(f"{n:>6} fresh process (engine load {f['load_s']:.2f} s): TTFT from SQLite "
                  f"{f['disk']['ttft_s'] * 1000:.1f} ms (restore {f['disk']['restore_s'] * 1000:.1f} ms, "
                  f"{f['disk']['restored_bytes'] / 2**20:.1f} MiB, cached {f['disk']['cached_tokens']} tokens; "
                  f"first ask {f['first']['ttft_s'] * 1000:.1f} ms), then from RAM {f['ram']['ttft_s'] * 1000:.1f} ms",
                  flush=True)
        biggest = max(a.sizes)

    small, big = min(a.sizes), biggest
    summary = {
        "warm_over_cold_at_max": rows[big]["warm"]["ttft_s"] / rows[big]["cold"]["ttft_s"],
        "warm_max_over_warm_min": rows[big]["warm"]["ttft_s"] / rows[small]["warm"]["ttft_s"],
        "warm_over_cold_at_max_cpu": rows[big]["warm"]["ttft_cpu_s"] / rows[big]["cold"]["ttft_cpu_s"],
        "warm_max_over_warm_min_cpu": rows[big]["warm"]["ttft_cpu_s"] / rows[small]["warm"]["ttft_cpu_s"],
        "fresh_disk_max_over_min": fresh[big]["disk"]["ttft_s"] / fresh[small]["disk"]["ttft_s"],
        "max_chain_ratio": max(r["chain_ratio"] for r in rows.values()),
        "max_entry_ratio": max(r["max_entry_ratio"] for r in rows.values()),
    }
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"storage choice at {choice['tokens']} tokens, {choice['boundaries']} boundaries: deltas "
          f"{choice['delta_bytes'] / 2**20:.1f} MiB restored in {choice['delta_restore_s'] * 1000:.1f} ms "
          f"(read+checksum {choice['delta_read_s'] * 1000:.1f}, parse {choice['delta_parse_s'] * 1000:.1f}, "
          f"join {choice['delta_join_s'] * 1000:.1f}); whole states {choice['whole_bytes'] / 2**20:.1f} MiB, "
          f"last one restored in {choice['whole_restore_s'] * 1000:.1f} ms")
    print(f"warm/cold at {big}: 1/{1 / summary['warm_over_cold_at_max']:.0f} wall, "
          f"1/{1 / summary['warm_over_cold_at_max_cpu']:.0f} CPU (target <= 1/50); "
          f"warm {big} / warm {small}: {summary['warm_max_over_warm_min']:.2f}x wall, "
          f"{summary['warm_max_over_warm_min_cpu']:.2f}x CPU (target <= 2x); "
          f"stored bytes per cached token: chain {summary['max_chain_ratio']:.3f}x, per entry "
          f"{summary['max_entry_ratio']:.3f}x theory (target <= 1.1x)")
    print(json.dumps({"sizes": rows, "fresh": fresh, "storage_choice": choice, "summary": summary},
                     default=lambda o: None))


if __name__ == "__main__":
    main()

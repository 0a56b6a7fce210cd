"""State store: exact restores of real engine states, damage and model checks, LRU budget, crashes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from app.state_store import StateStore, chain_keys
from engine import load_engine, state_bytes
from engine.testing import write_tiny_checkpoint
from ingest import read_document

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    return load_engine(write_tiny_checkpoint(tmp_path_factory.mktemp("ck"), seed=0))


@pytest.fixture(scope="module")
def other_eng(tmp_path_factory):
    return load_engine(write_tiny_checkpoint(tmp_path_factory.mktemp("ck2"), seed=1))


@pytest.fixture(scope="module")
def segments(eng, corpus) -> list[list[int]]:
    """Preamble-like root plus three document segments of real text (a few hundred tokens each)."""
    texts = ["You answer questions about the documents below.\n\n"]
    for name, page in (("hsaur-inference.pdf", 1), ("debian-history-fr.pdf", 7), ("r-intro.pdf", 15)):
        texts.append(read_document(corpus / name).pages[page - 1].text[:600])
    return [eng.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


@pytest.fixture(scope="module")
def chain(eng, segments) -> tuple[list[str], list, list[bytes]]:
    """Keys, full states and delta blobs of the chain, prefilled segment by segment (once per module)."""
    keys = chain_keys(eng.fingerprint, "test-format", segments)
    state, states, blobs, offset = None, [], [], 0
    for ids in segments:
        _, state = eng.prefill(ids, state=state, logits="none")
        blobs.append((state.since(offset) if offset else state).to_bytes())
        offset = state.n_tokens
        states.append(state)
    return keys, states, blobs


def _build_chain(eng, store: StateStore, chain) -> tuple[list[str], list]:
    """Store each boundary's delta as the answerer does; returns keys and full states."""
    keys, states, blobs = chain
    for i, blob in enumerate(blobs):
        offset = states[i - 1].n_tokens if i else 0
        assert store.put(keys[i], keys[i - 1] if i else "", eng.fingerprint, i, offset, states[i].n_tokens, blob)
    return keys, states


def _same_state(a, b) -> bool:
    return (a.n_tokens == b.n_tokens and a.offset == b.offset
            and all(torch.equal(a.ssm[i], b.ssm[i]) and torch.equal(a.conv[i], b.conv[i]) for i in a.ssm)
            and all(torch.equal(a.kv[i].k, b.kv[i].k) and torch.equal(a.kv[i].v, b.kv[i].v) for i in a.kv))


def test_chain_restores_exactly_and_survives_a_new_store_object(eng, segments, chain, tmp_path):
    store = StateStore(tmp_path / "states")
    keys, states = _build_chain(eng, store, chain)
    store.close()

    store = StateStore(tmp_path / "states")  # as after a restart: everything comes from SQLite + files
    got = store.restore(eng, keys)
    assert got.depth == len(keys) and got.dropped == []
    assert _same_state(got.state, states[-1])
    # a prefix of the chain (a document removed after it) restores the state at that boundary
    got = store.restore(eng, chain_keys(eng.fingerprint, "test-format", [*segments[:2], [5, 6, 7]]))
    assert got.depth == 2 and _same_state(got.state, states[1])
    # the restored state continues like the original: same next-token logits
    ids = segments[3][:20]
    a, _ = eng.prefill(ids, state=got.state, logits="last")
    b, _ = eng.prefill(ids, state=states[1], logits="last")
    assert torch.equal(a, b)
    # another prompt format version or model fingerprint misses entirely
    assert store.stored_depth(chain_keys(eng.fingerprint, "other-format", segments)) == 0
    assert store.stored_depth(chain_keys("another-model", "test-format", segments)) == 0


def test_stored_bytes_per_token_match_the_engine_theory(eng, chain, tmp_path):
    store = StateStore(tmp_path / "states")
    keys, _ = _build_chain(eng, store, chain)
    dtype = str(eng.dtype).removeprefix("torch.")
    for key in keys:
        row = store.entry(key)
        own_tokens = row.n_tokens - row.offset
        theory = state_bytes(eng.config, own_tokens, dtype)  # this segment's K/V + one Mamba state
        assert theory <= row.nbytes <= 1.1 * theory, (key, row.nbytes, theory)
    # the whole chain costs one Mamba state per boundary more than one full state, never a copy of the prefix
    total = store.stats()["bytes"]
    mamba = state_bytes(eng.config, 0, dtype)
    assert total <= 1.1 * (state_bytes(eng.config, store.entry(keys[-1]).n_tokens, dtype) + (len(keys) - 1) * mamba)


def test_damaged_blob_is_dropped_with_its_descendants(eng, chain, tmp_path):
    store = StateStore(tmp_path / "states")
    keys, states = _build_chain(eng, store, chain)
    path = store._blob_path(keys[2])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    got = store.restore(eng, keys)
    assert got.depth == 2 and got.dropped == [keys[2]]
    assert _same_state(got.state, states[1])
    assert store.stored_depth(keys) == 2 and store.entry(keys[3]) is None  # child unreachable, gone too
    assert not path.exists()

    # a truncated blob and a missing blob are caught the same way
    path = store._blob_path(keys[1])
    path.write_bytes(path.read_bytes()[:100])
    assert store.restore(eng, keys).depth == 1
    store._blob_path(keys[0]).unlink()
    got = store.restore(eng, keys)
    assert got.depth == 0 and got.state is None and store.stats()["entries"] == 0


def test_state_of_another_model_is_refused_by_the_engine_and_dropped(eng, other_eng, segments, tmp_path):
    """Even if a key collided, the engine's fingerprint check keeps another model's state out."""
    store = StateStore(tmp_path / "states")
    keys = chain_keys(eng.fingerprint, "test-format", segments[:1])
    _, foreign = other_eng.prefill(segments[0], logits="none")
    store.put(keys[0], "", eng.fingerprint, 0, 0, foreign.n_tokens, foreign.to_bytes())
    got = store.restore(eng, keys)
    assert got.depth == 0 and got.dropped == keys and store.entry(keys[0]) is None


def test_a_blob_of_another_prefix_of_the_same_model_is_refused(eng, segments, tmp_path):
    """Blobs of one model whose prefixes have as many tokens are alike in size and each passes the
    engine's own checks: only the row's checksum tells that a file is not the one stored under its
    key (swapped by hand, or copied from another data folder), so a restore checks it too."""
    store = StateStore(tmp_path / "states")
    other = [*segments[0][:-1], (segments[0][-1] + 1) % eng.config.vocab_size]
    keys, other_keys = (chain_keys(eng.fingerprint, "test-format", [ids]) for ids in (segments[0], other))
    states = {}
    for k, ids in ((keys[0], segments[0]), (other_keys[0], other)):
        _, states[k] = eng.prefill(ids, logits="none")
        assert store.put(k, "", eng.fingerprint, 0, 0, len(ids), states[k].to_bytes())
    mine, theirs = store._blob_path(keys[0]), store._blob_path(other_keys[0])
    mine_bytes = mine.read_bytes()
    mine.write_bytes(theirs.read_bytes())
    theirs.write_bytes(mine_bytes)
    for k in (keys[0], other_keys[0]):
        got = store.restore(eng, [k])
        assert (got.depth, got.state, got.dropped) == (0, None, [k]) and store.entry(k) is None


def test_lru_eviction_keeps_the_budget_and_recent_chains(tmp_path):
    blob = os.urandom(1000)
    store = StateStore(tmp_path / "states", budget_bytes=4500)
    a = chain_keys("m", 1, [[1], [2], [3]])
    b = chain_keys("m", 1, [[9], [8]])
    for i, k in enumerate(a):
        store.put(k, a[i - 1] if i else "", "m", i, i, i + 1, blob)
    time.sleep(0.01)
    for i, k in enumerate(b):
        store.put(k, b[i - 1] if i else "", "m", i, i, i + 1, blob)
    assert store.stats()["entries"] == 4 and store.stats()["bytes"] <= 4500  # a[2], the oldest leaf, went
    assert store.stored_depth(a) == 2 and store.stored_depth(b) == 2

    time.sleep(0.01)
    store.touch(a[:2])  # chain a used again: chain b is now the least recently used
    c = chain_keys("m", 1, [[7]])
    store.put(c[0], "", "m", 0, 0, 1, blob, protect=c)
    assert store.stored_depth(b) == 1 and store.stored_depth(a) == 2 and store.stored_depth(c) == 1

    # leaves go first: a parent is evicted only after its children (else they would be unreachable)
    store.budget_bytes = 2000
    store.evict()
    assert store.stored_depth(b) == 0 and store.stored_depth(a) == 1 and store.stored_depth(c) == 1
    # an entry bigger than the whole budget is not stored at all
    assert not store.put(chain_keys("m", 1, [[4]])[0], "", "m", 0, 0, 1, os.urandom(3000))
    assert store.stats()["bytes"] == 2000


def test_stats_and_clear(tmp_path):
    store = StateStore(tmp_path / "states")
    for fp in ("m1", "m2"):
        keys = chain_keys(fp, 1, [[1, 2], [3, 4, 5]])
        store.put(keys[0], "", fp, 0, 0, 2, b"x" * 10)
        store.put(keys[1], keys[0], fp, 1, 2, 5, b"y" * 20)
    st = store.stats()
    assert (st["entries"], st["bytes"], st["cached_tokens"]) == (4, 60, 10)
    assert st["models"]["m1"] == {"entries": 2, "bytes": 30}
    assert store.clear(fingerprint="m1") == 2 and store.stats()["entries"] == 2
    assert store.clear() == 2 and store.stats()["entries"] == 0
    assert not list((tmp_path / "states" / "blobs").glob("*/*"))


def test_blob_checksums_new_and_older_rows(tmp_path):
    """Rows carry an xxh3-128 checksum; rows written before it carry sha256 and are still checked as
    such: a blob that does not match either way is dropped."""
    import hashlib

    from sqlalchemy import update

    from app.state_store import StateEntry
    store = StateStore(tmp_path / "states")
    keys = chain_keys("m", 1, [[1], [2]])
    store.put(keys[0], "", "m", 0, 0, 1, b"first state")
    assert store.entry(keys[0]).sha256.startswith("xxh3_128:") and store.read(keys[0]) == b"first state"
    store.put(keys[1], keys[0], "m", 1, 1, 2, b"second state")
    with store._db.begin() as conn:                                   # an older row: sha256 hex
        conn.execute(update(StateEntry).where(StateEntry.key == keys[1])
                     .values(sha256=hashlib.sha256(b"second state").hexdigest()))
    assert store.read(keys[1]) == b"second state"
    with store._db.begin() as conn:
        conn.execute(update(StateEntry).where(StateEntry.key == keys[1])
                     .values(sha256=hashlib.sha256(b"other bytes!").hexdigest()))
    assert store.read(keys[1]) is None and store.entry(keys[1]) is None
    path = store._blob_path(keys[0])
    path.write_bytes(b"first statX")                                 # same size, other bytes
    assert store.read(keys[0]) is None and store.entry(keys[0]) is None
    store.close()


def test_damaged_index_starts_an_empty_cache(tmp_path):
    store = StateStore(tmp_path / "states")
    key = chain_keys("m", 1, [[1]])[0]
    store.put(key, "", "m", 0, 0, 1, b"state bytes")
    store.close()
    (tmp_path / "states" / "index.sqlite").write_bytes(b"this is not a database" * 100)
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / "states" / name).unlink(missing_ok=True)
    store = StateStore(tmp_path / "states")
    assert store.stats()["entries"] == 0 and not list((tmp_path / "states" / "blobs").glob("*/*"))
    store.put(key, "", "m", 0, 0, 1, b"state bytes")
    assert store.read(key) == b"state bytes"


def test_a_folder_at_a_blobs_path_is_skipped_with_a_warning(tmp_path, caplog):
    """A folder where a blob belongs (made by hand, a sync tool) made drop raise IsADirectoryError
    (through read, restore, put's clean-up and the start's clean-up, so into a question): each
    skips it with a warning naming it, drops the entry, and leaves the folder as it is."""
    store = StateStore(tmp_path / "states")
    keys = chain_keys("m", 1, [[1], [2], [3]])
    store.put(keys[0], "", "m", 0, 0, 1, b"first state")
    store.put(keys[1], keys[0], "m", 1, 1, 2, b"second state")
    second = store._blob_path(keys[1])
    second.unlink()
    second.mkdir()
    (second / "something.txt").write_text("not a state")
    with caplog.at_level("WARNING", logger="app.state_store"):
        assert store.read(keys[1]) is None and store.entry(keys[1]) is None    # dropped
        assert store.read(keys[0]) == b"first state"
        assert store.put(keys[1], keys[0], "m", 1, 1, 2, b"second state") is False   # cannot replace a folder
        third = store._blob_path(keys[2])
        third.parent.mkdir(parents=True, exist_ok=True)
        third.mkdir()
        store.close()
        store = StateStore(tmp_path / "states")         # the start's clean-up meets both folders
    assert store.stored_depth(keys) == 1 and store.read(keys[0]) == b"first state"
    assert second.is_dir() and (second / "something.txt").exists() and third.is_dir()
    assert any(str(second) in r.getMessage() and "cannot remove" in r.getMessage() for r in caplog.records)
    store.close()


_WRITER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {repo!r})
    from app.state_store import StateStore, chain_keys
    store = StateStore({folder!r})
    blob = os.urandom({size})
    parent = ""
    for i in range(10_000):
        key = chain_keys("m", 1, [[i]])[0]
        store.put(key, parent, "m", i, i, i + 1, blob[i % 7:] + bytes([i % 251]))
        parent = key
""")


def _kill_writer(folder: Path, size: int, when) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER.format(repo=str(REPO), folder=str(folder), size=size)])
    try:
        deadline = time.monotonic() + 60
        while not when() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, "the writer ended before it could be killed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _assert_consistent(folder: Path) -> StateStore:
    store = StateStore(folder)  # start-up cleanup runs here
    blobs = folder / "blobs"
    assert not list(blobs.glob("*/*.tmp")), "temp files survived the start-up cleanup"
    files = {p.name.removesuffix(".state") for p in blobs.glob("*/*.state")}
    with_rows = [k for k in files if store.entry(k) is not None]
    assert sorted(with_rows) == sorted(files), "a blob without a row survived"
    for key in files:  # every recorded entry is whole, and its parent is there
        assert store.read(key) is not None
        parent = store.entry(key).parent_key
        assert parent == "" or store.entry(parent) is not None
    assert store.stats()["entries"] == len(files)
    return store


def test_sigkill_during_state_writes_leaves_nothing_that_will_be_used(tmp_path):
    folder = tmp_path / "states"
    StateStore(folder).close()
    blobs = folder / "blobs"
    # 1: killed while a (large) blob is being written: the temp file exists
    _kill_writer(folder, 48 << 20, lambda: any(blobs.glob("*/*.tmp")))
    assert any(blobs.glob("*/*.tmp"))
    store = _assert_consistent(folder)
    n = store.stats()["entries"]
    store.close()
    # 2: killed at an arbitrary point of many small writes (rename, row insert, eviction...)
    _kill_writer(folder, 64 << 10, lambda: len(list(blobs.glob("*/*.state"))) > n + 30)
    store = _assert_consistent(folder)
    assert store.stats()["entries"] > n  # the writes that completed were kept


def test_an_entry_whose_parent_is_gone_is_not_stored(tmp_path):
    store = StateStore(tmp_path / "states")
    root, child = chain_keys("m", 1, [[1], [2]])
    assert not store.put(child, root, "m", 1, 1, 2, b"delta")  # its parent was never stored
    assert store.put(root, "", "m", 0, 0, 1, b"root") and store.put(child, root, "m", 1, 1, 2, b"delta")
    assert store.stored_depth([root, child]) == 2


def test_state_files_deleted_by_hand_are_not_counted_as_stored(tmp_path):
    """Blobs removed by hand while the server runs (to free space): their rows stayed until a
    question tried to read them, so the document list said 'cached', the budget and `cache stats`
    counted bytes no longer on disk, and a child was stored under a parent that cannot be read."""
    store = StateStore(tmp_path / "states")
    a, b, c = chain_keys("m", 1, [[1], [2], [3]])
    assert store.put(a, "", "m", 0, 0, 1, b"root") and store.put(b, a, "m", 1, 1, 2, b"delta")
    subprocess.run(["rm", "-r", str(store._blob_path(b).parent)], check=True)   # its folder, by hand
    assert store.stored_depth([a, b]) == 1
    assert (store.stats()["entries"], store.stats()["bytes"]) == (1, 4)
    assert not store.put(c, b, "m", 2, 2, 3, b"delta")
    assert store.put(b, a, "m", 1, 1, 2, b"delta") and store.stored_depth([a, b]) == 2


def test_page_selections_are_kept_per_key_bounded_and_never_trusted_blindly(tmp_path, monkeypatch):
    store = StateStore(tmp_path / "states")
    assert store.selection("k1") is None
    store.remember_selection("k1", [[1, 2, 5], [], [3]])
    store.remember_selection("k2", [[7]])
    store.close()
    store = StateStore(tmp_path / "states")                       # another process, tomorrow
    assert store.selection("k1") == [[1, 2, 5], [], [3]] and store.selection("k2") == [[7]]
    store.remember_selection("k1", [[4]])                         # the latest selection replaces the last
    assert store.selection("k1") == [[4]]
    import sqlite3                                                # a damaged row is no selection
    with sqlite3.connect(tmp_path / "states" / "index.sqlite") as db:
        db.execute("UPDATE page_selections SET pages = '[[1, \"x\"]]' WHERE key = 'k2'")
        db.execute("INSERT INTO page_selections VALUES ('k3', 'not json', 0)")
    assert store.selection("k2") is None and store.selection("k3") is None
    monkeypatch.setattr(StateStore, "MAX_SELECTIONS", 3)
    for i in range(5):
        store.remember_selection(f"n{i}", [[i]])
    assert [store.selection(f"n{i}") for i in range(5)] == [None, None, [[2]], [[3]], [[4]]]
    store.clear()
    assert store.selection("n4") is None
    store.close()


def test_stores_opened_at_once_on_a_new_folder_share_one_index(tmp_path):
    """Six stores (each its own SQLite connection and lock-file handle, as six processes have)
    open a new cache folder at the same moment and each stores an entry: all six are kept.
    Before, all but one failed to create the tables ("table state_entries already exists"),
    took that for a damaged index and deleted it and the blobs the others were writing (a race
    seen with real processes too: 1 round in 5 of six processes started together)."""
    import threading

    for round_ in range(5):
        folder = tmp_path / f"states-{round_}"
        barrier = threading.Barrier(6)
        stores, errors = [], []

        def open_and_put(i: int) -> None:
            barrier.wait()
            try:
                store = StateStore(folder)
                stores.append(store)
                assert store.put(f"{i:064x}", "", "model", 0, 0, 10, bytes([i]) * 100)
            except Exception as exc:  # noqa: BLE001 -- reported below
                errors.append(repr(exc))

        threads = [threading.Thread(target=open_and_put, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            assert errors == []
            check = StateStore(folder)
            assert check.stats()["entries"] == 6
            assert all(check.read(f"{i:064x}") == bytes([i]) * 100 for i in range(6))
            check.close()
        finally:
            for store in stores:
                store.close()


def test_token_counts_are_kept_per_tokenizer_and_bounded(tmp_path, monkeypatch):
    store = StateStore(tmp_path / "states")
    a, b = bytes(20), bytes([1]) * 20
    store.remember_token_counts("tok1", {a: 10, b: 20})
    store.remember_token_counts("tok2", {a: 99})
    store.close()
    store = StateStore(tmp_path / "states")                       # another process
    assert store.token_counts("tok1", [a, b, bytes([2]) * 20]) == {a: 10, b: 20}
    assert store.counts_of("tok2").get([a, b]) == {a: 99}          # another tokenizer's own count
    monkeypatch.setattr(StateStore, "MAX_TOKEN_COUNTS", 3)
    time.sleep(0.01)
    store.counts_of("tok1").put({bytes([3]) * 20: 3, bytes([4]) * 20: 4})
    assert store.token_counts("tok1", [bytes([3]) * 20, bytes([4]) * 20]) == {bytes([3]) * 20: 3, bytes([4]) * 20: 4}
    assert store.token_counts("tok1", [a, b]) == {} and store.token_counts("tok2", [a]) == {a: 99}   # the oldest went
    store.clear()                                                  # `jambadocs cache clear` drops them too
    assert store.token_counts("tok2", [a]) == {}
    store.close()

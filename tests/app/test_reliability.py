"""Reliability: concurrent asks share one engine safely; SIGKILL during ingestion leaves a
consistent database; bad input never damages what is there."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from app.answerers.extractive import ExtractiveAnswerer
from app.config import Settings
from app.services import Services

REPO = Path(__file__).resolve().parents[2]


class CountingAnswerer(ExtractiveAnswerer):
    """The real extractive engine, recording how many answers run at the same time."""

    def __init__(self):
        super().__init__()
        self.active = 0
        self.most = 0
        self.calls = 0
        self._count_lock = threading.Lock()

    def answer(self, req):
        with self._count_lock:
            self.active += 1
            self.calls += 1
            self.most = max(self.most, self.active)
        try:
            for ev in super().answer(req):
                yield ev
                time.sleep(0.001)          # let other threads run while this one holds the engine
        finally:
            with self._count_lock:
                self.active -= 1


def test_concurrent_asks_are_queued_and_never_mixed(tmp_path, corpus):
    engine = CountingAnswerer()
    svc = Services(Settings.from_env(data_dir=tmp_path / "d", engine="extractive"), answerer=engine)
    a, b, c = (svc.workspaces.create(n) for n in ("a", "b", "c"))
    files = {a.id: ["debian-history-fr.pdf", "pari-refcard.pdf"],
             b.id: ["hsaur-inference.pdf", "latexsheet-de.pdf"]}
    for ws_id, names in files.items():
        for n in names:
            svc.documents.add(ws_id, corpus / n)
    shared_chat = svc.chats.create(a.id).id
    questions = {a.id: ["Qui a fondé Debian ?", "Chefs du projet Debian", "elliptic curves",
                        "matrix determinant", "versions de Debian"],
                 b.id: ["How is a t-test computed?", "Wilcoxon rank sum test", "Mathematische Formeln",
                        "chi-squared test", "Tabellen und Listen"]}
    results, errors = [], []

    def ask(ws_id, q, chat_id=None):
        try:
            pieces, done = [], None
            for ev in svc.qa.ask(ws_id, q, chat_id=chat_id):
                if ev.kind == "token":
                    pieces.append(ev.text)
                elif ev.kind == "done":
                    done = ev.answer
            results.append((ws_id, "".join(pieces), done))
        except Exception as exc:  # noqa: BLE001 -- collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(ws, q)) for ws in (a.id, b.id) for q in questions[ws]]
    threads += [threading.Thread(target=ask, args=(a.id, q, shared_chat)) for q in questions[a.id][:3]]
    writer = threading.Thread(target=lambda: svc.documents.add(c.id, corpus / "r-intro.pdf"))
    for t in threads + [writer]:
        t.start()
    for t in threads + [writer]:
        t.join(120)
    assert not errors, errors
    assert len(results) == len(threads) == engine.calls
    assert engine.most == 1                          # one engine, one answer at a time
    for ws_id, streamed, msg in results:
        assert streamed == msg.text                  # no pieces of another answer
        assert msg.citations and {x.filename for x in msg.citations} <= set(files[ws_id])
        assert svc.chats.get(msg.chat_id).workspace_id == ws_id
    roles = [m.role for m in svc.chats.messages(shared_chat)]
    assert roles == ["user", "assistant"] * 3        # exchanges saved whole, never interleaved
    assert [d.filename for d in svc.documents.list(c.id)] == ["r-intro.pdf"]
    svc.close()


CHILD = textwrap.dedent("""
    import sys
    from app.config import Settings
    from app.services import Services
    data, corpus, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    svc = Services(Settings.from_env(data_dir=data, engine="extractive"))
    i = 0
    while True:
        ws = svc.workspaces.ensure(f"ws-{sys.argv[4]}-{i}")
        for n in names:
            svc.documents.add(ws.id, f"{corpus}/{n}")
            print("added", n, flush=True)
        i += 1
""")


def _check_consistent(data: Path) -> None:
    con = sqlite3.connect(data / "jambadocs.sqlite3")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = con.execute("SELECT d.id, d.page_count, d.content_hash, count(p.number), "
                           "coalesce(min(p.number), 0), coalesce(max(p.number), 0) "
                           "FROM documents d LEFT JOIN pages p ON p.document_id = d.id GROUP BY d.id").fetchall()
        for doc_id, n_pages, content_hash, have, lo, hi in rows:
            assert (have, lo, hi) == (n_pages, 1, n_pages), f"document {doc_id} lacks pages"
            assert (data / "files" / content_hash).is_file(), f"document {doc_id} lacks its original"
        orphans = con.execute("SELECT count(*) FROM pages WHERE document_id NOT IN "
                              "(SELECT id FROM documents)").fetchone()[0]
        assert orphans == 0
    finally:
        con.close()


def test_sigkill_during_ingestion_leaves_a_consistent_database(tmp_path, corpus):
    data = tmp_path / "d"
    names = ["r-intro.pdf", "hsaur-inference.pdf", "debian-history-fr.pdf", "pari-refcard.pdf"]
    rng = random.Random(4)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for round_ in range(4):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(corpus), ",".join(names),
                                  str(round_)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            for _ in range(rng.randint(1, 3)):          # let it add a few, then kill it mid-work
                line = child.stdout.readline()
                assert line.startswith(b"added"), child.stderr.read().decode()[-2000:]
            time.sleep(rng.uniform(0.0, 0.3))
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(30)
        assert child.returncode == -signal.SIGKILL
        _check_consistent(data)
    svc = Services(Settings.from_env(data_dir=data, engine="extractive"))
    try:
        # every workspace is usable: list, add, ask; interrupted adds can simply be redone
        assert svc.workspaces.list()
        for ws in svc.workspaces.list():
            docs = svc.documents.list(ws.id)
            for d in docs:
                digest = hashlib.sha256(svc.documents.file_path(d.id).read_bytes()).hexdigest()
                assert digest == d.content_hash
        ws = svc.workspaces.list()[-1]
        svc.documents.add(ws.id, corpus / "hsaur-inference.pdf")
        msg = svc.qa.answer(ws.id, "t-test for independent samples")
        assert msg.citations and all(c.verified for c in msg.citations)
        assert svc.files.collect_garbage(set(d.content_hash for w in svc.workspaces.list()
                                             for d in svc.documents.list(w.id)), min_age_s=0) >= 0
        leftovers = [p.name for p in svc.settings.files_dir.iterdir() if p.name.startswith(".tmp-")]
        assert leftovers == []                         # a killed copy's temp file is collected
    finally:
        svc.close()
    _check_consistent(data)


def test_bad_uploads_next_to_good_data(svc, corpus, tmp_path):
    ws = svc.workspaces.create("w")
    good = svc.documents.add(ws.id, corpus / "acm-sigconf.pdf")
    before = svc.documents.page(good.id, 1).text
    bad = [corpus / "truncated.pdf", corpus / "fake.pdf", tmp_path, tmp_path / "gone.pdf"]
    # a PDF whose bytes change name and extension: a .txt-named PDF is still read by content or refused
    odd = tmp_path / "paper.txt"
    odd.write_bytes((corpus / "truncated.pdf").read_bytes())
    for path in bad + [odd]:
        with pytest.raises(Exception) as err:
            svc.documents.add(ws.id, path)
        assert path.name in str(err.value)
    assert [d.id for d in svc.documents.list(ws.id)] == [good.id]
    assert svc.documents.page(good.id, 1).text == before
    assert sorted(p.name for p in svc.settings.files_dir.iterdir()) == [good.content_hash]
    _check_consistent(svc.settings.data_dir)


def test_abandoned_and_cancelled_asks_free_the_engine(svc, corpus):
    ws = svc.workspaces.create("w")
    svc.documents.add(ws.id, corpus / "hsaur-inference.pdf")
    stream = svc.qa.ask(ws.id, "Wilcoxon rank sum test")
    assert next(e for e in stream if e.kind == "token").text          # holds the engine now
    queued, events = threading.Event(), []

    def second():
        for e in svc.qa.ask(ws.id, "t-test"):
            events.append(e)
            if e.kind == "progress" and e.stage == "queue":
                queued.set()
    t = threading.Thread(target=second)
    t.start()
    assert queued.wait(30)                     # the second ask waits behind the first ...
    stream.close()                             # ... until the first one's client goes away
    t.join(30)
    done = [e for e in events if e.kind == "done"]
    assert len(done) == 1 and done[0].answer.citations
    assert [e.total for e in events if e.stage == "queue"][0] == 1      # one ask ahead of it
    cancel = threading.Event()
    pieces = []
    for ev in svc.qa.ask(ws.id, "chi-squared test", cancel=cancel):
        if ev.kind == "token":
            pieces.append(ev.text)
            if len(pieces) == 3:
                cancel.set()
        elif ev.kind == "done":
            saved = ev.answer
    assert saved.timings["cancelled"] is True and saved.text == "".join(pieces)
    assert svc.qa.answer(ws.id, "chi-squared test").citations      # the next ask runs normally


def test_workspace_deleted_while_a_document_is_being_read(svc, corpus):
    from app.errors import NotFound
    ws = svc.workspaces.create("short-lived")
    keep = svc.workspaces.create("keep")
    svc.documents.add(keep.id, corpus / "pari-refcard.pdf")
    deleted = []

    def progress(done, total):
        if not deleted:                       # mid-read, another client deletes the workspace
            svc.workspaces.delete(ws.id)
            deleted.append(done)
    with pytest.raises(NotFound):
        svc.documents.add(ws.id, corpus / "hsaur-inference.pdf", progress=progress)
    assert deleted
    names = sorted(p.name for p in svc.settings.files_dir.iterdir())
    assert names == [svc.documents.list(keep.id)[0].content_hash]   # the copied original is gone again
    _check_consistent(svc.settings.data_dir)


def test_another_process_deleting_the_last_user_of_an_original_while_it_is_added_again(tmp_path, corpus):
    """Two processes on one data folder (here two Services, each with its own lock file handle): one
    deletes the only workspace holding a PDF while the other adds the same PDF to another workspace,
    between its copy of the original (already there: nothing to copy) and its insert. The original
    must stay: before, the deleting process saw no document using it and removed it, and the added
    document was left without its original."""
    settings = Settings.from_env(data_dir=tmp_path / "data", engine="extractive")
    pdf = corpus / "hsaur-inference.pdf"
    with Services(settings) as deleter, Services(settings) as adder:
        old = deleter.workspaces.create("old")
        deleter.documents.add(old.id, pdf)
        new = adder.workspaces.create("new")
        put = adder.files.put
        deleting = []

        def put_then_race(source, content_hash):
            dest = put(source, content_hash)
            t = threading.Thread(target=deleter.workspaces.delete, args=(old.id,))
            t.start()
            t.join(timeout=1)              # it may finish here (the race) or wait for this add
            deleting.append(t)
            return dest
        adder.files.put = put_then_race
        doc = adder.documents.add(new.id, pdf)
        deleting[0].join(timeout=30)
        assert not deleting[0].is_alive()
        assert [w.name for w in adder.workspaces.list()] == ["new"]
        assert adder.documents.file_path(doc.id).is_file()
        _check_consistent(settings.data_dir)


def _on_a_small_disk(tmp_path: Path, size: str, child: str, *args) -> dict:
    """Run the Python code `child` in a process whose first argument is a folder on a tmpfs of
    `size` of its own (a user and mount namespace, so no root is needed); its last line of output,
    read as JSON."""
    if subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                      capture_output=True).returncode != 0:
        pytest.skip("this machine lets no process mount a tmpfs of its own (unshare refused)")
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("JAMBADOCS_RESERVE_BYTES", None)       # the default, as users have it
    run = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"', str(mnt),
         sys.executable, "-c", child, str(mnt / "data"), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


FILL_DISK = """
def fill_disk(folder):
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"x" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == 28, exc
"""

FULL_DISK_CHILD = FILL_DISK + textwrap.dedent("""
    import json, os, shutil, sys
    from pathlib import Path
    from app.config import Settings
    from app.services import Services
    data, corpus = Path(sys.argv[1]), Path(sys.argv[2])
    svc = Services(Settings.from_env(data_dir=data, engine="extractive"))
    ws = svc.workspaces.create("w")
    docs = [svc.documents.add(ws.id, corpus / n) for n in ("gnuplot.pdf", "r-intro.pdf")]
    chat = svc.chats.create(ws.id)
    svc.qa.answer(ws.id, "How do I plot a function?", chat_id=chat.id)
    fill_disk(data)                                # (another program, say)
    out = {"free_full": shutil.disk_usage(data).free}
    try:
        svc.documents.add(ws.id, corpus / "acm-sigconf.pdf")
    except Exception as exc:
        out["add"] = f"{type(exc).__name__}: {exc}"
    for what, delete in (("document", lambda: svc.documents.remove(ws.id, docs[0].id)),
                         ("chat", lambda: svc.chats.delete(chat.id)),
                         ("workspace", lambda: svc.workspaces.delete(ws.id))):
        try:
            delete()
            out[what] = "deleted"
        except Exception as exc:
            out[what] = f"{type(exc).__name__}: {exc}"
    out["free_after"] = shutil.disk_usage(data).free
    out["workspaces"] = [w.name for w in svc.workspaces.list()]
    out["files"] = sorted(p.name for p in (data / "files").iterdir())
    print(json.dumps(out))
""")


def test_deleting_on_a_full_disk_works_and_frees_the_space(tmp_path, corpus):
    """A real full disk: the data folder on an 80 MiB tmpfs (mounted in a user and mount namespace
    of a child process) that a filler file fills to the last byte. Deleting a document, a chat and
    the workspace must all work and give the space back: before, each failed with "database or
    disk is full", since even a delete must write to SQLite's WAL first. An add is refused naming the
    file (before: a bare OSError, "[Errno 28] No space left on device", an HTTP 500)."""
    out = _on_a_small_disk(tmp_path, "80m", FULL_DISK_CHILD, corpus)
    assert out["free_full"] == 0
    # an add when the disk is full is a StorageError (HTTP 507) naming the file and the reason
    assert out["add"].startswith("StorageError: acm-sigconf.pdf: cannot be saved in ") and "No space" in out["add"]
    assert (out["document"], out["chat"], out["workspace"]) == ("deleted",) * 3, out
    assert out["workspaces"] == [] and out["files"] == []
    assert out["free_after"] >= 32 << 20          # the reserve given up, and both originals


STATE_STORE_CHILD = FILL_DISK + textwrap.dedent("""
    import json, os, shutil, sys
    from pathlib import Path
    from app.state_store import StateStore
    data = Path(sys.argv[1])
    store = StateStore(data / "states")
    store.min_free_bytes = 0                        # let it fill the disk to the last byte
    first = os.urandom(1 << 20)
    assert store.put("a" * 64, "", "model", 0, 0, 100, first)
    fill_disk(data)
    out = {"free_full": shutil.disk_usage(data).free}
    out["put"] = store.put("b" * 64, "a" * 64, "model", 1, 100, 200, os.urandom(4 << 20))
    store.touch(["a" * 64])
    store.remember_selection("c" * 64, [[1, 2]])
    out["left"] = sorted(p.name for p in (data / "states" / "blobs").rglob("*") if p.is_file())
    out["first_intact"] = store.read("a" * 64) == first
    os.remove(data / "filler")
    out["put_with_room"] = store.put("b" * 64, "a" * 64, "model", 1, 100, 200, os.urandom(4 << 20))
    print(json.dumps(out))
""")


def test_a_full_disk_leaves_the_state_cache_unstored_and_the_answer_going(tmp_path):
    """The state cache on a real full disk (a 16 MiB tmpfs): storing a boundary state, marking
    entries used and keeping a page selection must not raise (before, the OSError of the blob
    write ended the question it was cached for), and no partial blob may stay behind."""
    out = _on_a_small_disk(tmp_path, "16m", STATE_STORE_CHILD)
    assert out["free_full"] == 0
    assert out["put"] is False and out["first_intact"] is True
    assert out["left"] == ["a" * 64 + ".state"]
    assert out["put_with_room"] is True


STATE_STORE_ROOM_CHILD = textwrap.dedent("""
    import json, os, shutil, sys
    from pathlib import Path
    from app.state_store import StateStore
    data = Path(sys.argv[1])
    store = StateStore(data / "states")
    store.min_free_bytes = 16 << 20
    out = {"stored": [], "least_free": shutil.disk_usage(data).free}
    for i in range(12):                             # 48 MiB of states on a 48 MiB disk
        out["stored"].append(store.put(f"{i:064x}", "", "model", 0, 0, 10, os.urandom(4 << 20)))
        out["least_free"] = min(out["least_free"], shutil.disk_usage(data).free)
    out["kept"] = [i for i in range(12) if store.entry(f"{i:064x}") is not None]
    print(json.dumps(out))
""")


def test_the_state_cache_leaves_room_on_its_disk_for_documents_and_answers(tmp_path):
    """States are disposable, documents and answers are not: on a 48 MiB disk the cache keeps
    16 MiB free by evicting its least recently used entries, and goes on storing new ones. Before,
    it filled the disk (its budget, 8 GiB, knows nothing of the disk), and then an answer or an
    upload could not be saved."""
    out = _on_a_small_disk(tmp_path, "48m", STATE_STORE_ROOM_CHILD)
    assert out["stored"] == [True] * 12
    assert out["least_free"] >= 16 << 20
    assert out["kept"] == list(range(12 - len(out["kept"]), 12)) and len(out["kept"]) >= 5


RESERVE_CHILD = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import app.services
    from app.config import Settings
    def no_fallocate(fd, offset, size):        # as on macOS, or a file system without fallocate
        raise OSError(95, "Operation not supported")
    os.posix_fallocate = no_fallocate
    settings = Settings.from_env(data_dir=Path(sys.argv[1]), engine="extractive",
                                 reserve_bytes=1 << 30)       # long enough to be killed in the middle
    app.services.Services(settings)
""")


def test_sigkill_while_the_reserve_is_written_leaves_nothing_that_is_not_reclaimed(tmp_path):
    """The reserved space is written in place, so a process killed while writing it leaves a
    short reserve that the next start completes, not a temp file no one ever removes."""
    import shutil

    if shutil.disk_usage(tmp_path).free < 3 << 30:
        pytest.skip("needs 3 GiB free for a 1 GiB reserve (made only with room for it twice over)")
    data = tmp_path / "data"
    child = subprocess.Popen([sys.executable, "-c", RESERVE_CHILD, str(data)],
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 0 for p in data.glob("*reserved-space*")):
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(30)
    assert [p.name for p in data.iterdir() if "reserved-space" in p.name] == ["reserved-space"]
    assert (data / "reserved-space").stat().st_size < 1 << 30
    with Services(Settings.from_env(data_dir=data, engine="extractive", reserve_bytes=1 << 30)):
        assert (data / "reserved-space").stat().st_size == 1 << 30


BIG_DELETE_CHILD = FILL_DISK + textwrap.dedent("""
    import hashlib, json, shutil, sys
    from pathlib import Path
    from app import db
    from app.config import Settings
    from app.services import Services
    from ingest import read_document
    data, corpus = Path(sys.argv[1]), Path(sys.argv[2])
    svc = Services(Settings.from_env(data_dir=data, engine="extractive", reserve_bytes=1 << 20))
    big, other = svc.workspaces.create("big"), svc.workspaces.create("other")
    read = [(corpus / n, read_document(corpus / n)) for n in ("gnuplot.pdf", "r-intro.pdf")]
    for copy in range(30):              # 33 MB of real page text in "big", as much in "other"
        for ws in (big, other):
            for path, doc in read:      # a copy: the same text, a small original of its own
                original = data.parent / "original"
                original.write_text(f"{ws.name} {copy} {path.name}")
                doc.content_hash = hashlib.sha256(original.read_bytes()).hexdigest()
                svc.documents._insert(ws.id, original, original.stat().st_size, doc)
    db.reclaim_space(svc.db)            # as after any delete: the WAL truncated, no room left in it
    fill_disk(data)
    out = {"free_full": shutil.disk_usage(data).free}
    try:
        svc.workspaces.delete(big.id)
        out["delete"] = "deleted"
    except Exception as exc:
        out["delete"] = f"{type(exc).__name__}: {exc}"
    out["workspaces"] = [w.name for w in svc.workspaces.list()]
    out["other_documents"] = len(svc.documents.list(other.id))
    out["free_after"] = shutil.disk_usage(data).free
    print(json.dumps(out))
""")


def test_a_workspace_whose_delete_writes_more_than_the_reserve_is_deleted_on_a_full_disk(tmp_path, corpus):
    """A workspace of 33 MB of page text, next to another as large, on a full disk with a 1 MiB
    reserve: its delete, even with secure_delete FAST, writes ~1.8 MB of WAL, more than the reserve
    (at the default 32 MiB, a workspace of ~300 MB of text): before, the retry failed too, 'database
    or disk is full'. Now the retry deletes its documents one per transaction, the WAL
    checkpointed between them, then the rest."""
    out = _on_a_small_disk(tmp_path, "200m", BIG_DELETE_CHILD, corpus)
    assert out["free_full"] == 0
    assert out["delete"] == "deleted", out
    assert out["workspaces"] == ["other"] and out["other_documents"] == 60
    assert out["free_after"] > 30 << 20

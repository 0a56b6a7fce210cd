"""Storage: schema and migrations, workspaces, documents (dedupe, files, removal), bad input."""
from __future__ import annotations

import sqlite3
import subprocess

import pytest
from sqlalchemy import inspect

from app import db
from app.config import Settings
from app.errors import Conflict, InvalidInput, NotFound
from app.services import Services
from ingest import IngestError


def _sql(svc, query, *args):
    con = sqlite3.connect(svc.settings.db_path)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


def test_schema_version_pragmas_and_orm_match_migrations(svc):
    with svc.db.connect() as conn:
        assert db.schema_version(conn) == db.SCHEMA_VERSION == len(db.MIGRATIONS)
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    insp = inspect(svc.db)
    for table in db.Base.metadata.sorted_tables:     # every ORM column exists in the migrated schema
        have = {c["name"] for c in insp.get_columns(table.name)}
        assert {c.name for c in table.columns} <= have, table.name


def test_reopen_keeps_data_and_newer_schema_is_refused(settings, corpus):
    with Services(settings) as svc:
        ws = svc.workspaces.create("keep")
        svc.documents.add(ws.id, corpus / "pari-refcard.pdf")
    with Services(settings) as svc:                 # migrations run again: nothing to do, data kept
        assert [d.filename for d in svc.documents.list(ws.id)] == ["pari-refcard.pdf"]
    con = sqlite3.connect(settings.db_path)
    con.execute("INSERT INTO schema_version VALUES (?)", (db.SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(db.SchemaError, match="newer"):
        Services(settings)


def test_workspace_names(svc):
    a = svc.workspaces.create("  Papers  ")
    assert a.name == "Papers"
    with pytest.raises(Conflict):
        svc.workspaces.create("Papers")
    for bad in ("", "   ", "x" * 201, "a\nb"):
        with pytest.raises(InvalidInput):
            svc.workspaces.create(bad)
    b = svc.workspaces.ensure("Other")
    assert svc.workspaces.ensure("Other").id == b.id
    with pytest.raises(Conflict):
        svc.workspaces.rename(b.id, "Papers")
    assert svc.workspaces.rename(b.id, "Renamed").name == "Renamed"
    assert [w.name for w in svc.workspaces.list()] == ["Papers", "Renamed"]
    with pytest.raises(NotFound):
        svc.workspaces.get(999)


@pytest.mark.parametrize("other", ["reports", "REPORTS", "  rePorts  ", "Reports\u00a0", "My  Reports", "Re\u200bports",
                                   "\uff32\uff45\uff50\uff4f\uff52\uff54\uff53"])
def test_names_differing_in_case_form_or_spacing_are_one_name(svc, other):
    """As on macOS and Windows, where "Reports" and "reports" are one folder: creating or renaming
    to such a name is refused, and looking it up finds the workspace (CLI and API use by_name)."""
    target = "My Reports" if "My" in other else "Reports"
    ws = svc.workspaces.create(target)
    with pytest.raises(Conflict, match=repr(target)):
        svc.workspaces.create(other)
    b = svc.workspaces.create("b")
    with pytest.raises(Conflict):
        svc.workspaces.rename(b.id, other)
    assert svc.workspaces.by_name(other).id == ws.id
    assert svc.workspaces.ensure(other).id == ws.id
    assert svc.workspaces.rename(ws.id, other.strip()).name == other.strip()     # itself: a new spelling
    assert [w.name for w in svc.workspaces.list()] == [other.strip(), "b"]


def test_names_made_under_the_old_exact_rule_still_open(settings):
    """A folder may hold "Old" and "old" from before names were compared case-blind: both open,
    each by its exact name or id, the blind spelling says which it could mean, renaming works."""
    with Services(settings) as svc:
        svc.workspaces.create("Old")
    con = sqlite3.connect(settings.db_path)
    con.execute("INSERT INTO workspaces (name, created_at) VALUES ('old', 0)")
    con.commit()
    con.close()
    with Services(settings) as svc:
        first, second = svc.workspaces.list()
        assert (first.name, second.name) == ("Old", "old")
        assert svc.workspaces.by_name("Old").id == first.id and svc.workspaces.by_name("old").id == second.id
        with pytest.raises(Conflict, match="give the exact name or the id"):
            svc.workspaces.by_name("OLD")
        with pytest.raises(Conflict):
            svc.workspaces.create("OLD")
        assert svc.workspaces.rename(second.id, "older").name == "older"
        assert svc.workspaces.by_name("OLD").id == first.id


def test_add_stores_pages_labels_and_original(svc, corpus):
    ws = svc.workspaces.create("r")
    d = svc.documents.add(ws.id, corpus / "r-intro.pdf", filename="../../etc/R intro.pdf")
    assert d.filename == "R intro.pdf"          # the uploaded name is data, never a path
    assert (d.index, d.pages, d.kind, d.unit) == (1, 113, "pdf", "page")
    page = svc.documents.page(d.id, 15)
    assert page.label == "9" and "R" in page.text      # printed page = physical - 6
    original = svc.documents.file_path(d.id)
    assert original.parent == svc.settings.files_dir and original.name == d.content_hash
    assert original.read_bytes() == (corpus / "r-intro.pdf").read_bytes()
    with pytest.raises(NotFound):
        svc.documents.page(d.id, 114)
    # the same content again, under another name: the existing document, nothing duplicated
    again = svc.documents.add(ws.id, corpus / "r-intro.pdf", filename="copy.pdf")
    assert again.id == d.id and len(svc.documents.list(ws.id)) == 1
    assert _sql(svc, "SELECT count(*) FROM pages")[0][0] == 113


def test_remove_deletes_only_what_nobody_else_uses(svc, corpus):
    a, b = svc.workspaces.create("a"), svc.workspaces.create("b")
    da = svc.documents.add(a.id, corpus / "pari-refcard.pdf")
    db_ = svc.documents.add(b.id, corpus / "pari-refcard.pdf")
    other = svc.documents.add(a.id, corpus / "hsaur-inference.pdf")
    shared = svc.files.path(da.content_hash)
    svc.documents.remove(a.id, da.id)
    assert shared.exists()                       # b still uses the same original
    assert svc.documents.file_path(db_.id) == shared
    with pytest.raises(NotFound):
        svc.documents.remove(a.id, db_.id)       # not a's document
    svc.workspaces.delete(b.id)
    assert not shared.exists()
    assert _sql(svc, "SELECT count(*) FROM pages WHERE document_id IN (?, ?)", da.id, db_.id)[0][0] == 0
    assert [d.id for d in svc.documents.list(a.id)] == [other.id]
    assert svc.documents.list(a.id)[0].index == 1     # positions close up after a removal
    assert svc.files.path(other.content_hash).exists()


@pytest.mark.parametrize("name,reason", [("fake.pdf", "not_pdf"), ("empty.pdf", "empty"),
                                         ("truncated.pdf", "corrupt"), ("encrypted.pdf", "encrypted"),
                                         ("blank.pdf", "no_text")])
def test_bad_input_changes_nothing(svc, corpus, name, reason, tmp_path):
    if name == "blank.pdf":                          # two empty pages: no text, no image to OCR
        import pypdfium2 as pdfium
        pdf = pdfium.PdfDocument.new()
        pdf.new_page(612, 792), pdf.new_page(612, 792)
        pdf.save(tmp_path / name)
    bad = (tmp_path if name == "blank.pdf" else corpus) / name
    ws = svc.workspaces.create("w")
    good = svc.documents.add(ws.id, corpus / "pari-refcard.pdf")
    before = _sql(svc, "SELECT id, content_hash FROM documents"), sorted(p.name for p in svc.settings.files_dir.iterdir())
    with pytest.raises(IngestError) as err:
        svc.documents.add(ws.id, bad)
    assert err.value.reason == reason
    assert name in str(err.value)
    after = _sql(svc, "SELECT id, content_hash FROM documents"), sorted(p.name for p in svc.settings.files_dir.iterdir())
    assert after == before
    assert svc.documents.page(good.id, 1).text


def test_encrypted_with_password_and_limits(tmp_path, corpus):
    from app.config import Settings
    svc = Services(Settings.from_env(data_dir=tmp_path / "d", max_upload_bytes=700_000, max_pages=30))
    ws = svc.workspaces.create("w")
    d = svc.documents.add(ws.id, corpus / "encrypted.pdf", password="secret123")
    assert d.pages == 26
    with pytest.raises(IngestError) as err:
        svc.documents.add(ws.id, corpus / "gnuplot.pdf")         # 1.3 MB > 700 KB
    assert err.value.reason == "too_large" and "upload limit" in str(err.value)
    with pytest.raises(IngestError) as err:
        svc.documents.add(ws.id, corpus / "r-intro.pdf")         # 113 pages > 30
    assert err.value.reason == "too_large" and "113" in str(err.value)
    assert [x.id for x in svc.documents.list(ws.id)] == [d.id]
    svc.close()


def _on_disk(settings) -> int:
    """Bytes of the database and its WAL once the WAL is written back (as at a quiet moment)."""
    con = sqlite3.connect(settings.db_path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return sum(p.stat().st_size for p in settings.data_dir.glob("jambadocs.sqlite3*") if not p.name.endswith("-shm"))


def _text_bytes(svc, ws_id) -> int:
    return sum(len(p.text.encode()) for d in svc.documents.load(ws_id)[1] for p in d.pages)


def test_deletes_give_the_space_back_to_the_disk(svc, corpus):
    """Before, the database never shrank: deleted rows' pages stayed in the file as free pages."""
    assert _sql(svc, "PRAGMA auto_vacuum") == [(2,)]          # a new database: incremental
    big = svc.workspaces.create("big")
    gnuplot = svc.documents.add(big.id, corpus / "gnuplot.pdf")
    svc.documents.add(big.id, corpus / "pari-refcard.pdf")
    other = svc.workspaces.create("other")
    for name in ("r-intro.pdf", "debian-history-fr.pdf"):
        svc.documents.add(other.id, corpus / name)
    text = {ws: _text_bytes(svc, ws) for ws in (big.id, other.id)}
    assert text[big.id] > 800_000
    start = _on_disk(svc.settings)
    svc.documents.remove(big.id, gnuplot.id)
    after_doc = _on_disk(svc.settings)
    assert start - after_doc > 0.8 * (text[big.id] - _text_bytes(svc, big.id)), (start, after_doc)
    svc.workspaces.delete(other.id)
    assert after_doc - _on_disk(svc.settings) > 0.8 * text[other.id]
    assert [d.filename for d in svc.documents.list(big.id)] == ["pari-refcard.pdf"]


def test_an_older_database_is_converted_to_give_space_back(settings, corpus):
    """A database made before incremental auto-vacuum (auto_vacuum NONE) is VACUUMed once, when a
    delete leaves a quarter of it free, and shrinks in steps from then on."""
    with Services(settings) as svc:
        ws = svc.workspaces.create("w")
        for name in ("gnuplot.pdf", "hsaur-inference.pdf"):
            svc.documents.add(ws.id, corpus / name)
    con = sqlite3.connect(settings.db_path)
    con.executescript("PRAGMA auto_vacuum = NONE; VACUUM;")     # as the release before this one made it
    assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    con.close()
    with Services(settings) as svc:
        start = _on_disk(settings)
        svc.documents.remove(ws.id, svc.documents.list(ws.id)[0].id)
        assert start - _on_disk(settings) > 800_000
        assert _sql(svc, "PRAGMA auto_vacuum") == [(2,)]
        assert [d.filename for d in svc.documents.list(ws.id)] == ["hsaur-inference.pdf"]
        assert svc.documents.page(svc.documents.list(ws.id)[0].id, 3).text


def test_a_file_that_is_not_a_database_is_refused_untouched(settings):
    settings.data_dir.mkdir(parents=True)
    junk = b"not a database at all " * 50
    settings.db_path.write_bytes(junk)
    with pytest.raises(db.SchemaError, match="not a database"):
        Services(settings)
    assert settings.db_path.read_bytes() == junk


def test_the_reserved_space_is_a_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("JAMBADOCS_RESERVE_BYTES", str(3 << 20))
    with Services(Settings.from_env(data_dir=tmp_path / "data", engine="extractive")) as svc:
        assert (svc.settings.data_dir / "reserved-space").stat().st_size == 3 << 20
    with pytest.raises(ValueError, match="reserve_bytes must be positive"):
        Settings.from_env(data_dir=tmp_path, reserve_bytes=0)


def test_a_data_folder_copied_sparse_gets_a_real_reserve_again(tmp_path, corpus):
    """A data folder copied to another disk or machine by `cp --sparse=always` (or `rsync -S`)
    turns the reserve, blocks of zeros, into a hole: 4 MiB long, no byte of disk held. The copy
    kept it as it was (its size looked right), so a delete on a full disk there had no room to
    give up; now its first start makes the blocks real again."""
    size = 4 << 20
    with Services(Settings.from_env(data_dir=tmp_path / "data", engine="extractive", reserve_bytes=size)) as svc:
        ws = svc.workspaces.create("w")
        svc.documents.add(ws.id, corpus / "pari-refcard.pdf")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", "--sparse=always", str(tmp_path / "data"), str(copy)], check=True)
    reserve = copy / "reserved-space"
    assert reserve.stat().st_size == size and reserve.stat().st_blocks * 512 < size
    with Services(Settings.from_env(data_dir=copy, engine="extractive", reserve_bytes=size)) as svc:
        assert reserve.stat().st_blocks * 512 >= size
        assert [d.filename for d in svc.documents.list(svc.workspaces.by_name("w").id)] == ["pari-refcard.pdf"]


def test_a_deleted_documents_text_is_not_left_in_the_database_file(settings, corpus):
    """Deleting is forgetting: a phrase found only in the deleted document is not in the database
    file afterwards, also in an older database whose freed pages are not cut off yet (less than a
    quarter of it free). Before, deletes ran with secure_delete FAST and left the text in them."""
    with Services(settings) as svc:
        ws = svc.workspaces.create("w")
        for name in ("r-intro.pdf", "gnuplot.pdf", "hsaur-inference.pdf"):
            svc.documents.add(ws.id, corpus / name)
    con = sqlite3.connect(settings.db_path)
    con.executescript("PRAGMA auto_vacuum = NONE; VACUUM;")
    con.close()
    secret = b"pistonrings"              # in hsaur-inference.pdf (7 times), not in the others
    assert secret in settings.db_path.read_bytes()
    with Services(settings) as svc:
        doc = next(d for d in svc.documents.list(ws.id) if d.filename == "hsaur-inference.pdf")
        svc.documents.remove(ws.id, doc.id)
        assert _sql(svc, "PRAGMA auto_vacuum") == [(0,)]      # not converted: freed pages stay
    on_disk = b"".join(p.read_bytes() for p in settings.data_dir.glob("jambadocs.sqlite3*"))
    assert secret not in on_disk


def test_an_unwatched_add_whose_failure_cannot_be_kept_does_not_raise(settings, corpus, monkeypatch, caplog):
    """A drop finished after its page went away (ui `_add_rest`) adds file after file with
    add_unwatched, which must never raise. With the database locked past its timeout by another
    process (or its disk full), keeping the failure raised again, and the files after it were never
    added; now the failure is logged with the file name and the next file is added."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 300)
    with Services(settings) as svc:
        ws = svc.workspaces.create("w")
        other = sqlite3.connect(settings.db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")                      # another process writing, for long
        try:
            assert svc.documents.add_unwatched(ws.id, corpus / "pari-refcard.pdf") is None
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert "pari-refcard.pdf: the failure could not be kept" in caplog.text
        assert svc.documents.add_unwatched(ws.id, corpus / "hsaur-inference.pdf").filename == "hsaur-inference.pdf"


def test_adding_a_document_again_brings_back_its_original_deleted_by_hand(svc, corpus):
    """An original removed from files/ by hand (to save space, or lost in a partial copy of the data
    folder): the viewer says it is missing. Adding the same file again found the document there and
    returned it, leaving the original missing for good; now the file given takes its place."""
    ws = svc.workspaces.create("w")
    doc = svc.documents.add(ws.id, corpus / "pari-refcard.pdf")
    original = svc.documents.file_path(doc.id)
    original.unlink()
    with pytest.raises(NotFound, match="the original of pari-refcard.pdf is missing"):
        svc.documents.file_path(doc.id)
    assert svc.documents.add(ws.id, corpus / "pari-refcard.pdf").id == doc.id
    assert svc.documents.file_path(doc.id).read_bytes() == (corpus / "pari-refcard.pdf").read_bytes()

"""Upload handler, in process over real Services: Gradio's temporary copies of uploaded files are
deleted once read (added or refused), the workspace keeps its own copy, and files outside Gradio's
upload folder are never touched."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from ui.handlers import drop_upload_copy



@pytest.fixture
def ui(services_and_handlers, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))      # where Gradio puts uploads
    svc, h = services_and_handlers
    ws = svc.workspaces.create("w")
    return SimpleNamespace(svc=svc, ws=ws.id, h=h, upload_dir=tmp_path / "gradio")


def _as_gradio_upload(src, upload_dir, folder: str):
    """Put a copy where Gradio's upload route would: <upload folder>/<hash>/<file name>."""
    dest = upload_dir / folder / src.name
    dest.parent.mkdir(parents=True)
    shutil.copyfile(src, dest)
    return dest


def test_uploaded_copies_are_deleted_once_read(ui, corpus):
    good = _as_gradio_upload(corpus / "pari-refcard.pdf", ui.upload_dir, "a1")
    bad = _as_gradio_upload(corpus / "fake.pdf", ui.upload_dir, "b2")
    updates = list(ui.h.upload([str(good), str(bad)], ui.ws, None, None))
    assert "added" in updates[-1]["uploads"] and "jd-up-error" in updates[-1]["uploads"]
    assert not good.exists() and not bad.exists()
    assert not (ui.upload_dir / "a1").exists() and not (ui.upload_dir / "b2").exists()
    assert ui.upload_dir.is_dir()                                      # Gradio's folder itself stays
    [doc] = ui.svc.documents.list(ui.ws)                               # the workspace kept its own copy
    assert doc.filename == "pari-refcard.pdf" and doc.pages == 4
    assert ui.svc.documents.page(doc.id, 1).text
    assert ui.svc.documents.file_path(doc.id).read_bytes() == (corpus / "pari-refcard.pdf").read_bytes()


def test_files_outside_the_upload_folder_are_left_alone(ui, corpus, tmp_path):
    mine = tmp_path / "mine" / "pari-refcard.pdf"
    mine.parent.mkdir()
    shutil.copyfile(corpus / "pari-refcard.pdf", mine)
    list(ui.h.upload([str(mine)], ui.ws, None, None))
    assert mine.exists() and len(ui.svc.documents.list(ui.ws)) == 1
    assert drop_upload_copy(mine) is False and mine.exists()
    assert drop_upload_copy(ui.upload_dir / ".." / "mine" / "pari-refcard.pdf") is False and mine.exists()


def test_an_upload_or_question_before_the_page_has_a_workspace_says_so(ui, corpus):
    import gradio as gr
    for events in (ui.h.upload([str(corpus / "pari-refcard.pdf")], None, None, None),
                   ui.h.ask("What is it about?", None, None, [], None)):
        with pytest.warns(UserWarning, match="still be loading"):
            assert next(events) == gr.skip()          # a toast, and nothing on the page changes
    assert ui.svc.documents.list(ui.ws) == []


def test_the_password_is_cleared_when_the_upload_starts_and_never_after(ui, corpus):
    """A password typed as soon as an upload's last result shows must survive. Gradio sends a
    generator's last update a second time when it finishes, so no update but the first (which
    this upload's own password already went into) may touch the password box."""
    enc = _as_gradio_upload(corpus / "encrypted.pdf", ui.upload_dir, "c3")
    updates = list(ui.h.upload([str(enc)], ui.ws, None, None))
    assert "password" in updates[-1]["uploads"] and updates[-1]["files"] is None
    assert updates[0]["password"] == "" and all("password" not in u for u in updates[1:])
    assert updates[-1]["password_box"]["open"] is True        # the box opens where the password goes
    enc = _as_gradio_upload(corpus / "encrypted.pdf", ui.upload_dir, "d4")
    updates = list(ui.h.upload([str(enc)], ui.ws, "secret123", None))
    assert updates[0]["password"] == "" and all("password" not in u for u in updates[1:])
    assert "added" in updates[-1]["uploads"] and "password_box" not in updates[-1]


def test_an_old_word_file_is_taken_and_refused_with_how_to_convert_it(ui, tmp_path):
    from ui.handlers import UPLOAD_TYPES

    assert ".doc" in UPLOAD_TYPES and ".pptx" in UPLOAD_TYPES and ".png" in UPLOAD_TYPES
    src = tmp_path / "minutes.doc"
    src.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))        # an OLE2 (Word 97-2003) header
    updates = list(ui.h.upload([str(_as_gradio_upload(src, ui.upload_dir, "e5"))], ui.ws, None, None))
    panel = updates[-1]["uploads"]
    assert "jd-up-error" in panel and "minutes.doc" in panel and "save it as .docx or PDF" in panel
    assert ui.svc.documents.list(ui.ws) == []


def test_a_batch_lists_the_workspace_a_bounded_number_of_times(ui, tmp_path, monkeypatch):
    """Each file of a drop listed the whole workspace two or three times (the duplicate check, the
    documents panel, the gauge): a batch's cost grew with the workspace. Now once for the check,
    and the panel is redrawn after the first file, at most every VIEW_REFRESH_S, and at the end."""
    import ui.handlers as handlers

    monkeypatch.setattr(handlers, "VIEW_REFRESH_S", 3600.0, raising=False)
    files = []
    for i in range(12):
        f = tmp_path / "src" / f"note-{i}.txt"
        f.parent.mkdir(exist_ok=True)
        f.write_text(f"Note {i}: the shipment number {i * 7} left on Tuesday.\n" * 5)
        files.append(str(_as_gradio_upload(f, ui.upload_dir, f"n{i}")))
    files.append(files[0].replace("n0", "dup"))                       # same content again: a duplicate
    _as_gradio_upload(tmp_path / "src" / "note-0.txt", ui.upload_dir, "dup")
    listed = []
    original = ui.svc.documents.list
    monkeypatch.setattr(ui.svc.documents, "list", lambda ws_id, **kw: listed.append(ws_id) or original(ws_id, **kw))
    updates = list(ui.h.upload(files, ui.ws, None, None))
    assert updates[-1]["uploads"].count("added") >= 12 and "already in this workspace" in updates[-1]["uploads"]
    assert len(original(ui.ws)) == 12
    assert len(listed) <= 1 + 2 * 3, len(listed)      # the check, then two redraws (first, last) of <= 3


def test_files_dropped_during_an_upload_do_not_bring_back_the_ones_already_read(ui, corpus, tmp_path):
    """Gradio's file box adds a second drop to the files it still holds, so files dropped while an
    upload was being read came with the files of that upload again, whose copies were gone by then:
    each showed "cannot read the file (No such file or directory)" although it had been added."""
    first = _as_gradio_upload(corpus / "pari-refcard.pdf", ui.upload_dir, "f1")
    list(ui.h.upload([str(first)], ui.ws, None, None))
    note = tmp_path / "note.txt"
    note.write_text("The boiler is repaired on Thursday.\n")
    later = _as_gradio_upload(note, ui.upload_dir, "f2")
    updates = list(ui.h.upload([str(first), str(later)], ui.ws, None, None))
    panel = updates[-1]["uploads"]
    assert "jd-up-error" not in panel and "pari-refcard.pdf" not in panel, panel
    assert "note.txt" in panel and "added" in panel
    assert [d.filename for d in ui.svc.documents.list(ui.ws)] == ["pari-refcard.pdf", "note.txt"]
    # the same file dropped again later is read again (here: found to be in the workspace already)
    again = _as_gradio_upload(corpus / "pari-refcard.pdf", ui.upload_dir, "f1")
    updates = list(ui.h.upload([str(again)], ui.ws, None, None))
    assert "already in this workspace as document 1" in updates[-1]["uploads"]


def test_a_page_closed_or_reloaded_during_an_upload_still_adds_every_file_and_leaves_no_copies(ui, corpus):
    """Closing or reloading the page closes the upload handler at one of its updates: the copy of
    the file being read and of the files after it stayed in Gradio's folder (a user's documents
    left in /tmp until the daily sweep), and then the files not yet begun were dropped without a
    word. Now they are still added, in the order dropped, and every copy goes."""
    import time

    first = _as_gradio_upload(corpus / "r-intro.pdf", ui.upload_dir, "g1")
    later = _as_gradio_upload(corpus / "pari-refcard.pdf", ui.upload_dir, "g2")
    last = _as_gradio_upload(corpus / "hsaur-inference.pdf", ui.upload_dir, "g3")
    events = ui.h.upload([str(first), str(later), str(last)], ui.ws, None, None)
    next(events)                                       # the list of files, nothing read yet
    while "reading page" not in next(events).get("uploads", ""):
        pass                                           # the first file is being read
    events.close()                                     # the page went away
    deadline = time.monotonic() + 120
    while len(ui.svc.documents.list(ui.ws)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [d.filename for d in ui.svc.documents.list(ui.ws)] == ["r-intro.pdf", "pari-refcard.pdf",
                                                                  "hsaur-inference.pdf"]
    while any(p.exists() for p in (first, later, last)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any((ui.upload_dir / g).exists() for g in ("g1", "g2", "g3"))


def _wait_for(condition, timeout: float = 120.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_files_that_fail_after_their_page_went_away_are_shown_with_the_workspace_until_dismissed(ui, corpus):
    """The files of a drop still added after its page went away were only logged when they failed:
    the user never learned that a file was missing. Now each failure is kept with the workspace
    (file name and reason) and shown when the workspace is next opened, until dismissed; the
    file being read when the page went away included, and only the failures the box showed go."""
    fake = _as_gradio_upload(corpus / "fake.pdf", ui.upload_dir, "h1")
    enc = _as_gradio_upload(corpus / "encrypted.pdf", ui.upload_dir, "h2")
    good = _as_gradio_upload(corpus / "pari-refcard.pdf", ui.upload_dir, "h3")
    cut = _as_gradio_upload(corpus / "truncated.pdf", ui.upload_dir, "h4")
    events = ui.h.upload([str(fake), str(enc), str(good), str(cut)], ui.ws, None, None)
    next(events)                                       # the list of files, nothing read yet
    assert "jd-up-error" in next(events)["uploads"]     # fake.pdf's refusal, on its way to the page ...
    events.close()                                     # ... which went away
    _wait_for(lambda: len(ui.svc.documents.failures(ui.ws)) == 3)
    failures = ui.svc.documents.failures(ui.ws)
    assert [(f.filename, f.reason) for f in failures] == [("fake.pdf", "not_pdf"), ("encrypted.pdf", "encrypted"),
                                                          ("truncated.pdf", "corrupt")]
    assert all(f.message and not f.message.startswith(f.filename) for f in failures)
    assert [d.filename for d in ui.svc.documents.list(ui.ws)] == ["pari-refcard.pdf"]

    page = ui.h.on_load({"ws": ui.ws})                 # the workspace opened again (a reload, a new tab)
    assert page["failed_box"]["visible"] is True
    for f in failures:
        assert f.filename in page["failed_html"] and f.message in page["failed_html"]
    assert ui.h.switch_workspace(ui.ws)["failed_box"]["visible"] is True
    late = _as_gradio_upload(corpus / "empty.pdf", ui.upload_dir, "h5")     # fails after the box was drawn
    ui.h._add_rest(ui.ws, [(str(late), None)], None, "", None)
    out = ui.h.dismiss_failures(ui.ws, page["failed_seen"])
    assert [f.filename for f in ui.svc.documents.failures(ui.ws)] == ["empty.pdf"]    # not seen: kept
    assert out["failed_box"]["visible"] is True and "empty.pdf" in out["failed_html"]
    out = ui.h.dismiss_failures(ui.ws, out["failed_seen"])
    assert out["failed_box"]["visible"] is False and ui.svc.documents.failures(ui.ws) == []
    assert ui.h.on_load({"ws": ui.ws})["failed_box"]["visible"] is False
    assert not any((ui.upload_dir / g).exists() for g in ("h1", "h2", "h3", "h4", "h5"))


def test_an_upload_event_with_only_files_already_read_leaves_the_page_as_it_is(ui, corpus):
    """A drop whose files were all read already (the same file dropped twice within a second: Gradio
    gives both drops one copy, read and deleted by the first) made the upload handler end without an update, and Gradio
    then sets every output to None: the open workspace and chat states, the remembered ones, the
    chat and the documents panel. The next question was refused ("No workspace is open yet")."""
    import gradio as gr

    first = _as_gradio_upload(corpus / "pari-refcard.pdf", ui.upload_dir, "k1")
    list(ui.h.upload([str(first)], ui.ws, None, None))
    assert not first.exists()
    assert list(ui.h.upload([str(first), str(first)], ui.ws, None, None)) == [gr.skip()]
    assert list(ui.h.upload([], ui.ws, None, None)) == [gr.skip()]


def test_a_name_longer_than_the_file_system_takes_is_kept_whole(ui, corpus):
    """Gradio names its copy by the sent name cut to 200 bytes; the page's upload box (the real one,
    from build_ui) passes the sent name on, and the document keeps it whole."""
    from gradio.data_classes import FileData, ListFiles
    from gradio_client.utils import strip_invalid_filename_characters

    from ui.app import build_ui

    box = next(b for b in build_ui(ui.svc).blocks.values() if getattr(b, "elem_id", None) == "jd-upload")
    sent = "\U0001f998" * 100 + " notes.pdf"                             # 410 bytes
    copy = ui.upload_dir / "c3" / strip_invalid_filename_characters(sent)
    copy.parent.mkdir(parents=True)
    copy.write_bytes((corpus / "pari-refcard.pdf").read_bytes())
    paths = box.preprocess(ListFiles(root=[FileData(path=str(copy), orig_name=sent)]))
    updates = list(ui.h.upload(paths, ui.ws, None, None))
    assert "added" in updates[-1]["uploads"]
    [doc] = ui.svc.documents.list(ui.ws)
    assert doc.filename == sent and doc.pages == 4
    assert not copy.exists()


def test_a_file_of_the_same_name_with_other_content_says_the_earlier_one_is_still_read(ui, corpus, tmp_path):
    """report.pdf added, then a changed report.pdf: both stay (nothing is lost), and the upload says
    so, since both are read for every question."""
    for folder, source in (("v1", "pari-refcard.pdf"), ("v2", "latexsheet-de.pdf")):
        (tmp_path / folder).mkdir()
        shutil.copyfile(corpus / source, tmp_path / folder / "report.pdf")
        updates = list(ui.h.upload([str(_as_gradio_upload(tmp_path / folder / "report.pdf", ui.upload_dir, folder))],
                                   ui.ws, None, None))
    panel = updates[-1]["uploads"]
    assert "added: 2 pages" in panel and "document 1 (added " in panel, panel
    assert "has the same name and other content: an earlier version? Both are read" in panel, panel
    assert [d.filename for d in ui.svc.documents.list(ui.ws)] == ["report.pdf", "report.pdf"]

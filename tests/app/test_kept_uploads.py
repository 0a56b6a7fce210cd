"""Uploads kept in the data folder until read (app.documents.keep / add_kept): what a server stopped
mid-upload leaves is read at the next start, or reported as a failure naming the file; its
original survives garbage collection and other documents' removal meanwhile."""
from __future__ import annotations

import os
import time

from app.config import Settings
from app.services import Services


def _restart(settings: Settings) -> Services:
    """A new process's Services on the same data folder, having run the server's start-up reading."""
    svc = Services(settings)
    svc.reread_in_background().join(120)
    return svc


def test_a_kept_upload_the_reader_refuses_at_the_next_start_is_reported_by_name(settings, corpus):
    with Services(settings) as svc:
        ws = svc.workspaces.create("w")
        svc.documents.keep(ws.id, corpus / "encrypted.pdf", filename="minutes.pdf")   # then the server stopped
    svc = _restart(settings)
    try:
        assert svc.documents.list(ws.id) == []
        (failure,) = svc.documents.failures(ws.id)
        assert (failure.filename, failure.reason) == ("minutes.pdf", "encrypted")
        assert [p for p in svc.settings.files_dir.iterdir()] == []       # its kept original is gone
        assert svc.documents.add_kept_uploads() == 0                      # and it is not tried again
    finally:
        svc.close()


def test_a_kept_original_outlives_garbage_collection_and_a_removed_namesake(settings, corpus):
    with Services(settings) as svc:
        a, b = svc.workspaces.create("a"), svc.workspaces.create("b")
        doc = svc.documents.add(a.id, corpus / "pari-refcard.pdf")
        svc.documents.keep(b.id, corpus / "pari-refcard.pdf")
        svc.documents.remove(a.id, doc.id)          # the same content, removed while b's is not read yet
        original = svc.settings.files_dir / doc.content_hash
        assert original.is_file()
        old = time.time() - 2 * 3600                # past the age at which unreferenced originals go
        os.utime(original, (old, old))
    svc = _restart(settings)
    try:
        (added,) = svc.documents.list(b.id)
        assert (added.filename, added.pages, svc.documents.failures(b.id)) == ("pari-refcard.pdf", 4, [])
        assert svc.documents.page(added.id, 1).text
    finally:
        svc.close()

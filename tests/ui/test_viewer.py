"""The source viewer's handlers, in process over real Services: a chip opens the cited page with its
verdict; turning pages leaves the verdict behind (it is about the cited page) and each page-turn
button is enabled only where there is a page to turn to."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.citations import parse_and_verify
from ingest import read_document

CLAIM = "If we convert the estimates of the room width in meters into feet by multiplying each by 3.28"


@pytest.fixture
def ui(services_and_handlers, corpus):
    svc, h = services_and_handlers
    ws = svc.workspaces.create("w").id
    pdf = corpus / "hsaur-inference.pdf"
    doc = svc.documents.add(ws, pdf)
    text, citations = parse_and_verify(f"{CLAIM} [doc 1, p. 3].", [read_document(pdf)], doc_ids=[doc.id])
    chat = svc.chats.create(ws).id
    msg = svc.chats.save_exchange(chat, "How were the widths compared?", text, "extractive", {}, citations)
    return SimpleNamespace(svc=svc, h=h, ws=ws, chat=chat, msg=msg, pages=doc.pages)


def test_turning_pages_from_the_cited_one(ui):
    assert ui.msg.citations[0].verified and ui.msg.citations[0].page == 3
    out = ui.h.open_citation(f"{ui.msg.id}:0|nonce", ui.ws, ui.chat)
    assert "verified" in out["source_head"] and "page 3 of" in out["source_head"]
    assert out["prev_btn"]["interactive"] is True and out["next_btn"]["interactive"] is True
    back = ui.h.turn_page(-1)(out["viewer"], ui.ws)
    assert "jd-verdict" not in back["source_head"] and "showing page 2, cited page 3" in back["source_head"]
    first = ui.h.turn_page(-1)(back["viewer"], ui.ws)
    assert first["viewer"]["page"] == 1 and first["prev_btn"]["interactive"] is False
    assert first["next_btn"]["interactive"] is True
    again = ui.h.turn_page(+2)(first["viewer"], ui.ws)
    assert again["viewer"]["page"] == 3 and "jd-verdict" in again["source_head"]
    last = ui.h.turn_page(ui.pages)(again["viewer"], ui.ws)           # clamped to the last page
    assert last["viewer"]["page"] == ui.pages and last["next_btn"]["interactive"] is False


def test_a_chip_of_a_removed_document_opens_nothing(ui):
    doc_id = ui.msg.citations[0].doc_id
    ui.svc.documents.remove(ui.ws, doc_id)
    with pytest.warns(UserWarning, match="removed"):
        ui.h.open_citation(f"{ui.msg.id}:0|nonce", ui.ws, ui.chat)


def test_a_password_protected_pdf_shows_its_page_images_while_the_server_runs(services_and_handlers, corpus):
    """Its page images need the password, which is not stored: it is kept in memory from the upload
    (the viewer said "Cannot draw the page image: d608fa29...: cannot open as PDF (Failed to load
    document (PDFium: Incorrect password error).)" for every such PDF)."""
    svc, h = services_and_handlers
    ws = svc.workspaces.create("w").id
    pdf = corpus / "encrypted.pdf"
    doc = svc.documents.add(ws, pdf, password="secret123")
    page = svc.documents.page(doc.id, 8).text
    quote = " ".join(page.split()[:12])
    text, citations = parse_and_verify(f'"{quote}" [doc 1, p. 8].', [read_document(pdf, password="secret123")],
                                       doc_ids=[doc.id])
    chat = svc.chats.create(ws).id
    msg = svc.chats.save_exchange(chat, "q", text, "extractive", {}, citations)
    assert msg.citations[0].verified
    out = h.open_citation(f"{msg.id}:0|n", ws, chat)
    assert out["page_image"]["visible"] is True and out["page_image"]["value"] is not None

    svc.documents._passwords.clear()                  # as after a restart
    with pytest.warns(UserWarning) as toasts:
        out = h.open_citation(f"{msg.id}:0|n", ws, chat)
    (toast,) = [str(w.message) for w in toasts]
    assert "encrypted.pdf" in toast and "password-protected" in toast and "PDFium" not in toast
    assert doc.content_hash[:8] not in toast and out["page_image"]["visible"] is False
    assert "jd-passage" in out["page_text"]               # the text view still marks the passage
    assert svc.documents.add(ws, pdf, password="secret123").id == doc.id      # "add the file again with its
    out = h.open_citation(f"{msg.id}:0|n", ws, chat)                          #  password": the same document
    assert out["page_image"]["visible"] is True

"""Slides and e-books in a workspace: added with their units, asked over, cited to slide or section."""
from __future__ import annotations

from tests.ingest.office_files import write_epub, write_pptx


def test_pptx_and_epub_are_added_asked_and_cited(svc, tmp_path):
    ws = svc.workspaces.create("mixed")
    deck = svc.documents.add(ws.id, write_pptx(tmp_path / "review.pptx"))
    book = svc.documents.add(ws.id, write_epub(tmp_path / "voyage.epub"))
    assert (deck.kind, deck.unit, deck.pages, deck.extent) == ("pptx", "slide", 3, "3 slides")
    assert (book.kind, book.unit, book.pages) == ("epub", "section", 3)
    assert svc.documents.page(deck.id, 3).label == "slide 3"

    msg = svc.qa.answer(ws.id, "Which office opening should the speaker mention?")
    top = msg.citations[0]
    assert (top.filename, top.page, top.page_label) == ("review.pptx", 1, "slide 1") and top.verified
    assert "Haifa office opening" in top.passage

    msg = svc.qa.answer(ws.id, "When did the ship sail?")
    top = msg.citations[0]
    assert (top.filename, top.page_label) == ("voyage.epub", "§3 At Sea") and top.verified
    assert svc.documents.page(book.id, top.page).text[top.start:top.end] == top.passage

    saved = svc.chats.messages(msg.chat_id)[-1].citations[0]           # read back from SQLite
    assert (saved.unit, saved.place) == ("section", "§3 At Sea")
    slide = svc.qa.answer(ws.id, "Which office opening should the speaker mention?").citations[0]
    assert (slide.unit, slide.place) == ("slide", "slide 1")

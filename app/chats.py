"""Chats of a workspace and their saved messages with citations."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app import db
from app.records import ChatInfo, CitationInfo, MessageInfo, _utc

if TYPE_CHECKING:
    from app.services import Services

TITLE_CHARS = 80


def message_info(m: db.Message) -> MessageInfo:
    return MessageInfo(
        id=m.id, chat_id=m.chat_id, role=m.role, text=m.text,
        citations=[CitationInfo(c.doc_index, c.document_id, c.filename, c.page, c.page_label,
                                c.quote, bool(c.verified), c.passage, c.start, c.end, c.score, c.unit)
                   for c in m.citations],
        timings=m.timings, created_at=_utc(m.created_at), engine=m.engine, reasoning=m.reasoning or None)


class ChatService:
    def __init__(self, svc: "Services"):
        self._svc = svc

    def list(self, ws_id: int) -> list[ChatInfo]:
        with db.transaction(self._svc.sessions) as s:
            self._svc.workspaces._row(s, ws_id)
            rows = s.execute(
                select(db.Chat, func.count(db.Message.id))
                .outerjoin(db.Message, db.Message.chat_id == db.Chat.id)
                .where(db.Chat.workspace_id == ws_id).group_by(db.Chat.id)
                .order_by(db.Chat.id.desc())).all()
            return [ChatInfo(c.id, c.workspace_id, c.title, _utc(c.created_at), int(n)) for c, n in rows]

    def create(self, ws_id: int, title: str = "") -> ChatInfo:
        with db.transaction(self._svc.sessions) as s:
            self._svc.workspaces._row(s, ws_id)
            chat = db.Chat(workspace_id=ws_id, title=title[:TITLE_CHARS], created_at=time.time())
            s.add(chat)
            s.flush()
            return ChatInfo(chat.id, ws_id, chat.title, _utc(chat.created_at), 0)

    def get(self, chat_id: int) -> ChatInfo:
        with db.transaction(self._svc.sessions) as s:
            c = self._row(s, chat_id)
            n = s.scalar(select(func.count(db.Message.id)).where(db.Message.chat_id == chat_id))
            return ChatInfo(c.id, c.workspace_id, c.title, _utc(c.created_at), int(n or 0))

    def delete(self, chat_id: int) -> None:
        """Remove the chat and its messages (Conflict while one of its answers is being written)."""
        with self._svc.qa.deleting(chat_id=chat_id, what=f"chat {chat_id}"):
            self._delete_row(chat_id)
        self._svc.after_delete()

    def drop(self, chat_id: int) -> None:
        """`delete` without the busy check: for the ask itself (its chat left empty)."""
        self._delete_row(chat_id)
        self._svc.after_delete()

    def _delete_row(self, chat_id: int) -> None:
        self._svc.delete_rows(f"chat {chat_id}", lambda s: s.delete(self._row(s, chat_id)))

    def messages(self, chat_id: int) -> list[MessageInfo]:
        with db.transaction(self._svc.sessions) as s:
            self._row(s, chat_id)
            rows = s.scalars(select(db.Message).where(db.Message.chat_id == chat_id)
                             .options(selectinload(db.Message.citations)).order_by(db.Message.id))
            return [message_info(m) for m in rows]

    def save_exchange(self, chat_id: int, question: str, answer: str, engine: str,
                      timings: dict, citations: list[CitationInfo], reasoning: str | None = None) -> MessageInfo:
        """The question and its answer with citations, in one transaction."""
        now = time.time()
        with db.transaction(self._svc.sessions) as s:
            chat = self._row(s, chat_id)
            if not chat.title:
                chat.title = " ".join(question.split())[:TITLE_CHARS]
            s.add(db.Message(chat_id=chat_id, role="user", text=question, engine=None,
                             timings=None, created_at=now))
            msg = db.Message(chat_id=chat_id, role="assistant", text=answer, engine=engine,
                             timings=timings, created_at=time.time(), reasoning=reasoning or None)
            s.add(msg)
            s.flush()
            live = set(s.scalars(select(db.Document.id).where(
                db.Document.id.in_([c.doc_id for c in citations if c.doc_id is not None]))))
            for i, c in enumerate(citations):
                s.add(db.Citation(
                    message_id=msg.id, position=i, doc_index=c.doc,
                    document_id=c.doc_id if c.doc_id in live else None, filename=c.filename,
                    page=c.page, page_label=c.page_label, quote=c.quote, verified=int(c.verified),
                    score=c.score, passage=c.passage, start=c.start, end=c.end, unit=c.unit))
            s.flush()
            s.refresh(msg, ["citations"])
            return message_info(msg)

    def history(self, chat_id: int) -> list[tuple[str, str]]:
        return [(m.role, m.text) for m in self.messages(chat_id)]

    @staticmethod
    def _row(s, chat_id: int) -> db.Chat:
        return db.get_row(s, db.Chat, chat_id, "chat")
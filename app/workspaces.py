"""Workspaces: named sets of documents with their chats."""
from __future__ import annotations

import time
import unicodedata
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app import db
from app.errors import Conflict, InvalidInput
from app.records import WorkspaceInfo, _utc

if TYPE_CHECKING:
    from app.services import Services

MAX_NAME = 200


def clean_name(name: str) -> str:
    """A workspace name: trimmed, control characters refused, 1..200 characters."""
    if not isinstance(name, str):
        raise InvalidInput("workspace name must be text")
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise InvalidInput("workspace name is empty")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"workspace name is longer than {MAX_NAME} characters")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidInput("workspace name contains control characters")
    return name


def new_name(name: str) -> str:
    """A name for a workspace being created or renamed: `clean_name`, and no "/" (the HTTP API
    addresses workspaces by name in its paths, where a slash cannot be told from a separator)."""
    name = clean_name(name)
    if "/" in name:
        raise InvalidInput(f"workspace name {name!r} contains '/', which a web address cannot hold in a name")
    return name


class WorkspaceService:
    def __init__(self, svc: "Services"):
        self._svc = svc

    def _info(self, s, ws: db.Workspace) -> WorkspaceInfo:
        n_docs, n_pages = s.execute(
            select(func.count(db.Document.id), func.coalesce(func.sum(db.Document.page_count), 0))
            .where(db.Document.workspace_id == ws.id)).one()
        return WorkspaceInfo(ws.id, ws.name, _utc(ws.created_at), int(n_docs), int(n_pages))

    def create(self, name: str) -> WorkspaceInfo:
        name = new_name(name)
        try:
            with db.transaction(self._svc.sessions) as s:
                ws = db.Workspace(name=name, created_at=time.time())
                s.add(ws)
                s.flush()
                return self._info(s, ws)
        except IntegrityError:
            raise Conflict(f"a workspace named {name!r} already exists") from None

    def list(self) -> list[WorkspaceInfo]:
        with db.transaction(self._svc.sessions) as s:
            return [self._info(s, ws) for ws in s.scalars(select(db.Workspace).order_by(db.Workspace.id))]

    def get(self, ws_id: int) -> WorkspaceInfo:
        with db.transaction(self._svc.sessions) as s:
            return self._info(s, self._row(s, ws_id))

    def by_name(self, name: str) -> WorkspaceInfo | None:
        with db.transaction(self._svc.sessions) as s:
            ws = s.scalar(select(db.Workspace).where(db.Workspace.name == clean_name(name)))
            return self._info(s, ws) if ws else None

    def ensure(self, name: str) -> WorkspaceInfo:
        """The workspace called `name`, created if there is none."""
        found = self.by_name(name)
        if found is not None:
            return found
        try:
            return self.create(name)
        except Conflict:             # created meanwhile by someone else
            found = self.by_name(name)
            assert found is not None
            return found

    def rename(self, ws_id: int, name: str) -> WorkspaceInfo:
        name = new_name(name)
        try:
            with db.transaction(self._svc.sessions) as s:
                ws = self._row(s, ws_id)
                ws.name = name
                s.flush()
                return self._info(s, ws)
        except IntegrityError:
            raise Conflict(f"a workspace named {name!r} already exists") from None

    def delete(self, ws_id: int) -> None:
        """Remove the workspace, its documents, pages, chats, and originals no one else uses."""
        with db.transaction(self._svc.sessions) as s:
            ws = self._row(s, ws_id)
            hashes = set(s.scalars(select(db.Document.content_hash)
                                  .where(db.Document.workspace_id == ws_id)))
            s.delete(ws)       # ON DELETE CASCADE takes documents, pages, chats, messages
        self._svc.documents.drop_unused_files(hashes)

    @staticmethod
    def _row(s, ws_id: int) -> db.Workspace:
        return db.get_row(s, db.Workspace, ws_id, "workspace")
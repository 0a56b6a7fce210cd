"""Workspaces: named sets of documents with their chats."""
from __future__ import annotations

import time
import unicodedata
from functools import partial
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete as sql_delete, func, select
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


def name_key(name: str) -> str:
    """What two workspace names must differ in to be two names: not case, Unicode form
    (NFKC: "ﬁ" is "fi", a no-break space a space), invisible format characters (a zero-width
    space) nor runs of spaces, as on macOS and Windows, where "Reports" and "reports" name one
    folder."""
    key = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join("".join(c for c in key if unicodedata.category(c) != "Cf").split())


def find_by_name(workspaces: Sequence[Any], name: str) -> Any:
    """The workspace (row or record) of `workspaces` called `name`, or None: the exact name first, else the one whose
    `name_key` matches. Two that match only by key (made before names were compared so) are
    ambiguous: Conflict naming them, to be told apart by exact name or id."""
    name = unicodedata.normalize("NFC", name).strip()       # as clean_name stores names
    exact = [w for w in workspaces if w.name == name]
    if exact:
        return exact[0]
    same = [w for w in workspaces if name_key(w.name) == name_key(name)]
    if len(same) > 1:
        listed = ", ".join(f"{w.name!r} (id {w.id})" for w in same)
        raise Conflict(f"workspace name {name!r} matches {listed}: give the exact name or the id")
    return same[0] if same else None


def new_name(name: str) -> str:
    """A name for a workspace being created or renamed: `clean_name`, and no "/" (the HTTP API
    addresses workspaces by name in its paths, where a slash cannot be told from a separator)."""
    name = clean_name(name)
    if "/" in name:
        raise InvalidInput(f"workspace name {name!r} contains '/', which a web address cannot hold in a name")
    return name


# A piece of a workspace deleted on a full disk has as many pages as its reserve has KiB: a page
# holds a few KB of text, and a delete with secure_delete FAST writes 9-14x less than the freed
# pages (bench/storage_space.py), so a piece needs well under the reserve.
PIECE_BYTES_PER_PAGE = 1024


def _delete_documents(ids: list[int], s) -> None:
    s.execute(sql_delete(db.Document).where(db.Document.id.in_(ids)))


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
                self._refuse_taken(s, name)
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
        """The workspace called `name` (see `find_by_name`: "reports" finds "Reports")."""
        name = clean_name(name)
        with db.transaction(self._svc.sessions) as s:
            ws = find_by_name(list(s.scalars(select(db.Workspace))), name)
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
                self._refuse_taken(s, name, ws_id)
                ws.name = name
                s.flush()
                return self._info(s, ws)
        except IntegrityError:
            raise Conflict(f"a workspace named {name!r} already exists") from None

    def delete(self, ws_id: int) -> None:
        """Remove the workspace, its documents, pages, chats, and originals no one else uses
        (Conflict while an answer is being written in it)."""
        hashes: set[str] = set()

        def delete(s) -> set[str]:
            ws = self._row(s, ws_id)
            hashes.update(s.scalars(select(db.Document.content_hash).where(db.Document.workspace_id == ws_id)))
            s.delete(ws)       # ON DELETE CASCADE takes documents, pages, chats, messages
            return hashes

        def documents(s) -> list:          # on a full disk: its documents a few at a time first
            self._row(s, ws_id)
            pieces, ids, pages = [], [], 0
            for doc_id, content_hash, count in s.execute(
                    select(db.Document.id, db.Document.content_hash, db.Document.page_count)
                    .where(db.Document.workspace_id == ws_id).order_by(db.Document.id)):
                hashes.add(content_hash)
                ids.append(doc_id)
                pages += count
                if pages >= self._svc.reserve.size // PIECE_BYTES_PER_PAGE:
                    pieces.append(partial(_delete_documents, ids))
                    ids, pages = [], 0
            return pieces + ([partial(_delete_documents, ids)] if ids else [])

        with self._svc.qa.deleting(ws_id=ws_id, what=f"workspace {ws_id}"):
            self._svc.delete_rows(f"workspace {ws_id}", delete, pieces=documents)
        self._svc.documents.drop_unused_files(hashes)
        self._svc.after_delete()

    @staticmethod
    def _refuse_taken(s, name: str, ws_id: int | None = None) -> None:
        """Conflict when another workspace has this name up to `name_key`. Every transaction
        holds the database's write lock from its start (BEGIN IMMEDIATE), so no other process
        can take the name between this check and the commit."""
        key = name_key(name)
        for other_id, other in s.execute(select(db.Workspace.id, db.Workspace.name)):
            if other_id != ws_id and name_key(other) == key:
                same = "" if other == name else " (names that differ only in case, spacing or Unicode form are one name)"
                raise Conflict(f"a workspace named {other!r} already exists{same}")

    @staticmethod
    def _row(s, ws_id: int) -> db.Workspace:
        return db.get_row(s, db.Workspace, ws_id, "workspace")
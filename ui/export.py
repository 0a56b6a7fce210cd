"""A chat as a Markdown file: questions, answers, each answer's citations, and the sources list."""
from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from app.records import ChatInfo, DocumentInfo, MessageInfo


def _quote_block(text: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in text.strip().splitlines())


def _one_line(text: str, limit: int = 400) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def chat_markdown(workspace: str, chat: ChatInfo | None, messages: Sequence[MessageInfo],
                  documents: Sequence[DocumentInfo], engine: dict | None = None) -> str:
    """The whole chat as Markdown. Citations keep the answer's "[doc N, p. M]" markers and are
    listed after each answer (file, physical page, printed label, verified or not, quote, passage)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = chat.title if chat else "Chat"
    lines = [f"# {title}", "", f"Workspace: **{workspace}** · exported {now}"]
    if engine:
        lines[-1] += f" · engine: {engine.get('engine')}" + (f" ({engine['model']})" if engine.get("model") else "")
    lines.append("")
    turn = 0
    for msg in messages:
        if msg.role == "user":
            turn += 1
            lines += [f"## Question {turn}", "", _quote_block(msg.text), ""]
            continue
        stopped = bool((msg.timings or {}).get("cancelled"))
        if msg.reasoning:
            lines += ["<details><summary>Reasoning</summary>", "", msg.reasoning.strip(), "", "</details>", ""]
        lines += ["**Answer** _(stopped)_" if stopped else "**Answer**", "", msg.text.strip(), ""]
        if msg.citations:
            lines += ["Citations:", ""]
            for i, c in enumerate(msg.citations, 1):
                verdict = "verified" if c.verified else "**unverified**: quote not found on the page"
                gone = " (removed from the workspace since)" if c.doc_id is None and c.filename else ""
                lines.append(f"{i}. [doc {c.doc}] {c.filename or 'unknown document'}{gone}, {c.where('page')}: "
                             f"{verdict}")
                if c.quote:
                    lines.append(f'   - quote: "{_one_line(c.quote)}"')
                if c.passage:
                    lines.append(f'   - passage on the page: "{_one_line(c.passage)}"')
            lines.append("")
        if msg.timings:
            t = msg.timings
            figures = []
            if t.get("cached_tokens") or t.get("prefilled_tokens"):     # (an engine that reads no prompt: none)
                figures.append(f"{t.get('cached_tokens', 0)} tokens from cache, {t.get('prefilled_tokens', 0)} prefilled")
            if t.get("ttft_s") is not None:
                figures.append(f"first token {t['ttft_s']:.2f} s")
            if t.get("tokens_per_s") is not None:
                figures.append(f"{t['tokens_per_s']:.1f} tok/s")
            if figures:
                lines += [f"_{'; '.join(figures)}_", ""]
    lines += ["## Sources", ""]
    if documents and any(m.citations for m in messages):
        lines += ["The workspace's documents when exported; an answer's \"doc N\" is the document's place when "
                  "it was asked (the citations above name its file).", ""]
    if not documents:
        lines.append("(no documents)")
    for d in documents:
        lines.append(f"{d.index}. **{d.title or d.filename}** ({d.filename}), {d.extent}, "
                     f"sha256 `{d.content_hash[:16]}`")
    return "\n".join(lines).rstrip() + "\n"


def safe_filename(text: str, suffix: str = ".md") -> str:
    """`text` as a file name: letters, digits and their combining marks (Arabic harakat, Hebrew niqqud,
    Indic vowel signs, which \\w does not match) kept, every other run a "-"."""
    kept = "".join(c if c.isalnum() or c in "_.-" or unicodedata.category(c)[0] == "M" else " " for c in text)
    stem = re.sub(r" +", "-", kept).strip("-.")[:60] or "chat"
    return stem + suffix


def write_export(folder: Path, name: str, markdown: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe_filename(name)
    path.write_text(markdown, encoding="utf-8")
    return path

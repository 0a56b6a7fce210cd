"""Prompt assembly as token segments whose boundaries never move.

    [preamble] [doc 1] [doc 2] ... [doc n] [tail = end of the documents block + conversation + question]

Each segment is tokenised on its own, so the tokens of the preamble and of doc k depend only on the
preamble and on docs 1..k: appending a document or asking another question leaves them identical,
and a saved model state for that prefix can be reused (app/state_store keys on the token ids and on
`PROMPT_FORMAT_VERSION`).

The format comes from the checkpoint's chat template: when it takes `documents` (Jamba 1.5 / 1.7)
they go where it puts them ("checkpoint"); when it does not (Jamba2, Jamba Reasoning: ChatML turns)
they go at the end of its system message, after the instructions ("system"), so the model still
sees the turn format it was trained on. Only a tokenizer with no usable chat template gets the
built-in Jamba 1.5 template below ("builtin"). The template is rendered once with sentinel
titles and texts; the rendered text is cut right before the first title (end of the preamble; spaces
before it go with the title, as a tokenizer joins a space to the word after it: "Title: [doc 1]" is
"Title:", " [doc" as in the whole prompt) and right after each document's text (end of that
document's segment). Unlike the official template, which puts documents before the last user turn, we
always keep documents first and the conversation after them, so the document prefix is the same for
every turn; the history is spliced in between the documents block and the question, in the template's
own turn format.
"""
from __future__ import annotations

import hashlib
import logging
import re
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest.model import Document, Page
from ingest.normalize import drop_bidi_controls

log = logging.getLogger(__name__)

PROMPT_FORMAT_VERSION = "jambadocs-prompt-2"   # 2: documents in the system message of a ChatML template

SYSTEM_PROMPT = (
    "You answer questions about the documents below. Each document's title starts with its number, "
    "as in [doc 2], and each page starts with a page marker, as in [p. 5]. Answer only from the "
    "documents. After each statement, cite the page it comes from as [doc N, p. M], with N the "
    "document number and M the page from the marker before the passage. If the documents do not "
    "contain the answer, say so."
)

# Jamba 1.5 chat format, used when the checkpoint has no chat template that can be used.
BUILTIN_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system_message = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system_message = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{{- '<|bom|><|system|> ' + system_message -}}"
    "{%- if documents -%}"
    "{{- '\\n\\n<documents>\\n# Documents\\n\\nYou can use the following documents for reference:\\n\\n' -}}"
    "{%- for doc in documents -%}"
    "{{- '## Document ID: ' ~ loop.index ~ '\\nTitle: ' ~ doc['title'] ~ '\\nText: ' ~ doc['text'] ~ '\\n\\n' -}}"
    "{%- endfor -%}"
    "{{- '</documents>' -}}"
    "{%- endif -%}"
    "{{- '<|eom|>' -}}"
    "{%- for message in turns -%}"
    "{{- '<|bom|><|' + message['role'] + '|> ' + message['content'] + '<|eom|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|bom|><|assistant|>' -}}{%- endif -%}"
)

_TITLE = "\u27e6title{}\u27e7"      # ⟦title1⟧: sentinels no real template or text produces
_TEXT = "\u27e6text{}\u27e7"
_QUESTION = "\u27e6question{}\u27e7"

# The documents block appended to the system message for templates that take no `documents`.
SYSTEM_DOCUMENTS_OPEN = "\n\n<documents>\n"
SYSTEM_DOCUMENT = "{title}\n{text}\n\n"
SYSTEM_DOCUMENTS_CLOSE = "</documents>"


class PromptFormatError(ValueError):
    """The chat template cannot be cut into stable segments."""


@dataclass
class DocumentInput:
    """What the prompt needs of a document: its title and the (possibly budget-selected) pages."""

    title: str
    pages: list[Page]
    filename: str = ""
    page_count: int = 0          # pages in the whole document (0: len(pages)); > len(pages) when cut

    @classmethod
    def from_document(cls, doc: Document, pages: Sequence[Page] | None = None) -> DocumentInput:
        return cls(doc.title, list(doc.pages if pages is None else pages), doc.filename, len(doc.pages))


@dataclass
class PromptSegments:
    preamble: list[int]
    documents: list[list[int]]
    tail: list[int]
    format: str = "builtin"                  # "checkpoint" | "system" | "builtin" (PromptBuilder.format)
    version: str = PROMPT_FORMAT_VERSION
    texts: list[str] = field(default_factory=list, repr=False)   # the rendered text of every segment
    thinking: bool = False                   # the prompt ends inside an open <think> block (reasoning models)
    # token offsets in `tail` where the conversation's earlier prompts ended (each turn's prompt up
    # to its generation prompt is a prefix of this one): a state kept after an earlier prompt is
    # continued from there, and every path prefills the tail in these same pieces
    turn_ends: list[int] = field(default_factory=list)

    def ids(self) -> list[int]:
        out = list(self.preamble)
        for doc in self.documents:
            out.extend(doc)
        out.extend(self.tail)
        return out

    def boundaries(self) -> list[int]:
        """Token offset where each document segment starts, then where the tail starts."""
        pos, out = len(self.preamble), []
        for doc in self.documents:
            out.append(pos)
            pos += len(doc)
        out.append(pos)
        return out

    def __len__(self) -> int:
        return len(self.preamble) + sum(map(len, self.documents)) + len(self.tail)

    def tail_pieces(self) -> list[list[int]]:
        """The tail cut at `turn_ends`: one piece per turn of the conversation (the last one ends
        with this question's generation prompt)."""
        cuts = [0, *self.turn_ends, len(self.tail)]
        return [self.tail[a:b] for a, b in zip(cuts, cuts[1:])]


def citation_labels(pages: Sequence[Page]) -> list[str]:
    """What the page markers show, per page: the printed label when the document's labels are all
    present and unique (so `p. iv` or `p. 12` names one page), else the physical page number."""
    labels = [p.label.strip() if p.label else "" for p in pages]
    if all(labels) and len(set(labels)) == len(labels):
        return labels
    return [str(p.number) for p in pages]


def document_text(doc: DocumentInput | Document) -> str:
    """The document body: every page behind its marker; a run of left-out pages is shown as such."""
    if isinstance(doc, Document):
        doc = DocumentInput.from_document(doc)
    cites = dict(zip((p.number for p in doc.pages), citation_labels(doc.pages)))
    total = doc.page_count or len(doc.pages)
    parts: list[str] = []
    expected = 1
    for page in doc.pages:
        if page.number > expected:
            parts.append(_gap(expected, page.number - 1))
        parts.append(f"[p. {cites[page.number]}]\n{page.text}".rstrip())
        expected = page.number + 1
    if expected <= total:
        parts.append(_gap(expected, total))
    return "\n\n".join(parts)


def _gap(first: int, last: int) -> str:
    what = f"page {first}" if first == last else f"pages {first}-{last}"
    return f"[... {what} not included ...]"


def document_title(doc: DocumentInput | Document, number: int) -> str:
    name = f" ({doc.filename})" if doc.filename and doc.filename != doc.title else ""
    return f"[doc {number}] {doc.title}{name}"


class PromptBuilder:
    """Builds `PromptSegments` for a tokenizer (a transformers PreTrainedTokenizerFast)."""

    def __init__(self, tokenizer: Any, system_prompt: str = SYSTEM_PROMPT, cache_tokens: int = 8_000_000):
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        # The first usable of: the checkpoint's documents template, its chat template with the
        # documents in the system message, the built-in Jamba 1.5 template.
        candidates = [(_documents_template(tokenizer), "checkpoint"), (_chat_template(tokenizer), "system")]
        problems = []
        for template, fmt in candidates:
            if template is None:
                continue
            self.template, self.format = template, fmt       # _render reads the format
            try:
                self._check_stable(template)
                break
            except PromptFormatError as err:
                log.info("chat template not used as %r: %s", fmt, err)
                problems.append(str(err))
        else:
            if problems:        # a model trained on another turn format answers worse in this one: say so
                log.warning("the checkpoint's chat template cannot be used (%s); prompts use the built-in "
                            "Jamba 1.5 format instead", problems[-1])
            self.template, self.format = BUILTIN_TEMPLATE, "builtin"
            self._check_stable(self.template)
        self._anchor = _continuation_anchor(tokenizer)
        self._specials = _special_tokens_pattern(tokenizer)
        # document segment ids by text digest, as compact int32 arrays; at most `cache_tokens` in all
        self._cache: OrderedDict[str, array] = OrderedDict()
        self._cache_tokens = cache_tokens
        self._cached = 0

    # ------------------------------------------------------------ public

    def build(self, documents: Sequence[DocumentInput | Document], question: str,
              history: Sequence[tuple[str, str]] = ()) -> PromptSegments:
        """Segments for `documents` (in order), prior `history` [(role, text)] and the `question`."""
        seg, doc_texts = self.outline(documents, question, history)
        used: set[str] = set()                  # cache keys this build has used: never evicted by it
        seg.documents = [self._encode_cached(t, used) for t in doc_texts]
        seg.texts = [seg.texts[0], *doc_texts, seg.texts[-1]]
        return seg

    def outline(self, documents: Sequence[DocumentInput | Document], question: str,
                history: Sequence[tuple[str, str]] = ()) -> tuple[PromptSegments, list[str]]:
        """(`build`'s segments less the documents, each document's segment text): no document is
        tokenised (`encode_continuation` of a text gives `build`'s segment)."""
        docs = [d if isinstance(d, DocumentInput) else DocumentInput.from_document(d) for d in documents]
        seg, doc_frames = self._outline(len(docs), question, history)
        return seg, [self._fill(frame, i, d) for i, (frame, d) in enumerate(zip(doc_frames, docs), start=1)]

    def frame(self, n_docs: int, question: str, history: Sequence[tuple[str, str]] = ()) -> PromptSegments:
        """The segments `build` makes for `n_docs` documents, less the documents (`documents` empty):
        the preamble, and the tail with the conversation and question, neither of which depends on
        what the documents hold."""
        return self._outline(n_docs, question, history)[0]

    def documents_over(self, documents: Sequence[DocumentInput | Document], question: str, limit: int) -> bool:
        """Do the document segments `build` makes take more than `limit` tokens together? They are
        tokenised smallest first and only until they are over: a set far larger than the context is
        not tokenised whole to learn that it does not fit (`build` finds the segments done here cached)."""
        docs = [d if isinstance(d, DocumentInput) else DocumentInput.from_document(d) for d in documents]
        if not docs:
            return limit < 0
        frames = self._frames(self.template, len(docs), self._inert(drop_bidi_controls(question)))[1]
        texts = sorted((self._fill(f, i, d) for i, (f, d) in enumerate(zip(frames, docs), start=1)), key=len)
        used: set[str] = set()
        total = 0
        for text in texts:
            total += len(self._encode_cached(text, used))
            if total > limit:
                return True
        return False

    def _outline(self, n_docs: int, question: str,
                 history: Sequence[tuple[str, str]]) -> tuple[PromptSegments, list[str]]:
        """(the segments without documents, each document's frame with its sentinels)."""
        question = self._inert(drop_bidi_controls(question))
        history = [(role, self._inert(drop_bidi_controls(text))) for role, text in history]
        if n_docs:
            preamble, doc_frames, after_docs = self._frames(self.template, n_docs, question)
        else:
            preamble, doc_frames, after_docs = "", [], self._render(self.template, 0, question)
        tail = self._splice_history(after_docs, question, history)
        tail_ids, turn_ends = [], []
        for i, piece in enumerate(self._turn_pieces(tail, n_docs, history)):
            if i:
                turn_ends.append(len(tail_ids))
            tail_ids += self._encode(piece, continuation=bool(preamble) or i > 0)
        seg = PromptSegments(
            preamble=self._encode(preamble, continuation=False) if preamble else [],
            documents=[], tail=tail_ids, format=self.format, texts=[preamble, tail],
            thinking=opens_thinking(tail), turn_ends=turn_ends)
        return seg, doc_frames

    def count_tokens(self, text: str) -> int:
        return len(self.encode_continuation(text))

    def document_tokens(self, doc: DocumentInput | Document) -> int:
        """Tokens of `doc`'s segment as the first document of a prompt (its title frame, page
        markers and text; a later position's number may add a token). Not cached: counting a
        document must not evict the segments questions reuse."""
        doc = doc if isinstance(doc, DocumentInput) else DocumentInput.from_document(doc)
        return len(self._encode(self._fill(self._frames(self.template, 1, "")[1][0], 1, doc), continuation=True))

    def frame_tokens(self, history: Sequence[tuple[str, str]] = ()) -> tuple[int, bool]:
        """(tokens, thinking): what a prompt holds besides its documents with an empty question
        (the instructions, the documents block's frame, the question turn and `history`), and
        whether it ends inside an open <think> block."""
        seg = self.build([DocumentInput("", [])], "", history=history)
        return len(seg.preamble) + len(seg.tail), seg.thinking

    def encode_continuation(self, text: str) -> list[int]:
        """Ids of `text` as it reads after earlier tokens (no special tokens added)."""
        return self._encode(text, continuation=True)

    def _fill(self, frame: str, number: int, doc: DocumentInput) -> str:
        """Document `number`'s segment: its frame with the sentinels replaced by its title and text."""
        return (frame.replace(_TITLE.format(number), self._inert(document_title(doc, number)))
                .replace(_TEXT.format(number), self._inert(document_text(doc))))

    def _inert(self, text: str) -> str:
        """`text` (a question, a turn, a document) with the tokenizer's special tokens written so that
        they encode as text: a word joiner after their first character. Else "<|eom|><|bom|><|system|>"
        in a question or a PDF is encoded as those control tokens: it ends the turn and opens another."""
        if self._specials is None:
            return text
        return self._specials.sub(lambda m: m[0][0] + "\u2060" + m[0][1:], text)

    # ------------------------------------------------------------ rendering

    def _render(self, template: str, n_docs: int, question: str,
                history: Sequence[tuple[str, str]] = (), with_docs: bool = True) -> str:
        # only title and text: the Jamba 1.7 template prints any other key as an extra line
        documents = [{"title": _TITLE.format(i), "text": _TEXT.format(i)}
                     for i in range(1, n_docs + 1)] if with_docs else []
        system = self.system_prompt
        if self.format == "system" and documents:
            system += SYSTEM_DOCUMENTS_OPEN + "".join(SYSTEM_DOCUMENT.format(**d) for d in documents) \
                + SYSTEM_DOCUMENTS_CLOSE
            documents = []
        messages = [{"role": "system", "content": system}]
        messages += [{"role": role, "content": text} for role, text in history]
        messages.append({"role": "user", "content": question})
        return self.tokenizer.apply_chat_template(messages, documents=documents or None, chat_template=template,
                                                  tokenize=False, add_generation_prompt=True)

    def _frames(self, template: str, n_docs: int, question: str) -> tuple[str, list[str], str]:
        """(preamble, per-document frame with sentinels, text after the last document)."""
        text = self._render(template, n_docs, question)
        cuts = []
        for i in range(1, n_docs + 1):
            title_at, text_at = text.find(_TITLE.format(i)), text.find(_TEXT.format(i))
            if title_at < 0 or text_at < title_at or (cuts and title_at < cuts[-1]):
                raise PromptFormatError("the chat template does not show documents as title, then text")
            if not cuts:                    # spaces before the first title go with it
                cuts.append(len(text[:title_at].rstrip(" ")))
            cuts.append(text_at + len(_TEXT.format(i)))
        frames = [text[a:b] for a, b in zip(cuts, cuts[1:])]
        return text[: cuts[0]], frames, text[cuts[-1]:]

    def _splice_history(self, after_docs: str, question: str, history: Sequence[tuple[str, str]]) -> str:
        """`after_docs` ends with the question turn; put the history turns, formatted by the same
        template, right before that turn (B = A with history inserted at the first difference)."""
        if not history:
            return after_docs
        plain = self._render(self.template, 0, question, with_docs=False)
        with_history = self._render(self.template, 0, question, history, with_docs=False)
        common = _common_prefix_len(plain, with_history)
        question_turn = plain[common:]
        if not with_history.endswith(question_turn) or not after_docs.endswith(question_turn):
            raise PromptFormatError("the chat template puts the conversation in an unexpected place")
        history_text = with_history[common: len(with_history) - len(question_turn)]
        return after_docs[: len(after_docs) - len(question_turn)] + history_text + question_turn

    def _turn_pieces(self, tail: str, n_docs: int, history: Sequence[tuple[str, str]]) -> list[str]:
        """`tail` cut where the prompt of each earlier user turn of `history` ended; the whole tail
        when any of those prompts is not a prefix of it (a template that renders an earlier turn
        differently once answered, e.g. one that drops a reasoning block)."""
        cuts = []
        for u, (role, text) in enumerate(history):
            if role != "user":
                continue
            after_docs = self._frames(self.template, n_docs, text)[2] if n_docs else \
                self._render(self.template, 0, text)
            earlier = self._splice_history(after_docs, text, history[:u])
            if not tail.startswith(earlier) or len(earlier) <= (cuts[-1] if cuts else 0) or len(earlier) >= len(tail):
                return [tail]
            cuts.append(len(earlier))
        bounds = [0, *cuts, len(tail)]
        return [tail[a:b] for a, b in zip(bounds, bounds[1:])]

    def _check_stable(self, template: str) -> None:
        """Refuse a template whose preamble or document frames change with more documents or
        another question (then its documents could not be cached as a prefix)."""
        try:
            p2, f2, _ = self._frames(template, 2, _QUESTION.format(1))
            p3, f3, _ = self._frames(template, 3, _QUESTION.format(2))
        except PromptFormatError:
            raise
        except Exception as err:       # a template that fails to render: jinja errors of all kinds
            raise PromptFormatError(f"the chat template cannot be rendered ({err})") from err
        if p2 != p3 or f2 != f3[:2] or _QUESTION.format(1) in "".join([p2, *f2]):
            raise PromptFormatError("documents are not a stable prefix in this chat template")

    # ------------------------------------------------------------ tokenising

    def _encode(self, text: str, continuation: bool) -> list[int]:
        """Token ids of `text` with no special tokens added. A continuation segment is tokenised
        as it would be after a special token, so tokenizers that add a dummy prefix space at the
        start of the input ("▁") do not add one at every segment start."""
        if not text:
            return []
        if not continuation or self._anchor is None:
            return self._raw_encode(text)
        anchor_text, anchor_ids = self._anchor
        ids = self._raw_encode(anchor_text + text)
        if ids[: len(anchor_ids)] != anchor_ids:
            raise PromptFormatError("tokenizer merged the anchor token into the text")
        return ids[len(anchor_ids):]

    def _raw_encode(self, text: str) -> list[int]:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:      # the fast tokenizer itself: no max-length warnings, less overhead
            return list(backend.encode(text, add_special_tokens=False).ids)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _encode_cached(self, text: str, used: set[str]) -> list[int]:
        """Ids of a document segment, cached: every question re-builds the same documents."""
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        hit = self._cache.get(key)
        if hit is not None:
            used.add(key)
            self._cache.move_to_end(key)
            return hit.tolist()
        ids = self._encode(text, continuation=True)
        if len(ids) > self._cache_tokens:
            return ids
        # Evict only entries this build has not used: a document set larger than the cache keeps
        # its first documents cached, instead of each build evicting what the next one needs
        # first (plain LRU under a repeated scan: every build re-tokenised every document).
        while self._cached + len(ids) > self._cache_tokens and self._cache:
            oldest = next(iter(self._cache))
            if oldest in used:
                return ids
            self._cached -= len(self._cache.pop(oldest))
        self._cache[key] = array("i", ids)
        self._cached += len(ids)
        used.add(key)
        return ids


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def opens_thinking(prompt_end: str) -> bool:
    """Does the prompt end inside an open <think> block? (Jamba Reasoning's template opens one
    in its generation prompt: the answer then starts with the reasoning and closes it.)"""
    at = prompt_end.rfind(THINK_OPEN)
    return at >= 0 and prompt_end.rfind(THINK_CLOSE) < at and not prompt_end[at + len(THINK_OPEN):].strip()


def _chat_template(tokenizer: Any) -> str | None:
    """The checkpoint's (default) chat template, if it has one."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    return template if isinstance(template, str) and template.strip() else None


def _documents_template(tokenizer: Any) -> str | None:
    """The checkpoint's chat template if it takes `documents` (a named 'rag' one first)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("rag") or template.get("default")
    if isinstance(template, str) and "documents" in template:
        return template
    return None


def _special_tokens_pattern(tokenizer: Any) -> re.Pattern[str] | None:
    """A pattern of the tokenizer's special tokens (its added tokens marked special), longest first."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    names = {t.content for t in added.values() if getattr(t, "special", False) and len(t.content) > 1}
    names |= {t for t in getattr(tokenizer, "all_special_tokens", []) if isinstance(t, str) and len(t) > 1}
    if not names:
        return None
    return re.compile("|".join(map(re.escape, sorted(names, key=len, reverse=True))))


def _continuation_anchor(tokenizer: Any) -> tuple[str, list[int]] | None:
    """A special token to tokenise continuation segments behind, when the tokenizer adds a dummy
    prefix at the start of the input ('a' -> '▁a'); None when plain encoding is already exact."""
    ids = tokenizer.encode("a", add_special_tokens=False)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    if pieces == ["a"]:
        return None
    for anchor in (tokenizer.eos_token, tokenizer.bos_token, tokenizer.unk_token):
        if anchor:
            anchor_ids = list(tokenizer.encode(anchor, add_special_tokens=False))
            if len(anchor_ids) == 1:
                return anchor, anchor_ids
    return None


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i

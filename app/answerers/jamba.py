"""The bundled-engine answerer: Jamba over the whole document set, reusing stored prefix states.

A question walks the chain ``[preamble][doc 1]..[doc N]`` of the prompt:

1. the last document-prefix state of this process is kept in RAM; if the new chain
   extends it, nothing is read from disk;
2. else the longest stored prefix is restored from the state store (app/state_store.py);
3. the remaining documents are prefilled one at a time, their boundaries stored (each entry
   long enough that its Mamba state adds at most 10% to its K/V; the last one always);
4. the conversation + question tail is prefilled by generate() and the answer streamed.

Appending a document prefills only that document; removing one reuses the prefix before
it; a follow-up question prefills only the new tail.
"""
from __future__ import annotations

import hashlib
import logging
import math
import queue
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from app.answerers.base import HISTORY_SHARE, AnswerEvent, AnswerRequest, drop_oldest_turns, with_dropped_turns
from app.errors import EngineUnavailable, InvalidInput
from app.reasoning import ANSWER, THINKING, ThinkingSplitter
from app.state_store import NoStore, StateStore, chain_keys, open_or_none
from ingest.prompt import THINK_CLOSE

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.25  # at most this often a prefill progress event
# When the documents do not fit, a fresh page selection leaves this many tokens of the context free
# (fit_documents caps it at a quarter of the budget), so that follow-up turns can keep the same pages,
# and their stored states. The documents' state keeps as many spare K/V rows, beyond the first
# question and answer, so that follow-ups append to it in place.
FOLLOW_UP_TOKENS = 2048
# Pages `count_pages` counts in one batch: enough for the tokenizer's threads, few enough that
# counting stops soon after it is told to (a document deleted meanwhile).
COUNT_PAGES_AT_ONCE = 64
# Chain keys of document segments remembered (`_prefix_keys`): a document list finds them untokenised.
KEYS_KEPT = 4096


@dataclass
class _WarmPrefix:
    """The last document-prefix state of this process, the chain keys it stands for, and the last
    stored boundary on that chain (key "" and 0 tokens when none is)."""

    keys: list[str]
    state: Any
    stored_key: str = ""
    stored_end: int = 0


@dataclass
class _Turn:
    """The state after the last answer's prompt (documents ``keys`` + the tail ``pieces``): the
    next question of that conversation continues it, prefilling only the answer and itself."""

    keys: list[str]
    pieces: list[list[int]]
    state: Any


@dataclass
class _Plan:
    segments: list[list[int]]  # [preamble, doc 1, ...]: the cached chain
    tail_pieces: list[list[int]]  # conversation + question, cut where each earlier turn's prompt ended
    omitted: dict | None  # what the budget left out (summary, documents), None when everything fit
    thinking: bool = False  # the prompt opened a <think> block (reasoning models)
    texts: list[str] = field(default_factory=list)  # the documents' segment texts

    @property
    def tail_tokens(self) -> int:
        return sum(map(len, self.tail_pieces))


@dataclass
class _Output:
    """What the generation of one answer has produced (see JambaAnswerer._generate)."""

    splitter: ThinkingSplitter = field(default_factory=ThinkingSplitter)
    t_first: float | None = None
    n_first: int = 0  # tokens generated when the first text piece came out
    n_new: int = 0
    answer_from: int | None = None  # tokens generated before the answer's first piece
    finish_reason: str | None = None
    closed_by: str | None = None  # the <think> block was closed by "model" | "budget" | "none" (never)
    thinking_tokens: int = 0
    sampling: dict = field(default_factory=dict)  # {"temperature", "top_p", "seed"} it was decoded with
    prompt_state: Any = None  # the state after the prompt (the conversation's next turn continues it)


class JambaAnswerer:
    """Answerer on the bundled engine (``settings.model``: checkpoint folder or hub id)."""

    name = "jamba"
    MAX_STATE_OVERHEAD = 0.10  # Mamba bytes per stored entry, at most this share of its K/V bytes

    def __init__(self, settings: Any, engine: Any = None, store: StateStore | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self._store = store
        self._builder = None
        self._counter = None
        self._keys: OrderedDict[bytes, str] = OrderedDict()   # see _prefix_keys
        self._warm: _WarmPrefix | None = None
        self._turn: _Turn | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one engine: questions run one after the other
        self.load_s: float | None = None
        self.load_progress: tuple[str, int, int] | None = None  # (stage, done, total) while the checkpoint loads
        self._stop_loading = threading.Event()

    # ---- lazily built parts ----------------------------------------------------------------
    @property
    def engine(self) -> Any:
        with self._load_lock:
            if self._engine is None:
                from engine import Cancelled, EngineError, load_engine

                path = resolve_model(self.settings.model, getattr(self.settings, "models_dir", None))
                t0 = time.perf_counter()
                try:
                    self._engine = load_engine(path, device=self.settings.device, dtype=self.settings.dtype,
                                               quantize=self.settings.quantize, progress=self._loading,
                                               cancel=self._stop_loading)
                except Cancelled:
                    raise EngineUnavailable("loading the checkpoint was stopped: jambadocs is stopping") from None
                except EngineError as exc:  # CheckpointError (bad folder) included
                    raise EngineUnavailable(f"cannot load the Jamba checkpoint: {exc}") from exc
                self.load_s = time.perf_counter() - t0
            return self._engine

    def _loading(self, stage: str, done: int, total: int) -> None:
        self.load_progress = (stage, done, total)

    def stop_loading(self) -> None:
        """The process is stopping: a checkpoint being loaded stops before its next tensor (its start
        fails with EngineUnavailable), and none is loaded from now on."""
        self._stop_loading.set()

    @property
    def store(self) -> StateStore | NoStore:
        """The state store, opened on first use; a NoStore (answers computed in full, one warning)
        when it cannot be opened."""
        with self._load_lock:
            if self._store is None:
                self._store = open_or_none(Path(self.settings.data_dir) / "states",
                                           getattr(self.settings, "cache_bytes", None))
            return self._store

    @property
    def builder(self) -> Any:
        if self._builder is None:
            from ingest.prompt import PromptBuilder

            self._builder = PromptBuilder(self.engine.tokenizer)
        return self._builder

    # ---- Answerer protocol -----------------------------------------------------------------
    def info(self) -> dict:
        eng = self.engine
        return {"engine": self.name, "model": str(self.settings.model), "device": str(getattr(eng, "device", "")),
                "dtype": str(getattr(eng, "dtype", "")).replace("torch.", ""), "max_context": eng.max_context,
                "decode": getattr(eng, "decode_kernels", None), "quantize": self.settings.quantize,
                "fingerprint": eng.fingerprint}

    def count_tokens(self, text: str) -> int:
        return len(self.engine.tokenizer(text, add_special_tokens=False)["input_ids"])

    def document_tokens(self, doc: Any) -> int:
        """Tokens `doc` takes in the prompt: title frame, page markers and text."""
        return self.builder.document_tokens(doc)

    def reserved_tokens(self, max_new_tokens: int) -> int:
        """Context tokens the documents cannot have with a short question and no chat: the
        instructions and question turn, the answer, and a reasoning model's thinking budget
        (as `_plan` reserves them)."""
        frame, thinking = self.builder.frame_tokens()
        return frame + max_new_tokens + (self._thinking_budget() if thinking else 0)

    def answer(self, req: AnswerRequest) -> Iterator[AnswerEvent]:
        eng = self.engine
        with self._run_lock:
            yield from self._answer(eng, req)

    def cached_documents(self, documents: Sequence[Any], compute: bool = True) -> list[bool]:
        """Per document (workspace order): is the prefix up to and including it stored? For a set
        larger than the context, also as the last answer read it (the pages it kept). Not
        `compute`: no document is tokenised, one whose chain key was not computed before (by a call
        with `compute`) is taken as not stored."""
        from ingest.budget import document_set_key
        from ingest.prompt import DocumentInput

        eng = self.engine
        cached = self._cached_prefix(documents, compute)
        kept = self.store.selection(document_set_key(documents, eng.fingerprint))
        if kept is not None and len(kept) == len(documents):
            as_read = [DocumentInput.from_document(d, [p for p in d.pages if p.number in numbers])
                       for d, numbers in zip(documents, map(set, kept))]
            # a document none of whose pages were read is not in the cached prompt, whatever its segment
            cached = [a or (b and bool(n)) for a, b, n in zip(cached, self._cached_prefix(as_read, compute), kept)]
        return cached

    def _cached_prefix(self, documents: Sequence[Any], compute: bool) -> list[bool]:
        keys, first_doc = self._prefix_keys(documents, compute)   # (first_doc: 1 with a preamble, else 0)
        depth = self.store.stored_depth(keys)
        if self._warm_matches(keys):
            depth = max(depth, len(self._warm.keys))
        return [first_doc + i < depth for i in range(len(documents))]

    def _prefix_keys(self, documents: Sequence[Any], compute: bool) -> tuple[list[str], int]:
        """(chain keys of the documents' prefix: the preamble, then each document's segment, each
        remembered by its parent and segment text; keys before the first document). Not `compute`:
        the keys up to the first one not remembered (no document is tokenised)."""
        from ingest.prompt import PROMPT_FORMAT_VERSION

        fingerprint = computed_by(self.engine)
        seg, texts = self.builder.outline(documents, "?")   # document segments do not depend on the question
        keys = chain_keys(fingerprint, PROMPT_FORMAT_VERSION, [seg.preamble]) if len(seg.preamble) else []
        for text in texts:
            parent = keys[-1] if keys else ""
            key = self._keys.get(_memo_key(parent, text))
            if key is None:
                if not compute:
                    break
                (key,) = chain_keys(fingerprint, PROMPT_FORMAT_VERSION, [self.builder.encode_continuation(text)],
                                    parent)
                self._remember_key(parent, text, key)
            keys.append(key)
        return keys, int(len(seg.preamble) > 0)

    def _remember_key(self, parent: str, text: str, key: str) -> None:
        """Keep `key`: the chain key of the document segment `text` after the prefix `parent`."""
        self._keys[_memo_key(parent, text)] = key
        while len(self._keys) > KEYS_KEPT:
            self._keys.popitem(last=False)

    # ---- the walk --------------------------------------------------------------------------
    def _answer(self, eng: Any, req: AnswerRequest) -> Iterator[AnswerEvent]:
        from engine import Cancelled
        from ingest.prompt import PROMPT_FORMAT_VERSION

        t0 = time.perf_counter()
        plan = yield from self._plan(eng, req)
        keys = chain_keys(computed_by(eng), PROMPT_FORMAT_VERSION, plan.segments)
        first = len(keys) - len(plan.texts)
        for i, text in enumerate(plan.texts):            # for the cached flags of a listing: `_prefix_keys`
            self._remember_key(keys[first + i - 1] if first + i else "", text, keys[first + i])
        ends = _cumsum(len(s) for s in plan.segments)  # prefix tokens at the end of each segment
        # the conversation's earlier turns continue the last answer's prompt when it is theirs; a kept
        # state nobody continues is dropped now (alive, it would make the prefills below copy the K/V)
        pieces, turn, self._turn = plan.tail_pieces, self._turn, None
        done_pieces = len(turn.pieces) if turn is not None and turn.keys == keys \
            and len(turn.pieces) < len(pieces) and pieces[:len(turn.pieces)] == turn.pieces else 0
        turn_state = turn.state if done_pieces else None
        del turn
        conversation_tokens = sum(map(len, pieces[:done_pieces]))  # continued, not prefilled
        to_converse = sum(map(len, pieces[done_pieces:-1]))          # earlier turns still to prefill

        # 1-2: restore the longest known prefix (RAM first, then disk)
        t_restore = time.perf_counter()
        on_disk = self.store.stored_depth(keys)
        use_ram = self._warm_matches(keys) and len(self._warm.keys) >= on_disk
        if on_disk and not use_ram:
            yield AnswerEvent(kind="progress", stage="restore", done=0, total=ends[on_disk - 1])
        tail_room = self._tail_room(plan, req)
        warm, restored_bytes, source = self._restore(eng, keys, ends, use_ram, room=tail_room)
        restore_s = time.perf_counter() - t_restore
        state, depth = (warm.state, len(warm.keys)) if warm else (None, 0)
        stored_key, stored_end = (warm.stored_key, warm.stored_end) if warm else ("", 0)
        cached_tokens = ends[depth - 1] if depth else 0
        yield AnswerEvent(kind="progress", stage="restore", done=cached_tokens, total=ends[-1] if ends else 0)

        # 3: prefill the remaining documents one by one, storing boundaries (see _min_entry_tokens)
        t_prefill = time.perf_counter()
        to_prefill = (ends[-1] if ends else 0) - cached_tokens
        total = to_prefill + to_converse  # what the progress events count: documents, then earlier turns
        min_tokens = self._min_entry_tokens(eng)
        stored_bytes = 0
        for i in range(depth, len(plan.segments)):
            if req.cancel is not None and req.cancel.is_set():
                return
            offset = ends[i - 1] if i else 0
            try:
                state = yield from self._prefill(eng, plan.segments[i], state, done=offset - cached_tokens,
                                                 total=total, started=t_prefill, cancel=req.cancel,
                                                 room=ends[-1] - ends[i] + tail_room)
            except Cancelled:
                return  # the boundaries stored so far stay
            if ends[i] - stored_end >= min_tokens or i == len(plan.segments) - 1:
                if stored_key and self.store.entry(stored_key) is None:  # evicted meanwhile
                    stored_key, stored_end = "", 0  # store this boundary's whole state instead
                blob = (state.since(stored_end) if stored_end else state).to_bytes()
                if self.store.put(keys[i], stored_key, eng.fingerprint, i, stored_end, ends[i], blob,
                                  protect=keys[: i + 1]):
                    stored_bytes += len(blob)
                    stored_key, stored_end = keys[i], ends[i]
            self._warm = _WarmPrefix(keys[: i + 1], state, stored_key, stored_end)
        prefill_s = time.perf_counter() - t_prefill

        # 4: conversation + question, streamed (a reasoning model's <think> block as "thinking")
        if turn_state is not None:
            state, turn_state = turn_state, None
        done = to_prefill
        try:
            for piece in pieces[done_pieces:-1]:
                state = yield from self._prefill(eng, piece, state, done=done, total=total, started=t_prefill,
                                                 cancel=req.cancel, room=tail_room)
                done += len(piece)
        except Cancelled:
            return
        out = _Output(splitter=ThinkingSplitter(plan.thinking))
        yield from self._generate(eng, pieces[-1], plan.thinking, state, req, out)
        if out.prompt_state is not None:
            self._turn = _Turn(keys, pieces, out.prompt_state)
            out.prompt_state = None
            self._share_buffers()
        t_end = time.perf_counter()
        t_first, n_first, n_new = out.t_first, out.n_first, out.n_new
        gen_s = t_end - t_first if t_first is not None else 0.0
        timings = {
            "cached_tokens": cached_tokens + conversation_tokens,
            "conversation_tokens": conversation_tokens,  # of them, the earlier turns continued from RAM
            "prefilled_tokens": to_prefill + plan.tail_tokens - conversation_tokens,
            "ttft_s": (t_first if t_first is not None else t_end) - t0,
            "tokens_per_s": (n_new - n_first) / gen_s if n_new > n_first and gen_s > 0 else None,
            "new_tokens": n_new,
            "finish_reason": out.finish_reason,
            "restore_s": restore_s,
            "restored_from": source,
            "restored_bytes": restored_bytes,
            "prefill_s": prefill_s,
            "stored_bytes": stored_bytes,
            "prompt_tokens": (ends[-1] if ends else 0) + plan.tail_tokens,
            "omitted": plan.omitted,
            "sampling": out.sampling,
        }
        if plan.thinking or out.splitter.thinking_text:
            timings["thinking_tokens"] = out.thinking_tokens
            timings["thinking_closed_by"] = out.closed_by
        yield AnswerEvent(kind="done", text=out.splitter.answer_text, timings=timings,
                          reasoning=out.splitter.thinking_text.strip())

    def _generate(self, eng: Any, prompt: list[int], thinking: bool, state: Any, req: AnswerRequest,
                  out: "_Output") -> Iterator[AnswerEvent]:
        """Stream the answer after ``prompt`` (the tail's last piece) into ``out``; ``out.prompt_state``
        is the state after it. A reasoning model first writes its <think>
        block ("thinking" events): at most ``settings.max_thinking_tokens`` of it when the prompt opened
        it, then the block is closed for the model ("\n</think>\n\n" prefilled after its last token) and
        it answers. The answer ("token" events) gets at most ``req.max_new_tokens`` tokens."""
        think_budget = self._thinking_budget() if thinking else 0
        prompt, limit = list(prompt), req.max_new_tokens + think_budget
        out.sampling = self._sampling(eng)
        temperature, top_p, seed = out.sampling["temperature"], out.sampling["top_p"], out.sampling["seed"]
        while True:
            generation = eng.generate(prompt, state=state, max_new_tokens=limit, temperature=temperature,
                                      top_p=top_p, seed=seed, cancel=req.cancel)
            if seed is not None:
                seed += 1                # the answer after a closed <think> block draws a stream of its own
            force_close = False
            for piece in generation:
                n = out.n_new + len(generation.token_ids)
                if out.t_first is None:
                    out.t_first, out.n_first = time.perf_counter(), n
                for kind, text in out.splitter.feed(piece):
                    if kind == ANSWER and out.answer_from is None:
                        out.answer_from = n - 1
                        # the answer's own max_new_tokens: the generation stops there (flushing its text)
                        generation.max_new_tokens = min(generation.max_new_tokens,
                                                        out.answer_from - out.n_new + req.max_new_tokens)
                    yield AnswerEvent(kind=kind, text=text)
                if out.splitter.state == THINKING and think_budget and n >= think_budget and not out.closed_by:
                    force_close = True
                    break
            else:
                out.finish_reason = generation.finish_reason
            if out.closed_by is None:  # the first generation's prompt is the question's
                out.prompt_state = generation.prompt_state
            out.n_new += len(generation.token_ids)
            if not force_close:
                break
            # the state holds every generated token but the last: feed it, then the closing tag
            close = "\n" + THINK_CLOSE + "\n\n"
            prompt = [generation.token_ids[-1], *self.builder.encode_continuation(close)]
            state, limit, out.closed_by = generation.state, req.max_new_tokens, "budget"
            out.thinking_tokens = out.n_new
            for kind, text in out.splitter.feed(close):
                yield AnswerEvent(kind=kind, text=text)
        for kind, text in out.splitter.flush():
            yield AnswerEvent(kind=kind, text=text)
        if out.closed_by is None and out.splitter.thinking_text:
            out.closed_by = "model" if out.answer_from is not None or out.splitter.state != THINKING else "none"
            out.thinking_tokens = out.answer_from if out.answer_from is not None else out.n_new

    def _sampling(self, eng: Any) -> dict:
        """Temperature and top_p from the settings, else the checkpoint's generation_config; a sampled
        answer gets the settings' seed or a fresh one (kept in its timings, so it can be replayed)."""
        default_t, default_p = getattr(eng, "sampling", (0.0, 1.0))
        t = getattr(self.settings, "temperature", None)
        p = getattr(self.settings, "top_p", None)
        t, p = default_t if t is None else t, default_p if p is None else p
        if t <= 0:
            return {"temperature": 0.0, "top_p": 1.0, "seed": None}
        seed = getattr(self.settings, "seed", None)
        return {"temperature": t, "top_p": p, "seed": secrets.randbelow(2**31) if seed is None else seed}

    def _thinking_budget(self) -> int:
        return int(getattr(self.settings, "max_thinking_tokens", 4096))

    def _plan(self, eng: Any, req: AnswerRequest) -> Iterator[AnswerEvent]:
        """Token segments of the prompt; the budget picks pages by retrieval when the set does not fit,
        and a conversation longer than HISTORY_SHARE of the context loses its oldest turns."""
        history, n_docs = list(req.history), len(req.documents)
        # the preamble and the tail first: they do not depend on what the documents hold
        seg = self.builder.frame(n_docs, req.question, history=history)
        reserved = req.max_new_tokens + (self._thinking_budget() if seg.thinking else 0)
        room = eng.max_context - reserved
        dropped = 0
        if history and len(seg.tail) > room * HISTORY_SHARE:
            history, dropped = drop_oldest_turns(history, lambda h: len(
                self.builder.frame(n_docs, req.question, history=h).tail) > room * HISTORY_SHARE)
            seg = self.builder.frame(n_docs, req.question, history=history)
        omitted = None
        # a set far larger than the context is not tokenised whole only to learn that it does not fit
        if not self.builder.documents_over(req.documents, req.question, room - len(seg)):
            seg = self.builder.build(req.documents, req.question, history=history)
        else:
            from ingest.budget import document_set_key, fit_documents

            yield AnswerEvent(kind="progress", stage="retrieve", done=0, total=1)
            budget = room - len(seg.preamble) - len(seg.tail)
            selection_key = document_set_key(req.documents, eng.fingerprint)
            earlier = self.store.selection(selection_key)
            fit = None
            for _ in range(4):  # frames are estimated by fit_documents: shrink until it really fits
                if budget <= 0:
                    break
                fit = fit_documents(req.documents, req.question, budget, counter=self._page_counter(eng),
                                    prefer=earlier, reserve=FOLLOW_UP_TOKENS)
                seg = self.builder.build(fit.documents, req.question, history=history)
                if len(seg) <= room:
                    break
                budget -= len(seg) - room + 64
            if fit is None or len(seg) > room:
                frames = len(seg) - len(seg.tail)        # what is left of the documents: titles, markers
                if fit is not None and len(seg.tail) <= room * HISTORY_SHARE:
                    raise InvalidInput(
                        f"the {len(req.documents)} documents' titles and page markers alone take {frames:,} "
                        f"tokens, more than the model's context of {eng.max_context:,} leaves "
                        f"({reserved:,} reserved for the answer): split them into smaller workspaces")
                raise InvalidInput(f"the question and conversation ({len(seg.tail)} tokens) leave no room for "
                                   f"the documents in the model's context of {eng.max_context} tokens "
                                   f"({reserved} reserved for the answer)")
            self.store.remember_selection(selection_key, fit.kept_pages)
            omitted = {"summary": fit.summary(),
                       "documents": [{"doc": o.doc, "filename": o.filename, "pages": o.pages, "tokens": o.tokens}
                                     for o in fit.omitted]}
            yield AnswerEvent(kind="progress", stage="retrieve", done=1, total=1)
        return _Plan(_chain_segments(seg), seg.tail_pieces(), with_dropped_turns(omitted, dropped), seg.thinking,
                     seg.texts[1:-1])

    def count_pages(self, documents: Sequence[Any], go_on: Callable[[], bool] = lambda: True) -> int:
        """Count the tokens of every page of `documents` as a question on a set larger than the
        context counts them, and keep the counts (in memory and in the state store, under the
        engine's tokenizer), COUNT_PAGES_AT_ONCE pages at a time while `go_on()`: the server does
        it in the background when documents are added, so that the first question does not count.
        Pages counted before are looked up, not counted again. Returns the pages done."""
        from ingest.budget import page_bodies

        counter = self._page_counter(self.engine)
        done = 0
        for doc in documents:
            bodies = page_bodies(doc)
            for i in range(0, len(bodies), COUNT_PAGES_AT_ONCE):
                if not go_on():
                    return done
                done += len(counter(bodies[i: i + COUNT_PAGES_AT_ONCE]))
        return done

    def index_pages(self, documents: Sequence[Any]) -> bool:
        """When the pages of `documents` (a workspace's set, counted: `count_pages`) take more than
        the context, build the BM25 index a question on them ranks its pages with
        (`ingest.budget.index_pages`, kept in memory), so that the first question does not index
        every page; returns whether it did."""
        from ingest.budget import count_pages, index_pages

        eng = self.engine
        if sum(map(sum, count_pages(documents, self._page_counter(eng)))) <= eng.max_context:
            return False
        index_pages(documents)
        return True

    def _page_counter(self, eng: Any) -> Any:
        """Exact token counts of pages with the engine's tokenizer, remembered in memory and in the
        state store (a new process does not tokenise a large set's pages again)."""
        if self._counter is None:
            from ingest.budget import tokenizer_counter, tokenizer_digest

            digest = tokenizer_digest(eng.tokenizer)
            self._counter = tokenizer_counter(eng.tokenizer, self.store.counts_of(digest) if digest else None)
        return self._counter

    def _share_buffers(self) -> None:
        """A conversation that outgrew the documents' K/V buffer continued in a copy of it: the
        documents' state then reads its rows from that copy, so RAM holds one K/V buffer, not two."""
        warm, turn = self._warm, self._turn
        if warm is None or turn is None or warm.keys != turn.keys:
            return
        if any(r.buf is not turn.state.kv[i].buf for i, r in warm.state.kv.items()):
            self._warm = replace(warm, state=warm.state.rows_in(turn.state))

    def _tail_room(self, plan: "_Plan", req: AnswerRequest) -> int:
        """K/V rows to keep spare after the documents: this question and its answer, and room for
        longer ones after it, so that questions on the documents' state append in place."""
        think = self._thinking_budget() if plan.thinking else 0
        return plan.tail_tokens + req.max_new_tokens + think + FOLLOW_UP_TOKENS

    def _restore(self, eng: Any, keys: list[str], ends: list[int], use_ram: bool,
                 room: int = 0) -> tuple[_WarmPrefix | None, int, str]:
        """(the longest known prefix of ``keys`` or None, bytes read, "ram" | "disk" | "none").
        ``use_ram``: the RAM prefix starts this chain and the disk has nothing longer. A prefix read
        from disk gets ``room`` spare K/V rows."""
        warm = self._warm
        if use_ram:
            if warm.stored_key:
                self.store.touch([warm.stored_key])
            return warm, 0, "ram"
        got = self.store.restore(eng, keys, room=room)
        if not got.depth:
            return None, 0, "none"
        if got.n_tokens != ends[got.depth - 1]:  # cannot happen unless a blob lies about itself
            log.warning("restored prefix has %d tokens, expected %d; recomputing", got.n_tokens, ends[got.depth - 1])
            self.store.drop(keys[0])
            return None, 0, "none"
        self._warm = _WarmPrefix(keys[: got.depth], got.state, keys[got.depth - 1], got.n_tokens)
        return self._warm, got.nbytes, "disk"

    def _warm_matches(self, keys: list[str]) -> bool:
        """Does the RAM prefix start the chain ``keys``?"""
        warm = self._warm
        return warm is not None and warm.keys == keys[: len(warm.keys)]

    def _min_entry_tokens(self, eng: Any) -> int:
        """Fewest tokens a stored entry covers: its Mamba state (stored once per entry) may add at
        most MAX_STATE_OVERHEAD to the K/V of its tokens. Shorter documents share an entry with
        the next ones; the last document of a prompt is always stored."""
        from engine import state_bytes

        mamba = state_bytes(eng.config, 0, eng.dtype)
        kv_per_token = max(1, state_bytes(eng.config, 1, eng.dtype) - mamba)
        return math.ceil(mamba / (self.MAX_STATE_OVERHEAD * kv_per_token))

    def _prefill(self, eng: Any, ids: Sequence[int], state: Any, done: int, total: int, started: float,
                 cancel: threading.Event | None, room: int) -> Iterator[AnswerEvent]:
        """Prefill one segment in a worker thread, yielding progress events; returns the new state.

        The worker stops (engine.Cancelled) when ``cancel`` is set or the caller closes the
        generator, so an abandoned question never keeps the engine busy."""
        events: queue.Queue = queue.Queue()
        result: dict = {}
        stop = threading.Event()

        def work() -> None:
            try:
                result["state"] = eng.prefill(list(ids), state=state, logits="none", cancel=stop,
                                              progress=lambda n, _total: events.put(n), room=room)[1]
            except BaseException as exc:  # re-raised in the caller's thread
                result["error"] = exc
            finally:
                events.put(None)

        worker = threading.Thread(target=work, name="jamba-prefill", daemon=True)
        worker.start()
        last = 0.0
        try:
            while True:
                try:
                    n_done = events.get(timeout=0.1)
                except queue.Empty:
                    if cancel is not None and cancel.is_set():
                        stop.set()
                    continue
                if n_done is None:
                    break
                now = time.perf_counter()
                if now - last < PROGRESS_EVERY_S:
                    continue
                last = now
                so_far = done + n_done
                rate = so_far / (now - started) if so_far else 0.0
                eta = (total - so_far) / rate if rate > 0 else None
                yield AnswerEvent(kind="progress", stage="prefill", done=so_far, total=total, eta_s=eta)
        finally:
            stop.set()  # no-op when the worker is done; stops it when the caller went away
            worker.join()
        if "error" in result:
            raise result["error"]
        yield AnswerEvent(kind="progress", stage="prefill", done=done + len(ids), total=total, eta_s=None)
        return result["state"]


def resolve_model(model: str | None, models_dir: Path | None = None) -> Path:
    """A checkpoint folder for ``model``: a local folder, or a hub id's copy in `models_dir` (where
    `jambadocs download` puts it) or in the Hugging Face cache. Nothing is fetched here."""
    if not model:
        raise EngineUnavailable("no model configured for the jamba engine (set --model or JAMBADOCS_MODEL)")
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if models_dir is not None:
        for local in (Path(models_dir) / model, Path(models_dir) / model.replace("/", "--")):
            if (local / "config.json").is_file():
                return local
    owner, _, name = model.partition("/")
    if model.startswith((".", "~", "/")) or Path(model).is_absolute():
        raise EngineUnavailable(f"model {model!r}: no such folder" if not path.exists()
                                else f"model {model!r}: not a folder (give the checkpoint's folder)")
    if path.exists() or model.count("/") != 1 or not owner or not name:
        raise EngineUnavailable(f"model {model!r} is neither a checkpoint folder nor a hub id (owner/name)")
    try:        # a copy in the Hugging Face cache (other tools put it there); never a download here
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 -- not cached (or a broken cache entry): download it explicitly
        where = f"{models_dir} or " if models_dir is not None else ""
        raise EngineUnavailable(f"model {model!r} is not downloaded (not in {where}the Hugging Face cache); "
                                f"get it with `jambadocs download {model}`") from None


def computed_by(eng: Any) -> str:
    """What a stored state depends on besides the prompt, for its key: the model (fingerprint: weights,
    dtype, quantization) and how this process computes it (device type, kernels: C or torch ops on a
    CPU, fused or plain on a GPU; not thread counts). States of two kernel paths differ in their last
    bits, and a restored state must give the answer a cold run here gives."""
    kernels = sorted((op, "C" if name.startswith("C on") else name) for op, name in eng.kernels.items())
    return f"{eng.fingerprint}:{eng.device.type}:{kernels}"


def _memo_key(parent: str, text: str) -> bytes:
    """What `_prefix_keys` remembers a segment's chain key by: its parent's key (the model, the
    prompt format and the segments before it) and its text."""
    return hashlib.sha256(parent.encode() + b"\0" + text.encode("utf-8", "surrogatepass")).digest()


def _chain_segments(seg: Any) -> list[list[int]]:
    """The cached chain of a prompt: the preamble (when there is one), then every document."""
    return ([list(seg.preamble)] if len(seg.preamble) else []) + [list(d) for d in seg.documents]


def _cumsum(values: Iterator[int]) -> list[int]:
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out

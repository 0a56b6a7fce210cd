"""The `remote` answerer: any OpenAI-compatible server (vLLM, SGLang, llama.cpp's server) answers.

The prompt is the bundled engine's, as chat messages: one first system message holding the
instructions and every document exactly as `ingest.prompt` renders them, then the earlier turns,
then the question. The first message only changes when the document set does, so the server's
prefix cache (vLLM `--enable-prefix-caching`, SGLang's radix cache, llama.cpp's `cache_prompt`)
keeps the documents' state between questions: state caching is the server's job here.
Citations in the answer are parsed and verified by app/qa.py like every other answerer's.

Settings: `remote_url` (the server's OpenAI base URL, e.g. http://gpu-box:8000/v1),
`remote_model` (its model name; default: the first one the server lists) and `remote_api_key`
(env `JAMBADOCS_REMOTE_API_KEY`, read by `app.config.Settings`, never here).
"""
from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from typing import Any, Iterator

from app.answerers.base import HISTORY_SHARE, AnswerEvent, AnswerRequest, drop_oldest_turns, with_dropped_turns
from app.errors import EngineUnavailable, InvalidInput
from app.reasoning import ThinkingSplitter
from ingest.normalize import drop_bidi_controls

CHARS_PER_TOKEN = 4       # token estimate when the server cannot count (no /tokenize route)
DEFAULT_TIMEOUT_S = 600.0  # per read: a long prefill on the server sends nothing for a while
LIST_TIMEOUT_S = 15.0
MAX_SELECTIONS = 64       # document sets whose page selection is remembered
MESSAGE_TOKENS = 8        # a chat message's frame (role, delimiters), estimated
RETRY_S = 30.0             # ask an unreachable server for its models at most this often


class RemoteAnswerer:
    """Answerer that streams its answers from an OpenAI-compatible server."""

    name = "remote"

    def __init__(self, settings: Any = None, *, base_url: str | None = None,
                 model: str | None = None, api_key: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._settings = settings
        self.base_url = (base_url or getattr(settings, "remote_url", None) or "").rstrip("/")
        if not self.base_url:
            raise EngineUnavailable("the remote engine needs a server URL "
                                    "(JAMBADOCS_REMOTE_URL, e.g. http://localhost:8000/v1)")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        # servers without auth still need some key for the client; "none" is what vLLM accepts
        self.api_key = api_key or getattr(settings, "remote_api_key", None) or "none"
        self._model = model or getattr(settings, "remote_model", None)
        self._max_context: int | None = None
        # pages kept per document set when it exceeded the server's context: a follow-up keeps them
        # when they serve it (ingest.budget), so the server's prefix cache (vLLM) holds its prompt
        self._selections: OrderedDict[str, list[list[int]]] = OrderedDict()
        self._can_tokenize: bool | None = None
        self._failed_at = -RETRY_S
        self._http = None
        self._lock = threading.Lock()
        import openai  # the official client: SSE parsing, errors, timeouts

        self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key,
                                     timeout=timeout_s, max_retries=1)

    # -- Answerer protocol --------------------------------------------------------------------
    def info(self) -> dict:
        """Engine facts; never raises (a listing must work while the server is down)."""
        try:
            model = self.model
        except EngineUnavailable:
            model = self._model
        return {"engine": self.name, "model": model, "device": self.base_url, "dtype": None,
                "max_context": self._max_context or None,
                "fingerprint": f"remote:{self.base_url}:{model}"}

    def count_tokens(self, text: str) -> int:
        """Tokens under the server's tokenizer (vLLM/SGLang `/tokenize`), else an estimate."""
        down = time.monotonic() - self._failed_at < RETRY_S
        if self._can_tokenize is not False and not down:
            count = self._server_count(text)
            if count is not None:
                return count
        return max(1, len(text) // CHARS_PER_TOKEN) if text else 0

    def document_tokens(self, doc: Any) -> int:
        """Tokens `doc` takes in the prompt as `_fit` counts them (estimated)."""
        from ingest.budget import document_tokens
        return document_tokens(doc)

    def reserved_tokens(self, max_new_tokens: int) -> int:
        """Context tokens `_fit` keeps from the documents."""
        from ingest.budget import reserved_tokens
        return reserved_tokens(max_new_tokens)

    def _sampling(self) -> dict:
        """The settings' temperature / top_p / seed when set; greedy (temperature 0) when none is, so
        answers stay repeatable on servers whose default temperature is not 0 (llama.cpp's is 0.8)."""
        t, p, seed = (getattr(self._settings, k, None) for k in ("temperature", "top_p", "seed"))
        out = {"temperature": 0.0 if t is None else t}
        if p is not None:
            out["top_p"] = p
        if seed is not None:
            out["seed"] = seed
        return out

    def answer(self, req: AnswerRequest) -> Iterator[AnswerEvent]:
        import openai

        model = self.model
        documents, history, omitted = self._fit(req)
        messages = build_messages(documents, req.question, history)
        t0 = time.perf_counter()
        yield AnswerEvent(kind="progress", stage="remote", done=0, total=1)
        try:
            stream = self._client.chat.completions.create(
                model=model, messages=messages, stream=True, max_tokens=req.max_new_tokens,
                stream_options={"include_usage": True}, **self._sampling())
        except openai.APIConnectionError as exc:
            raise EngineUnavailable(f"cannot reach the remote engine at {self.base_url}: {exc}") from exc
        except openai.APIStatusError as exc:
            raise EngineUnavailable(f"the remote engine at {self.base_url} refused the request "
                                    f"(HTTP {exc.status_code}): {_error_text(exc)}") from exc
        pieces = 0
        usage = None
        t_first = None
        # A reasoning model's reasoning: in `reasoning_content` (vLLM's reasoning parsers; `reasoning`
        # in newer ones), or inline in a <think> block at the start of the content.
        split = ThinkingSplitter()
        try:
            for chunk in stream:
                if req.cancel is not None and req.cancel.is_set():
                    return
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    delta = choice.delta
                    parts = []
                    reasoning = (getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)
                                 if delta else None)
                    if isinstance(reasoning, str) and reasoning:
                        parts += split.add_thinking(reasoning)
                    if delta and delta.content:
                        parts += split.feed(delta.content)
                    for kind, text in parts:
                        if t_first is None:
                            t_first = time.perf_counter()
                        pieces += 1
                        yield AnswerEvent(kind=kind, text=text)
            for kind, text in split.flush():
                yield AnswerEvent(kind=kind, text=text)
        finally:
            stream.close()
        t_end = time.perf_counter()
        timings = _timings(usage, pieces, t0, t_first, t_end)
        timings["omitted"] = omitted
        reasoning, answer = split.settled()
        yield AnswerEvent(kind="done", text=answer, timings=timings, reasoning=reasoning)

    def close(self) -> None:
        self._client.close()
        if self._http is not None:
            self._http.close()

    def _fit(self, req: AnswerRequest) -> tuple[list, list[tuple[str, str]], dict | None]:
        """(documents, history, omitted) as sent: all of them, or, when the server's context is
        known and too small, a conversation longer than HISTORY_SHARE of it without its oldest
        turns and the pages most relevant to the question, with what was left out (estimated
        token counts: the server's tokenizer is not at hand)."""
        history = list(req.history)
        if not self._max_context:
            return list(req.documents), history, None
        from ingest.budget import RESERVE_FRAME_TOKENS, RESERVE_QUESTION_TOKENS, estimate_counter, fit_documents

        room = self._max_context - req.max_new_tokens - RESERVE_FRAME_TOKENS

        def talk(turns: list[tuple[str, str]]) -> int:   # + a few tokens of each message's frame
            return sum(estimate_counter([req.question, *(t for _, t in turns)])) + MESSAGE_TOKENS * (len(turns) + 1)
        history, dropped = drop_oldest_turns(history, lambda h: talk(h) > room * HISTORY_SHARE)
        budget = room - max(RESERVE_QUESTION_TOKENS, talk(history))
        if budget <= 0:
            raise InvalidInput(f"the question (about {talk([]):,} tokens) leaves no room for the documents in "
                               f"the remote model's context of {self._max_context:,} tokens "
                               f"({req.max_new_tokens:,} reserved for the answer)")
        omitted = None
        documents = list(req.documents)
        fit = fit_documents(documents, req.question, budget, prefer=self._selection(req)) if documents else None
        if fit is not None and not fit.fits:
            self._remember_selection(req, fit.kept_pages)
            documents = fit.documents
            omitted = {"summary": fit.summary(),
                       "documents": [{"doc": o.doc, "file": o.filename, "pages": o.pages, "tokens": o.tokens,
                                      "estimated": True} for o in fit.omitted]}
        return documents, history, with_dropped_turns(omitted, dropped)

    def _selection_key(self, req: AnswerRequest) -> str:
        from ingest.budget import document_set_key
        return document_set_key(req.documents, f"remote:{self.base_url}:{self._model}")

    def _selection(self, req: AnswerRequest) -> list[list[int]] | None:
        with self._lock:
            return self._selections.get(self._selection_key(req))

    def _remember_selection(self, req: AnswerRequest, pages: list[list[int]]) -> None:
        key = self._selection_key(req)
        with self._lock:
            self._selections[key] = pages
            self._selections.move_to_end(key)
            while len(self._selections) > MAX_SELECTIONS:
                self._selections.popitem(last=False)

    # -- server facts -------------------------------------------------------------------------
    @property
    def model(self) -> str:
        """The configured model name, or the server's first model (with its max_model_len)."""
        with self._lock:
            if self._max_context is None:
                if time.monotonic() - self._failed_at < RETRY_S and self._model is not None:
                    return self._model
                try:
                    self._read_models()
                except EngineUnavailable:
                    self._failed_at = time.monotonic()
                    if self._model is None:
                        raise
            if self._model is None:
                raise EngineUnavailable(f"the remote engine at {self.base_url} lists no model")
            return self._model

    def _read_models(self) -> None:
        import openai

        try:
            models = list(self._client.models.list(timeout=LIST_TIMEOUT_S))
        except openai.APIConnectionError as exc:
            raise EngineUnavailable(f"cannot reach the remote engine at {self.base_url}: {exc}") from exc
        except openai.APIStatusError as exc:
            if self._model is not None:  # a server without /v1/models can still answer
                self._max_context = 0
                return
            raise EngineUnavailable(f"the remote engine at {self.base_url} did not list its models "
                                    f"(HTTP {exc.status_code}): {_error_text(exc)}") from exc
        chosen = next((m for m in models if m.id == self._model), None) if self._model else None
        if self._model is None and models:
            chosen = _default_model(models, self.base_url)
            self._model = chosen.id
        extra = (chosen.model_extra or {}) if chosen is not None else {}
        self._max_context = int(extra.get("max_model_len") or 0) or 0  # vLLM reports it

    def _server_count(self, text: str) -> int | None:
        """POST {root}/tokenize as vLLM serves it; None when the server cannot count (a server
        without the route is not asked again; a server that is down is asked next time)."""
        import httpx

        root = self.base_url[: -len("/v1")]
        if self._http is None:      # one pooled connection: documents are counted page by page
            self._http = httpx.Client(headers={"Authorization": f"Bearer {self.api_key}"},
                                      timeout=60)
        try:
            resp = self._http.post(f"{root}/tokenize", json={"model": self.model, "prompt": text,
                                                             "add_special_tokens": False})
            body = resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, EngineUnavailable):
            self._failed_at = time.monotonic()
            return None
        except ValueError:          # not JSON: some other page answers that path
            body = None
        count = body.get("count", body.get("tokens")) if isinstance(body, dict) else None
        if not isinstance(count, (int, list)):
            self._can_tokenize = False
            return None
        self._can_tokenize = True
        return count if isinstance(count, int) else len(count)


# Chat-template control tokens written as text ("<|eom|>", "<|im_start|>", "<|eot_id|>"): the server's
# tokenizer would read them in a question or a document as the control tokens themselves (end the
# turn, open a system turn). A word joiner after the "<" keeps them text, as ingest.prompt does with
# the bundled tokenizer's own special tokens.
_CONTROL_TOKEN = re.compile(r"<\|[\w.:\-]{1,40}\|>|</?documents>")    # and our documents block's tags


def inert(text: str) -> str:
    """`text` with anything written like a control token made plain text, without bidi controls."""
    return _CONTROL_TOKEN.sub(lambda m: "<\u2060" + m[0][1:], drop_bidi_controls(text))


def build_messages(documents: list, question: str, history: list[tuple[str, str]]) -> list[dict]:
    """Chat messages: [system: instructions + documents] + earlier turns + [user: question]."""
    messages = [{"role": "system", "content": system_text(documents)}]
    messages += [{"role": role, "content": inert(text)} for role, text in history]
    messages.append({"role": "user", "content": inert(question)})
    return messages


def system_text(documents: list) -> str:
    """The system turn's text as ingest.prompt's built-in (Jamba 1.5) format renders it: the
    instructions, then every document as `## Document ID: N / Title: [doc N] ... / Text: [p. M] ...`
    inside <documents>. It depends only on the documents, so it is a stable prefix."""
    from ingest.prompt import SYSTEM_PROMPT, document_text, document_title

    if not documents:
        return SYSTEM_PROMPT
    blocks = "".join(f"## Document ID: {i}\nTitle: {inert(document_title(d, i))}\nText: {inert(document_text(d))}\n\n"
                     for i, d in enumerate(documents, start=1))
    return (f"{SYSTEM_PROMPT}\n\n<documents>\n# Documents\n\n"
            f"You can use the following documents for reference:\n\n{blocks}</documents>")


def _default_model(models: list, base_url: str):
    """The model to use when none is configured: the server's first. A jambadocs server lists its
    workspaces as models (each answers over that server's documents) and its language model as
    `engine`: that one, or none when it has no language model."""
    if all(getattr(m, "owned_by", None) == "jambadocs" for m in models):
        engine = next((m for m in models if m.id == "engine"), None)
        if engine is None:
            raise EngineUnavailable(
                f"the server at {base_url} is a jambadocs server without a language model (its models "
                f"are its workspaces: {', '.join(m.id for m in models[:5])}); start it with a model, "
                "or set JAMBADOCS_REMOTE_MODEL")
        return engine
    return models[0]


def _timings(usage: Any, pieces: int, t0: float, t_first: float | None, t_end: float) -> dict:
    prompt = getattr(usage, "prompt_tokens", None)
    new = getattr(usage, "completion_tokens", None) or pieces
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    gen_s = t_end - t_first if t_first is not None else 0.0
    return {
        "cached_tokens": cached or 0,        # what the server's prefix cache reused, if it says
        "prefilled_tokens": (prompt - (cached or 0)) if prompt is not None else None,
        "prompt_tokens": prompt,
        "new_tokens": new,
        "ttft_s": (t_first if t_first is not None else t_end) - t0,
        "tokens_per_s": (new - 1) / gen_s if new and new > 1 and gen_s > 0 else None,
        "total_s": t_end - t0,
        "omitted": None,
    }


def _error_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(getattr(exc, "message", exc))

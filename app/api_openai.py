"""OpenAI-compatible routes: /v1/models lists workspaces, /v1/chat/completions answers from one.

The request's `model` names the workspace (name or id). The last message must be the user's
question; earlier user/assistant messages are the history the engine sees (passed to
`qa.ask(history=...)`, not saved: the new chat holds only this exchange, its id is returned as
`chat_id`). System messages are ignored: the
workspace's documents and the app's own instructions make the prompt. Answers carry the same
citations as the CLI's `ask --json`, as an extra `citations` field on the completion (and on the
last chunk when streaming). While the engine reads the documents, the stream sends SSE comments
(`: prefill 1024/8000`), which OpenAI clients skip, so proxies do not time the request out.

With the bundled Jamba engine, the model id `engine` (listed when no workspace has that name) is
the language model itself: the messages go through its chat template as given, no workspace and
no citations, as vLLM or llama.cpp's server would answer. That makes jambadocs a server the
`remote` engine of another jambadocs can use.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator, Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.api_errors import ApiError, error_response
from app.api_stream import iterate_in_thread
from app.config import check_max_new_tokens
from app.qa import printable
from app.reasoning import ThinkingSplitter
from ingest.prompt import opens_thinking


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionBody(BaseModel):
    """The subset of OpenAI's chat completion request that applies; other fields are accepted."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(description="workspace name (or id), as listed by GET /v1/models")
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    # Decoding of the `engine` model (workspace models decode with the server's settings); typed
    # here so a wrong value is a 422, not an engine error (a 500) after the request was accepted.
    temperature: float | None = Field(None, ge=0, le=100)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="one answer per request (more were ignored: one choice came back)")


ENGINE_MODEL = "engine"   # model id of the bundled language model itself (no workspace)


@dataclass
class _Out:
    """One step of a completion, whichever way it is produced."""

    kind: str                      # "progress" | "thinking" | "token" | "final"
    text: str = ""                 # token: the new text; progress: "stage done/total"
    finish_reason: str = "stop"    # final
    usage: dict | None = None      # final
    extra: dict = field(default_factory=dict)   # final: citations, timings


def add_openai_routes(router: APIRouter, services: Any) -> None:
    from app.api import answer_json, find_workspace, start_ask  # shared helpers

    @router.get("/v1/models", tags=["openai"], summary="Workspaces, as OpenAI models")
    def list_models() -> dict:
        models = [_model(ws) for ws in services.workspaces.list()]
        try:
            eng = raw_engine(services)
        except Exception:  # noqa: BLE001 -- an engine that fails to load still lets workspaces list
            eng = None
        if eng is not None and not any(m["id"] == ENGINE_MODEL for m in models):
            # First: a client that takes the first model (as vLLM serves one) gets the language
            # model itself, not a workspace that answers over this server's own documents.
            models.insert(0, {"id": ENGINE_MODEL, "object": "model", "created": 0,
                              "owned_by": "jambadocs", "max_model_len": int(eng.max_context)})
        return {"object": "list", "data": models}

    @router.get("/v1/models/{model}", tags=["openai"], summary="One workspace as a model")
    def get_model(model: str) -> dict:
        return _model(_find_model(find_workspace, services, model))

    @router.post("/v1/chat/completions", tags=["openai"],
                 summary="OpenAI-compatible chat completion over a workspace's documents",
                 description=__doc__)
    async def chat_completions(body: ChatCompletionBody):
        cancel = threading.Event()
        steps = await run_in_threadpool(_start, services, body, cancel, find_workspace, start_ask,
                                        answer_json)
        outs = iterate_in_thread(lambda: steps, cancel)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_chunks(outs, completion_id, created, body.model, include_usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        pieces: list[str] = []
        async for out in outs:
            if out.kind == "token":
                pieces.append(out.text)
            elif out.kind == "final":
                content = out.extra.pop("answer", None)
                if content is None:
                    content = "".join(pieces)
                message = {"role": "assistant", "content": content}
                reasoning = out.extra.pop("reasoning", None)
                if reasoning:
                    message["reasoning_content"] = reasoning
                return {
                    "id": completion_id, "object": "chat.completion", "created": created,
                    "model": body.model,
                    "choices": [{"index": 0, "finish_reason": out.finish_reason, "logprobs": None,
                                 "message": message}],
                    "usage": out.usage, **out.extra}
        raise ApiError(500, "internal", "the engine ended without an answer")


def _start(services: Any, body: ChatCompletionBody, cancel: threading.Event, find_workspace,
           start_ask, answer_json) -> Iterator[_Out]:
    """Validate the request and start it (in a worker thread: may touch the database/engine)."""
    max_new = body.max_completion_tokens or body.max_tokens
    check_max_new_tokens(max_new)          # the one rule, for a workspace and for the bare engine alike
    try:
        ws = find_workspace(services, body.model)
    except ApiError:
        ws = None
    if ws is None and body.model == ENGINE_MODEL and raw_engine(services) is not None:
        return _raw_steps(services, raw_engine(services), body, max_new, cancel)
    if ws is None:
        _find_model(find_workspace, services, body.model)   # raises the 404
    question, history = split_messages(body.messages)
    chat_id = continued_chat(services, ws.id, history) if history else None
    events = start_ask(services, ws.id, question, chat_id=chat_id, history=history, cancel=cancel,
                       max_new_tokens=max_new)
    return _workspace_steps(events, answer_json)


MAX_CHATS_COMPARED = 50


def continued_chat(services: Any, ws_id: int, history: list[tuple[str, str]]) -> int | None:
    """The saved chat a request continues: the most recent one of the workspace whose messages are
    the request's earlier turns (OpenAI clients send the whole conversation every time), so a
    conversation stays one chat in the UI; None when no chat matches (then a new one is made)."""
    def plain(turns) -> list[tuple[str, str]]:       # as questions are saved: no control characters
        return [(role, " ".join(printable(text).split())) for role, text in turns]

    want = plain(history)
    chats = [c for c in services.chats.list(ws_id) if c.messages == len(want)]
    chats.sort(key=lambda c: (c.created_at, c.id), reverse=True)
    for chat in chats[:MAX_CHATS_COMPARED]:
        if plain((m.role, m.text) for m in services.chats.messages(chat.id)) == want:
            return chat.id
    return None


def _workspace_steps(events: Iterator[Any], answer_json) -> Iterator[_Out]:
    pieces = 0
    for event in events:
        if event.kind == "progress":
            yield _Out("progress", f"{event.stage or 'progress'} {event.done}/{event.total}")
        elif event.kind in ("token", "thinking") and event.text:
            pieces += 1
            yield _Out(event.kind, event.text)
        elif event.kind == "done":
            answer = answer_json(event.answer, event.chat_id)
            timings = dict(event.answer.timings or {})
            finish = "length" if timings.get("finish_reason") == "length" else "stop"
            yield _Out("final", finish_reason=finish, usage=_usage(timings, pieces),
                       extra={"answer": answer["answer"], "reasoning": answer["reasoning"],
                              "citations": answer["citations"],
                              "timings": answer["timings"], "chat_id": answer["chat_id"]})


def raw_engine(services: Any) -> Any:
    """The bundled language model (jamba engine) when one is configured, else None."""
    settings = getattr(services, "settings", None)
    if settings is None or settings.resolved_engine() != "jamba":
        return None
    start = getattr(services, "start_engine", None)
    if callable(start):
        start()                  # EngineUnavailable says why; marks the engine started
    return getattr(services.answerer, "engine", None)


def _raw_steps(services: Any, eng: Any, body: ChatCompletionBody, max_new: int | None,
               cancel: threading.Event) -> Iterator[_Out]:
    """Plain chat completion on the bundled model: the messages through its chat template."""
    turns = [{"role": "system" if m.role == "developer" else m.role, "content": _text(m.content)}
             for m in body.messages]
    ids = chat_prompt_ids(eng.tokenizer, turns)
    room = int(eng.max_context) - len(ids)
    if room <= 0:
        raise ApiError(400, "context_length_exceeded",
                       f"the messages have {len(ids)} tokens; the model's context is {eng.max_context}")
    stop = body.stop or ()
    # what the request leaves out is what the checkpoint recommends (vLLM does the same)
    default_t, default_p = getattr(eng, "sampling", (0.0, 1.0))
    temperature, top_p = body.temperature, body.top_p
    return _generate(services, eng, ids, dict(
        max_new_tokens=min(max_new or services.settings.max_new_tokens, room),
        temperature=float(default_t if temperature is None else temperature),
        top_p=float(default_p if top_p is None else top_p),
        seed=body.seed, stop=(stop,) if isinstance(stop, str) else tuple(stop),
        cancel=cancel))


def _generate(services: Any, eng: Any, ids: list[int], params: dict) -> Iterator[_Out]:
    queue = services.queue
    ticket = queue.take()
    try:
        while not queue.wait(ticket, 0.5):      # wait for the engine, as questions do
            if params["cancel"].is_set():
                return
            yield _Out("progress", f"queue {queue.ahead(ticket)}")
        gen = eng.generate(ids, **params)
        # a reasoning model's <think> block (opened by its chat template) comes as reasoning_content
        split = ThinkingSplitter(opens_thinking(eng.tokenizer.decode(ids[-16:])))
        for piece in gen:
            for kind, text in split.feed(piece):
                yield _Out(kind, text)
        for kind, text in split.flush():
            yield _Out(kind, text)
    finally:
        queue.release(ticket)
    finish = "length" if gen.finish_reason == "length" else "stop"
    n_new = len(gen.token_ids)
    reasoning = split.thinking_text.strip()
    extra = {"reasoning": reasoning} if reasoning else {}
    yield _Out("final", finish_reason=finish, usage={
        "prompt_tokens": len(ids), "completion_tokens": n_new, "total_tokens": len(ids) + n_new}, extra=extra)


def chat_prompt_ids(tokenizer: Any, turns: list[dict]) -> list[int]:
    """Token ids of chat turns through the tokenizer's chat template (which adds its own BOS)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ApiError(400, "no_chat_template", "the model has no chat template")
    text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def split_messages(messages: list[ChatMessageIn]) -> tuple[str, list[tuple[str, str]]]:
    """(question, history): the last user message, and the user/assistant turns before it."""
    turns = [(m.role, _text(m.content)) for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1][0] != "user":
        raise ApiError(400, "invalid_request", "the last user/assistant message must be the "
                       "user's question")
    question = turns[-1][1].strip()
    if not question:
        raise ApiError(400, "invalid_request", "the user's question is empty")
    return question, turns[:-1]


def _text(content: str | list[dict] | None) -> str:
    """Message content as text: a string, or the text parts of a content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") != "text":
            raise ApiError(400, "unsupported_content",
                           f"content parts of type {part.get('type')!r} are not supported; send text")
        parts.append(str(part.get("text", "")))
    return "".join(parts)


def _find_model(find_workspace, services: Any, model: str):
    try:
        return find_workspace(services, model)
    except ApiError as err:
        raise ApiError(404, "model_not_found", f"model {model!r}: {err.message}") from None


def _model(ws: Any) -> dict:
    return {"id": ws.name, "object": "model", "created": int(ws.created_at.timestamp()),
            "owned_by": "jambadocs"}


def _usage(timings: dict, pieces: int) -> dict:
    prompt = int(timings.get("prompt_tokens")
                 or (timings.get("cached_tokens", 0) or 0) + (timings.get("prefilled_tokens", 0) or 0))
    completion = int(timings.get("new_tokens") or timings.get("generated_tokens") or timings.get("completion_tokens")
                     or pieces)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


async def _chunks(outs: AsyncIterator[_Out], completion_id: str, created: int, model: str,
                  include_usage: bool) -> AsyncIterator[bytes]:
    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> bytes:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for out in outs:
            if out.kind == "progress":
                yield f": {out.text}\n\n".encode()
            elif out.kind == "token":
                yield chunk({"content": out.text})
            elif out.kind == "thinking":         # as vLLM's reasoning parsers send it
                yield chunk({"reasoning_content": out.text})
            elif out.kind == "final":
                out.extra.pop("answer", None)
                out.extra.pop("reasoning", None)
                yield chunk({}, out.finish_reason, **out.extra)
                if include_usage:
                    body = {"id": completion_id, "object": "chat.completion.chunk",
                            "created": created, "model": model, "choices": [], "usage": out.usage}
                    yield f"data: {json.dumps(body)}\n\n".encode()
    except Exception as exc:  # noqa: BLE001 -- headers are sent: report in-stream, as OpenAI does
        yield f"data: {error_response(exc).body.decode()}\n\n".encode()
    yield b"data: [DONE]\n\n"

"""A llama-index `LLM` backed by the bundled Jamba engine, with streaming.

    from engine.llama_index_llm import JambaLLM
    llm = JambaLLM.from_checkpoint("path/to/checkpoint", max_new_tokens=256)
    llm.complete("Hello")                     # raw text in, continuation out
    for r in llm.stream_chat([ChatMessage(role="user", content="Hi")]): print(r.delta, end="")

Chat calls render the checkpoint's own chat template (Jamba's `<|bom|><|user|> ...` turns), so
llama-index pipelines (query engines, chat engines) talk to the model in the format it was trained
on; plain `complete` tokenizes the prompt as given. Generation is greedy unless temperature > 0.
A reasoning model's <think> block (Jamba Reasoning's template opens it) is kept out of the chat
answer: the message holds it as a `ThinkingBlock` and streaming sends it as
`additional_kwargs["thinking_delta"]`, as llama-index's own reasoning LLMs do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ThinkingBlock,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import Field, PrivateAttr


class JambaLLM(CustomLLM):
    """llama-index LLM over an `engine.Engine` (see docs/interfaces.md)."""

    model_name: str = Field(default="jamba", description="name reported in the metadata")
    max_new_tokens: int = Field(default=256, gt=0, description="tokens generated at most")
    temperature: float = Field(default=0.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, description="sampling seed (temperature > 0)")
    _engine: Any = PrivateAttr()

    def __init__(self, engine: Any, **kwargs: Any) -> None:
        kwargs.setdefault("model_name", _model_name(engine))
        super().__init__(**kwargs)
        self._engine = engine

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None,
                        dtype: str | None = None, **kwargs: Any) -> "JambaLLM":
        """Load a checkpoint folder with `engine.load_engine` and wrap it."""
        from engine import load_engine

        kwargs.setdefault("model_name", Path(path).name)
        return cls(load_engine(path, device=device, dtype=dtype), **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "jambadocs_jamba_llm"

    @property
    def engine(self) -> Any:
        return self._engine

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=int(self._engine.max_context),
                           num_output=self.max_new_tokens, is_chat_model=True,
                           model_name=self.model_name)

    # -- completion: the prompt text as given ------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text = "".join(self._pieces(self._encode_text(prompt, formatted), **kwargs))
        return CompletionResponse(text=text)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        ids = self._encode_text(prompt, formatted)  # errors raise here, before the first piece

        def gen() -> CompletionResponseGen:
            text = ""
            for piece in self._pieces(ids, **kwargs):
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()

    # -- chat: the checkpoint's chat template --------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        reasoning, answer = "", ""
        for kind, text in self._chat_parts(*self._encode_chat(messages), **kwargs):
            if kind == "thinking":
                reasoning += text
            else:
                answer += text
        return ChatResponse(message=_answer_message(reasoning, answer))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        parts = self._chat_parts(*self._encode_chat(messages), **kwargs)  # errors raise here

        def gen() -> ChatResponseGen:
            reasoning, answer = "", ""
            for kind, text in parts:
                if kind == "thinking":
                    reasoning += text
                    yield ChatResponse(message=_answer_message(reasoning, answer), delta="",
                                       additional_kwargs={"thinking_delta": text})
                else:
                    answer += text
                    yield ChatResponse(message=_answer_message(reasoning, answer), delta=text)

        return gen()

    # -- internals -----------------------------------------------------------------------------
    def _encode_text(self, prompt: str, formatted: bool) -> list[int]:
        if not formatted:
            prompt = self.completion_to_prompt(prompt)
        return self._check_length(list(self._engine.tokenizer(prompt)["input_ids"]))

    def _encode_chat(self, messages: Sequence[ChatMessage]) -> tuple[list[int], bool]:
        """The prompt's ids, and whether it ends inside an open <think> block."""
        from ingest.prompt import opens_thinking

        tok = self._engine.tokenizer
        if getattr(tok, "chat_template", None):
            turns = [{"role": _role(m.role), "content": m.content or ""} for m in messages]
            text = tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]  # the template has its BOS
        else:
            text = self.messages_to_prompt(messages)
            ids = tok(text)["input_ids"]
        return self._check_length(list(ids)), opens_thinking(text[-64:])

    def _chat_parts(self, ids: list[int], thinking: bool, **kwargs: Any) -> Iterator[tuple[str, str]]:
        """("thinking" | "token", text) parts of the answer to the prompt `ids`, as they stream;
        `thinking`: the prompt opened a <think> block."""
        from app.reasoning import ThinkingSplitter

        split = ThinkingSplitter(thinking)
        for piece in self._pieces(ids, **kwargs):
            yield from split.feed(piece)
        yield from split.flush()

    def _check_length(self, ids: list[int]) -> list[int]:
        if not ids:
            raise ValueError("the prompt is empty")
        room = int(self._engine.max_context) - len(ids)
        if room <= 0:
            raise ValueError(f"the prompt has {len(ids)} tokens; the model's context is "
                             f"{self._engine.max_context}")
        return ids

    def _pieces(self, ids: list[int], **kwargs: Any) -> Iterator[str]:
        max_new = int(kwargs.get("max_tokens") or kwargs.get("max_new_tokens") or self.max_new_tokens)
        max_new = min(max_new, int(self._engine.max_context) - len(ids))
        stop = kwargs.get("stop") or ()
        yield from self._engine.generate(
            ids, max_new_tokens=max_new,
            temperature=float(kwargs.get("temperature", self.temperature)),
            top_p=float(kwargs.get("top_p", self.top_p)), seed=kwargs.get("seed", self.seed),
            stop=tuple([stop] if isinstance(stop, str) else stop))


def _answer_message(reasoning: str, answer: str) -> ChatMessage:
    """The assistant's message: its reasoning (if any) as a ThinkingBlock, then the answer text."""
    blocks: list[Any] = [ThinkingBlock(content=reasoning)] if reasoning else []
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks + [TextBlock(text=answer)])


def _role(role: MessageRole | str) -> str:
    value = role.value if isinstance(role, MessageRole) else str(role)
    return {"model": "assistant", "chatbot": "assistant", "developer": "system"}.get(value, value)


def _model_name(engine: Any) -> str:
    name = getattr(getattr(engine, "config", None), "name_or_path", None)
    return Path(name).name if name else "jamba"

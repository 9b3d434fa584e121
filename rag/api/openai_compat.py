"""``POST /v1/chat/completions`` in the shape OpenAI clients expect (LangChain ChatOpenAI, Open WebUI, Dify).

The last user message is the question and the earlier user messages are the
conversation's history, as in the app.  The reply text is the answer as a user
reads it (``[n]`` markers and the numbered source list); the citations are also
returned as an extra ``citations`` field.  Streaming sends the checked answer in
pieces: an LLM draft is never streamed, because markers it invents are removed
only after generation.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from rag.api.errors import ApiError
from rag.api.keys import ApiKey
from rag.schema import Answer

MODEL_ID = "seisaku-rag"
_PIECE_CHARS = 24  # stream in small pieces so a chat window fills in as it does for a model


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    # Clients send many optional fields (temperature, top_p, user…); they do not change an extractive answer.
    model_config = ConfigDict(extra="allow")
    model: str = MODEL_ID
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=100)
    stream: bool = False


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if part.get("type") == "text")


def _citations(answer: Answer) -> list[dict]:
    return [
        {"marker": c.marker, "source": c.source, "title": c.title, "page": c.page, "label": c.label, "heading": c.heading, "quote": c.quote}
        for c in answer.citations
    ]


def _pieces(text: str) -> Iterator[str]:
    for i in range(0, len(text), _PIECE_CHARS):
        yield text[i : i + _PIECE_CHARS]


def register(app, caller, answer) -> None:
    @app.get("/v1/models", tags=["OpenAI 互換"], summary="モデルの一覧（OpenAI 互換）")
    def models(key: ApiKey = Depends(caller)) -> dict:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "seisaku-rag"}]}

    @app.post("/v1/chat/completions", tags=["OpenAI 互換"], summary="チャット（OpenAI 互換、stream 対応）")
    async def chat(body: ChatRequest, key: ApiKey = Depends(caller)):
        users = [_text(m.content) for m in body.messages if m.role == "user"]
        if not users or body.messages[-1].role != "user":
            raise ApiError(400, "invalid_request", "最後のメッセージが利用者（role: user）の質問になっていません。質問を最後に入れてください")
        result = await answer(key, users[-1], users[:-1][-20:], None, None)
        text = result.render()
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        extra = {"citations": _citations(result), "found": result.found, "confidence": result.confidence}
        if not body.stream:
            return {
                "id": cid, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                **extra,
            }

        def chunk(delta: dict, finish: str | None = None, **more) -> str:
            data = {
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **more,
            }
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        def events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            for piece in _pieces(text):
                yield chunk({"content": piece})
            yield chunk({}, "stop", **extra)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

"""Request body limits, enforced before the body reaches any handler (pure ASGI middleware).

Uvicorn sets no body limit of its own; a client could otherwise send gigabytes.
``Content-Length`` is checked first; chunked bodies are counted as they arrive.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException


class BodyLimit:
    def __init__(self, app, default_bytes: int, upload_bytes: int, upload_path: str = "/v1/documents"):
        self.app, self.default_bytes, self.upload_bytes, self.upload_path = app, default_bytes, upload_bytes, upload_path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.upload_bytes if scope["path"] == self.upload_path and scope["method"] == "POST" else self.default_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _too_large(send, limit)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException, because FastAPI turns any other error while reading a body into 400.
                    raise HTTPException(413)
            return message

        await self.app(scope, counted, send)


async def _too_large(send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "body_too_large",
                "message": f"リクエストが大きすぎます（上限 {limit:,} バイト）。質問を短くするか、ファイルを分割してください",
                "type": "body_too_large",
            }
        },
        ensure_ascii=False,
    ).encode("utf-8")
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

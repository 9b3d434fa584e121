"""A scripted chat server on 127.0.0.1 that speaks the OpenAI and Ollama wire protocols.

Tests point the real LangChain clients at it, so the HTTP, SSE and NDJSON code
paths run for real; only the model is fake.  Every request body is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = ""
    pieces: list[str] | None = None  # how the text is cut into stream chunks; default: 3 characters each
    delay_s: float = 0.0  # silence before the response headers (time-out tests)
    status: int = 200
    drop_after: int | None = None  # close the socket mid-stream after this many pieces

    def chunks(self) -> list[str]:
        if self.pieces is not None:
            return self.pieces
        return [self.text[i : i + 3] for i in range(0, len(self.text), 3)] or [""]


Responder = Callable[[dict[str, Any]], Reply]


@dataclass
class FakeChatServer:
    """Replies are taken from ``replies`` in order; when that runs out, from ``responder``."""

    replies: list[Reply] = field(default_factory=list)
    responder: Responder | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # A short poll keeps shutdown() from adding half a second to every test.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def ollama_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # wakes handlers still "thinking" in a time-out test
        self._server.shutdown()
        self._server.server_close()

    def _next_reply(self, body: dict[str, Any], path: str) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.paths.append(path)
            if self.replies:
                return self.replies.pop(0)
        if self.responder is None:
            raise AssertionError(f"unscripted request: {json.dumps(body, ensure_ascii=False)[:300]}")
        return self.responder(body)


def _handler_for(server: FakeChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            path = self.path.rstrip("/")
            if path not in ("/v1/chat/completions", "/api/chat"):
                self._send_json(404, {"error": {"message": f"no route {path}"}})
                return
            reply = server._next_reply(body, path)
            if reply.delay_s and server._stop.wait(reply.delay_s):
                return
            if reply.status != 200:
                self._send_json(reply.status, {"error": {"message": "scripted failure", "type": "server_error"}})
                return
            model = body.get("model", "test-model")
            try:
                if path == "/api/chat":
                    self._ollama(reply, model, bool(body.get("stream", True)))
                elif body.get("stream"):
                    self._openai_stream(reply, model)
                else:
                    self._send_json(200, _completion(reply.text, model))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (time-out tests)

        def _send_json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

        def _start_chunked(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            time.sleep(0.005)  # let the client see separate network reads

        def _drop(self) -> None:
            # No terminating zero-length chunk: the client sees a truncated body.
            self.wfile.flush()
            self.connection.close()

        def _openai_stream(self, reply: Reply, model: str) -> None:
            self._start_chunked("text/event-stream")
            self._chunk(_sse(_delta({"role": "assistant", "content": ""}, model)))
            for i, piece in enumerate(reply.chunks()):
                if reply.drop_after is not None and i >= reply.drop_after:
                    self._drop()
                    return
                self._chunk(_sse(_delta({"content": piece}, model)))
            self._chunk(_sse(_delta({}, model, finish="stop")))
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

        def _ollama(self, reply: Reply, model: str, stream: bool) -> None:
            if not stream:
                self._send_json(200, _ollama_part(model, reply.text, done=True))
                return
            self._start_chunked("application/x-ndjson")
            for i, piece in enumerate(reply.chunks()):
                if reply.drop_after is not None and i >= reply.drop_after:
                    self._drop()
                    return
                self._chunk(json.dumps(_ollama_part(model, piece, done=False), ensure_ascii=False).encode() + b"\n")
            self._chunk(json.dumps(_ollama_part(model, "", done=True)).encode() + b"\n")
            self._chunk(b"")

    return Handler


def _completion(text: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _delta(delta: dict[str, Any], model: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def _ollama_part(model: str, content: str, done: bool) -> dict[str, Any]:
    part: dict[str, Any] = {
        "model": model,
        "created_at": "2024-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": content},
        "done": done,
    }
    if done:
        part.update(done_reason="stop", prompt_eval_count=1, eval_count=1, total_duration=1)
    return part


def closed_port() -> int:
    """A port nothing listens on: bound once by us, then released."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""Errors the API returns: JSON ``{"error": {"code", "message", "type"}}`` with a Japanese message.

The same shape is what OpenAI clients read (``error.message``, ``error.code``),
so one error format serves both the REST endpoints and the chat endpoint.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "type": code}}, status_code=status, headers=headers)


UNAUTHORIZED = (
    "API キーがないか、正しくないか、無効にされています。`Authorization: Bearer <キー>` を付けてください"
    "（キーは管理者が `rag keys add` で発行します）"
)
UNKNOWN_DOCUMENT = "その文書はありません（またはこのキーでは見られません）。`GET /v1/documents` で文書名を確かめてください"

_STATUS_MESSAGES = {
    404: ("not_found", "そのURLはありません。`/docs` で使えるURLを確かめてください"),
    413: ("body_too_large", "リクエストが大きすぎます。質問を短くするか、ファイルを分割してください"),
    405: ("method_not_allowed", "このURLではその方法（HTTPメソッド）は使えません。`/docs` を確かめてください"),
}


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code, message = _STATUS_MESSAGES.get(exc.status_code, ("http_error", "リクエストを処理できませんでした"))
    return error_response(exc.status_code, code, message, getattr(exc, "headers", None))


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return error_response(
        422, "invalid_request", f"リクエストの形式が正しくありません（{where or '本文'}: {first.get('msg', '')}）。`/docs` の形式に合わせてください"
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal_error", "サーバーの内部でエラーが起きました。時間をおいて再度試し、続くときは管理者に連絡してください")


def install(app) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)

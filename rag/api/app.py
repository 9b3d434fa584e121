"""The FastAPI application of `rag api`.

Every endpoint that returns document content takes the caller's
:class:`rag.access.AccessPolicy` from their key and goes through it: the
pipeline searches only the sources it allows, and listings, page text, PDF
downloads and schemes show only those.  A document the key may not see is
reported exactly like one that does not exist, so its name is not revealed.
"""

# No `from __future__ import annotations`: FastAPI must resolve the local `Caller` alias at definition time.

import asyncio
import concurrent.futures
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from rag.access import DEFAULT_COLLECTION, AccessPolicy, CollectionError, collection_of
from rag.api import errors
from rag.api.errors import UNAUTHORIZED, UNKNOWN_DOCUMENT, ApiError
from rag.api.keys import ApiKey
from rag.api.limits import BodyLimit
from rag.api.service import Service
from rag.config import Settings
from rag.pipeline import Pipeline
from rag.query import QuestionError

# Answering is CPU-bound: more threads than cores only add contention, and a bounded
# pool makes excess requests queue instead of all slowing down together.
_ANSWER_THREADS = 4
MAX_HISTORY = 20


class AskRequest(BaseModel):
    question: str = Field(..., description="日本語の質問")
    k: int | None = Field(None, ge=1, le=100, description="検索する箇所の数")
    sources: list[str] | None = Field(None, max_length=100, description="この文書だけを検索（`GET /v1/documents` の source）")
    history: list[str] = Field(default_factory=list, max_length=MAX_HISTORY, description="同じ会話のそれまでの質問（古い順）")


def create_app(settings: Settings, service: Service | None = None) -> FastAPI:
    service = service or Service(settings)
    pool = concurrent.futures.ThreadPoolExecutor(_ANSWER_THREADS, thread_name_prefix="rag-answer")
    # FastAPIOffline: a FastAPI app whose /docs and /redoc pages load Swagger UI and ReDoc from
    # the package, not from a CDN, so they work on networks without internet.
    app = FastAPIOffline(
        title="政策文書RAG API",
        version="1",
        description="行政文書に、資料名・ページ付きの引用で答える API。`Authorization: Bearer <キー>` が必要です（`/healthz` を除く）。",
    )
    errors.install(app)
    app.add_middleware(
        BodyLimit, default_bytes=settings.api.max_body_kb * 1024, upload_bytes=settings.app.max_upload_mb * 1024 * 1024
    )
    app.state.service = service

    def caller(request: Request) -> ApiKey:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        key = service.keys.check(token.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            raise ApiError(401, "invalid_api_key", UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        wait = service.limiter.take(key.name)
        if wait is not None:
            raise ApiError(
                429, "rate_limited", f"リクエストが多すぎます（1分あたり {service.limiter.per_minute} 回まで）。{wait} 秒後に再度試してください",
                {"Retry-After": str(wait)},
            )
        return key

    Caller = Annotated[ApiKey, Depends(caller)]

    async def run(fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(pool, lambda: fn(*args, **kwargs))
        try:
            return await asyncio.wait_for(future, settings.api.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(
                504, "timeout", f"回答に時間がかかりすぎました（{settings.api.timeout_s:g} 秒）。質問を短くするか、時間をおいて再度試してください"
            ) from None

    def visible_source(pipeline: Pipeline, policy: AccessPolicy, source: str) -> str:
        if source not in pipeline.index.manifest.sources or not policy.allows(source):
            raise ApiError(404, "unknown_document", UNKNOWN_DOCUMENT)
        return source

    @app.get("/healthz", tags=["状態"], summary="稼働確認（キー不要）")
    def healthz() -> dict:
        index = service.pipelines.get().index
        return {"status": "ok", "index_built_at": index.manifest.built_at}

    async def answer(key: ApiKey, question: str, history: Sequence[str], sources: list[str] | None, k: int | None):
        pipeline = service.pipelines.get()
        if sources:
            for s in sources:
                visible_source(pipeline, key.policy, s)
        try:
            return await run(pipeline.ask, question, history=list(history), sources=sources, k=k, policy=key.policy)
        except QuestionError as exc:
            raise ApiError(400, "invalid_question", str(exc)) from None

    @app.post("/v1/ask", tags=["質問応答"], summary="質問に答える（`rag ask --json` と同じ JSON）")
    async def ask(body: AskRequest, key: Caller) -> dict:
        return (await answer(key, body.question, body.history, body.sources, body.k)).to_json()

    @app.get("/v1/documents", tags=["文書"], summary="このキーで見られる文書の一覧")
    def documents(key: Caller) -> dict:
        pipeline = service.pipelines.get()
        infos = [i for i in pipeline.index.manifest.source_infos() if key.policy.allows(i.source)]
        return {
            "documents": [
                {
                    "source": i.source, "collection": collection_of(i.source), "title": i.title,
                    "pages": i.pages, "chunks": i.chunks, "problems": list(i.problems),
                }
                for i in infos
            ]
        }

    @app.get("/v1/collections", tags=["文書"], summary="このキーで見られるコレクション")
    def collections(key: Caller) -> dict:
        pipeline = service.pipelines.get()
        seen = sorted({collection_of(s) for s in service.visible_sources(pipeline, key.policy)})
        granted = sorted(key.collections) if key.collections is not None else None
        return {"collections": seen, "granted": granted, "write": key.can_write}

    @app.get("/v1/documents/{source:path}/pages/{page}", tags=["文書"], summary="ページの本文")
    def page_text(source: str, page: int, key: Caller) -> dict:
        pipeline = service.pipelines.get()
        visible_source(pipeline, key.policy, source)
        found = pipeline.index.get_page(source, page)
        if found is None:
            raise ApiError(404, "unknown_page", f"その文書に {page} ページはありません。`GET /v1/documents` でページ数を確かめてください")
        return {"source": source, "page": page, "label": found.label, "heading": found.heading, "text": found.text}

    @app.get("/v1/documents/{source:path}/file", tags=["文書"], summary="元のファイル（PDF）のダウンロード")
    def download(source: str, key: Caller) -> FileResponse:
        pipeline = service.pipelines.get()
        visible_source(pipeline, key.policy, source)
        path = service.source_path(source)
        if path is None:
            raise ApiError(404, "unknown_document", UNKNOWN_DOCUMENT)
        media = "application/pdf" if path.suffix.lower() == ".pdf" else "text/plain; charset=utf-8"
        return FileResponse(path, media_type=media, filename=path.name)

    @app.post("/v1/documents", tags=["文書"], summary="文書（PDF）を追加する（書き込みのできるキーのみ）", status_code=201)
    async def add_document(
        request: Request,
        key: Caller,
        filename: Annotated[str, Query(max_length=255, description="元のファイル名（無害化して保存）")],
        collection: Annotated[str, Query(max_length=64, description="入れるコレクション")] = DEFAULT_COLLECTION,
    ) -> dict:
        from rag.uploads import UploadError, save_upload

        folder = writable_folder(key, collection)
        data = await request.body()

        def save_and_index():
            with service.write_lock:
                saved = save_upload(data, filename, folder, max_upload_mb=settings.app.max_upload_mb)
                source = saved.path.relative_to(service.corpus).as_posix()
                if saved.status == "saved":
                    service.ingest()
                return saved, source

        try:
            saved, source = await run(save_and_index)
        except UploadError as exc:
            raise ApiError(400, "invalid_document", str(exc)) from None
        return {"source": source, "collection": collection_of(source), "status": saved.status, "title": saved.title, "pages": saved.pages, "message": saved.message()}

    @app.delete("/v1/documents/{source:path}", tags=["文書"], summary="文書を取り除く（索引からも一度に。書き込みのできるキーのみ）")
    async def remove_document(source: str, key: Caller) -> dict:
        pipeline = service.pipelines.get()
        visible_source(pipeline, key.policy, source)
        writable_folder(key, collection_of(source))

        def remove():
            with service.write_lock:
                service.remove(source)

        try:
            await run(remove)
        except FileNotFoundError:
            raise ApiError(404, "unknown_document", UNKNOWN_DOCUMENT) from None
        return {"source": source, "status": "removed", "message": f"「{source}」を取り除きました（索引からも削除済み）。"}

    def writable_folder(key: ApiKey, collection: str):
        if not key.can_write:
            raise ApiError(403, "read_only_key", "このキーでは文書の追加・削除はできません。`rag keys add 名前 --write` で発行したキーを使ってください")
        try:
            if not key.policy.allows_collection(collection):
                raise CollectionError
            return service.collection_dir(collection)
        except (CollectionError, ValueError):
            raise ApiError(404, "unknown_collection", "そのコレクションはありません（またはこのキーでは使えません）。`GET /v1/collections` で確かめてください") from None

    @app.get("/v1/schemes", tags=["制度"], summary="文書に出てくる交付金・補助金・税制などの制度")
    def schemes(
        key: Caller,
        keyword: Annotated[str, Query(max_length=200)] = "",
        area: Annotated[str, Query(max_length=200)] = "",
    ) -> dict:
        from rag.schemes import search_schemes

        pipeline = service.pipelines.get()
        found = search_schemes(service.schemes(pipeline, key.policy), keyword=keyword, area=area)
        return {"schemes": [s.to_json() for s in found]}

    from rag.api.openai_compat import register

    register(app, caller, answer)
    return app

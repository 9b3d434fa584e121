"""Run the API with uvicorn (the `rag api` command)."""

from __future__ import annotations

from rag.config import Settings


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    from rag.api.app import create_app

    app = create_app(settings)
    # One process: the index and the embedder are loaded once and shared by all requests.
    uvicorn.run(app, host=host or settings.api.host, port=port or settings.api.port, log_level="warning", access_log=False)

"""`rag serve`: build the index if needed and start the Streamlit app."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from rag.config import PROJECT_ROOT


def serve(port: int, host: str, extra_env: dict[str, str] | None = None) -> int:
    env = {**os.environ, **(extra_env or {})}
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "app.py"),
        "--server.port", str(port), "--server.address", host,
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]
    return subprocess.call(cmd, env=env)


def _cmd(args: argparse.Namespace) -> int:
    env = {}
    if args.index:
        env["RAG_INDEX_DIR"] = args.index
    if args.corpus:
        env["RAG_CORPUS_DIR"] = args.corpus
    return serve(args.port, args.host, env)


def add_cli(sub) -> None:
    p = sub.add_parser("serve", help="チャット画面（Streamlit）を起動する。索引がなければ初回に作成")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--corpus")
    p.add_argument("--index")
    p.set_defaults(func=_cmd)

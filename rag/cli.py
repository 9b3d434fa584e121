"""`rag` command line: a thin shell over the library (ingest, ask, eval, schemes, serve, bench)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from rag.config import PROJECT_ROOT, Settings, load_settings


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    overrides: dict[str, object] = dict(extra)
    if getattr(args, "corpus", None):
        overrides["corpus_dir"] = Path(args.corpus)
    if getattr(args, "index", None):
        overrides["index_dir"] = Path(args.index)
    llm = _llm_from_environment()
    if llm:
        overrides["llm"] = llm
    return load_settings(Path(args.config) if getattr(args, "config", None) else None, **overrides)


def _llm_from_environment() -> dict | None:
    """The conventional OpenAI/Ollama variables, read here at the edge and passed in."""
    if os.environ.get("RAG_LLM__PROVIDER"):
        return None  # explicit RAG_* settings win; pydantic-settings reads them
    if os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"):
        model = os.environ.get("RAG_LLM_MODEL") or os.environ.get("OPENAI_MODEL")
        if model:
            return {
                "provider": "openai",
                "base_url": os.environ.get("OPENAI_BASE_URL"),
                "api_key": os.environ.get("OPENAI_API_KEY"),
                "model": model,
            }
    return None


def _fail(message: str, code: int = 2) -> int:
    print(f"エラー: {message}", file=sys.stderr)
    return code


# ------------------------------------------------------------------ ingest


def cmd_ingest(args: argparse.Namespace) -> int:
    from rag.index import IndexError_
    from rag.ingest import ingest

    settings = _settings(args)
    bar = _progress_bar()
    try:
        report = ingest(settings, rebuild=args.rebuild, progress=bar)
    except (FileNotFoundError, IndexError_) as exc:
        return _fail(str(exc))
    finally:
        if bar:
            bar.close()
    if report.reason:
        print(f"索引を作り直しました: {report.reason}")
    for f in report.files:
        if f.status == "failed":
            print(f"✗ {f.error}", file=sys.stderr)
            continue
        label = {"added": "追加", "updated": "更新", "removed": "削除", "unchanged": "変更なし"}[f.status]
        line = f"{'✓' if f.status != 'unchanged' else '·'} {f.source}: {label}"
        if f.status != "removed":
            line += f"（{f.pages}ページ、{f.chunks}チャンク）"
        print(line)
        for problem in f.problems:
            print(f"    注意: {problem}")
    if not report.changed and not report.failed and not report.reason:
        print(f"変更はありません（{settings.index_dir}）。")
    elif report.changed or report.reason:
        print(f"索引を更新しました: {settings.index_dir}")
    return 1 if report.failed else 0


class _progress_bar:
    """tqdm bar over files; prints nothing when stderr is not a terminal (CI logs stay readable)."""

    def __new__(cls):
        if not sys.stderr.isatty():
            return None
        return super().__new__(cls)

    def __init__(self):
        from tqdm import tqdm

        self._bar = tqdm(total=0, unit="file", desc="索引作成", leave=False)

    def __call__(self, event) -> None:
        self._bar.total = event.total
        self._bar.n = event.done
        self._bar.set_postfix_str(f"{event.stage} {event.source}"[:60])
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


# ------------------------------------------------------------------ ask


def cmd_ask(args: argparse.Namespace) -> int:
    from rag.index import IndexError_
    from rag.pipeline import Pipeline
    from rag.query import QuestionError

    settings = _settings(args)
    if not Path(settings.index_dir).exists():
        return _fail(f"索引フォルダがありません: {settings.index_dir}。先に `rag ingest` を実行してください")
    try:
        pipeline = Pipeline.load(settings)
    except IndexError_ as exc:
        return _fail(str(exc))
    sources = args.source or None
    if sources:
        unknown = [s for s in sources if s not in pipeline.index.manifest.sources]
        if unknown:
            return _fail(f"索引にない文書です: {', '.join(unknown)}（`rag ingest` の出力で文書名を確認してください）")
    use_llm = False if args.offline else None

    if args.question == "-":
        status = 0
        for line in sys.stdin:
            question = line.rstrip("\n")
            if not question.strip():
                continue
            try:
                answer = pipeline.ask(question, k=args.k, sources=sources, use_llm=use_llm)
                print(json.dumps(answer.to_json(), ensure_ascii=False), flush=True)
            except QuestionError as exc:
                print(json.dumps({"question": question[:200], "error": str(exc)}, ensure_ascii=False), flush=True)
                status = 1
        return status

    try:
        if args.json:
            answer = pipeline.ask(args.question, k=args.k, sources=sources, use_llm=use_llm)
            print(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
            return 0
        answer = None
        for item in pipeline.ask_stream(args.question, k=args.k, sources=sources, use_llm=use_llm):
            if isinstance(item, str):
                print(item, end="", flush=True)
            else:
                answer = item
    except QuestionError as exc:
        return _fail(str(exc))
    if answer.mode != "offline":
        print("\n")
    print(answer.render())
    return 0


# ------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="政策文書RAG: 文書の索引作成・質問応答・評価")
    parser.add_argument("--config", help="設定ファイル（TOML）")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="文書フォルダから索引を作成・更新する（差分のみ）")
    p.add_argument("--corpus", help=f"文書フォルダ（既定: {PROJECT_ROOT / 'corpus'}）")
    p.add_argument("--index", help="索引フォルダ（既定: indexes/default）")
    p.add_argument("--rebuild", action="store_true", help="差分ではなく全体を作り直す")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("ask", help="質問に答える（- で標準入力から1行1問、JSON Lines で出力）")
    p.add_argument("question")
    p.add_argument("--index")
    p.add_argument("--k", type=int, default=None, help="検索する箇所の数")
    p.add_argument("--source", action="append", help="この文書だけを検索（複数指定可）")
    p.add_argument("--json", action="store_true", help="JSONで出力")
    p.add_argument("--offline", action="store_true", help="LLMが設定されていてもオフライン回答を使う")
    p.set_defaults(func=cmd_ask)

    for module in _COMMAND_MODULES:
        importlib.import_module(module).add_cli(sub)
    return parser


# Subcommands whose code lives beside the feature they expose; each module has add_cli(subparsers).
_COMMAND_MODULES = ("rag.serve", "rag.evaluate", "rag.bench", "rag.schemes")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

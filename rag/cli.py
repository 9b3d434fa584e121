"""`rag` command line: a thin shell over the library.

Every subcommand reads settings once here, at the edge, calls the same library
functions as the app, and turns expected failures into one line on stderr
(exit 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from rag.config import PROJECT_ROOT, Settings, SettingsError, load_settings


class CommandError(Exception):
    """An expected failure: the message is the one line the user sees."""


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    overrides: dict[str, object] = dict(extra)
    if getattr(args, "corpus", None):
        overrides["corpus_dir"] = Path(args.corpus)
    if getattr(args, "index", None):
        overrides["index_dir"] = Path(args.index)
    config = Path(args.config) if getattr(args, "config", None) else None
    return load_settings(config, environ=os.environ, **overrides)


def _k(value: str) -> int:
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"整数を指定してください: {value!r}") from None
    if not 1 <= k <= 100:
        raise argparse.ArgumentTypeError(f"1〜100 の範囲で指定してください: {k}")
    return k


def _open_pipeline(settings: Settings):
    from rag.pipeline import Pipeline

    if settings.index.backend == "local" and not Path(settings.index_dir).exists():
        raise CommandError(f"索引フォルダがありません: {settings.index_dir}。先に `rag ingest` を実行してください")
    return Pipeline.load(settings)


# ------------------------------------------------------------------ ingest


def cmd_ingest(args: argparse.Namespace) -> int:
    from rag.embeddings import load_embedder
    from rag.ingest import ingest

    settings = _settings(args)
    # Loaded once: the ingest embeds with it, and the cards' answerer reads the index with it.
    embedder = load_embedder(settings.embedder)
    bar = _ProgressBar.create()
    try:
        report = ingest(settings, rebuild=args.rebuild, progress=bar, embedder=embedder)
    finally:
        if bar:
            bar.close()
    if report.rebuilt_because:
        print(f"索引を作り直しました: {report.rebuilt_because}")
    for f in report.files:
        if f.status == "failed":
            print(f"✗ {f.error}", file=sys.stderr)
            continue
        label = {"added": "追加", "updated": "更新", "removed": "削除", "unchanged": "変更なし"}[f.status]
        line = f"{'✓' if f.status != 'unchanged' else '·'} {f.source}: {label}"
        if f.status != "removed":
            line += f"（{f.pages}ページ、{f.chunks}チャンク）"
        print(line)
        if f.ocr_pages:
            print(f"    OCR: {_ocr_summary(f.ocr_pages)}")
        for problem in f.problems:
            print(f"    注意: {problem}")
    if any("テキスト層がありません" in (f.error or "") for f in report.failed):
        from rag.ocr.pages import PageOcr

        why = PageOcr(settings.ocr, settings.ocr_cache_file).unavailable
        if why:
            print(f"注意: {why}", file=sys.stderr)
    if not report.changed and not report.failed and not report.rebuilt:
        print(f"変更はありません（{settings.index_dir}）。")
    elif report.changed or report.rebuilt:
        print(f"索引を更新しました: {settings.index_dir}")
        if args.cards:
            _refresh_cards(settings, embedder)
    return 1 if report.failed else 0


def _refresh_cards(settings: Settings, embedder) -> None:
    """Scheme cards are made at ingest, so the first `rag schemes --cards` or page view waits for
    none; only documents whose sha256 changed are read again (the cache beside the index)."""
    from rag.cards import cards_for_index
    from rag.pipeline import Pipeline

    pipeline = Pipeline.load(settings, embedder=embedder)
    found = cards_for_index(pipeline, Path(settings.index_dir), progress=lambda source: print(f"… 制度カードのために読んでいます: {source}", file=sys.stderr))
    if found:
        print(f"制度カード: {len(found)}件（`rag schemes --cards` で表示）")


def _ocr_summary(pages: dict[int, float | None]) -> str:
    known = [c for c in pages.values() if c is not None]
    mean = f"、平均信頼度 {sum(known) / len(known):.2f}" if known else ""
    return f"{len(pages)}ページを文字認識しました（p.{', p.'.join(str(p) for p in sorted(pages))}{mean}）"


class _ProgressBar:
    """tqdm bar over files; nothing when stderr is not a terminal (CI logs stay readable)."""

    @classmethod
    def create(cls) -> _ProgressBar | None:
        return cls() if sys.stderr.isatty() else None

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
    from rag.query import QuestionError

    pipeline = _open_pipeline(_settings(args))
    sources = args.source or None
    if sources:
        unknown = [s for s in sources if s not in pipeline.index.manifest.sources]
        if unknown:
            raise CommandError(f"索引にない文書です: {', '.join(unknown)}（`rag ingest` の出力で文書名を確認してください）")
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
            answer = pipeline.ask(args.question, k=args.k, sources=sources, use_llm=use_llm, explain=args.explain)
            print(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
            return 0
        answer = None
        streamed = False
        for item in pipeline.ask_stream(args.question, k=args.k, sources=sources, use_llm=use_llm, explain=args.explain):
            if isinstance(item, str):
                print(item, end="", flush=True)
                streamed = True
            else:
                answer = item
    except QuestionError as exc:
        raise CommandError(str(exc)) from None
    if streamed:
        # The streamed text was the draft; the checked answer (invalid markers removed) replaces it.
        print("\n\n--- 確認済みの回答 ---")
    print(answer.render())
    if args.explain:
        print(f"\n確度: {answer.confidence:.2f}（回答を決めた特徴量と、その得点への寄与）" if answer.confidence is not None else "\n確度: —")
        from rag.answering.features import LABELS

        for name, effect in answer.explanation:
            print(f"  {effect:+.2f}  {LABELS.get(name, name)}（{name}）")
    return 0


# ------------------------------------------------------------------ eval


def _lodo_cases(args: argparse.Namespace, settings: Settings):
    from rag.lodo import collect, load_devsets

    devsets, notes = load_devsets(Path(args.devsets))
    for note in notes:
        print(f"注意: {note}", file=sys.stderr)
    if not devsets:
        raise CommandError(f"評価できる開発用文書がありません（{args.devsets}）")
    index_root = PROJECT_ROOT / "indexes" / "lodo"
    return devsets, collect(settings, devsets, index_root, progress=lambda m: print(f"… {m}", file=sys.stderr))


def cmd_train(args: argparse.Namespace) -> int:
    from rag.answering.features import FEATURES
    from rag.answering.model import MODEL_FILE
    from rag.answering.train import fit_model

    settings = _settings(args)
    devsets, cases = _lodo_cases(args, settings)
    documents = sorted({c.document for c in cases})
    model = fit_model(
        cases, list(FEATURES), fitted_on={"documents": documents, "questions": len(cases), "sets": [d.name for d in devsets]}
    )
    out = Path(args.out) if args.out else MODEL_FILE
    model.save(out)
    print(f"回答モデルを書き出しました: {out}（{len(documents)}文書、{len(cases)}問）")
    print(f"回答しない: 確度 < {model.decline_below:.3f}; 「確度：低」: < {model.low_below:.3f}")
    return 0


def cmd_eval_lodo(args: argparse.Namespace) -> int:
    from rag.answering.features import DESCRIPTIONS, FEATURES, LABELS
    from rag.answering.train import leave_one_document_out
    from rag.evaluate import _fmt, check_floors
    from rag.lodo import baseline_rows, per_document, reliability, reliability_chart, table

    settings = _settings(args)
    unknown = sorted(set(args.disable) - set(FEATURES))
    if unknown:
        raise CommandError(f"知らない特徴量です: {', '.join(unknown)}（使える名前: {', '.join(FEATURES)}）")
    devsets, cases = _lodo_cases(args, settings)
    rows, shown, why = leave_one_document_out(
        cases, list(FEATURES), progress=lambda d: print(f"… {d}", file=sys.stderr), disabled=frozenset(args.disable)
    )
    result = per_document(rows)
    # The plain fusion a user could write in 40 lines, on the same questions and documents.
    baseline = per_document(baseline_rows(cases, devsets, k=args.k))
    bins = reliability(shown)
    result["baseline_rrf"] = baseline
    result["reliability"] = bins
    result["disabled"] = sorted(args.disable)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lodo.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    reliability_chart(bins, out / "reliability.png")
    (out / "lodo_questions.jsonl").write_text(
        "".join(json.dumps({"document": d, **dataclasses.asdict(r)}, ensure_ascii=False) + "\n" for d, rs in rows.items() for r in rs),
        encoding="utf-8",
    )
    failing = [r for rs in rows.values() for r in rs if not r.passed]
    md = ["# leave-one-document-out", "", table(result, baseline), "", "## 確度の信頼性", "",
          "| 確度 | 件数 | 平均確度 | 正答率 |", "|---|---|---|---|"]
    md += [f"| {b['from']:.1f}–{b['to']:.1f} | {b['n']} | {_fmt(b['mean_confidence'])} | {_fmt(b['accuracy'])} |" for b in bins]
    md += ["", f"## 不正解の質問（{len(failing)}件）と、答えを決めた特徴量", ""]
    for r in failing:
        reasons = ", ".join(f"{n} {v:+.2f}" for n, v in why.get(r.id, [])[:5]) or "—"
        md.append(f"- **{r.id}** {r.question} — 正解ページ: {', '.join(r.gold_pages) or 'なし'}; 引用: {', '.join(r.cited_pages) or 'なし'}; "
                  f"欠けた事実: {', '.join(r.missing_facts) or '—'}; 特徴量: {reasons}")
    md += ["", "## 特徴量", ""] + [f"- `{n}`: {LABELS[n]}（{DESCRIPTIONS[n]}）" for n in FEATURES]
    (out / "lodo.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps({k: result[k] for k in ("per_document", "mean", "baseline_rrf", "reliability")}, ensure_ascii=False, indent=2))
    else:
        print(table(result, baseline))
        print(f"\n報告: {out / 'lodo.md'}  信頼性の図: {out / 'reliability.png'}")
    if args.floors:
        breaches = check_floors(result["mean"], json.loads(Path(args.floors).read_text(encoding="utf-8")))
        for line in breaches:
            print(f"回帰: {line}", file=sys.stderr)
        return 1 if breaches else 0
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.cards:
        from rag.cards.cli import cmd_eval_cards

        return cmd_eval_cards(args, _settings(args), _lodo_cases)
    if args.lodo:
        return cmd_eval_lodo(args)
    from rag.evaluate import QAFormatError, by_type_table, check_floors, load_qa, run_eval, summary_table, write_report
    from rag.ingest import ingest

    extra = {}
    if args.corpus and not args.index:
        # A corpus of its own gets an index of its own, never mixed into the default one.
        extra["index_dir"] = PROJECT_ROOT / "indexes" / Path(args.corpus).resolve().name
    settings = _settings(args, **extra)
    try:
        items = load_qa(Path(args.qa))
    except OSError as exc:
        raise CommandError(f"評価データを読めません（{args.qa}: {exc.strerror}）") from None
    except QAFormatError as exc:
        raise CommandError(str(exc)) from None
    if args.corpus:
        for f in ingest(settings).failed:
            print(f"✗ {f.error}", file=sys.stderr)
    pipeline = _open_pipeline(settings)
    run = run_eval(pipeline, items, k=args.k, baselines=not args.no_baselines, use_llm=None if args.llm else False)
    paths = write_report(run, Path(args.out), title=f"評価結果（{Path(args.qa).name}）")
    if args.json:
        print(json.dumps(run.summary, ensure_ascii=False, indent=2))
    else:
        print(summary_table(run.summary))
        print()
        print(by_type_table(run.summary))
        print(f"\n報告: {paths['report']}  図: {paths['chart']}  集計: {paths['summary']}")
    if args.floors:
        floors = json.loads(Path(args.floors).read_text(encoding="utf-8"))
        breaches = check_floors(run.summary, floors)
        for line in breaches:
            print(f"回帰: {line}", file=sys.stderr)
        if breaches:
            return 1
    return 0


# ------------------------------------------------------------------ schemes


def cmd_schemes(args: argparse.Namespace) -> int:
    if args.cards:
        from rag.cards.cli import cmd_scheme_cards

        settings = _settings(args)
        return cmd_scheme_cards(args, settings, _open_pipeline(settings))
    from rag.index.backend import open_index
    from rag.schemes import format_table, schemes_for_index, search_schemes

    settings = _settings(args)
    index = open_index(settings)
    try:
        schemes = schemes_for_index(index)
    finally:
        index.close()
    found = search_schemes(schemes, keyword=args.keyword or "", area=args.area or "")
    if args.json:
        print(json.dumps([s.to_json() for s in found], ensure_ascii=False, indent=2))
        return 0
    if not found:
        condition = "、".join(x for x in (args.keyword and f"キーワード「{args.keyword}」", args.area and f"分野「{args.area}」") if x)
        print(f"該当する制度は見つかりませんでした（{condition or '索引内'}）。")
        return 0
    print(format_table(found))
    print(f"\n{len(found)}件（全{len(schemes)}件中）")
    return 0


# ------------------------------------------------------------------ serve, bench


def cmd_serve(args: argparse.Namespace) -> int:
    from rag.serve import serve

    settings = _settings(args)
    # The app reads its settings at its own edge; hand it what this command was told.
    env = {"RAG_INDEX_DIR": str(settings.index_dir), "RAG_CORPUS_DIR": str(settings.corpus_dir)}
    if args.config:
        env["RAG_CONFIG"] = str(Path(args.config).resolve())
    return serve(settings, args.host, args.port, env)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.ocr:
        from rag.ocr.bench import run_ocr_bench

        try:
            results = run_ocr_bench(workers=args.workers)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        if args.json:
            print(json.dumps(results, ensure_ascii=False, indent=2))
        return 0
    from rag.bench import run_bench

    if args.api:
        from rag.api.loadtest import run_api_bench

        results = run_api_bench(_settings(args), clients=args.clients, seconds=args.seconds)
    else:
        results = run_bench(skip_large=args.skip_large, n_chunks=args.chunks, milvus=args.milvus)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return 0
    for name, r in results.items():
        print(f"{name}: " + (", ".join(f"{k}={v}" for k, v in r.items()) if isinstance(r, dict) else str(r)))
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
    p.add_argument("--no-cards", dest="cards", action="store_false", help="制度カード（公募要領などの要点）を作らない（後で `rag schemes --cards` が作ります）")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("ask", help="質問に答える（- で標準入力から1行1問、JSON Lines で出力）")
    p.add_argument("question")
    p.add_argument("--index")
    p.add_argument("--k", type=_k, default=None, help="検索する箇所の数（1〜100）")
    p.add_argument("--source", action="append", help="この文書だけを検索（複数指定可）")
    p.add_argument("--json", action="store_true", help="JSONで出力")
    p.add_argument("--offline", action="store_true", help="LLMが設定されていてもオフライン回答を使う")
    p.add_argument("--explain", action="store_true", help="回答を決めた特徴量（根拠の内訳）も表示する")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("eval", help="既知の質問と答えで精度を測る（ベースラインも同時に）")
    p.add_argument("--qa", default=str(PROJECT_ROOT / "eval" / "qa.jsonl"))
    group = p.add_mutually_exclusive_group()
    group.add_argument("--corpus", help="この文書フォルダ用の索引を作成・更新してから評価")
    group.add_argument("--index")
    p.add_argument("--k", type=_k, default=10)
    p.add_argument("--out", default=str(PROJECT_ROOT / "eval" / "out"))
    p.add_argument("--json", action="store_true", help="集計を JSON で標準出力に")
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--llm", action="store_true", help="設定された LLM で回答して評価する")
    p.add_argument("--floors", help="下限値の JSON（下回ったら終了コード 1）")
    p.add_argument("--lodo", action="store_true", help="開発用文書で leave-one-document-out（文書ごとに、他の文書だけで学習して評価）")
    p.add_argument("--devsets", default=str(PROJECT_ROOT / "eval" / "lodo.toml"), help="--lodo の文書と質問の一覧（TOML）")
    p.add_argument("--disable", action="append", default=[], metavar="FEATURE", help="--lodo: この特徴量を外して学習する（効果の確認用）")
    p.add_argument("--cards", action="store_true", help="制度カードを正解（eval/cards_gold.jsonl）と比べる（文書ごとの leave-one-document-out）")
    p.add_argument("--cards-gold", default=str(PROJECT_ROOT / "eval" / "cards_gold.jsonl"), help="--cards の正解ファイル")
    p.add_argument("--reuse-folds", action="store_true", help="--cards: 前回の実行で学習した文書ごとの回答モデル（--out/card_folds）を使う（カードの規則を試すとき用）")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="開発用の質問と答えから回答モデル（重み・確度の較正・しきい値）を作る")
    p.add_argument("--devsets", default=str(PROJECT_ROOT / "eval" / "lodo.toml"))
    p.add_argument("--out", default=None, help="書き出す JSON（既定: rag/data/answer_model.json）")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("schemes", help="文書に出てくる補助金・交付金・税制などの制度を一覧する")
    p.add_argument("--index", help="索引フォルダ（既定: indexes/default）")
    p.add_argument("--json", action="store_true", help="JSONで出力")
    p.add_argument("--keyword", help="名称・文脈で絞り込む（空白区切りですべてを含むもの）")
    p.add_argument("--area", help="分野（ページ見出し・スライドの題）で絞り込む（部分一致）")
    p.add_argument("--cards", action="store_true", help="公募要領・支給要領などの制度カード（上限額・補助率・締切など、頁つき）")
    p.set_defaults(func=cmd_schemes)

    p = sub.add_parser("serve", help="チャット画面（Streamlit）を起動する。索引がなければ初回に作成")
    p.add_argument("--port", type=int, default=None, help="既定: 設定の app.port（8501）")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--corpus")
    p.add_argument("--index")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("bench", help="速度とメモリを測る（取り込み・再取り込み・質問応答）")
    p.add_argument("--skip-large", action="store_true", help="10万チャンクの合成索引を作らない（数分かかるため）")
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--milvus", action="store_true", help="10万チャンクの段階を Milvus Lite でも測る（作成・質問・50ページのPDFの追加。時間がかかります）")
    p.add_argument("--api", action="store_true", help="API の負荷試験（127.0.0.1 の1プロセスに同時 --clients 件を --seconds 秒、静止時と再索引中）")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--ocr", action="store_true", help="OCRの精度と速度（スキャンを作って文字の一致率・再現率・ページ/秒）")
    p.add_argument("--workers", type=int, default=0, help="--ocr: 並列に動かす tesseract の数（0: コア数）")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    from rag.api.cli import register as register_api

    register_api(sub, _settings, CommandError)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rag.answering.model import ModelError
    from rag.embeddings import EmbedderError
    from rag.index import IndexError_

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CommandError, SettingsError, IndexError_, EmbedderError, ModelError, FileNotFoundError) as exc:
        print(f"エラー: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

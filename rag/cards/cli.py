"""The card subcommands: ``rag schemes --cards [--json]`` and ``rag eval --cards``.

Kept out of :mod:`rag.cli` so that file only gains the flags; both are thin shells over
:mod:`rag.cards` and :mod:`rag.card_eval`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.config import Settings


def cmd_scheme_cards(args: argparse.Namespace, settings: Settings, pipeline) -> int:
    from rag.cards import cards_for_index, format_cards

    cards = cards_for_index(pipeline, Path(settings.index_dir), progress=lambda s: print(f"… カードを作成: {s}", file=sys.stderr))
    if args.json:
        print(json.dumps([c.to_json() for c in cards], ensure_ascii=False, indent=2))
        return 0
    if not cards:
        print("制度を説明する文書（公募要領・支給要領・ガイドブックなど）が索引にありません。")
        return 0
    print(format_cards(cards))
    print(f"\n{len(cards)}件の制度カード（記載なし = 資料に書かれていない項目）")
    return 0


def cmd_eval_cards(args: argparse.Namespace, settings: Settings, lodo_cases) -> int:
    from rag.answering.model import load_model
    from rag.cards.evaluate import evaluate_cards, failures, fold_models, held_out_cards, load_gold, set_pipelines, table

    gold = load_gold(Path(args.cards_gold))
    out = Path(args.out)
    folds = out / "card_folds"
    if args.reuse_folds and folds.is_dir():
        # Iterating on card rules: the fold models depend only on the Q&A and the answerer,
        # so the ones fitted by the last full run are reused (and the questions not re-asked).
        from rag.config import PROJECT_ROOT
        from rag.lodo import load_devsets
        from rag.pipeline import Pipeline

        devsets, _ = load_devsets(Path(args.devsets))
        pipelines, embedder = {}, None
        for ds in devsets:
            p = Pipeline.load(settings.model_copy(update={"index_dir": PROJECT_ROOT / "indexes" / "lodo" / ds.name}), embedder=embedder)
            pipelines[ds.name], embedder = p, p.embedder
        models = {g.key: load_model(f) for g in gold if (f := folds / (g.key.replace("/", "__") + ".json")).is_file()}
    else:
        _, cases = lodo_cases(args, settings)
        pipelines = set_pipelines(cases)
        models = fold_models(gold, cases, pipelines, progress=lambda d: print(f"… {d}", file=sys.stderr))
        folds.mkdir(parents=True, exist_ok=True)
        for key, model in models.items():
            model.save(folds / (key.replace("/", "__") + ".json"))
    cards = held_out_cards(gold, pipelines, models)
    summary, results = evaluate_cards(gold, cards)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cards.json").write_text(
        json.dumps({"summary": summary, "cards": {k: (c.to_json() if c else None) for k, c in cards.items()}}, ensure_ascii=False, indent=2),
        encoding="utf-8",
    )
    wrong = failures(results, cards, gold)
    md = ["# 制度カード（leave-one-document-out）", "", table(summary), "", f"## 誤った項目（{len(wrong)}件）", "", *wrong]
    (out / "cards.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    print(table(summary))
    s = summary
    print(
        f"\n制度文書 {sum(d['scheme'] for d in s['detection'])}件・記載ありの項目 {s['stated_fields']}・記載なしの項目 {s['unstated_fields']}; "
        f"制度文書の判定 {s['detection_accuracy']:.2f}; 記載なしの項目に値を入れた数 {s['invented']}"
    )
    print(f"報告: {out / 'cards.md'}")
    return 0

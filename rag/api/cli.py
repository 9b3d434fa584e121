"""`rag api` and `rag keys …`: the subcommands of the API, added to the main parser by :mod:`rag.cli`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub, settings_of, command_error) -> None:
    """Add the subcommands.  ``settings_of(args)`` reads settings as the other commands do."""

    def cmd_api(args: argparse.Namespace) -> int:
        from rag.api.server import run

        settings = settings_of(args)
        if not Path(settings.index_dir).exists():
            raise command_error(f"索引フォルダがありません: {settings.index_dir}。先に `rag ingest` を実行してください")
        print(f"API を起動します: http://{args.host or settings.api.host}:{args.port or settings.api.port}（説明は /docs）", flush=True)
        run(settings, args.host, args.port)
        return 0

    def store(args):
        from rag.api.keys import KeyStore

        return KeyStore(settings_of(args).api.keys_db)

    def cmd_keys(args: argparse.Namespace) -> int:
        from rag.access import CollectionError
        from rag.api.keys import KeyError_

        keys = store(args)
        try:
            if args.action == "add":
                cols = [c for c in args.collections.split(",") if c.strip()] if args.collections is not None else None
                key = keys.add(args.name, cols, args.write)
                scope = "すべてのコレクション" if cols is None else "、".join(sorted(cols))
                print(f"キー「{args.name}」を作りました（{scope}、{'読み書き' if args.write else '読み取りのみ'}）。このキーは二度と表示されません:")
                # The key on the last line alone, so scripts can take it with `tail -n 1`.
                print(key)
            elif args.action == "list":
                for k in keys.list():
                    scope = "（すべて）" if k.collections is None else ",".join(k.collections)
                    state = f"無効（{k.revoked_at}）" if k.revoked_at else "有効"
                    print(f"{k.name}\t{scope}\t{'読み書き' if k.can_write else '読み取り'}\t{k.created_at}\t{state}")
            else:
                keys.revoke(args.name)
                print(f"キー「{args.name}」を無効にしました。")
        except (KeyError_, CollectionError) as exc:
            raise command_error(str(exc)) from None
        return 0

    p = sub.add_parser("api", help="HTTP API を起動する（FastAPI。/docs に説明）")
    p.add_argument("--host", default=None, help="既定: 設定の api.host（127.0.0.1）")
    p.add_argument("--port", type=int, default=None, help="既定: 設定の api.port（8000）")
    p.add_argument("--corpus")
    p.add_argument("--index")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("keys", help="API キーの発行・一覧・無効化")
    ks = p.add_subparsers(dest="action", required=True)
    a = ks.add_parser("add", help="キーを発行する（標準出力の最後の行に1度だけ表示）")
    a.add_argument("name")
    a.add_argument("--collections", help="見られるコレクション（カンマ区切り。省略: すべて）")
    a.add_argument("--write", action="store_true", help="文書の追加・削除も許す")
    a.set_defaults(func=cmd_keys)
    ks.add_parser("list", help="キーの一覧（キーそのものは表示しません）").set_defaults(func=cmd_keys)
    r = ks.add_parser("revoke", help="キーを無効にする")
    r.add_argument("name")
    r.set_defaults(func=cmd_keys)

"""`onekeyllm …`: serve the app, or run admin operations straight on the database.

Imports stay inside the commands: `serve` must monkey-patch with gevent before
anything imports sockets or ssl.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional


def _listener(host: str, port: int):
    """The listening socket, with TCP_NODELAY (inherited by accepted sockets on Linux).

    Without it a keep-alive client waits on delayed ACKs between our header
    and body writes: about 40 ms on every request after the first.
    """
    import socket

    from gevent import socket as gsocket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = gsocket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind((host, port))
    listener.listen(2048)
    return listener


def cmd_serve(args: argparse.Namespace) -> int:
    from gevent import monkey

    monkey.patch_all()
    import atexit
    import logging
    import signal

    import gevent
    from gevent.pywsgi import WSGIServer

    from . import create_app
    from .observability.metrics_dir import make_instance_dir, remove_instance_dir

    make_instance_dir()  # before the app imports prometheus_client
    atexit.register(remove_instance_dir)
    app = create_app()
    if args.quiet:
        logging.getLogger("onekeyllm.access").setLevel(logging.WARNING)
    # the app writes the access line (with the request id, in the chosen format); the server only its errors
    server = WSGIServer(_listener(args.host, args.port), app, log=None, error_log=logging.getLogger("onekeyllm.server"))
    gevent.signal_handler(signal.SIGTERM, server.stop, 5)
    gevent.signal_handler(signal.SIGINT, server.stop, 5)
    logging.getLogger("onekeyllm").info("OneKeyLLM listening on http://%s:%s", args.host, args.port)
    server.serve_forever()
    return 0


def _database():
    """Bind the database and make it ready; returns the installation secrets."""
    from .bootstrap import bootstrap
    from .config import Settings
    from .storage.db import init_database

    settings = Settings.from_env()
    init_database(settings.database_url)
    secrets, _ = bootstrap(settings, generate_admin_token=False)
    return secrets


def _show(value) -> None:
    print(json.dumps(value, indent=2))


def _split(value: Optional[str]) -> Optional[list]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _run_admin(handler) -> int:
    from .api_error import ApiError
    from .storage.db import connected
    try:
        with connected():
            handler()
    except ApiError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    secrets = _database()
    from .accounts import registry
    from .money import to_nano
    from .storage.models import ApiKey

    def run():
        if args.action == "create":
            values = {"name": args.name or "", "models": _split(args.models), "rpm": args.rpm,
                      "expires_at": args.expires_at,
                      "budget_nano": to_nano(args.budget) if args.budget is not None else None}
            row, plaintext = registry.create_key(secrets.pepper, values)
            _show(registry.key_view(row, plaintext))
        elif args.action == "list":
            _show([registry.key_view(r) for r in ApiKey.select().where(ApiKey.revoked == False)])  # noqa: E712
        elif args.action == "revoke":
            _show(registry.revoke_key(registry.get_key(args.id)))

    return _run_admin(run)


def cmd_accounts(args: argparse.Namespace) -> int:
    _database()
    from .accounts import registry
    from .storage.models import Account

    def run():
        if args.action == "add":
            values = {"name": args.name, "provider": args.provider, "base_url": args.base_url or "",
                      "api_key": args.api_key or "", "api": args.api, "models": _split(args.models) or [],
                      "weight": args.weight}
            _show(registry.account_view(registry.create_account(values)))
        elif args.action == "list":
            _show([registry.account_view(r) for r in Account.select()])

    return _run_admin(run)


def cmd_models(args: argparse.Namespace) -> int:
    _database()
    from .accounts import registry
    from .money import to_nano
    from .storage.models import CatalogModel

    def run():
        if args.action == "add":
            values = {"id": args.id, "display_name": args.display_name or args.id,
                      "input_nano_per_mtok": to_nano(args.input), "output_nano_per_mtok": to_nano(args.output),
                      "context_window": args.context_window, "max_output_tokens": args.max_output_tokens}
            if args.cached_input is not None:
                values["cached_input_nano_per_mtok"] = to_nano(args.cached_input)
            _show(registry.model_view(registry.save_model(values)))
        elif args.action == "list":
            _show([registry.model_view(r) for r in CatalogModel.select()])

    return _run_admin(run)


def cmd_init(args: argparse.Namespace) -> int:
    """Create or upgrade the schema; print the admin token if this first start generated one."""
    from .bootstrap import bootstrap
    from .config import Settings
    from .observability.logs import configure_logging
    from .storage.db import init_database

    settings = Settings.from_env()
    configure_logging(settings.log_format)
    init_database(settings.database_url)
    _, token = bootstrap(settings)
    if token:
        print("Admin token (shown once, store it now):", token, flush=True)
    return 0


def cmd_admin_token(args: argparse.Namespace) -> int:
    """Replace the stored admin token by a new one, printed once (servers pick it up at their next start)."""
    secrets_ = _database()
    import secrets

    from .accounts.auth import hash_secret
    from .storage.db import connected
    from .storage.models import Setting

    token = "sk-admin-" + secrets.token_urlsafe(32)
    with connected():
        Setting.insert(key="admin_token_hash", value=hash_secret(secrets_.pepper, token)).on_conflict(
            conflict_target=[Setting.key], update={Setting.value: hash_secret(secrets_.pepper, token)}).execute()
    print("New admin token (shown once; restart the servers to apply):", token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onekeyllm", description="OneKeyLLM: one API key, every model.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the gateway with gevent")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--quiet", action="store_true", help="no access log")
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="create, list and revoke user keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create")
    create.add_argument("--name", default="")
    create.add_argument("--budget", help="USD, e.g. 10 or 2.50; none for no limit")
    create.add_argument("--models", help="comma-separated models the key may use")
    create.add_argument("--rpm", type=int)
    create.add_argument("--expires-at", type=int, help="unix seconds")
    keys_sub.add_parser("list")
    revoke = keys_sub.add_parser("revoke")
    revoke.add_argument("id")
    keys.set_defaults(func=cmd_keys)

    accounts = sub.add_parser("accounts", help="add and list upstream accounts")
    acc_sub = accounts.add_subparsers(dest="action", required=True)
    add = acc_sub.add_parser("add")
    add.add_argument("--name", required=True)
    add.add_argument("--provider", required=True, choices=["openai", "anthropic", "echo"])
    add.add_argument("--base-url")
    add.add_argument("--api-key")
    add.add_argument("--api", default="chat", choices=["chat", "responses"])
    add.add_argument("--models", help="comma-separated public model names")
    add.add_argument("--weight", type=int, default=1)
    acc_sub.add_parser("list")
    accounts.set_defaults(func=cmd_accounts)

    models = sub.add_parser("models", help="add and list catalog models")
    mod_sub = models.add_subparsers(dest="action", required=True)
    madd = mod_sub.add_parser("add")
    madd.add_argument("--id", required=True)
    madd.add_argument("--display-name")
    madd.add_argument("--input", default="0", help="USD per million input tokens")
    madd.add_argument("--output", default="0", help="USD per million output tokens")
    madd.add_argument("--cached-input", help="USD per million cached input tokens")
    madd.add_argument("--context-window", type=int)
    madd.add_argument("--max-output-tokens", type=int)
    mod_sub.add_parser("list")
    models.set_defaults(func=cmd_models)

    init = sub.add_parser("init", help="create or upgrade the schema (first start: print the admin token)")
    init.set_defaults(func=cmd_init)

    admin_token = sub.add_parser("admin-token", help="rotate the stored admin token")
    admin_token.add_argument("action", choices=["rotate"])
    admin_token.set_defaults(func=cmd_admin_token)
    return parser


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""`onekeyllm …`: serve the app, or run admin operations straight on the database.

Every admin command is a thin layer over `accounts/registry.py`, the same operations the admin API
runs, and its flags are checked by the admin API's own schemas (`api/admin_schemas.py`): one rule each.

To add a command: write `cmd_<name>(args) -> int` and an `add_<name>(sub)` that declares its parser
(help text on the command and on every flag) and `set_defaults(func=cmd_<name>)`, then list
`add_<name>` in COMMANDS at the bottom.

The database: every command names on stderr the database it opened. Admin commands never create
one: a SQLite file that does not exist, or a database without the schema, is refused with one line
saying how to point at the server's (`ONEKEYLLM_DATABASE_URL` or `--database-url`); `init` and
`serve` create it.

Imports stay inside the commands: `serve` must monkey-patch with gevent before anything imports
sockets or ssl.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from typing import Callable, Optional

from . import __version__
from .storage.opening import (
    DATABASE_ENV,
    DatabaseUnavailable,
    announce_database,
    open_database,
    problems_in_one_line,
)


class CliError(DatabaseUnavailable):
    """A failure the command reports as one line on stderr (no traceback), with its exit status."""


def _settings():
    from .config import Settings

    return Settings.from_env()


def _open(settings, *, create: bool):
    """Bind the database and make it ready (schema, secrets): (secrets, admin token if just generated)."""
    from .bootstrap import bootstrap

    open_database(settings.database_url, create=create)
    with problems_in_one_line(settings.database_url):
        return bootstrap(settings, generate_admin_token=create)


def _database():
    """Open the server's database for an admin command; returns the installation secrets."""
    secrets, _ = _open(_settings(), create=False)
    return secrets


# ---------------------------------------------------------------- shared by the admin commands
def _show(value) -> None:
    print(json.dumps(value, indent=2))


def _split(value: Optional[str]) -> Optional[list]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


CLEAR = object()  # a flag given as `none` / `never`: sent to the schema as JSON null


def _when(value: Optional[str]):
    """A date flag as the admin API takes it: unix seconds (digits) or an ISO 8601 string; `never`: CLEAR."""
    if value is None:
        return None
    text = value.strip()
    if text.lower() in ("none", "never", "null"):
        return CLEAR
    return int(text) if text.isdigit() else text


def _money_flag(value: Optional[str]):
    """`--budget none` is an explicit key without a limit (CLEAR); anything else goes to the schema."""
    return CLEAR if value is not None and value.strip().lower() in ("none", "unlimited") else value


def _flag_of(field: str) -> str:
    """The flag that gave a schema field: budget_usd is --budget, input_usd_per_mtok is --input."""
    if field == "_schema":
        return "input"
    for suffix in ("_usd_per_mtok", "_usd"):
        field = field[:-len(suffix)] if field.endswith(suffix) else field
    return "--" + field.replace("_", "-")


def _loaded(schema_class, values: dict, *, partial: bool = False) -> dict:
    """The flags checked by the admin API's schema for the same operation (flags not given left out)."""
    import marshmallow as ma

    given = {name: None if value is CLEAR else value for name, value in values.items() if value is not None}
    try:
        return schema_class(partial=partial).load(given)
    except ma.ValidationError as error:
        problems = "; ".join(f"{_flag_of(field)}: {' '.join(map(str, text if isinstance(text, list) else [text]))}"
                             for field, text in error.normalized_messages().items())
        raise CliError(f"invalid input: {problems}", status=2) from None


def _run_admin(handler: Callable[[], None]) -> int:
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


# ---------------------------------------------------------------- serve
def parse_bind(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all interfaces) as (host, port)."""
    host, _, port = value.strip().rpartition(":")
    if not port.isdigit():
        raise CliError(f"ONEKEYLLM_BIND must be host:port, not {value!r}", status=2)
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


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
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        reason = "the address is in use (another server?)" if error.errno == errno.EADDRINUSE else error.strerror
        raise CliError(f"cannot listen on {host}:{port}: {reason}; choose another with --port, --host or "
                       f"ONEKEYLLM_BIND") from None
    listener.listen(2048)
    return listener


def cmd_serve(args: argparse.Namespace) -> int:
    from gevent import monkey

    monkey.patch_all()
    import atexit
    import logging
    import signal

    import gevent

    from . import create_app
    from .http.draining import stop_server
    from .http.resolver import answer_numeric_hosts_at_once
    from .http.wsgi_server import make_server
    from .observability.metrics_dir import make_instance_dir, remove_instance_dir

    answer_numeric_hosts_at_once()
    settings = _settings()
    host, port = parse_bind(settings.bind)
    host, port = args.host or host, args.port or port
    listener = _listener(host, port)  # before the database: a busy port must not print a first admin token
    announce_database(settings.database_url)
    make_instance_dir()  # before the app imports prometheus_client
    atexit.register(remove_instance_dir)
    with problems_in_one_line(settings.database_url):
        app = create_app()
    if args.quiet:
        logging.getLogger("onekeyllm.access").setLevel(logging.WARNING)
    # the app writes the access line (with the request id, in the chosen format); the server only its errors
    settings_ = app.extensions["onekeyllm"].settings
    server = make_server(listener, app, settings_, log=None, error_log=logging.getLogger("onekeyllm.server"))
    gevent.signal_handler(signal.SIGTERM, stop_server, server, settings_.graceful_timeout)
    gevent.signal_handler(signal.SIGINT, stop_server, server, settings_.graceful_timeout)
    logging.getLogger("onekeyllm").info("OneKeyLLM listening on http://%s:%s", host, port)
    server.serve_forever()
    return 0


def add_serve(sub) -> None:
    serve = sub.add_parser("serve", help="serve the gateway with gevent (creates the database on first start)",
                           description="Serve the gateway with gevent. Listens on ONEKEYLLM_BIND "
                                       "(default 127.0.0.1:8000); --host and --port override it.")
    serve.add_argument("--host", help="address to listen on (default: the host of ONEKEYLLM_BIND, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: the port of ONEKEYLLM_BIND, 8000)")
    serve.add_argument("--quiet", action="store_true", help="no per-request access log on stderr")
    serve.set_defaults(func=cmd_serve)


def cmd_users(args: argparse.Namespace) -> int:
    """Users' allowances: what an email may put on the keys it creates itself."""
    _database()
    from .accounts import users
    from .accounts.addresses import normalize_address
    from .config import Settings
    from .money import to_nano
    from .storage.models import UserAllowance

    def run():
        if args.action == "list":
            _show([users.allowance_view(r) for r in UserAllowance.select().order_by(UserAllowance.email)])
            return
        email = normalize_address(args.email)
        if args.action == "set":
            values = {name: to_nano(value) for name, value in (("budget_nano", args.budget), ("used_nano", args.used))
                      if value is not None}
            if args.max_keys is not None:
                values["max_keys"] = args.max_keys
            if "budget_nano" not in values and UserAllowance.get_or_none(UserAllowance.email == email) is None:
                raise ValueError(f"'{email}' has no allowance yet: give it a --budget")
            _show(users.allowance_view(users.set_allowance(email, values, Settings.from_env().user_max_keys)))
        elif args.action == "remove":
            _show(users.delete_allowance(users.get_allowance(email)))

    return _run_admin(run)


def add_users(sub) -> None:
    users = sub.add_parser("users", help="list, set and remove users' allowances (keys they may create themselves)",
                           description="Users' allowances: the lifetime total an email may put on the keys it "
                                       "creates itself, and how many live keys it may hold.")
    users_sub = users.add_subparsers(dest="action", required=True)
    users_sub.add_parser("list", help="every allowance, with what it used")
    uset = users_sub.add_parser("set", help="grant or change an email's allowance")
    uset.add_argument("email", help="the user's email address")
    uset.add_argument("--budget", help="USD: the lifetime total the user may put on keys they create")
    uset.add_argument("--max-keys", type=int, help="live keys at most (default ONEKEYLLM_USER_MAX_KEYS)")
    uset.add_argument("--used", help="USD already used (revoked keys included); default: what their keys had")
    uremove = users_sub.add_parser("remove", help="remove an allowance (live keys keep working)")
    uremove.add_argument("email", help="the user's email address")
    users.set_defaults(func=cmd_users)


# ---------------------------------------------------------------- init, admin-token
def cmd_init(args: argparse.Namespace) -> int:
    """Create or upgrade the schema; print the admin token if this first start generated one."""
    from .observability.logs import configure_logging

    settings = _settings()
    configure_logging(settings.log_format)
    _, token = _open(settings, create=True)
    if token:
        print("Admin token (shown once, store it now):", token, flush=True)
    return 0


def add_init(sub) -> None:
    init = sub.add_parser("init", help="create or upgrade the database (first start: print the admin token)",
                          description="Create the schema in ONEKEYLLM_DATABASE_URL, or upgrade it in place. "
                                      "A PostgreSQL database must exist first (createdb).")
    init.set_defaults(func=cmd_init)


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


def add_admin_token(sub) -> None:
    admin_token = sub.add_parser("admin-token", help="rotate the stored admin token",
                                 description="Store a new admin token and print it once; servers use it from "
                                             "their next start (unless ONEKEYLLM_ADMIN_TOKEN is set).")
    admin_token.add_argument("action", choices=["rotate"], help="rotate: replace the token by a new one")
    admin_token.set_defaults(func=cmd_admin_token)


# ---------------------------------------------------------------- keys
def _key_flags(parser, *, creating: bool) -> None:
    parser.add_argument("--name", required=creating, help="a label for the key (who or what uses it)")
    parser.add_argument("--budget", required=creating, metavar="USD",
                        help="spending limit in USD, e.g. 10 or 2.50; `none` for a key without a limit")
    parser.add_argument("--models", metavar="M1,M2", help="comma-separated models the key may use (default: all)")
    parser.add_argument("--rpm", type=int, help="requests per minute the key may make")
    parser.add_argument("--expires-at", metavar="WHEN",
                        help="expiry: ISO 8601 (2026-12-31, 2026-12-31T18:00:00Z) or unix seconds; `never` to clear")
    parser.add_argument("--email", help="the user who owns the key (sees it after logging in)")


def cmd_keys(args: argparse.Namespace) -> int:
    secrets = _database()
    from .accounts import registry
    from .api.admin_schemas import KeyInSchema, KeyPatchSchema

    def flags() -> dict:
        return {"name": args.name, "budget_usd": _money_flag(args.budget), "models": _split(args.models),
                "rpm": args.rpm, "expires_at": _when(args.expires_at), "email": args.email}

    def run():
        if args.action == "create":
            row, plaintext = registry.create_key(secrets.pepper, _loaded(KeyInSchema, flags()))
            _show(registry.key_view(row, plaintext))
        elif args.action == "list":
            _show([registry.key_view(r) for r in registry.live_keys()])
        elif args.action == "update":
            values = _loaded(KeyPatchSchema, {**flags(), "disabled": args.disabled}, partial=True)
            if not values:
                raise CliError("nothing to change: give --budget, --name, --models, --rpm, --expires-at, "
                               "--email, --disable or --enable", status=2)
            _show(registry.key_view(registry.update_key(registry.get_key(args.id), values)))
        elif args.action == "revoke":
            _show(registry.revoke_key(registry.get_key(args.id)))

    return _run_admin(run)


def add_keys(sub) -> None:
    keys = sub.add_parser("keys", help="create, list, update and revoke user keys",
                          description="User keys (sk-lazytech-…). The plaintext is printed once, at creation.")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key (--name and --budget required); prints it once")
    _key_flags(create, creating=True)
    actions.add_parser("list", help="list live keys (never their values)")
    update = actions.add_parser("update", help="change a key's budget, name, models, rpm, expiry or state")
    update.add_argument("id", help="the key's id (key_…)")
    _key_flags(update, creating=False)
    state = update.add_mutually_exclusive_group()
    state.add_argument("--disable", dest="disabled", action="store_const", const=True,
                       help="stop the key working, without revoking it")
    state.add_argument("--enable", dest="disabled", action="store_const", const=False, help="let it work again")
    revoke = actions.add_parser("revoke", help="revoke a key: it stops working at once")
    revoke.add_argument("id", help="the key's id (key_…)")
    keys.set_defaults(func=cmd_keys)


# ---------------------------------------------------------------- accounts
def _account_flags(parser, *, creating: bool) -> None:
    parser.add_argument("--name", required=creating, help="a unique name for the account")
    parser.add_argument("--provider", required=creating, choices=["openai", "anthropic", "echo"],
                        help="the upstream's wire format")
    parser.add_argument("--base-url", metavar="URL",
                        help="the upstream's URL: an openai one includes /v1, an anthropic one does not")
    parser.add_argument("--api-key", metavar="SECRET", help="the upstream credential (stored, never shown)")
    parser.add_argument("--api", choices=["chat", "responses"], help="which OpenAI API to call (default chat)")
    parser.add_argument("--models", metavar="M1,M2", help="comma-separated public model names it serves")
    parser.add_argument("--weight", type=int, help="share of traffic against other accounts (default 1)")
    parser.add_argument("--max-tokens-field", choices=["auto", "max_tokens", "max_completion_tokens"],
                        help="the Chat field that caps output (default auto: max_completion_tokens for "
                             "api.openai.com, max_tokens for every other server)")


def cmd_accounts(args: argparse.Namespace) -> int:
    _database()
    from .accounts import registry
    from .api.admin_schemas import AccountInSchema, AccountPatchSchema
    from .storage.models import Account

    def flags() -> dict:
        return {"name": args.name, "provider": args.provider, "base_url": args.base_url, "api_key": args.api_key,
                "api": args.api, "models": _split(args.models), "weight": args.weight,
                "compat": {"max_tokens_field": args.max_tokens_field} if args.max_tokens_field else None}

    def run():
        if args.action == "add":
            _show(registry.account_view(registry.create_account(_loaded(AccountInSchema, flags()))))
        elif args.action == "list":
            _show([registry.account_view(r) for r in Account.select()])
        elif args.action == "update":
            values = _loaded(AccountPatchSchema, flags(), partial=True)
            if not values:
                raise CliError("nothing to change: give at least one flag", status=2)
            _show(registry.account_view(registry.update_account(registry.get_account(args.id), values)))
        elif args.action in ("enable", "disable"):
            row = registry.get_account(args.id)
            _show(registry.account_view(registry.update_account(row, {"enabled": args.action == "enable"})))
        elif args.action == "remove":
            _show(registry.delete_account(registry.get_account(args.id)))

    return _run_admin(run)


def add_accounts(sub) -> None:
    accounts = sub.add_parser("accounts", help="add, list, update, enable, disable and remove upstream accounts",
                              description="Upstream provider accounts; credentials are write-only.")
    actions = accounts.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="register an upstream account")
    _account_flags(add, creating=True)
    actions.add_parser("list", help="list accounts (credentials redacted)")
    update = actions.add_parser("update", help="change an account; flags not given are kept")
    update.add_argument("id", help="the account's id or name")
    _account_flags(update, creating=False)
    for action, text in (("enable", "route requests to the account again (clears its cooldown)"),
                         ("disable", "stop routing requests to the account"),
                         ("remove", "delete the account")):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("id", help="the account's id or name")
    accounts.set_defaults(func=cmd_accounts)


# ---------------------------------------------------------------- models
def _model_flags(parser, *, creating: bool) -> None:
    if creating:
        parser.add_argument("--id", required=True, help="the public model name clients ask for")
    parser.add_argument("--display-name", help="a human-readable name")
    parser.add_argument("--input", metavar="USD", help="USD per million input tokens")
    parser.add_argument("--output", metavar="USD", help="USD per million output tokens")
    parser.add_argument("--cached-input", metavar="USD", help="USD per million cached input tokens")
    parser.add_argument("--cache-write", metavar="USD",
                        help="USD per million 5-minute cache-write tokens (default 1.25x the input price)")
    parser.add_argument("--cache-write-1h", metavar="USD",
                        help="USD per million 1-hour cache-write tokens (default 2x the input price)")
    parser.add_argument("--context-window", type=int, metavar="TOKENS", help="the model's context window")
    parser.add_argument("--max-output-tokens", type=int, metavar="TOKENS", help="the most output one call may ask")


def cmd_models(args: argparse.Namespace) -> int:
    _database()
    from .accounts import registry
    from .api.admin_schemas import ModelInSchema, ModelPatchSchema
    from .storage.models import CatalogModel

    def flags() -> dict:
        return {"display_name": args.display_name, "input_usd_per_mtok": args.input,
                "output_usd_per_mtok": args.output, "cached_input_usd_per_mtok": args.cached_input,
                "cache_write_usd_per_mtok": args.cache_write, "cache_write_1h_usd_per_mtok": args.cache_write_1h,
                "context_window": args.context_window, "max_output_tokens": args.max_output_tokens}

    def run():
        if args.action == "add":
            values = {"input_usd_per_mtok": "0", "output_usd_per_mtok": "0",
                      **{k: v for k, v in flags().items() if v is not None}, "id": args.id}
            _show(registry.model_view(registry.save_model(_loaded(ModelInSchema, values))))
        elif args.action == "list":
            _show([registry.model_view(r) for r in CatalogModel.select()])
        elif args.action == "update":
            values = _loaded(ModelPatchSchema, flags(), partial=True)
            if not values:
                raise CliError("nothing to change: give at least one flag", status=2)
            _show(registry.model_view(registry.save_model(values, registry.get_model(args.id))))
        elif args.action == "remove":
            _show(registry.delete_model(registry.get_model(args.id)))

    return _run_admin(run)


def add_models(sub) -> None:
    models = sub.add_parser("models", help="add, list, update and remove catalog models and their prices")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a model to the catalog")
    _model_flags(add, creating=True)
    actions.add_parser("list", help="list catalog models with their prices")
    update = actions.add_parser("update", help="change a model's prices or metadata; flags not given are kept")
    update.add_argument("id", help="the model's id")
    _model_flags(update, creating=False)
    remove = actions.add_parser("remove", help="remove a model from the catalog")
    remove.add_argument("id", help="the model's id")
    models.set_defaults(func=cmd_models)


# ---------------------------------------------------------------- usage
def cmd_usage(args: argparse.Namespace) -> int:
    _database()
    from .api.admin_schemas import UnixTime
    from .api.usage import export_usage

    def moment(flag: str, value: Optional[str]) -> Optional[int]:
        import marshmallow as ma

        try:
            return UnixTime().deserialize(_when(value)) if value else None
        except ma.ValidationError as error:
            raise CliError(f"invalid input: --{flag}: {' '.join(error.messages)}", status=2) from None

    def run():
        for chunk in export_usage(args.format, since=moment("since", args.since), until=moment("until", args.until),
                                  key_id=args.key):
            sys.stdout.write(chunk)
        sys.stdout.flush()

    return _run_admin(run)


def add_usage(sub) -> None:
    usage = sub.add_parser("usage", help="export the request log of every key")
    actions = usage.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write request-log rows to stdout, newest first (as the admin "
                                               "API's GET /v1/admin/usage)")
    export.add_argument("--since", metavar="WHEN", help="from this moment on: ISO 8601 or unix seconds")
    export.add_argument("--until", metavar="WHEN", help="before this moment: ISO 8601 or unix seconds")
    export.add_argument("--key", metavar="KEY_ID", help="only this key's requests")
    export.add_argument("--format", choices=["csv", "json"], default="csv",
                        help="csv (a header row, as the admin API's format=csv) or json (one object a line)")
    usage.set_defaults(func=cmd_usage)


# ---------------------------------------------------------------- audit
def cmd_audit(args: argparse.Namespace) -> int:
    """Check that the money adds up (gateway/audit.py); exit 1 on any discrepancy."""
    from .gateway.audit import run_audit
    from .storage.db import connected

    settings = _settings()
    open_database(settings.database_url, create=False)  # read only: no migration, no reclaim before looking
    with problems_in_one_line(settings.database_url), connected():
        report = run_audit()
    for line in report.lines():
        print(line)
    return 1 if report.discrepancies else 0


def add_audit(sub) -> None:
    audit = sub.add_parser("audit", help="check that the money adds up; exit 1 on any discrepancy",
                           description="Checks, in one read-only snapshot, that every key's used amount is the "
                                       "sum of its request-log rows, that no hold outlives its process, and that "
                                       "every row costs its tokens at the prices stored with it; prints each discrepancy "
                                       "and the overage per account.")
    audit.set_defaults(func=cmd_audit)


# ---------------------------------------------------------------- the parser
COMMANDS = (add_serve, add_init, add_keys, add_accounts, add_models, add_users, add_usage, add_admin_token,
            add_audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onekeyllm", description="OneKeyLLM: one API key, every model.",
        epilog=f"Every command reads the server's settings ({DATABASE_ENV}, default sqlite:///onekeyllm.db in "
               "the current folder) and names on stderr the database it opened.")
    parser.add_argument("--version", action="version", version=f"onekeyllm {__version__}")
    parser.add_argument("--database-url", metavar="URL",
                        help=f"the database to work on (overrides {DATABASE_ENV})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.database_url:
        os.environ[DATABASE_ENV] = args.database_url  # Settings.from_env reads it, as for the server
    try:
        return args.func(args)
    except DatabaseUnavailable as error:  # CliError too
        print(f"onekeyllm: {error}", file=sys.stderr)
        return error.status


if __name__ == "__main__":
    sys.exit(main())

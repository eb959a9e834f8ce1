"""Settings from the environment, read once."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Optional


def _env(name: str, default: Optional[str] = None) -> Optional[str]:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _amount(name: str, default: str) -> str:
    """A USD amount from the environment, refused at start when it is not one (not at a user's first login)."""
    from .money import to_nano

    value = _env(name, default)
    try:
        to_nano(value)
    except ValueError:
        raise ValueError(f"{name} must be an amount of USD such as 10 or 2.50, not {value!r}") from None
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///onekeyllm.db"
    admin_token: Optional[str] = None
    jwt_secret: Optional[str] = None
    files_dir: str = "onekeyllm-files"
    smtp_url: Optional[str] = None
    mail_from: str = "noreply@localhost"
    login_code_ttl: int = 600
    login_sends_per_address: int = 3  # per 10 minutes
    login_sends_per_ip: int = 10  # per 10 minutes
    login_guesses_per_ip: int = 30  # per 10 minutes, whatever the addresses (accounts/login.py)
    user_max_keys: int = 5  # live keys an allowance permits unless the admin says otherwise
    login_domains: tuple = ()  # email domains whose users get the self-service allowance at first login
    self_service_budget_usd: str = "0"  # that allowance's lifetime total; 0: no self-service
    upstream_timeout: float = 600.0
    upstream_connect_timeout: float = 10.0
    max_body_bytes: int = 32 * 1024 * 1024
    max_file_bytes: int = 512 * 1024 * 1024
    keepalive_seconds: float = 15.0
    header_timeout: float = 20.0  # a request's line and headers, in all (also an idle keep-alive connection)
    body_timeout: float = 30.0  # a request body's longest pause between two reads
    cors_origins: Optional[str] = None
    trusted_proxies: int = 0  # reverse proxies in front whose X-Forwarded-For / -Proto are believed
    pg_prepared: bool = True  # PostgreSQL: the per-call statements prepared on the server (off behind PgBouncer)
    files_url: Optional[str] = None  # where file contents live: a local path or s3://bucket/prefix (files_dir if unset)
    s3_endpoint_url: Optional[str] = None  # an S3-compatible store that is not AWS (MinIO, Ceph, R2)
    metrics_token: Optional[str] = None  # bearer for GET /metrics (unset: the admin bearer)
    log_format: str = "text"  # "json": one JSON object per log line
    bind: str = "127.0.0.1:8000"  # where `onekeyllm serve` listens (host:port); gunicorn.conf.py reads it too
    console_session_seconds: int = 8 * 3600  # how long a web console sign-in lasts
    lease_seconds: float = 30.0  # a process not heard from this long is dead: others give its holds back
    graceful_timeout: float = 30.0  # SIGTERM: how long calls in flight may take to finish before they are ended
    env_accounts: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Settings":
        """Read every ONEKEYLLM_* variable (and the provider keys) once."""
        accounts = {}
        if _env("OPENAI_API_KEY"):
            accounts["openai"] = {"api_key": _env("OPENAI_API_KEY"),
                                  "base_url": _env("OPENAI_BASE_URL", "https://api.openai.com/v1")}
        if _env("ANTHROPIC_API_KEY"):
            accounts["anthropic"] = {"api_key": _env("ANTHROPIC_API_KEY"),
                                     "base_url": _env("ANTHROPIC_BASE_URL", "https://api.anthropic.com")}
        return cls(
            database_url=_env("ONEKEYLLM_DATABASE_URL", cls.database_url),
            admin_token=_env("ONEKEYLLM_ADMIN_TOKEN"),
            jwt_secret=_env("ONEKEYLLM_JWT_SECRET"),
            files_dir=_env("ONEKEYLLM_FILES_DIR", cls.files_dir),
            smtp_url=_env("ONEKEYLLM_SMTP_URL"),
            mail_from=_env("ONEKEYLLM_MAIL_FROM", cls.mail_from),
            login_code_ttl=int(_env("ONEKEYLLM_LOGIN_CODE_TTL", str(cls.login_code_ttl))),
            login_sends_per_address=int(_env("ONEKEYLLM_LOGIN_SENDS_PER_ADDRESS", str(cls.login_sends_per_address))),
            login_sends_per_ip=int(_env("ONEKEYLLM_LOGIN_SENDS_PER_IP", str(cls.login_sends_per_ip))),
            login_guesses_per_ip=int(_env("ONEKEYLLM_LOGIN_GUESSES_PER_IP", str(cls.login_guesses_per_ip))),
            user_max_keys=int(_env("ONEKEYLLM_USER_MAX_KEYS", str(cls.user_max_keys))),
            login_domains=tuple(d.strip().lower().lstrip("@") for d in (_env("ONEKEYLLM_LOGIN_DOMAINS") or "").split(",")
                                if d.strip()),
            self_service_budget_usd=_amount("ONEKEYLLM_SELF_SERVICE_BUDGET_USD", cls.self_service_budget_usd),
            upstream_timeout=float(_env("ONEKEYLLM_UPSTREAM_TIMEOUT", "600")),
            upstream_connect_timeout=float(_env("ONEKEYLLM_UPSTREAM_CONNECT_TIMEOUT", "10")),
            max_body_bytes=int(_env("ONEKEYLLM_MAX_BODY_BYTES", str(cls.max_body_bytes))),
            max_file_bytes=int(_env("ONEKEYLLM_MAX_FILE_BYTES", str(cls.max_file_bytes))),
            keepalive_seconds=float(_env("ONEKEYLLM_KEEPALIVE_SECONDS", "15")),
            header_timeout=float(_env("ONEKEYLLM_HEADER_TIMEOUT", "20")),
            body_timeout=float(_env("ONEKEYLLM_BODY_TIMEOUT", "30")),
            cors_origins=_env("ONEKEYLLM_CORS_ORIGINS"),
            trusted_proxies=max(0, int(_env("ONEKEYLLM_TRUSTED_PROXIES", "0"))),
            pg_prepared=_env("ONEKEYLLM_PG_PREPARED", "1").strip().lower() not in ("0", "false", "no", "off"),
            files_url=_env("ONEKEYLLM_FILES_URL"),
            s3_endpoint_url=_env("ONEKEYLLM_S3_ENDPOINT_URL"),
            metrics_token=_env("ONEKEYLLM_METRICS_TOKEN"),
            log_format=_env("ONEKEYLLM_LOG_FORMAT", cls.log_format).strip().lower(),
            bind=_env("ONEKEYLLM_BIND", cls.bind),
            console_session_seconds=int(_env("ONEKEYLLM_CONSOLE_SESSION_SECONDS", str(cls.console_session_seconds))),
            lease_seconds=max(1.0, float(_env("ONEKEYLLM_LEASE_SECONDS", str(cls.lease_seconds)))),
            graceful_timeout=max(0.0, float(_env("ONEKEYLLM_GRACEFUL_TIMEOUT", str(cls.graceful_timeout)))),
            env_accounts=accounts,
        )

    def override(self, values: Optional[dict]) -> "Settings":
        """A copy with the given fields replaced (tests, create_app(config=…))."""
        if not values:
            return self
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in values.items() if k in known})

"""Snowflake settings: `defaults.snowflake` resolved into a SnowflakeConfig (references read, the private key
loaded, every problem a ConfigError naming the key and never a value), and a Snowflake error worded for the user
(`explain`: what failed, on which object, for which block, and a hint at the usual cause).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...secrets import REDACTOR, SNOWFLAKE_SECRET_KEYS, literal_secret, load_provider, resolve_references


@dataclass
class SnowflakeConfig:
    """defaults.snowflake with references resolved and the private key loaded (never printed)."""

    account: str
    user: str
    database: str
    schema: str
    role: str | None = None
    warehouse: str | None = None
    password: str | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)  # DER, PKCS#8, unencrypted
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    login_timeout: int | None = None
    network_timeout: int | None = None

    @property
    def auth(self) -> str:
        return "key pair" if self.private_key else "password"


def _where(project, key: str | None = None) -> str:
    path = ("defaults", "snowflake") + ((key,) if key else ())
    lines = getattr(project, "lines", {}) or {}
    probe, line = path, None
    while probe and line is None:
        line = lines.get(probe)
        probe = probe[:-1]
    return f"{project.path}:{line or 1}: {'.'.join(path)}"


def resolve_config(project) -> SnowflakeConfig:
    """defaults.snowflake → a SnowflakeConfig. Every problem is a ConfigError (exit 2) naming the key, never a value."""
    raw = project.defaults.snowflake
    if raw is None:
        raise ConfigError(
            f"{_where(project)}: required to write to Snowflake: account, user, database, schema, and a password "
            "or private key given as a reference like ${SNOWFLAKE_PASSWORD}"
        )
    data: dict[str, Any] = raw.model_dump(by_alias=True, exclude_none=True)
    problems = [f"{_where(project, key)}: {literal}" for key in SNOWFLAKE_SECRET_KEYS
                if (literal := literal_secret(data.get(key), f"SNOWFLAKE_{key.upper()}"))]
    if problems:
        raise ConfigError(problems)
    values = _resolved(project, data, problems)
    has_key = bool(values.get("private_key") or values.get("private_key_file"))
    problems += _missing(project, values, has_key)
    if problems:
        raise ConfigError(problems)
    private_key = _load_private_key(project, values) if has_key else None
    return SnowflakeConfig(
        account=values["account"], user=values["user"], database=values["database"], schema=values["schema"],
        role=values.get("role"), warehouse=values.get("warehouse"), password=values.get("password") or None,
        private_key=private_key, host=values.get("host"), port=values.get("port"), protocol=values.get("protocol"),
        login_timeout=values.get("login_timeout"), network_timeout=values.get("network_timeout"),
    )


def _resolved(project, data: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """Every `${NAME}` in the settings read through the project's secret provider; problems go to `problems`."""
    try:
        provider = load_provider(project.defaults.secrets)
    except Exception as exc:  # noqa: BLE001 - an import problem is a config problem
        raise ConfigError(f"{project.path}: defaults.secrets: cannot load secret provider: {type(exc).__name__}: {exc}") from None

    def resolve(key: str, value: Any) -> Any:
        if not isinstance(value, str) or "${" not in value:
            return value
        return resolve_references(value, provider, lambda message: problems.append(f"{_where(project, key)}: {message}"))

    return {key: resolve(key, value) for key, value in data.items()}


def _missing(project, values: dict[str, Any], has_key: bool) -> list[str]:
    """What a connection needs and the settings do not give (or give twice)."""
    problems = [f"{_where(project, key)}: required key is missing"
                for key in ("account", "user", "database", "schema") if not values.get(key)]
    if values.get("password") and has_key:
        problems.append(f"{_where(project, 'password')}: give either a password or a private key (key-pair auth), not both")
    elif not values.get("password") and not has_key:
        problems.append(
            f"{_where(project)}: no credentials: set private_key_file (or private_key) for key-pair auth, or password, "
            "as references like ${SNOWFLAKE_PRIVATE_KEY}"
        )
    return problems


def _load_private_key(project, values: dict) -> bytes:
    """A PEM private key (file or text, optionally encrypted) → unencrypted PKCS#8 DER, what the connector takes."""
    from cryptography.hazmat.primitives import serialization

    if values.get("private_key"):
        key, where = values["private_key"], _where(project, "private_key")
        # Keys passed through environment variables often arrive with literal \n
        pem = key.replace("\\n", "\n").encode()
    else:
        path = Path(values["private_key_file"]).expanduser()
        if not path.is_absolute():
            path = Path(project.path).parent / path
        where = _where(project, "private_key_file")
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the private key file {path}: {exc.strerror or type(exc).__name__}") from None
    passphrase = values.get("private_key_passphrase")
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase.encode() if passphrase else None)
    except TypeError:
        hint = "the key is encrypted: set private_key_passphrase" if not passphrase else "the key is not encrypted: remove private_key_passphrase"
        raise ConfigError(f"{where}: {hint}") from None
    except ValueError:
        raise ConfigError(f"{where}: not a PEM private key, or the passphrase is wrong") from None
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


# ---------------------------------------------------------------- error messages


def _hint(errno: int | None, message: str, cfg: SnowflakeConfig) -> str:
    role = cfg.role or "(the user's default role)"
    low = message.lower()
    if errno in (390100, 390101, 390102, 390103, 390144, 390190, 390195, 390318, 394304) or "jwt" in low or "incorrect username" in low:
        return (f"authentication failed for user {cfg.user} on account {cfg.account} ({cfg.auth}): check the user, "
                "the secret the reference points to, and for key-pair auth that the public key is set on the user")
    if errno in (250001, 250003, 251005, 251006, 251011, 251012) or "could not connect" in low:
        return f"cannot reach Snowflake account {cfg.account}: check defaults.snowflake.account (the account identifier) and the network"
    if "resource monitor" in low or "quota" in low:
        return "the warehouse's resource monitor quota is used up: ask the platform team to raise it, then rerun (nothing after the last checkpoint was committed)"
    if errno == 606 or "no active warehouse" in low:
        return (f"no usable warehouse: {cfg.warehouse or 'none is configured (defaults.snowflake.warehouse)'}; check it exists "
                f"and role {role} has USAGE on it")
    if errno in (90105, 90106) or "does not have a current" in low:
        return f"database {cfg.database} / schema {cfg.schema} is missing or role {role} has no USAGE on it"
    if errno == 3001 or "insufficient privileges" in low:
        return f"role {role} lacks a privilege here; docs/snowflake.md lists the grants the loader role needs"
    if errno in (2003, 2043) or "does not exist or not authorized" in low:
        return (f"the object does not exist or role {role} cannot see it: check USAGE on database {cfg.database} and "
                f"schema {cfg.schema}, and CREATE TABLE / CREATE STAGE on the schema")
    if errno == 625 or ("lock" in low and ("transaction" in low or "timeout" in low)):
        return ("another transaction holds a lock on it (a concurrent run, or a killed run's detached transaction: "
                "SELECT SYSTEM$ABORT_TRANSACTION(<id>) from SHOW TRANSACTIONS, or wait for Snowflake to abort it)")
    if errno == 630 or "timeout" in low:
        return "the statement timed out (STATEMENT_TIMEOUT_IN_SECONDS of the warehouse, user or account)"
    return "see the Snowflake error above; data and state committed before it are kept"


def explain(exc: BaseException, action: str, obj: str, block: str | None, cfg: SnowflakeConfig) -> str:
    errno = getattr(exc, "errno", None)
    sqlstate = getattr(exc, "sqlstate", None)
    sfqid = getattr(exc, "sfqid", None)
    message = getattr(exc, "raw_msg", None) or getattr(exc, "msg", None) or str(exc)
    message = " ".join(str(message).split())[:400]
    code = []
    if isinstance(errno, int) and errno > 0:
        code.append(f"error {errno:06d}")
    if sqlstate and sqlstate != "n/a":
        code.append(f"SQL state {sqlstate}")
    if sfqid:
        code.append(f"query id {sfqid}")
    where = f" for block {block}" if block else ""
    text = f"Snowflake: cannot {action} {obj}{where}: {message}"
    if code:
        text += f" ({', '.join(code)})"
    return REDACTOR.redact(f"{text}. Hint: {_hint(errno if isinstance(errno, int) else None, message, cfg)}")

"""INSi configuration of this installation: the ``setting`` table, the environment, the command line.

Each value is taken from, in this order: the explicit argument (``--insi-url``,
``--insi-timeout``), the environment (:data:`ENV_VARS`), the ``setting`` table (keys
``insi.<name>``, written by :func:`save_insi_settings`), then a default. The instance uuid
(``LPS/Instance`` of the ``ContexteLPS`` header) is the ``instance_uuid`` row that migration 0001
creates; a database without it gets one on first use.

Passwords of the establishment's certificate (PEM key, PKCS#12 bundle) come from the
environment only: they are never written to the database.

Defaults: the software name ``insdesk`` and its installed version; the IDAM (CNDA authorisation
number) has no default for a real endpoint (``https://``) — the configuration is then refused
before any call — and is ``IDAM-SIMULATEUR`` towards a loopback ``http://`` simulator.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import metadata
from typing import Final
from urllib.parse import urlsplit

from sqlmodel import Session

from services.environment import check_environment_value
from services.errors import BadRequest
from services.insi.config import InsiConfig, RetryPolicy, is_loopback_host
from services.settings_store import read_settings, store_settings
from services.storage.db import Database
from services.storage.models import INSTANCE_UUID_KEY, Setting, new_instance_uuid
from services.users import Actor, Right, require

__all__ = [
    "DEFAULT_SOFTWARE_NAME",
    "ENV_URL",
    "ENV_VARS",
    "SETTING_KEYS",
    "SIMULATOR_IDAM",
    "insi_settings",
    "instance_uuid",
    "load_insi_config",
    "save_insi_settings",
]

SETTING_PREFIX: Final = "insi."
ENV_URL: Final = "INSDESK_INSI_URL"
DEFAULT_SOFTWARE_NAME: Final = "insdesk"
SIMULATOR_IDAM: Final = "IDAM-SIMULATEUR"

SETTING_KEYS: Final[tuple[str, ...]] = (
    "endpoint",
    "idam",
    "software_name",
    "software_version",
    "emitter",
    "cert_file",
    "key_file",
    "pkcs12_file",
    "verify",
    "proxy",
    "connect_timeout",
    "read_timeout",
    "retry_max_attempts",
    "retry_backoff",
    "retry_deadline",
    "environment",
)
"""Names stored as ``insi.<name>`` in the ``setting`` table."""

ENV_VARS: Final[Mapping[str, str]] = {
    "endpoint": ENV_URL,
    "idam": "INSDESK_INSI_IDAM",
    "emitter": "INSDESK_INSI_EMITTER",
    "cert_file": "INSDESK_INSI_CERT",
    "key_file": "INSDESK_INSI_KEY",
    "pkcs12_file": "INSDESK_INSI_P12",
    "verify": "INSDESK_INSI_CA",
    "read_timeout": "INSDESK_INSI_TIMEOUT",
}
ENV_KEY_PASSWORD: Final = "INSDESK_INSI_KEY_PASSWORD"
ENV_P12_PASSWORD: Final = "INSDESK_INSI_P12_PASSWORD"

_FLOATS: Final = {
    "connect_timeout": "le délai de connexion",
    "read_timeout": "le délai de réponse",
    "retry_backoff": "le délai entre deux tentatives",
    "retry_deadline": "le délai total d'un appel",
}
_INTS: Final = {"retry_max_attempts": "le nombre de tentatives"}


def _software_version() -> str:
    try:
        return metadata.version("insdesk")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0"


def insi_settings(session: Session) -> dict[str, str]:
    """The ``insi.*`` rows of the ``setting`` table, by name (without the prefix)."""
    return read_settings(session, SETTING_PREFIX)


def instance_uuid(db: Database) -> str:
    """The installation's uuid (``setting.instance_uuid``), created when missing."""
    with db.session() as session:
        row = session.get(Setting, INSTANCE_UUID_KEY)
        if row is not None and row.value.strip():
            return row.value.strip()
    with db.transaction() as session:
        row = session.get(Setting, INSTANCE_UUID_KEY)
        if row is None or not row.value.strip():
            value = new_instance_uuid()
            if row is None:
                session.add(Setting(key=INSTANCE_UUID_KEY, value=value))
            else:
                row.value = value
                session.add(row)
            return value
        return row.value.strip()


def _number(name: str, text: str) -> float:
    label = _FLOATS.get(name) or _INTS.get(name) or name
    try:
        value = int(text) if name in _INTS else float(text)
    except ValueError:
        raise BadRequest(
            f"Configuration INSi : {label} doit être un nombre, pas « {text} ».", code="insi_config"
        ) from None
    if value != value or value <= 0:  # NaN or not positive
        raise BadRequest(f"Configuration INSi : {label} doit être positif.", code="insi_config")
    return value


def load_insi_config(
    db: Database,
    *,
    endpoint: str | None = None,
    read_timeout: float | None = None,
    emitter: str | None = None,
    env: Mapping[str, str] | None = None,
) -> InsiConfig:
    """The :class:`InsiConfig` of this installation (``BadRequest``, exit 2, when incomplete:
    no endpoint, ``http://`` to another host than loopback, no IDAM for a real endpoint...).

    ``emitter`` is the fallback ``Emetteur`` (the acting user's login) when none is configured.
    """
    environ = os.environ if env is None else env
    with db.session() as session:
        stored = insi_settings(session)

    def value(name: str, explicit: str | None = None) -> str | None:
        if explicit is not None and explicit.strip():
            return explicit.strip()
        var = ENV_VARS.get(name)
        if var is not None and environ.get(var, "").strip():
            return environ[var].strip()
        text = stored.get(name, "").strip()
        return text or None

    url = value("endpoint", endpoint) or ""
    idam = value("idam")
    if idam is None:
        try:
            parts = urlsplit(url)
            local_http = parts.scheme.lower() == "http" and is_loopback_host(parts.hostname or "")
        except ValueError:
            local_http = False
        idam = SIMULATOR_IDAM if local_http else ""
    numbers: dict[str, float] = {}
    for name in (*_FLOATS, *_INTS):
        text = value(name)
        if text is not None:
            numbers[name] = _number(name, text)
    if read_timeout is not None:
        numbers["read_timeout"] = _number("read_timeout", str(read_timeout))
    defaults = RetryPolicy()
    retry = RetryPolicy(
        max_attempts=int(numbers.get("retry_max_attempts", defaults.max_attempts)),
        backoff_base=numbers.get("retry_backoff", defaults.backoff_base),
        backoff_max=max(defaults.backoff_max, numbers.get("retry_backoff", defaults.backoff_base)),
        total_deadline=numbers.get("retry_deadline", defaults.total_deadline),
    )
    optional: dict[str, object] = {}
    for name in ("cert_file", "key_file", "pkcs12_file", "verify", "proxy"):
        text = value(name)
        if text is not None:
            optional[name] = text
    if "connect_timeout" in numbers:
        optional["connect_timeout"] = numbers["connect_timeout"]
    if "read_timeout" in numbers:
        optional["read_timeout"] = numbers["read_timeout"]
    key_password = environ.get(ENV_KEY_PASSWORD)
    p12_password = environ.get(ENV_P12_PASSWORD)
    return InsiConfig(
        endpoint=url,
        idam=idam,
        software_name=value("software_name") or DEFAULT_SOFTWARE_NAME,
        software_version=value("software_version") or _software_version(),
        instance_id=instance_uuid(db),
        emitter=value("emitter") or (emitter or "").strip() or DEFAULT_SOFTWARE_NAME,
        key_password=key_password if key_password else None,
        pkcs12_password=p12_password if p12_password else None,
        retry=retry,
        **optional,  # type: ignore[arg-type]
    )


def save_insi_settings(session: Session, *, actor: Actor, values: Mapping[str, str | None]) -> dict[str, str]:
    """Store ``insi.*`` settings (Right.CONFIG; ``None`` or an empty text removes one); audited
    ``config.changed``. Returns the stored settings. Passwords are refused: environment only."""
    require(actor, Right.CONFIG)
    checked: dict[str, str | None] = dict(values)
    for name, raw in values.items():
        text = raw.strip() if isinstance(raw, str) else ""
        if text and (name in _FLOATS or name in _INTS):
            _number(name, text)
        if text and name == "environment":  # test or production (services.environment)
            checked[name] = check_environment_value(text)
    values = checked
    return store_settings(
        session, actor=actor, prefix=SETTING_PREFIX, allowed=SETTING_KEYS, values=values, label="INSi"
    )

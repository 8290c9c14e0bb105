"""The one place that builds what the desk and the command line talk to, from the configuration.

:func:`build_services` reads the configuration of this installation — the database, the INSi
endpoint, certificate and environment, the card reader, the outbox, the lab identity, the desk's
own settings — and returns :class:`DeskServices`: the object the TUI receives (``InsdeskApp``),
the command line uses (``CliContext.services``) and the demo builds too (the demo is one more
configuration: its database, its simulator's URL, the simulated reader). Later senders (the DMP)
are one more ``outbox.kind`` here.

Where each value comes from, in this order: the explicit argument (a command-line option, the
demo), the environment, the ``setting`` table (``insi.*``, ``desk.*``, ``outbox.*``, ``cda.*``,
written by ``insdesk config set`` or the « Configuration » screen, audited), then a default.

Nothing is created at import time and nothing heavy is imported here: the INSi client (httpx,
lxml), the PC/SC reader (pyscard) and the CDA sender (saxonche) are imported when first used,
so that the login screen does not wait for them.

=====================  ==========================================  =======================
setting                environment                                 default
=====================  ==========================================  =======================
``desk.site_name``     ``INSDESK_SITE``                            « Laboratoire »
``desk.reader``        ``INSDESK_READER`` (``--reader``)            PC/SC: the first reader
                                                                   holding a card
``desk.lock_minutes``  ``INSDESK_LOCK_MINUTES``                    10 (0: never)
``outbox.kind``        —                                           ``file``
``outbox.folder``      ``INSDESK_OUTBOX`` (``--outbox``)            ``outbox/`` in the user
                                                                   data directory
``dmp.url``            —                                           — (``outbox.kind=dmp``)
``dmp.structure_id``   —                                           —
``dmp.structure_name`` —                                           —
=====================  ==========================================  =======================

``outbox.kind=dmp``: ready reports go to the DMP / Mon Espace Santé through
:class:`services.dmp.DmpSender` (ITI-41); its certificates come from the environment only
(``INSDESK_DMP_CERT``/``KEY``, ``INSDESK_DMP_SIGN_CERT``/``KEY``, ``INSDESK_DMP_CA``, read when the
sender is made), plain ``http://`` only towards a loopback address.

``desk.reader``: a part of the PC/SC reader's name (« Gemalto », « 00 01 »), ``sim`` for the
demo's simulated card, ``aucun`` for a desk without a reader (F3 then says so).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from services.errors import BadRequest, ExternalFailure
from services.storage.db import Database, resolve_database_url, url_without_password
from services.users import Actor

if TYPE_CHECKING:
    from sqlmodel import Session

    from services.insi.client import InsiClient
    from services.results.outbox import ReportSender
    from services.vitale.model import CardRead

__all__ = [
    "DESK_PREFIX",
    "DESK_SETTING_KEYS",
    "DMP_PREFIX",
    "DMP_SETTING_KEYS",
    "OUTBOX_KINDS",
    "OUTBOX_PREFIX",
    "OUTBOX_SETTING_KEYS",
    "READER_NONE",
    "READER_SIMULATED",
    "Configuration",
    "ConfiguredReader",
    "DeskServices",
    "InsiFactory",
    "build_services",
    "read_configuration",
]

DESK_PREFIX: Final = "desk."
DESK_SETTING_KEYS: Final[tuple[str, ...]] = ("site_name", "reader", "lock_minutes")
OUTBOX_PREFIX: Final = "outbox."
OUTBOX_SETTING_KEYS: Final[tuple[str, ...]] = ("kind", "folder")
OUTBOX_KINDS: Final[tuple[str, ...]] = ("file", "dmp")
DMP_PREFIX: Final = "dmp."
DMP_SETTING_KEYS: Final[tuple[str, ...]] = ("url", "structure_id", "structure_name")

ENV_SITE: Final = "INSDESK_SITE"
ENV_READER: Final = "INSDESK_READER"
ENV_LOCK: Final = "INSDESK_LOCK_MINUTES"
ENV_INSI_URL: Final = "INSDESK_INSI_URL"
ENV_OUTBOX: Final = "INSDESK_OUTBOX"

READER_SIMULATED: Final = "sim"
READER_NONE: Final = ("aucun", "none", "non")
DEFAULT_SITE: Final = "Laboratoire"
DEFAULT_LOCK_MINUTES: Final = 10.0


def check_desk_setting(name: str, value: str) -> None:
    """Refuse a ``desk.*`` value that cannot work (``BadRequest``, exit 2)."""
    if name == "lock_minutes" and value.strip():
        try:
            minutes = float(value.replace(",", "."))
        except ValueError:
            raise BadRequest(
                f"desk.lock_minutes : un nombre de minutes est attendu, pas « {value} » (0 : jamais).",
                code="desk_setting",
            ) from None
        if minutes != minutes or minutes < 0:
            raise BadRequest("desk.lock_minutes : le délai ne peut pas être négatif.", code="desk_setting")


def check_outbox_setting(name: str, value: str) -> None:
    if name == "kind" and value.strip() and value.strip() not in OUTBOX_KINDS:
        raise BadRequest(
            f"outbox.kind : « {value} » inconnu (valeurs possibles : {', '.join(OUTBOX_KINDS)}).",
            code="outbox_setting",
        )


def check_dmp_setting(name: str, value: str) -> None:
    """Refuse a ``dmp.url`` that is not https (or http to this machine) before it is stored (exit 2)."""
    if name != "url" or not value.strip():
        return
    from services.dmp.config import is_loopback_host

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(
            f"dmp.url : une adresse https://… est attendue, pas « {value} ».", code="dmp_setting"
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise BadRequest(
            "dmp.url : le DMP ne s'appelle qu'en https:// (TLS mutuel) ; http:// n'est permis que vers "
            f"cette machine (127.0.0.1, localhost), pas vers « {parts.hostname} ».",
            code="dmp_setting",
        )


SETTING_SECTIONS: Final[tuple[str, ...]] = ("insi", "cda", "desk", "outbox", "dmp")


def save_settings(session: Session, actor: Actor, by_section: Mapping[str, Mapping[str, str | None]]) -> None:
    """Store settings by section (``insi``, ``cda``, ``desk``, ``outbox``, ``dmp``; ``config set`` and the
    « Configuration » screen): Right.CONFIG, each section's change one audited ``config.changed``
    event; an empty value removes a setting."""
    from services.insi.settings import save_insi_settings
    from services.results.cda import LAB_SETTING_KEYS
    from services.results.cda import SETTING_PREFIX as CDA_PREFIX
    from services.settings_store import store_settings

    unknown = sorted(set(by_section) - set(SETTING_SECTIONS))
    if unknown:
        raise BadRequest(f"Section de réglages inconnue : {', '.join(unknown)}.", code="setting_section")
    if by_section.get("insi"):
        save_insi_settings(session, actor=actor, values=by_section["insi"])
    if by_section.get("cda"):
        store_settings(
            session,
            actor=actor,
            prefix=CDA_PREFIX,
            allowed=LAB_SETTING_KEYS,
            values=by_section["cda"],
            label="CDA",
        )
    sections: tuple[tuple[str, str, tuple[str, ...], Callable[[str, str], None], str], ...] = (
        ("desk", DESK_PREFIX, DESK_SETTING_KEYS, check_desk_setting, "du poste"),
        ("outbox", OUTBOX_PREFIX, OUTBOX_SETTING_KEYS, check_outbox_setting, "d'envoi"),
        ("dmp", DMP_PREFIX, DMP_SETTING_KEYS, check_dmp_setting, "du DMP"),
    )
    for section, prefix, keys, check, label in sections:
        values = by_section.get(section) or {}
        if not values:
            continue
        for name, value in values.items():
            if name in keys and value:
                check(name, value)
        store_settings(session, actor=actor, prefix=prefix, allowed=keys, values=values, label=label)


# ---------------------------------------------------------------------------------------------
# What the configuration says


@dataclass(frozen=True)
class Configuration:
    """The configuration of this installation, resolved (values and where each came from)."""

    database_url: str
    site_name: str
    insi_endpoint: str | None
    insi_endpoint_source: str | None
    """``option``, ``environment``, ``setting`` (None: not configured)."""
    insi_environment: str | None
    """``insi.environment`` (``test`` or ``production``), None when not declared."""
    reader: str | None
    """A part of a reader name, ``sim``; None: the first PC/SC reader holding a card."""
    reader_disabled: bool
    lock_minutes: float
    outbox_kind: str
    outbox_folder: Path
    settings: Mapping[str, str] = field(default_factory=dict)
    """Every ``setting`` row read (``insi.*``, ``desk.*``, ``outbox.*``, ``cda.*``, ``dmp.*``)."""

    def dmp_setting(self, name: str) -> str:
        """``dmp.<name>`` as stored (``""`` when not set)."""
        return self.settings.get(DMP_PREFIX + name, "").strip()

    @property
    def insi_configured(self) -> bool:
        return bool(self.insi_endpoint)

    @property
    def insi_is_simulator(self) -> bool:
        """A plain ``http://`` endpoint: only allowed to loopback, i.e. the local simulator."""
        return bool(self.insi_endpoint) and urlsplit(self.insi_endpoint or "").scheme.lower() == "http"


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def read_configuration(
    db: Database,
    *,
    env: Mapping[str, str] | None = None,
    insi_endpoint: str | None = None,
    reader: str | None = None,
    site_name: str | None = None,
    outbox_folder: str | Path | None = None,
) -> Configuration:
    """The configuration of ``db``'s installation (explicit arguments first, see the module doc)."""
    from sqlmodel import select

    from services.storage.models import Setting

    environ = os.environ if env is None else env
    prefixes = ("insi.", DESK_PREFIX, OUTBOX_PREFIX, "cda.", DMP_PREFIX)
    with db.session() as session:
        rows = session.exec(select(Setting)).all()  # a few dozen rows
    settings = {row.key: row.value for row in rows if row.key.startswith(prefixes)}

    endpoint_source: str | None = None
    endpoint = (insi_endpoint or "").strip() or None
    if endpoint:
        endpoint_source = "option"
    elif _env(environ, ENV_INSI_URL):
        endpoint, endpoint_source = _env(environ, ENV_INSI_URL), "environment"
    elif settings.get("insi.endpoint", "").strip():
        endpoint, endpoint_source = settings["insi.endpoint"].strip(), "setting"

    reader_value = (
        (reader or "").strip() or _env(environ, ENV_READER) or settings.get("desk.reader", "").strip()
    )
    disabled = reader_value.casefold() in READER_NONE
    lock_text = _env(environ, ENV_LOCK) or settings.get("desk.lock_minutes", "").strip()
    lock = DEFAULT_LOCK_MINUTES
    if lock_text:
        check_desk_setting("lock_minutes", lock_text)
        lock = float(lock_text.replace(",", "."))
    folder = (
        Path(outbox_folder)
        if outbox_folder
        else Path(_env(environ, ENV_OUTBOX) or settings.get("outbox.folder", "").strip() or _default_outbox())
    )
    environment = settings.get("insi.environment", "").strip().casefold() or None
    return Configuration(
        database_url=db.url,
        site_name=(site_name or "").strip()
        or _env(environ, ENV_SITE)
        or settings.get("desk.site_name", "").strip()
        or DEFAULT_SITE,
        insi_endpoint=endpoint,
        insi_endpoint_source=endpoint_source,
        insi_environment=environment,
        reader=None if disabled or not reader_value else reader_value,
        reader_disabled=disabled,
        lock_minutes=lock,
        outbox_kind=settings.get("outbox.kind", "").strip() or "file",
        outbox_folder=folder,
        settings=settings,
    )


def _default_outbox() -> str:
    from services.storage.db import user_data_dir

    return str(user_data_dir() / "outbox")


# ---------------------------------------------------------------------------------------------
# The services


class InsiFactory:
    """An INSi client per search, the agent's login as ``Emetteur`` (insi-protocol.md), built
    from the installation's INSi configuration at each call (a settings change applies at once).

    ``config_hook`` may adjust the :class:`~services.insi.config.InsiConfig` (tests: quicker
    retries). Raises ``BadRequest`` / ``InsiTlsError`` (French) when the configuration is
    incomplete or the certificate unusable: the desk shows it in its error modal.
    """

    def __init__(
        self,
        db: Database,
        endpoint: str,
        *,
        env: Mapping[str, str] | None = None,
        config_hook: Callable[[Any], Any] | None = None,
    ) -> None:
        self.db = db
        self.endpoint = endpoint
        self.env = env
        self.config_hook = config_hook

    def config(self, actor: Actor | None = None) -> Any:
        from services.insi.settings import load_insi_config

        config = load_insi_config(
            self.db, endpoint=self.endpoint, emitter=actor.login if actor else None, env=self.env
        )
        return self.config_hook(config) if self.config_hook is not None else config

    def __call__(self, actor: Actor) -> InsiClient:
        from services.insi.client import InsiClient

        return InsiClient(self.config(actor))


class ConfiguredReader:
    """The card reader of this desk: PC/SC (pyscard) or the demo's simulated card, and the
    reader name of the configuration (a substring; None: the first reader holding a card).

    Same interface as the backends (``read``, ``list_readers``, ``wait_for_card``, ``monitor``);
    the backend is created on first use (pyscard is imported then).
    """

    def __init__(
        self, name: str | None = None, *, backend: Any | None = None, apdu_timeout: float = 5.0
    ) -> None:
        self.simulated = (name or "").strip().casefold() == READER_SIMULATED
        self.name = None if self.simulated else ((name or "").strip() or None)
        self._backend = backend
        self.apdu_timeout = apdu_timeout

    @property
    def backend(self) -> Any:
        if self._backend is None:
            if self.simulated:
                from services.vitale.simulated import SimulatedReader

                self._backend = SimulatedReader()
            else:
                from services.vitale.pcsc import PcscReader

                self._backend = PcscReader(apdu_timeout=self.apdu_timeout)
        return self._backend

    @property
    def label(self) -> str:
        if self.simulated:
            return "simulé"
        return f"« {self.name} »" if self.name else "PC/SC"

    def read(self, reader: str | None = None) -> CardRead:
        card: CardRead = self.backend.read(reader or self.name)
        return card

    def list_readers(self) -> list[str]:
        readers: list[str] = self.backend.list_readers()
        return readers

    def wait_for_card(self, timeout: float) -> Any:
        return self.backend.wait_for_card(timeout)

    def monitor(self, on_insert: Any, on_remove: Any) -> Any:
        return self.backend.monitor(on_insert, on_remove)


@dataclass
class DeskServices:
    """Everything the desk (TUI) and the commands talk to; built by :func:`build_services`,
    or by the tests (fakes, the simulator)."""

    db: Database
    site_name: str = DEFAULT_SITE
    insi_label: str = "non configuré"
    reader_label: str = "aucun lecteur"
    insi: Any | None = None
    """The INSi client factory (``actor -> InsiClient``) or a client; None: « Service INSi non configuré »."""
    reader: Any | None = None
    """The carte Vitale reader (F3); None: « Aucun lecteur »."""
    configuration: Configuration | None = None
    """What :func:`build_services` read (None for services built by hand: no probe, no settings)."""
    lock_minutes: float = 0.0
    """Lock the desk after this idle time (0: never)."""
    login_hint: str | None = None
    """Shown on the login screen (the demo's accounts)."""
    sender_factory: Callable[[], ReportSender] | None = None
    env: Mapping[str, str] | None = None
    """The environment the configuration was read from (None: the process's)."""
    rebuild: Callable[[], DeskServices] | None = None
    """Build these services again from the configuration (after a settings change)."""
    on_close: list[Callable[[], None]] = field(default_factory=list)

    def sender(self) -> ReportSender:
        """The outbox sender of ``outbox.kind`` (CDA reports to Mon Espace Santé)."""
        if self.sender_factory is not None:
            return self.sender_factory()
        folder = self.configuration.outbox_folder if self.configuration is not None else None
        return make_sender("file", folder)

    @property
    def sender_label(self) -> str:
        """Where « Envoyer » sends: « DMP » or the file drop (the report screens say it)."""
        config = self.configuration
        return "DMP" if config is not None and config.outbox_kind == "dmp" else "dépôt de fichiers"

    def close(self) -> None:
        """Release what was started for these services (the demo's simulator…), then the database."""
        while self.on_close:
            callback = self.on_close.pop()
            callback()
        self.db.dispose()


def open_database(url: str | None) -> Database:
    """The database of ``url`` (``--db``, ``INSDESK_DB`` or the default), migrated on first use; a
    server that does not answer (or refuses the account) is :class:`ExternalFailure` (exit 3) with
    a French message, not an unexpected error."""
    from sqlalchemy.exc import OperationalError

    resolved = resolve_database_url(url)
    try:
        return Database(resolved)
    except OperationalError as exc:
        raise ExternalFailure(
            f"Base de données injoignable ({url_without_password(resolved)}) : vérifiez le serveur, le "
            "réseau et le compte ; « insdesk doctor » dit ce qui ne répond pas.",
            code="database_unavailable",
            detail=type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__,
        ) from exc


def make_sender(
    kind: str,
    folder: Path | None,
    *,
    config: Configuration | None = None,
    env: Mapping[str, str] | None = None,
) -> ReportSender:
    """The sender of an ``outbox.kind``: ``file`` → :class:`FileDropSender` in ``folder``; ``dmp`` →
    :class:`~services.dmp.DmpSender` from the ``dmp.*`` settings of ``config`` and the certificates
    of the environment (``env``, else the process's). Close it after use (``close()`` when it has one).
    Raises ``BadRequest`` (exit 2, nothing sent) when the DMP configuration cannot be used."""
    if kind == "dmp":
        return make_dmp_sender(config, env=env)
    if kind != "file":
        raise BadRequest(f"Type d'envoi « {kind} » inconnu (outbox.kind).", code="outbox_setting")
    from services.results.outbox import FileDropSender

    return FileDropSender(folder)


def dmp_configuration(config: Configuration | None, *, env: Mapping[str, str] | None = None) -> Any:
    """The :class:`~services.dmp.DmpConfig` of ``outbox.kind=dmp`` (settings + environment), checked."""
    from services.dmp import dmp_config_from_env

    values = {name: config.dmp_setting(name) if config is not None else "" for name in DMP_SETTING_KEYS}
    missing = [f"dmp.{name}" for name, value in values.items() if not value]
    if missing:
        raise BadRequest(
            f"Envoi au DMP (outbox.kind=dmp) : réglez {', '.join(missing)} (insdesk config set).",
            code="dmp_setting",
        )
    return dmp_config_from_env(
        url=values["url"],
        structure_id=values["structure_id"],
        structure_name=values["structure_name"],
        environ=env,
    )


def make_dmp_sender(config: Configuration | None, *, env: Mapping[str, str] | None = None) -> ReportSender:
    from services.dmp import DmpSender

    return DmpSender(dmp_configuration(config, env=env))


def insi_label(config: Configuration) -> str:
    """The status bar's word for the INSi configuration (before any connection test)."""
    if not config.insi_configured:
        return "non configuré"
    if config.insi_is_simulator:
        return "simulateur"
    if config.insi_environment == "production":
        return "production"
    if config.insi_environment == "test":
        return "test"
    return "configuré"


def build_services(
    db: Database | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    insi_endpoint: str | None = None,
    reader: str | None = None,
    site_name: str | None = None,
    outbox_folder: str | Path | None = None,
    login_hint: str | None = None,
    insi_config_hook: Callable[[Any], Any] | None = None,
) -> DeskServices:
    """The services of this installation from its configuration (see the module doc).

    ``db``: a :class:`Database`, a URL, or None (``INSDESK_DB``, else the default SQLite file).
    Cheap: one read of the ``setting`` table; clients are made when first used.
    """
    database = db if isinstance(db, Database) else open_database(db)
    config = read_configuration(
        database,
        env=env,
        insi_endpoint=insi_endpoint,
        reader=reader,
        site_name=site_name,
        outbox_folder=outbox_folder,
    )
    insi = (
        InsiFactory(database, config.insi_endpoint, env=env, config_hook=insi_config_hook)
        if config.insi_endpoint
        else None
    )
    card_reader = None if config.reader_disabled else ConfiguredReader(config.reader)
    return DeskServices(
        db=database,
        site_name=config.site_name,
        insi_label=insi_label(config),
        reader_label=(
            "aucun (désactivé)" if card_reader is None else "simulé" if card_reader.simulated else "PC/SC"
        ),
        insi=insi,
        reader=card_reader,
        configuration=config,
        lock_minutes=config.lock_minutes,
        login_hint=login_hint,
        sender_factory=lambda: make_sender(config.outbox_kind, config.outbox_folder, config=config, env=env),
        env=env,
        rebuild=lambda: build_services(
            database,
            env=env,
            insi_endpoint=insi_endpoint,
            reader=reader,
            site_name=site_name,
            outbox_folder=outbox_folder,
            login_hint=login_hint,
            insi_config_hook=insi_config_hook,
        ),
    )

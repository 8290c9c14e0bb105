"""``insdesk doctor`` and the « Configuration » screen: what this installation would use, and
whether it answers. No patient data is read or shown.

Sections (cli.md, "Additions"): ``database`` (URL without password, schema version), ``insi``
(endpoint, environment, IDAM, certificate subject and expiry — a warning 30 days before —, a
connection test), ``reader`` (PC/SC service, readers), ``audit`` (the chain), ``outbox``; and
``lab`` (the identity written into every CDA) and ``documents`` (the accepted identity
documents). Each section has a ``status``:

* ``ok``; ``warning`` (works, but look: a certificate expiring within 30 days, demo values in
  the CDA, a schema to be migrated at the next start);
* ``failed`` (configured, and it does not answer or cannot work): the exit code is then 3;
* ``not_configured`` (nothing to check: no INSi endpoint, ``desk.reader=aucun``);
* ``not_checked`` (depends on something that failed, e.g. the audit chain of an unreachable
  database).

The connection test of INSi opens a connection (TLS with the establishment's certificate for
``https://``) and sends an HTTP ``GET`` to the endpoint: any HTTP answer means the service
answers; no search is made, nothing is traced. The PC/SC check lists the readers and whether a
card is inserted (never reads it).

:func:`desk_status` is the short form the desk's status bar shows (INSi, reader).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from services.errors import InsdeskError
from services.storage.db import Database, url_without_password
from services.wiring import Configuration, ConfiguredReader, DeskServices, insi_label, read_configuration

__all__ = [
    "CERTIFICATE_WARNING_DAYS",
    "FAILED",
    "NOT_CHECKED",
    "NOT_CONFIGURED",
    "OK",
    "WARNING",
    "Check",
    "DoctorReport",
    "run_doctor",
]

OK: Final = "ok"
WARNING: Final = "warning"
FAILED: Final = "failed"
NOT_CONFIGURED: Final = "not_configured"
NOT_CHECKED: Final = "not_checked"
CERTIFICATE_WARNING_DAYS: Final = 30
CONNECT_TIMEOUT_S: Final = 5.0
SECTIONS: Final = ("database", "insi", "reader", "audit", "outbox", "lab", "documents")
STATUS_WORDS: Final = {
    OK: "fonctionne",
    WARNING: "à surveiller",
    FAILED: "en échec",
    NOT_CONFIGURED: "non configuré",
    NOT_CHECKED: "non vérifié",
}


@dataclass
class Check:
    """One section: its status, a French sentence, and the facts (JSON)."""

    status: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool | None:
        if self.status in (OK, WARNING):
            return True
        if self.status == FAILED:
            return False
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "ok": self.ok, "message": self.message, **self.data}


@dataclass
class DoctorReport:
    sections: dict[str, Check]

    @property
    def exit_code(self) -> int:
        """0 when everything configured answers, 3 otherwise (cli.md)."""
        return 3 if any(c.status == FAILED for c in self.sections.values()) else 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: check.as_dict() for name, check in self.sections.items()}
        out["ok"] = self.exit_code == 0
        return out


# ---------------------------------------------------------------------------------------------
# database


def _open_database(url: str) -> tuple[Check, Database | None]:
    from sqlalchemy.engine import make_url

    shown = url_without_password(url)
    data: dict[str, Any] = {"url": shown}
    try:
        parsed = make_url(url)
    except Exception:
        return Check(FAILED, "Adresse de base de données illisible.", data), None
    data["backend"] = parsed.get_backend_name()
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if path and path != ":memory:" and not Path(path).expanduser().exists():
            return (
                Check(
                    WARNING,
                    f"La base {path} n'existe pas encore : elle sera créée au premier lancement.",
                    {**data, "schema": None},
                ),
                None,
            )
    try:
        db = Database(url, migrate=False)
        revision = db.current_revision()
    except Exception as exc:  # an unreachable server, a wrong password, a damaged file
        return (
            Check(
                FAILED,
                f"Base de données injoignable ({type(exc).__name__}) : vérifiez l'adresse, le serveur et "
                "les droits d'accès.",
                data,
            ),
            None,
        )
    from services.storage.db import _alembic_head

    head = _alembic_head()
    data.update(schema=revision, schema_expected=head)
    if revision == head:
        return Check(OK, f"Base joignable, schéma à jour ({revision}).", data), db
    if revision is None:
        return Check(WARNING, "Base vide : elle sera initialisée au premier lancement.", data), db
    from alembic.script import ScriptDirectory

    from services.storage.db import MIGRATIONS_DIR

    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}
    if revision in known:
        return (
            Check(WARNING, f"Schéma {revision} : il sera mis à jour ({head}) au prochain lancement.", data),
            db,
        )
    return (
        Check(
            FAILED,
            f"Schéma {revision} inconnu de cette version d'insdesk (base plus récente que le logiciel ?).",
            data,
        ),
        db,
    )


# ---------------------------------------------------------------------------------------------
# INSi


def certificate_facts(config: Any, *, now: dt.datetime | None = None) -> tuple[dict[str, Any], str, str]:
    """Subject, issuer and expiry of the establishment's certificate: (facts, status, French sentence)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import pkcs12

    moment = now or dt.datetime.now(dt.UTC)
    path = config.pkcs12_file or config.cert_file
    if path is None:
        return (
            {"file": None},
            FAILED,
            "Aucun certificat de l'établissement configuré (insi.cert_file et insi.key_file, ou "
            "insi.pkcs12_file) : l'INSi exige le certificat logiciel IGC-Santé.",
        )
    facts: dict[str, Any] = {"file": str(path), "format": "pkcs12" if config.pkcs12_file else "pem"}
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return facts, FAILED, f"Certificat de l'établissement illisible : {path} ({exc.strerror or exc})."
    try:
        if config.pkcs12_file is not None:
            password = config.pkcs12_password.encode("utf-8") if config.pkcs12_password else None
            _key, cert, _extra = pkcs12.load_key_and_certificates(data, password)
            if cert is None:
                raise ValueError("no certificate")
        else:
            cert = x509.load_pem_x509_certificates(data)[0]
    except (ValueError, TypeError):
        return (
            facts,
            FAILED,
            f"Certificat de l'établissement illisible ({path}) : fichier abîmé ou mot de passe du PKCS#12 "
            "absent (INSDESK_INSI_P12_PASSWORD).",
        )
    expires = cert.not_valid_after_utc
    days = (expires - moment).days
    facts.update(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        expires=expires.date().isoformat(),
        days_left=days,
    )
    when = f"{expires:%d/%m/%Y}"
    if expires < moment:
        return (
            facts,
            FAILED,
            f"Le certificat de l'établissement a expiré le {when} : installez son renouvellement.",
        )
    if cert.not_valid_before_utc > moment:
        return facts, FAILED, "Le certificat de l'établissement n'est pas encore valide : vérifiez l'horloge."
    if days < CERTIFICATE_WARNING_DAYS:
        return (
            facts,
            WARNING,
            f"Le certificat de l'établissement expire le {when} "
            f"(dans {days} jour{'s' if days > 1 else ''}) : demandez son renouvellement.",
        )
    return facts, OK, f"Certificat valide jusqu'au {when}."


def connection_test(config: Any, *, timeout: float = CONNECT_TIMEOUT_S) -> tuple[bool, str, int | None]:
    """Open a connection to the INSi endpoint (mutual TLS for https) and send an HTTP GET.

    Returns (answers, French sentence, HTTP status). No search is made.
    """
    import dataclasses

    import httpx

    from services.insi.client import build_http_client, map_transport_error
    from services.insi.errors import InsiError

    quick = dataclasses.replace(config, connect_timeout=timeout, read_timeout=timeout)
    try:
        with build_http_client(quick) as http:
            response = http.get(quick.endpoint.strip())
    except InsiError as err:
        return False, err.message, None
    except httpx.HTTPError as exc:
        return False, map_transport_error(exc, quick).message, None
    return True, f"Le service INSi répond (HTTP {response.status_code}).", response.status_code


def _environment_note(config: Configuration) -> tuple[str, str | None]:
    from services.insi.config import PROD_ENDPOINT, QUALIF_ENDPOINT

    endpoint = (config.insi_endpoint or "").rstrip("/")
    environment = config.insi_environment
    if environment not in (None, "test", "production"):
        return WARNING, f"insi.environment « {environment} » inconnu : test ou production."
    if environment == "production" and endpoint == QUALIF_ENDPOINT.rstrip("/"):
        return WARNING, "Installation déclarée en production mais reliée à l'INSi de test (qualification)."
    if environment == "test" and endpoint == PROD_ENDPOINT.rstrip("/"):
        return WARNING, "Installation déclarée de test mais reliée à l'INSi de production."
    if environment is None and not config.insi_is_simulator:
        return WARNING, "Environnement non déclaré (insi.environment=test ou production)."
    return OK, None


def check_insi(
    db: Database | None,
    config: Configuration,
    *,
    env: Mapping[str, str] | None = None,
    test_connection: bool = True,
) -> Check:
    data: dict[str, Any] = {
        "endpoint": config.insi_endpoint,
        "source": config.insi_endpoint_source,
        "environment": config.insi_environment,
        "label": insi_label(config),
    }
    if not config.insi_configured:
        return Check(
            NOT_CONFIGURED,
            "Aucune adresse INSi (insi.endpoint ou INSDESK_INSI_URL) : F4 indisponible, les identités "
            "restent provisoires ou validées.",
            data,
        )
    if db is None:
        return Check(
            NOT_CHECKED, "Configuration INSi non lue : la base de données n'a pas pu être lue.", data
        )
    from services.insi.settings import load_insi_config

    try:
        insi_config = load_insi_config(db, endpoint=config.insi_endpoint, env=env)
    except InsdeskError as err:
        return Check(FAILED, err.message, data)
    data.update(idam=insi_config.idam, software=insi_config.lps_name, tls=insi_config.uses_tls)
    statuses: list[str] = []
    sentences: list[str] = []
    if insi_config.uses_tls:
        facts, status, sentence = certificate_facts(insi_config)
        data["certificate"] = facts
        statuses.append(status)
        sentences.append(sentence)
        if insi_config.verify is not None:
            data["server_ca"] = str(insi_config.verify)
    else:
        data["certificate"] = None
    env_status, env_note = _environment_note(config)
    statuses.append(env_status)
    if env_note:
        sentences.append(env_note)
    if test_connection and FAILED not in statuses:
        answers, sentence, http_status = connection_test(insi_config)
        data["connection"] = {"ok": answers, "http_status": http_status, "message": sentence}
        statuses.append(OK if answers else FAILED)
        sentences.insert(0, sentence)
    else:
        data["connection"] = None
    status = FAILED if FAILED in statuses else WARNING if WARNING in statuses else OK
    return Check(status, " ".join(sentences) or "Configuration INSi complète.", data)


# ---------------------------------------------------------------------------------------------
# card reader


def check_reader(reader: ConfiguredReader | None, config: Configuration | None) -> Check:
    if reader is None:
        return Check(
            NOT_CONFIGURED,
            "Pas de lecteur de carte Vitale sur ce poste (desk.reader=aucun) : F3 indisponible.",
            {"setting": "aucun", "service": None, "readers": []},
        )
    data: dict[str, Any] = {"setting": config.reader if config else reader.name, "readers": []}
    if reader.simulated:
        data.update(service="simulé", readers=[{"name": "Lecteur simulé (démonstration)", "card": True}])
        return Check(OK, "Lecteur simulé de la démonstration.", data)
    from services.vitale.model import CardError

    try:
        backend = reader.backend
        readers = backend.list_readers()
        states = _card_presence(readers)
    except CardError as err:
        data["service"] = "absent" if err.code == "pcsc_absent" else "erreur"
        return Check(FAILED, err.message, data)
    data["service"] = "pcscd"
    data["readers"] = [{"name": name, "card": states.get(name)} for name in readers]
    if not readers:
        return Check(FAILED, "Service PC/SC présent, mais aucun lecteur de carte branché.", data)
    if reader.name:
        matching = [n for n in readers if reader.name.casefold() in n.casefold()]
        if not matching:
            return Check(
                FAILED,
                f"Aucun lecteur ne correspond à « {reader.name} » (desk.reader). Lecteurs présents : "
                + ", ".join(readers)
                + ".",
                data,
            )
        return Check(OK, f"Lecteur « {matching[0]} » présent.", data)
    count = len(readers)
    return Check(
        OK,
        f"{count} lecteur{'s' if count > 1 else ''} présent{'s' if count > 1 else ''} : "
        "la carte est lue dans le premier qui en contient une.",
        data,
    )


def _card_presence(readers: list[str]) -> dict[str, bool]:
    """Whether each PC/SC reader holds a card (from its state; the card is never read)."""
    if not readers:
        return {}
    try:
        from smartcard import scard
    except ImportError:  # pragma: no cover - pyscard is a dependency
        return {}
    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return {}
    try:
        query = [(name, scard.SCARD_STATE_UNAWARE) for name in readers]
        hresult, states = scard.SCardGetStatusChange(ctx, 0, query)
        if hresult != scard.SCARD_S_SUCCESS:
            return {}
        return {name: bool(state & scard.SCARD_STATE_PRESENT) for name, state, _atr in states}
    finally:
        scard.SCardReleaseContext(ctx)


# ---------------------------------------------------------------------------------------------
# audit chain, outbox, lab identity, documents


def check_audit(db: Database | None) -> Check:
    if db is None:
        return Check(NOT_CHECKED, "Chaîne d'audit non vérifiée : la base de données n'a pas pu être lue.")
    from services.audit.log import verify_database

    try:
        report = verify_database(db)
    except Exception as exc:
        return Check(NOT_CHECKED, f"Chaîne d'audit non vérifiée ({type(exc).__name__}).")
    data = {"events": report.events, "first_bad": report.first_bad}
    if report.ok:
        plural = "s" if report.events > 1 else ""
        return Check(OK, f"Chaîne d'audit intègre ({report.events} évènement{plural}).", data)
    return Check(FAILED, report.reason or f"Chaîne d'audit rompue à l'évènement n°{report.first_bad}.", data)


def _writable_folder(folder: Path) -> tuple[bool, bool]:
    """(exists, writable or creatable)."""
    if folder.is_dir():
        return True, os.access(folder, os.W_OK | os.X_OK)
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return False, parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)


def check_dmp_outbox(
    config: Configuration,
    *,
    env: Mapping[str, str] | None = None,
    test_connection: bool = True,
    now: dt.datetime | None = None,
) -> Check:
    """``outbox.kind=dmp``: the ``dmp.*`` settings, the certificates of the environment (seal,
    mutual TLS: subject and expiry), and a connection test (an HTTP ``GET`` to the registry: any
    HTTP answer means the DMP answers; nothing is sent)."""
    from cryptography import x509

    from services.wiring import dmp_configuration

    data: dict[str, Any] = {
        "kind": "dmp",
        "url": config.dmp_setting("url") or None,
        "structure_id": config.dmp_setting("structure_id") or None,
        "structure_name": config.dmp_setting("structure_name") or None,
    }
    try:
        dmp = dmp_configuration(config, env=env)
        from services.dmp import DmpSender

        DmpSender(dmp).close()  # loads the seal certificate and key, the TLS context
    except InsdeskError as err:
        return Check(FAILED, err.message, data)
    moment = now or dt.datetime.now(dt.UTC)
    certificates: dict[str, Any] = {}
    expiring: list[str] = []
    for name, path in (("seal", dmp.sign_cert), ("tls", dmp.tls_cert)):
        if path is None:
            continue
        cert = x509.load_pem_x509_certificates(Path(path).read_bytes())[0]
        days = (cert.not_valid_after_utc - moment).days
        certificates[name] = {
            "file": str(path),
            "subject": cert.subject.rfc4514_string(),
            "expires": cert.not_valid_after_utc.date().isoformat(),
            "days_left": days,
        }
        if days < CERTIFICATE_WARNING_DAYS:
            expiring.append(
                f"{'cachet' if name == 'seal' else 'authentification'} le {cert.not_valid_after_utc:%d/%m/%Y}"
            )
    data["certificates"] = certificates
    data["mutual_tls"] = dmp.uses_tls
    where = f"DMP {dmp.base_url} (structure {dmp.structure_id})"
    if test_connection:
        import httpx

        verify: Any = True
        if dmp.uses_tls:
            from services.dmp.tls import client_context

            verify = client_context(dmp)
        try:
            with httpx.Client(verify=verify, timeout=CONNECT_TIMEOUT_S, trust_env=False) as http:
                response = http.get(dmp.registry_url)
        except httpx.HTTPError as exc:
            data["answers"] = False
            return Check(FAILED, f"{where} injoignable : {type(exc).__name__}.", data)
        data.update(answers=True, http_status=response.status_code)
    if expiring:
        return Check(WARNING, f"{where} ; certificat(s) à renouveler : {', '.join(expiring)}.", data)
    return Check(OK, f"Envoi au {where}.", data)


def check_outbox(
    config: Configuration | None, *, env: Mapping[str, str] | None = None, test_connection: bool = True
) -> Check:
    if config is None:
        return Check(NOT_CHECKED, "Envoi non vérifié : configuration non lue.")
    if config.outbox_kind == "dmp":
        return check_dmp_outbox(config, env=env, test_connection=test_connection)
    data: dict[str, Any] = {"kind": config.outbox_kind, "folder": str(config.outbox_folder)}
    if config.outbox_kind != "file":
        return Check(FAILED, f"Type d'envoi « {config.outbox_kind} » inconnu (outbox.kind).", data)
    exists, writable = _writable_folder(config.outbox_folder)
    data.update(exists=exists, writable=writable)
    if not writable:
        return Check(
            FAILED,
            f"Dossier d'envoi {config.outbox_folder} non accessible en écriture : les comptes rendus ne "
            "peuvent pas partir.",
            data,
        )
    if not exists:
        return Check(OK, f"Dépôt de fichiers dans {config.outbox_folder} (créé au premier envoi).", data)
    return Check(OK, f"Dépôt de fichiers dans {config.outbox_folder}.", data)


def check_lab(config: Configuration | None) -> Check:
    if config is None:
        return Check(NOT_CHECKED, "Identité du laboratoire non lue : la base de données n'a pas pu être lue.")
    from services.results.cda import LAB_SETTING_KEYS, lab_from_settings

    values = {k.removeprefix("cda."): v for k, v in config.settings.items() if k.startswith("cda.")}
    lab = lab_from_settings(values)
    missing = [k for k in ("lab_name", "lab_id", "biologist_rpps") if not values.get(k)]
    data = {
        "name": lab.organization.name,
        "id": lab.organization.id_extension,
        "biologist": f"{lab.biologist.family} {lab.biologist.given}",
        "biologist_rpps": lab.biologist.id_extension,
        "configured": sorted(k for k in values if k in LAB_SETTING_KEYS),
        "demo_values": missing,
    }
    if missing:
        return Check(
            WARNING,
            "Identité du laboratoire incomplète : les comptes rendus portent les valeurs de démonstration "
            "pour " + ", ".join(f"cda.{k}" for k in missing) + ".",
            data,
        )
    return Check(
        OK, f"Comptes rendus émis par {lab.organization.name} ({lab.organization.id_extension}).", data
    )


def check_documents(db: Database | None) -> Check:
    if db is None:
        return Check(NOT_CHECKED, "Liste des pièces non lue : la base de données n'a pas pu être lue.")
    from services.identity.documents import SHIPPED_DOCUMENT_TYPES, document_types

    try:
        with db.session() as session:
            types = document_types(session)
    except Exception as exc:
        return Check(NOT_CHECKED, f"Liste des pièces non lue ({type(exc).__name__}).")
    shipped = types == SHIPPED_DOCUMENT_TYPES
    return Check(
        OK,
        f"{len(types)} types de pièce d'identité acceptés"
        + (" (liste livrée)." if shipped else " (liste du laboratoire)."),
        {"types": [t.code for t in types], "shipped": shipped},
    )


# ---------------------------------------------------------------------------------------------
# the whole report


def run_doctor(
    url: str,
    *,
    env: Mapping[str, str] | None = None,
    reader: str | None = None,
    insi_endpoint: str | None = None,
    test_connection: bool = True,
    progress: Callable[[str], None] | None = None,
) -> DoctorReport:
    """Every check, in order (database first: the others read their settings from it)."""
    sections: dict[str, Check] = {}
    step = progress or (lambda _name: None)
    step("database")
    database_check, db = _open_database(url)
    sections["database"] = database_check
    config: Configuration | None = None
    try:
        if db is not None:
            try:
                config = read_configuration(db, env=env, insi_endpoint=insi_endpoint, reader=reader)
            except Exception:
                config = None  # an empty or foreign database: the settings table is not there
        if config is None:
            config = _configuration_without_database(url, env=env, insi_endpoint=insi_endpoint, reader=reader)
            settings_db = None
        else:
            settings_db = db
        step("insi")
        sections["insi"] = check_insi(settings_db, config, env=env, test_connection=test_connection)
        step("reader")
        card_reader = None if config.reader_disabled else ConfiguredReader(config.reader)
        sections["reader"] = check_reader(card_reader, config)
        step("audit")
        sections["audit"] = check_audit(settings_db)
        step("outbox")
        sections["outbox"] = check_outbox(config, env=env, test_connection=test_connection)
        sections["lab"] = check_lab(config)
        sections["documents"] = check_documents(settings_db)
    finally:
        if db is not None:
            db.dispose()
    return DoctorReport(sections)


def _configuration_without_database(
    url: str, *, env: Mapping[str, str] | None, insi_endpoint: str | None, reader: str | None
) -> Configuration:
    """What the environment alone says (the database could not be read)."""
    from services.wiring import (
        DEFAULT_LOCK_MINUTES,
        DEFAULT_SITE,
        ENV_INSI_URL,
        ENV_OUTBOX,
        ENV_READER,
        READER_NONE,
        _default_outbox,
    )

    environ = os.environ if env is None else env
    endpoint = (insi_endpoint or environ.get(ENV_INSI_URL, "")).strip() or None
    reader_value = (reader or environ.get(ENV_READER, "")).strip()
    disabled = reader_value.casefold() in READER_NONE
    return Configuration(
        database_url=url,
        site_name=DEFAULT_SITE,
        insi_endpoint=endpoint,
        insi_endpoint_source=("option" if insi_endpoint else "environment") if endpoint else None,
        insi_environment=None,
        reader=None if disabled or not reader_value else reader_value,
        reader_disabled=disabled,
        lock_minutes=DEFAULT_LOCK_MINUTES,
        outbox_kind="file",
        outbox_folder=Path(environ.get(ENV_OUTBOX, "").strip() or _default_outbox()),
    )


# ---------------------------------------------------------------------------------------------
# the status bar


def doctor_for(services: DeskServices, *, test_connection: bool = True) -> DoctorReport:
    """:func:`run_doctor` on what ``services`` were built from (its environment, the demo's
    explicit INSi endpoint and reader)."""
    config = services.configuration
    endpoint = (
        config.insi_endpoint if config is not None and config.insi_endpoint_source == "option" else None
    )
    reader = None
    if config is not None:
        reader = "aucun" if config.reader_disabled else config.reader
    return run_doctor(
        services.db.url,
        env=services.env,
        insi_endpoint=endpoint,
        reader=reader,
        test_connection=test_connection,
    )

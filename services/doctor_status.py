"""The status bar's view of INSi and the card reader (``desk_status``): the quick checks of
``services.doctor`` the desk repeats every few minutes, in a worker."""

from __future__ import annotations

from dataclasses import dataclass

from services.doctor import FAILED, certificate_facts, check_reader, connection_test
from services.errors import InsdeskError
from services.wiring import ConfiguredReader, DeskServices, insi_label


@dataclass(frozen=True)
class DeskStatus:
    """What the desk's status bar says about INSi and the card reader."""

    insi_label: str
    reader_label: str
    insi_ok: bool | None
    reader_ok: bool | None


def _short_reader(name: str) -> str:
    return name if len(name) <= 24 else name[:23] + "…"


def desk_status(services: DeskServices, *, timeout: float = 3.0) -> DeskStatus:
    """INSi: not configured, or whether it answers (connection test); reader: which one, or
    why none. For the status bar: runs in a worker."""
    config = services.configuration
    insi_ok: bool | None = None
    label = services.insi_label
    if services.insi is None:
        label = "non configuré"
    elif config is not None and config.insi_configured:
        from services.insi.settings import load_insi_config

        try:
            insi_config = load_insi_config(services.db, endpoint=config.insi_endpoint, env=services.env)
            if insi_config.uses_tls:
                _facts, cert_status, _sentence = certificate_facts(insi_config)
                if cert_status == FAILED:
                    raise _NotUsable
            answers, _sentence, _status = connection_test(insi_config, timeout=timeout)
        except (InsdeskError, _NotUsable):
            insi_ok, label = False, f"{insi_label(config)} · mal configuré ✗"
        else:
            insi_ok = answers
            label = f"{insi_label(config)} ✓" if answers else f"{insi_label(config)} · ne répond pas ✗"
    reader = services.reader
    reader_ok: bool | None = None
    if reader is None:
        reader_label = "aucun"
    elif isinstance(reader, ConfiguredReader) and not reader.simulated:
        check = check_reader(reader, config)
        reader_ok = check.ok
        names = [r["name"] for r in check.data.get("readers", [])]
        if check.status == FAILED:
            service = check.data.get("service")
            reader_label = (
                "PC/SC absent ✗"
                if service == "absent"
                else "aucun lecteur branché ✗"
                if service == "pcscd" and not names
                else "introuvable ✗"
                if service == "pcscd"
                else "en erreur ✗"
            )
        else:
            wanted = [n for n in names if reader.name and reader.name.casefold() in n.casefold()]
            reader_label = _short_reader((wanted or names)[0]) + " ✓"
    else:
        reader_label = services.reader_label
        reader_ok = True
    return DeskStatus(label, reader_label, insi_ok, reader_ok)


class _NotUsable(Exception):
    pass

"""Audit events of one identity in French words (for the history screen)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.audit import log as audit
from services.identity.traits import FIELD_LABELS
from services.storage.models import AuditEvent
from tui.format import STATUS_WORDS, document_short_label, fr_date, fr_datetime, parse_iso

CHANNELS = {
    "manual": "saisie manuelle",
    "carte_vitale": "carte Vitale",
    "insi": "téléservice INSi",
    "datamatrix": "DataMatrix INS",
    "apcv": "appli carte Vitale",
}
STATUS_EVENTS = {
    "insi_match": "vérification INSi réussie",
    "document_checked": "pièce d'identité vérifiée",
    "strict_trait_edited": "trait strict modifié",
    "flag_doubtful_or_fictitious": "attribut douteuse ou fictive",
    "dequalified": "déqualification",
    "ins_invalidated": "INS invalidé",
}
FLAGS = {"douteuse": "identité douteuse", "fictive": "identité fictive", "homonyme": "homonyme"}
CR_WORDS = {
    "00": "une identité trouvée",
    "01": "aucune identité trouvée",
    "02": "plusieurs identités trouvées",
}
OPERATIONS = {
    "rechercherInsAvecTraitsIdentite": "recherche par traits",
    "rechercherInsAvecCarteVitale": "recherche par carte Vitale",
}
OTHER_LABELS = {"local_id": "IPP", **FIELD_LABELS}


@dataclass(frozen=True)
class HistoryLine:
    when: str
    who: str
    what: str
    detail: str


def _status(code: Any) -> str:
    return f"{code} ({STATUS_WORDS.get(str(code), str(code)).lower()})" if code else "?"


def _value(value: Any) -> str:
    if value is None or value == "":
        return "(vide)"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _reason(details: Mapping[str, Any]) -> str:
    reason = details.get("reason")
    return f"motif : {reason}" if reason else ""


def _join(*parts: str) -> str:
    return " · ".join(p for p in parts if p)


def _ins(value: Any) -> str:
    if not isinstance(value, Mapping):
        return ""
    number = f"{value.get('matricule', '')}{value.get('key', '')}"
    if len(number) == 15:
        number = " ".join(
            (number[0], number[1:3], number[3:5], number[5:7], number[7:10], number[10:13], number[13:])
        )
    return f"INS {number}"


def describe(event: AuditEvent, document_labels: Mapping[str, str]) -> HistoryLine:
    """One line of the history: when, who, what, and the detail that matters."""
    d: Mapping[str, Any] = event.details or {}
    kind = event.kind
    what = kind
    detail = ""
    if kind == audit.IDENTITY_CREATED:
        what = "Création de l'identité"
        detail = _join(
            CHANNELS.get(str(d.get("channel")), str(d.get("channel") or "")),
            f"statut {d.get('status')}" if d.get("status") else "",
        )
    elif kind == audit.IDENTITY_EDITED:
        what = "Modification des traits" + (" (INSi)" if d.get("source") == "insi" else "")
        changes = d.get("changes") or {}
        detail = _join(
            *(
                f"{OTHER_LABELS.get(name, name)} : {_value(c.get('before'))} → {_value(c.get('after'))}"
                for name, c in changes.items()
                if isinstance(c, Mapping)
            ),
            _reason(d),
        )
    elif kind == audit.IDENTITY_STATUS_CHANGED:
        what = f"Statut : {d.get('from', '?')} → {d.get('to', '?')}"
        detail = _join(STATUS_EVENTS.get(str(d.get("event")), str(d.get("event") or "")), _reason(d))
    elif kind == audit.IDENTITY_PROOF_ADDED:
        what = "Pièce d'identité vérifiée"
        code = str(d.get("document_type") or "")
        expires = parse_iso(d.get("expires"))
        detail = _join(
            document_short_label(document_labels.get(code, code)),
            f"expire le {fr_date(expires)}" if expires is not None else "sans date d'expiration",
        )
    elif kind == audit.IDENTITY_FLAG_SET:
        what = f"Attribut posé : {FLAGS.get(str(d.get('flag')), d.get('flag'))}"
        detail = _reason(d)
    elif kind == audit.IDENTITY_FLAG_CLEARED:
        what = f"Attribut retiré : {FLAGS.get(str(d.get('flag')), d.get('flag'))}"
        detail = _reason(d)
    elif kind == audit.IDENTITY_DEQUALIFIED:
        what = "Déqualification"
        detail = _join(f"depuis {_status(d.get('from'))}", _reason(d))
    elif kind == audit.IDENTITY_INS_ATTACHED:
        what = "INS rattaché (INSi)"
        detail = _join(_ins(d.get("ins")), "traits INSi acceptés" if d.get("traits_accepted") else "")
    elif kind == audit.IDENTITY_INS_INVALIDATED:
        what = "INS invalidé"
        detail = _join(_ins(d.get("ins")), STATUS_EVENTS.get(str(d.get("event")), ""), _reason(d))
    elif kind == audit.IDENTITY_DUPLICATE_REFUSED:
        what = "INS non rattaché : déjà celui d'une autre identité"
        detail = _join(_ins(d.get("ins")), f"identité n°{d.get('duplicate_of')}")
    elif kind == audit.IDENTITY_MERGED:
        what = f"Fusion : l'identité n°{d.get('merged')} est fusionnée dans n°{d.get('keep')}"
        status = d.get("status") if isinstance(d.get("status"), Mapping) else {}
        detail = _join(
            f"statut {status.get('from', '?')} → {status.get('to', '?')}" if status else "", _reason(d)
        )
    elif kind == audit.INSI_CALL:
        what = "Appel au téléservice INSi"
        cr = d.get("cr")
        detail = _join(
            OPERATIONS.get(str(d.get("operation")), str(d.get("operation") or "")),
            f"réponse {cr} : {CR_WORDS.get(str(cr), '')}".rstrip(" :") if cr else "",
            f"erreur {d.get('error_code')}" if d.get("error_code") else "",
            "automatique" if d.get("automatic") else "",
        )
    return HistoryLine(fr_datetime(event.at), event.actor or "système", what, detail)

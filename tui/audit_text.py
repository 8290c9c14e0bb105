"""Audit events in French words: one identity's history lines, and the supervisor's detail of an event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
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


# ---------------------------------------------------------------------------------------------
# The supervisor's detail of one event (« Journal d'identitovigilance » → Entrée)

SEX_WORDS = {"F": "féminin", "M": "masculin"}
REVERIFY_WORDS = {
    "unchanged": "identité confirmée",
    "traits_differ": "traits INSi différents",
    "ins_differs": "INS différent",
    "not_found": "identité non trouvée",
    "several": "plusieurs identités",
    "error": "erreur",
}
SOURCE_WORDS = {"insi": "téléservice INSi", "manual": "saisie", "vitale": "carte Vitale"}
AUTH_WORDS = {"tls": "certificat de l'établissement (TLS mutuel)", "cps": "carte CPS"}
OUTCOME_WORDS = {
    "00": "00 : une identité trouvée",
    "01": "01 : aucune identité trouvée",
    "02": "02 : plusieurs identités trouvées",
    "erreur": "erreur (pas de réponse exploitable)",
}
DETAIL_LABELS: dict[str, str] = {
    "from": "Statut avant",
    "to": "Statut après",
    "status": "Statut",
    "event": "Motif du changement",
    "reason": "Motif",
    "channel": "Canal de saisie",
    "local_id": "IPP",
    "used_name": "Nom utilisé",
    "used_first_name": "Prénom utilisé",
    "document_type": "Pièce d'identité",
    "expires": "Expire le",
    "checked_at": "Vérifiée le",
    "flag": "Attribut",
    "flags": "Attributs",
    "cr": "Réponse INSi",
    "error_code": "Code d'erreur",
    "operation": "Opération",
    "duration_ms": "Durée",
    "automatic": "Appel automatique",
    "auth_mode": "Authentification",
    "call_id": "Appel INSi",
    "insi_call_id": "Appel INSi",
    "traits_accepted": "Traits INSi acceptés",
    "strict": "Traits stricts modifiés",
    "source": "Source",
    "reverify": "Revérification",
    "first_names_sent": "Prénoms envoyés",
    "http_attempts": "Tentatives HTTP",
    "http_status": "Statut HTTP",
    "history": "Matricules historiques (INSHISTO)",
    "login": "Identifiant",
    "role": "Rôle",
    "what": "Objet",
    "format": "Format",
    "events": "Lignes exportées",
    "file": "Fichier",
    "count": "Nombre",
    "before": "Avant",
    "after": "Après",
    "setting": "Réglage",
}
_TECHNICAL = {"id", "identity_id", "message_id", "ins_returned", "matricule", "ins", "proof_id", "version"}
"""Identifiers and matricules: not shown (the screen names the patient and the identity number)."""


def _humanise(value: Any) -> str:
    """A stored value in French: oui/non, dates and times in Europe/Paris, lists joined."""
    if isinstance(value, bool):
        return "oui" if value else "non"
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        when = parse_iso(value) if value[:4].isdigit() and value[4:5] == "-" else None
        if isinstance(when, datetime):
            return fr_datetime(when)
        if isinstance(when, date):
            return fr_date(when)
        return value
    if isinstance(value, list | tuple):
        return ", ".join(_humanise(v) for v in value) or "aucun"
    if isinstance(value, Mapping):
        return " · ".join(f"{OTHER_LABELS.get(str(k), str(k))} : {_humanise(v)}" for k, v in value.items())
    return str(value)


def _trait_value(name: str, value: Any) -> str:
    if name == "sex":
        return SEX_WORDS.get(str(value), _humanise(value))
    return _humanise(value)


def detail_fields(
    kind: str, details: Mapping[str, Any], document_labels: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """(label, value) lines of an event's details in plain French, for the supervisor: no raw
    key, no ISO/UTC time, no identifier that means nothing at the desk, nothing empty."""
    labels = document_labels or {}
    out: list[tuple[str, str]] = []
    for key, value in details.items():
        if key in _TECHNICAL or value is None or value == "" or value == [] or value == {}:
            continue
        label = DETAIL_LABELS.get(key) or OTHER_LABELS.get(key)
        if key in ("from", "to", "status"):
            out.append((DETAIL_LABELS[key], _status(value)))
        elif key == "event":
            out.append((DETAIL_LABELS[key], STATUS_EVENTS.get(str(value), _humanise(value))))
        elif key == "channel":
            out.append((DETAIL_LABELS[key], CHANNELS.get(str(value), _humanise(value))))
        elif key == "document_type":
            out.append((DETAIL_LABELS[key], document_short_label(labels.get(str(value), str(value)))))
        elif key == "flag":
            out.append((DETAIL_LABELS[key], FLAGS.get(str(value), _humanise(value))))
        elif key == "flags" and isinstance(value, list):
            out.append((DETAIL_LABELS[key], ", ".join(FLAGS.get(str(f), str(f)) for f in value) or "aucun"))
        elif key == "cr" and kind == audit.INSI_CALL:
            out.append((DETAIL_LABELS[key], OUTCOME_WORDS.get(str(value), _humanise(value))))
        elif key == "operation":
            out.append((DETAIL_LABELS[key], OPERATIONS.get(str(value), _humanise(value))))
        elif key == "duration_ms" and isinstance(value, int):
            out.append((DETAIL_LABELS[key], f"{value} ms"))
        elif key in ("call_id", "insi_call_id"):
            if isinstance(value, int):
                out.append((DETAIL_LABELS[key], f"n° {value}"))
        elif key == "auth_mode":
            out.append((DETAIL_LABELS[key], AUTH_WORDS.get(str(value), _humanise(value))))
        elif key == "source":
            out.append((DETAIL_LABELS[key], SOURCE_WORDS.get(str(value), _humanise(value))))
        elif key == "reverify":
            out.append((DETAIL_LABELS[key], REVERIFY_WORDS.get(str(value), _humanise(value))))
        elif key == "traits" and isinstance(value, Mapping):
            for name, trait in value.items():
                if trait not in (None, "", []):
                    out.append((OTHER_LABELS.get(str(name), str(name)), _trait_value(str(name), trait)))
        elif key == "changes" and isinstance(value, Mapping):
            for name, change in value.items():
                if isinstance(change, Mapping):
                    before = _trait_value(str(name), change.get("before"))
                    after = _trait_value(str(name), change.get("after"))
                    out.append((f"{OTHER_LABELS.get(str(name), str(name))} modifié", f"{before} → {after}"))
        elif key == "differences" and isinstance(value, list):
            for diff in value:
                if isinstance(diff, Mapping):
                    name = str(diff.get("field"))
                    local_value = _trait_value(name, diff.get("local"))
                    insi_value = _trait_value(name, diff.get("insi"))
                    out.append(
                        (
                            f"{OTHER_LABELS.get(name, name)} différent",
                            f"saisie {local_value} · INSi {insi_value}",
                        )
                    )
        elif key == "history" and kind == audit.IDENTITY_INS_ATTACHED:
            if isinstance(value, int) and value:
                out.append((DETAIL_LABELS[key], str(value)))
        elif label is not None:
            out.append((label, _humanise(value)))
        elif key.endswith("_id"):
            continue  # an identifier of another table
        else:
            out.append((key.replace("_", " ").capitalize(), _humanise(value)))
    return out


def outcome_words(kind: str, details: Mapping[str, Any]) -> str | None:
    """The answer of an INSi call in French (None for other events)."""
    if kind != audit.INSI_CALL:
        return None
    if details.get("error_code"):
        return f"erreur {details['error_code']}"
    return OUTCOME_WORDS.get(str(details.get("cr")), "erreur (pas de réponse exploitable)")

"""One audit event in French words (issue #7): its outcome and a one-line summary, for the review
screen, the event's detail and the exports (no matricule: safe on screen and in files)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from services.audit import log as audit
from services.errors import InsdeskError
from services.identity.documents import document_types
from services.supervision.words import (
    CHANNEL_WORDS,
    CR_WORDS,
    EVENT_WORDS,
    FIELD_WORDS,
    FLAG_WORDS,
    KIND_LABELS,
    REVERIFY_WORDS,
)

__all__ = ["document_labels", "outcome_of", "summarize"]


def outcome_of(kind: str, details: Mapping[str, Any]) -> str:
    """``00``/``01``/``02``/``erreur`` for an INSi call, else ``ok``."""
    if kind != audit.INSI_CALL:
        return "ok"
    if details.get("error_code"):
        return "erreur"
    return str(details.get("cr") or "erreur")


def summarize(kind: str, details: Mapping[str, Any], document_labels: Mapping[str, str] | None = None) -> str:
    """One French line describing an event (no matricule: safe on screen and in exports; no
    raw key, no empty value). ``document_labels``: document type code → label."""
    d = details
    reason = f" — {d['reason']}" if d.get("reason") else ""
    if kind == audit.IDENTITY_CREATED:
        channel = CHANNEL_WORDS.get(str(d.get("channel") or "manual"), str(d.get("channel")))
        return f"Identité créée ({channel}), statut {d.get('status') or 'PROV'}"
    if kind == audit.IDENTITY_EDITED:
        raw_changes = d.get("changes")
        changes: Mapping[str, Any] = raw_changes if isinstance(raw_changes, Mapping) else {}
        fields = ", ".join(sorted(FIELD_WORDS.get(str(k), str(k)) for k in changes)) or "—"
        src = " depuis l'INSi" if d.get("source") == "insi" else ""
        strict = " (traits stricts)" if d.get("strict") else ""
        return f"Modification{src}{strict} : {fields}"
    if kind == audit.IDENTITY_STATUS_CHANGED:
        why = EVENT_WORDS.get(str(d.get("event")), str(d.get("event") or ""))
        return f"Statut {d.get('from')} → {d.get('to')}" + (f" ({why})" if why else "") + reason
    if kind == audit.IDENTITY_FLAG_SET:
        return f"Attribut « {FLAG_WORDS.get(str(d.get('flag')), d.get('flag'))} » posé{reason}"
    if kind == audit.IDENTITY_FLAG_CLEARED:
        return f"Attribut « {FLAG_WORDS.get(str(d.get('flag')), d.get('flag'))} » retiré{reason}"
    if kind == audit.IDENTITY_PROOF_ADDED:
        code = str(d.get("document_type") or "")
        label = (document_labels or {}).get(code, code).split(" (", 1)[0]
        return f"Pièce d'identité vérifiée : {label}"
    if kind == audit.IDENTITY_DEQUALIFIED:
        return f"Déqualification (depuis {d.get('from')}){reason}"
    if kind == audit.IDENTITY_INS_ATTACHED:
        diffs = d.get("differences") or []
        extra = f", {len(diffs)} trait(s) INSi accepté(s)" if d.get("traits_accepted") else ""
        call = d.get("insi_call_id")
        origin = f" (appel INSi n° {call})" if isinstance(call, int) else ""
        return f"INS rattaché{origin}{extra}"
    if kind == audit.IDENTITY_INS_INVALIDATED:
        return f"INS invalidé{reason}"
    if kind == audit.INSI_CALL:
        if d.get("error_code"):
            return f"Appel INSi en erreur ({d.get('error_code')})"
        cr = str(d.get("cr"))
        mode = "automatique" if d.get("automatic") else "manuel"
        verdict = d.get("reverify")
        extra = f", revérification : {REVERIFY_WORDS.get(str(verdict), str(verdict))}" if verdict else ""
        return f"Appel INSi {cr} ({CR_WORDS.get(cr, '?')}), {mode}{extra}"
    if kind == audit.AUDIT_EXPORTED:
        return f"Export du journal ({d.get('format')}, {d.get('events')} lignes)"
    if kind == audit.DATA_PURGED:
        return f"Purge : {d.get('what')} ({d.get('count')})"
    return KIND_LABELS.get(kind, kind)


def document_labels(session: Session) -> dict[str, str]:
    """Document type code → label (the lab's configured list; an unreadable list: none)."""
    try:
        return {d.code: d.label for d in document_types(session)}
    except InsdeskError:
        return {}

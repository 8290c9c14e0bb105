"""Supervisor review of the identity-verification log (issue #7): filtered events, anomalies,
drill-down to the raw INSi exchange.

Reads only (no right is checked here: the screen and the CLI check ``Right.STATS`` /
``Right.AUDIT_EXPORT`` before calling; see ``services.supervision.REVIEW_RIGHT``).

Query strategy (5,000,000 audit events): ``audit_event.id`` is assigned under the head lock in
time order, so a date range is first turned into an id range with two index probes on
``ix_audit_event_at`` (``_id_bounds``); the page query is then a primary-key (or
``(actor, id)`` / ``(kind, id)`` / ``identity_id``) range scan in id order with ``LIMIT``:
no sort of the whole range. The exact ``at`` bounds are kept as a residual condition.

Dates are whole days in Europe/Paris, both ends inclusive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from services.audit import log as audit
from services.storage.models import AuditEvent, Identity, InsiCall, birth_name_prefix_filter

__all__ = [
    "ANOMALY_KINDS",
    "ANOMALY_LABELS",
    "INS_SHARED",
    "KIND_LABELS",
    "OUTCOMES",
    "PARIS",
    "REVIEW_KINDS",
    "Anomaly",
    "AnomalyThresholds",
    "InsiExchangeView",
    "ReviewFilter",
    "ReviewPage",
    "ReviewRow",
    "anomalies",
    "count_events",
    "day_bounds",
    "insi_exchange",
    "review_events",
    "review_page",
    "summarize",
]

PARIS: Final = ZoneInfo("Europe/Paris")

REVIEW_KINDS: Final[tuple[str, ...]] = (
    audit.IDENTITY_CREATED,
    audit.IDENTITY_EDITED,
    audit.IDENTITY_STATUS_CHANGED,
    audit.IDENTITY_FLAG_SET,
    audit.IDENTITY_FLAG_CLEARED,
    audit.IDENTITY_PROOF_ADDED,
    audit.IDENTITY_DEQUALIFIED,
    audit.IDENTITY_INS_ATTACHED,
    audit.IDENTITY_INS_INVALIDATED,
    audit.INSI_CALL,
)
"""The identity-verification log: every kind the review (and ``audit export``) shows by default."""

KIND_LABELS: Final[Mapping[str, str]] = {
    audit.IDENTITY_CREATED: "Création",
    audit.IDENTITY_EDITED: "Modification",
    audit.IDENTITY_STATUS_CHANGED: "Changement de statut",
    audit.IDENTITY_FLAG_SET: "Attribut posé",
    audit.IDENTITY_FLAG_CLEARED: "Attribut retiré",
    audit.IDENTITY_PROOF_ADDED: "Pièce d'identité",
    audit.IDENTITY_DEQUALIFIED: "Déqualification",
    audit.IDENTITY_INS_ATTACHED: "INS rattaché",
    audit.IDENTITY_INS_INVALIDATED: "INS invalidé",
    audit.INSI_CALL: "Appel INSi",
    audit.USER_LOGIN: "Connexion",
    audit.USER_LOGIN_FAILED: "Connexion refusée",
    audit.USER_ADDED: "Utilisateur ajouté",
    audit.AUDIT_EXPORTED: "Export du journal",
    audit.AUDIT_VERIFIED: "Vérification de la chaîne",
    audit.DATA_PURGED: "Purge",
    audit.CONFIG_CHANGED: "Configuration modifiée",
}
"""Event kinds in French (screens, the ``excel-fr`` CSV)."""

OUTCOMES: Final[tuple[str, ...]] = ("00", "01", "02", "erreur")
"""Outcome filter values: an INSi answer code, or ``erreur`` (fault, no answer). Events other
than ``insi.call`` have outcome ``ok`` and are excluded by any outcome filter."""

# Anomaly kinds
TRAITS_DIFFER: Final = "traits_differ"
REPEATED_NO_MATCH: Final = "repeated_no_match"
STATUS_DOWNGRADE: Final = "status_downgrade"
STRICT_EDIT_VERIFIED: Final = "strict_edit_verified"
PROOF_WITHOUT_INSI: Final = "proof_without_insi"
QUALIFICATION_BURST: Final = "qualification_burst"
INSI_NOT_ATTACHED: Final = "insi_not_attached"
INS_SHARED: Final = "ins_shared"

ANOMALY_LABELS: Final[Mapping[str, str]] = {
    TRAITS_DIFFER: "Traits INSi différents des traits locaux",
    INSI_NOT_ATTACHED: "Réponse INSi 00 non rattachée (traits différents non confirmés ?)",
    REPEATED_NO_MATCH: "Recherches INSi répétées sans résultat (01/02)",
    STATUS_DOWNGRADE: "Rétrogradation de statut",
    STRICT_EDIT_VERIFIED: "Trait strict modifié sur une identité vérifiée",
    PROOF_WITHOUT_INSI: "Pièce enregistrée sans appel INSi",
    QUALIFICATION_BURST: "Nombreuses qualifications en peu de temps",
    INS_SHARED: "Même INS sur plusieurs identités",
}
ANOMALY_KINDS: Final[tuple[str, ...]] = tuple(ANOMALY_LABELS)

_VERIFIED = ("RECUP", "VALI", "QUAL")
_PATIENT_IDS_MAX = 1000


# ---------------------------------------------------------------------------------------------
# Filter


@dataclass(frozen=True)
class ReviewFilter:
    """What the supervisor filters on; every field optional (``None`` = no condition).

    ``patient``: a birth-name prefix (case-insensitive; at most 1000 identities are matched) or
    ``#ID``/digits for an identity id. ``kinds``: audit kinds (default ``REVIEW_KINDS``).
    ``outcome``: one of ``OUTCOMES``.
    """

    agent: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    identity_id: int | None = None
    patient: str | None = None
    kinds: tuple[str, ...] | None = None
    outcome: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "identity_id": self.identity_id,
            "patient": self.patient,
            "kinds": list(self.kinds) if self.kinds is not None else None,
            "outcome": self.outcome,
        }


def day_bounds(date_from: date | None, date_to: date | None) -> tuple[datetime | None, datetime | None]:
    """``[start, end)`` aware datetimes for inclusive Paris days (None = open)."""
    start = datetime.combine(date_from, time.min, tzinfo=PARIS) if date_from else None
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=PARIS) if date_to else None
    return start, end


def _t() -> Any:
    return AuditEvent.__table__.c  # type: ignore[attr-defined]


def _id_bounds(session: Session, start: datetime | None, end: datetime | None) -> tuple[int, int] | None:
    """First and last event ids inside ``[start, end)`` (two probes on the ``at`` index); None if empty."""
    t = _t()
    lo_stmt = sa.select(t.id)
    hi_stmt = sa.select(t.id)
    if start is not None:
        lo_stmt = lo_stmt.where(t.at >= start)
        hi_stmt = hi_stmt.where(t.at >= start)
    if end is not None:
        lo_stmt = lo_stmt.where(t.at < end)
        hi_stmt = hi_stmt.where(t.at < end)
    lo = session.execute(lo_stmt.order_by(t.at, t.id).limit(1)).scalar()
    hi = session.execute(hi_stmt.order_by(t.at.desc(), t.id.desc()).limit(1)).scalar()
    if lo is None or hi is None:
        return None
    return int(lo), int(hi)


def _patient_ids(session: Session, text: str) -> list[int] | None:
    """Identity ids matching ``text`` (None: no patient condition)."""
    text = text.strip()
    if not text:
        return None
    digits = text.lstrip("#")
    if digits.isdigit():
        return [int(digits)]
    it = Identity.__table__.c  # type: ignore[attr-defined]
    stmt = sa.select(it.id).where(birth_name_prefix_filter(text.upper())).limit(_PATIENT_IDS_MAX)
    return [int(i) for i in session.execute(stmt).scalars()]


def _conditions(session: Session, flt: ReviewFilter) -> list[Any] | None:
    """WHERE clauses for ``flt``; None when the filter matches nothing."""
    t = _t()
    conds: list[Any] = []
    start, end = day_bounds(flt.date_from, flt.date_to)
    if start is not None or end is not None:
        bounds = _id_bounds(session, start, end)
        if bounds is None:
            return None
        conds.append(t.id.between(bounds[0], bounds[1]))
        if start is not None:
            conds.append(t.at >= start)
        if end is not None:
            conds.append(t.at < end)
    if flt.agent:
        conds.append(t.actor == flt.agent)
    if flt.identity_id is not None:
        conds.append(t.identity_id == flt.identity_id)
    if flt.patient:
        ids = _patient_ids(session, flt.patient)
        if ids is not None:
            if not ids:
                return None
            conds.append(t.identity_id.in_(ids))
    kinds = flt.kinds if flt.kinds is not None else REVIEW_KINDS
    if flt.outcome is not None:
        if flt.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {flt.outcome!r}")
        if audit.INSI_CALL not in kinds:
            return None
        kinds = (audit.INSI_CALL,)
        if flt.outcome == "erreur":
            conds.append(t.details["error_code"].as_string().is_not(None))
        else:
            conds.append(t.details["cr"].as_string() == flt.outcome)
            conds.append(t.details["error_code"].as_string().is_(None))
    if not kinds:
        return None
    if len(kinds) == 1:
        conds.append(t.kind == kinds[0])
    elif len(kinds) <= 3:
        conds.append(t.kind.in_(kinds))
    else:
        # Many kinds (the default): an IN list would make the planner merge several ranges of
        # the (kind, id) index and sort them; excluding the other kinds keeps an id-ordered scan.
        others = sorted(audit.EVENT_KINDS - set(kinds))
        conds.append(t.kind.not_in(others) if others else sa.true())
    return conds


# ---------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True)
class ReviewRow:
    id: int
    at: datetime
    agent: str | None
    kind: str
    identity_id: int | None
    patient: str | None
    summary: str
    outcome: str
    is_anomaly: bool
    anomaly_reasons: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    insi_call_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": audit.format_at(self.at),
            "agent": self.agent,
            "kind": self.kind,
            "identity_id": self.identity_id,
            "patient": self.patient,
            "summary": self.summary,
            "outcome": self.outcome,
            "is_anomaly": self.is_anomaly,
            "anomaly_reasons": list(self.anomaly_reasons),
            "insi_call_id": self.insi_call_id,
        }


_CR_WORDS = {"00": "une identité trouvée", "01": "aucune identité", "02": "plusieurs identités"}
_EVENT_WORDS = {
    "insi_match": "vérification INSi",
    "document_checked": "pièce vérifiée",
    "strict_trait_edited": "trait strict modifié",
    "flag_doubtful_or_fictitious": "attribut douteuse/fictive",
    "dequalified": "déqualification",
    "ins_invalidated": "INS invalidé",
}
_CHANNEL_WORDS = {
    "manual": "saisie manuelle",
    "carte_vitale": "carte Vitale",
    "insi": "téléservice INSi",
    "datamatrix": "DataMatrix INS",
    "apcv": "appli carte Vitale",
}
_FIELD_WORDS = {
    "birth_name": "nom de naissance",
    "first_names": "prénoms",
    "first_name": "premier prénom",
    "sex": "sexe",
    "birth_date": "date de naissance",
    "birthplace": "lieu de naissance",
    "used_name": "nom utilisé",
    "used_first_name": "prénom utilisé",
    "local_id": "IPP",
}
_FLAG_WORDS = {"douteuse": "douteuse", "fictive": "fictive", "homonyme": "homonyme"}
_REVERIFY_WORDS = {"traits_differ": "traits différents", "ins_differs": "INS différent"}


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
        channel = _CHANNEL_WORDS.get(str(d.get("channel") or "manual"), str(d.get("channel")))
        return f"Identité créée ({channel}), statut {d.get('status') or 'PROV'}"
    if kind == audit.IDENTITY_EDITED:
        raw_changes = d.get("changes")
        changes: Mapping[str, Any] = raw_changes if isinstance(raw_changes, Mapping) else {}
        fields = ", ".join(sorted(_FIELD_WORDS.get(str(k), str(k)) for k in changes)) or "—"
        src = " depuis l'INSi" if d.get("source") == "insi" else ""
        strict = " (traits stricts)" if d.get("strict") else ""
        return f"Modification{src}{strict} : {fields}"
    if kind == audit.IDENTITY_STATUS_CHANGED:
        why = _EVENT_WORDS.get(str(d.get("event")), str(d.get("event") or ""))
        return f"Statut {d.get('from')} → {d.get('to')}" + (f" ({why})" if why else "") + reason
    if kind == audit.IDENTITY_FLAG_SET:
        return f"Attribut « {_FLAG_WORDS.get(str(d.get('flag')), d.get('flag'))} » posé{reason}"
    if kind == audit.IDENTITY_FLAG_CLEARED:
        return f"Attribut « {_FLAG_WORDS.get(str(d.get('flag')), d.get('flag'))} » retiré{reason}"
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
        extra = f", revérification : {_REVERIFY_WORDS.get(str(verdict), str(verdict))}" if verdict else ""
        return f"Appel INSi {cr} ({_CR_WORDS.get(cr, '?')}), {mode}{extra}"
    if kind == audit.AUDIT_EXPORTED:
        return f"Export du journal ({d.get('format')}, {d.get('events')} lignes)"
    if kind == audit.DATA_PURGED:
        return f"Purge : {d.get('what')} ({d.get('count')})"
    return KIND_LABELS.get(kind, kind)


def document_labels(session: Session) -> dict[str, str]:
    """Document type code → label (the lab's configured list; an unreadable list: none)."""
    from services.errors import InsdeskError
    from services.identity.documents import document_types

    try:
        return {d.code: d.label for d in document_types(session)}
    except InsdeskError:
        return {}


def _patients(session: Session, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    it = Identity.__table__.c  # type: ignore[attr-defined]
    rows = session.execute(
        sa.select(it.id, it.birth_name, it.first_name, it.first_names).where(it.id.in_(wanted))
    ).all()
    out: dict[int, str] = {}
    for iid, birth_name, first_name, first_names in rows:
        first = first_name or (first_names or "").split(" ")[0]
        out[int(iid)] = f"{birth_name} {first}".strip()
    return out


def _row_reasons(kind: str, details: Mapping[str, Any]) -> list[str]:
    """Anomalies visible on the event alone (aggregate ones come from ``anomalies``)."""
    reasons: list[str] = []
    downgrade = details.get("to") == "PROV" and details.get("from") in _VERIFIED
    if kind == audit.IDENTITY_STATUS_CHANGED and downgrade:
        strict = details.get("event") == "strict_trait_edited"
        reasons.append(STRICT_EDIT_VERIFIED if strict else STATUS_DOWNGRADE)
    if kind == audit.IDENTITY_INS_ATTACHED and details.get("traits_accepted"):
        reasons.append(TRAITS_DIFFER)
    if kind == audit.INSI_CALL and details.get("reverify") in ("traits_differ", "ins_differs"):
        reasons.append(TRAITS_DIFFER)
    return reasons


def review_events(
    session: Session,
    flt: ReviewFilter | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
    known_anomalies: Sequence[Anomaly] | None = None,
) -> list[ReviewRow]:
    """One page of the log, newest first. ``known_anomalies`` (from ``anomalies``) marks the
    rows that belong to aggregate anomalies (repeated 01/02, bursts); event-level anomalies
    (downgrades, strict edits, accepted INSi traits, proofs without an INSi call) are always marked."""
    flt = flt or ReviewFilter()
    conds = _conditions(session, flt)
    if conds is None:
        return []
    t = _t()
    stmt = (
        sa.select(t.id, t.at, t.actor, t.kind, t.identity_id, t.details)
        .where(*conds)
        .order_by(t.id.desc())
        .limit(limit)
        .offset(offset)
    )
    raw = session.execute(stmt).all()
    names = _patients(session, (r.identity_id for r in raw if r.identity_id is not None))
    extra: dict[int, list[str]] = defaultdict(list)
    for anomaly in known_anomalies or ():
        for ev_id in anomaly.event_ids:
            extra[ev_id].append(anomaly.kind)
    proof_ids = [r.id for r in raw if r.kind == audit.IDENTITY_PROOF_ADDED]
    labels = document_labels(session) if proof_ids else {}
    if proof_ids:
        for ev_id in _proofs_without_insi(session, [t.id.in_(proof_ids)]):
            extra[ev_id[0]].append(PROOF_WITHOUT_INSI)
    rows: list[ReviewRow] = []
    for r in raw:
        details = r.details if isinstance(r.details, Mapping) else {}
        reasons = list(dict.fromkeys([*_row_reasons(r.kind, details), *extra.get(r.id, [])]))
        call_id = details.get("call_id") if r.kind == audit.INSI_CALL else details.get("insi_call_id")
        rows.append(
            ReviewRow(
                id=int(r.id),
                at=r.at,
                agent=r.actor,
                kind=r.kind,
                identity_id=r.identity_id,
                patient=names.get(r.identity_id) if r.identity_id is not None else None,
                summary=summarize(r.kind, details, labels),
                outcome=outcome_of(r.kind, details),
                is_anomaly=bool(reasons),
                anomaly_reasons=tuple(reasons),
                details=details,
                insi_call_id=int(call_id) if isinstance(call_id, int) else None,
            )
        )
    return rows


def count_events(session: Session, flt: ReviewFilter | None = None) -> int:
    """How many events ``flt`` matches (for the screen's pager)."""
    conds = _conditions(session, flt or ReviewFilter())
    if conds is None:
        return 0
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    return int(session.execute(sa.select(sa.func.count()).select_from(table).where(*conds)).scalar() or 0)


# ---------------------------------------------------------------------------------------------
# Anomalies


@dataclass(frozen=True)
class AnomalyThresholds:
    """``repeated_searches``: failed INSi searches (01/02) of one identity that make an anomaly;
    one search = the calls of one strategy run: consecutive audit ids (a run is saved in one
    transaction, appends are serialised) less than ``search_gap`` apart. ``burst_count``
    qualifications by one agent within ``burst_window``."""

    repeated_searches: int = 2
    search_gap: timedelta = timedelta(seconds=5)
    burst_count: int = 20
    burst_window: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class Anomaly:
    kind: str
    at: datetime
    agent: str | None
    identity_id: int | None
    event_ids: tuple[int, ...]
    message: str
    patient: str | None = None
    """The patient's name (« MARTIN Claire ») when the anomaly concerns one identity."""

    @property
    def label(self) -> str:
        return ANOMALY_LABELS[self.kind]

    @property
    def subject(self) -> str:
        """« MARTIN Claire (identité n° 12) », or "" when no identity is concerned."""
        if self.identity_id is None:
            return ""
        if self.patient:
            return f"{self.patient} (identité n° {self.identity_id})"
        return f"identité n° {self.identity_id}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "at": audit.format_at(self.at),
            "agent": self.agent,
            "identity_id": self.identity_id,
            "patient": self.patient,
            "event_ids": list(self.event_ids),
            "message": self.message,
        }


def _base_conds(session: Session, flt: ReviewFilter, kind: str) -> list[Any] | None:
    """``flt`` without its kind/outcome parts, restricted to ``kind``."""
    f = ReviewFilter(
        agent=flt.agent,
        date_from=flt.date_from,
        date_to=flt.date_to,
        identity_id=flt.identity_id,
        patient=flt.patient,
        kinds=(kind,),
    )
    return _conditions(session, f)


def _proofs_without_insi(session: Session, conds: list[Any]) -> list[Any]:
    """(id, at, actor, identity_id, details) of proof events with no INSi call for the identity
    at or before the proof."""
    t = _t()
    ct = InsiCall.__table__.c  # type: ignore[attr-defined]
    no_call = ~sa.exists(sa.select(ct.id).where(ct.identity_id == t.identity_id, ct.at <= t.at))
    stmt = (
        sa.select(t.id, t.at, t.actor, t.identity_id, t.details)
        .where(*conds, t.kind == audit.IDENTITY_PROOF_ADDED, no_call)
        .order_by(t.id)
    )
    return list(session.execute(stmt).all())


def anomalies(
    session: Session,
    flt: ReviewFilter | None = None,
    *,
    thresholds: AnomalyThresholds | None = None,
) -> list[Anomaly]:
    """Anomalies among the events ``flt`` selects (its agent, dates and patient; kinds and
    outcome are ignored), newest first. Pass a date range on large logs."""
    flt = flt or ReviewFilter()
    th = thresholds or AnomalyThresholds()
    t = _t()
    out: list[Anomaly] = []

    def details_of(value: Any) -> Mapping[str, Any]:
        return value if isinstance(value, Mapping) else {}

    # Status downgrades and strict edits of verified identities.
    conds = _base_conds(session, flt, audit.IDENTITY_STATUS_CHANGED)
    if conds is not None:
        stmt = sa.select(t.id, t.at, t.actor, t.identity_id, t.details).where(
            *conds,
            t.details["to"].as_string() == "PROV",
            t.details["from"].as_string().in_(_VERIFIED),
        )
        for r in session.execute(stmt):
            d = details_of(r.details)
            strict = d.get("event") == "strict_trait_edited"
            why = _EVENT_WORDS.get(str(d.get("event")), str(d.get("event")))
            msg = f"{d.get('from')} → PROV ({why})" + (f" — {d['reason']}" if d.get("reason") else "")
            out.append(
                Anomaly(
                    STRICT_EDIT_VERIFIED if strict else STATUS_DOWNGRADE,
                    r.at,
                    r.actor,
                    r.identity_id,
                    (int(r.id),),
                    msg,
                )
            )

    # INSi traits differing from the local ones (accepted at attachment, or found on re-verification).
    conds = _base_conds(session, flt, audit.IDENTITY_INS_ATTACHED)
    if conds is not None:
        stmt = sa.select(t.id, t.at, t.actor, t.identity_id, t.details).where(
            *conds, t.details["traits_accepted"].as_boolean().is_(True)
        )
        for r in session.execute(stmt):
            diffs = details_of(r.details).get("differences") or []
            fields = ", ".join(str(x.get("field")) for x in diffs if isinstance(x, Mapping)) or "?"
            out.append(
                Anomaly(
                    TRAITS_DIFFER,
                    r.at,
                    r.actor,
                    r.identity_id,
                    (int(r.id),),
                    f"Traits INSi acceptés à la place des traits locaux : {fields}",
                )
            )
    conds = _base_conds(session, flt, audit.INSI_CALL)
    if conds is not None:
        stmt = sa.select(t.id, t.at, t.actor, t.identity_id, t.details).where(
            *conds, t.details["reverify"].as_string().in_(("traits_differ", "ins_differs"))
        )
        for r in session.execute(stmt):
            out.append(
                Anomaly(
                    TRAITS_DIFFER,
                    r.at,
                    r.actor,
                    r.identity_id,
                    (int(r.id),),
                    f"Revérification : {details_of(r.details).get('reverify')}",
                )
            )

    # INSi 00 answers that were never attached: the traits differed and the agent did not
    # confirm them (or the attachment was refused). ``attach_ins`` records the call it used.
    if conds is not None:
        stmt = sa.select(t.id, t.at, t.actor, t.identity_id, t.details).where(
            *conds, t.identity_id.is_not(None), t.details["cr"].as_string() == "00"
        )
        found_00 = [
            r
            for r in session.execute(stmt)
            if not details_of(r.details).get("automatic") and not details_of(r.details).get("reverify")
        ]
        if found_00:
            attached: set[int] = set()
            identity_ids = sorted({int(r.identity_id) for r in found_00})
            for chunk in range(0, len(identity_ids), 500):
                att = sa.select(t.details).where(
                    t.kind == audit.IDENTITY_INS_ATTACHED,
                    t.identity_id.in_(identity_ids[chunk : chunk + 500]),
                )
                for (d,) in session.execute(att):
                    call = details_of(d).get("insi_call_id")
                    if isinstance(call, int):
                        attached.add(call)
            for r in found_00:
                if details_of(r.details).get("call_id") not in attached:
                    out.append(
                        Anomaly(
                            INSI_NOT_ATTACHED,
                            r.at,
                            r.actor,
                            r.identity_id,
                            (int(r.id),),
                            f"Appel INSi n° {details_of(r.details).get('call_id')} : identité trouvée (00) "
                            "mais INS non rattaché",
                        )
                    )

    # Repeated 01/02: one search = a run of consecutive insi.call ids for one identity, close
    # in time (see AnomalyThresholds).
    if conds is not None:
        failed_stmt = (
            sa.select(t.identity_id)
            .where(*conds, t.identity_id.is_not(None), t.details["cr"].as_string().in_(("01", "02")))
            .distinct()
        )
        failed = [int(i) for i in session.execute(failed_stmt).scalars()]
        stmt = (
            sa.select(t.id, t.at, t.actor, t.identity_id, t.details)
            .where(*conds, t.identity_id.in_(failed))
            .order_by(t.identity_id, t.id)
        )
        runs: dict[int, list[list[Any]]] = defaultdict(list)
        for r in session.execute(stmt):
            id_runs = runs[int(r.identity_id)]
            prev = id_runs[-1][-1] if id_runs else None
            if prev is not None and prev.id == r.id - 1 and r.at - prev.at < th.search_gap:
                id_runs[-1].append(r)
            else:
                id_runs.append([r])
        for identity_id, id_runs in runs.items():
            failed_runs = [run for run in id_runs if details_of(run[-1].details).get("cr") in ("01", "02")]
            if len(failed_runs) >= th.repeated_searches:
                events = tuple(int(r.id) for run in failed_runs for r in run)
                last = failed_runs[-1][-1]
                crs = "/".join(str(details_of(run[-1].details).get("cr")) for run in failed_runs)
                agents = sorted({str(run[-1].actor) for run in failed_runs})
                out.append(
                    Anomaly(
                        REPEATED_NO_MATCH,
                        last.at,
                        last.actor,
                        identity_id,
                        events,
                        f"{len(failed_runs)} recherches INSi sans résultat unique ({crs}) "
                        f"par {', '.join(agents)}",
                    )
                )

    # Proofs recorded without any INSi call for the identity before them.
    conds = _base_conds(session, flt, audit.IDENTITY_PROOF_ADDED)
    if conds is not None:
        for r in _proofs_without_insi(session, conds):
            out.append(
                Anomaly(
                    PROOF_WITHOUT_INSI,
                    r.at,
                    r.actor,
                    r.identity_id,
                    (int(r.id),),
                    f"Pièce « {details_of(r.details).get('document_type')} » sans appel INSi préalable",
                )
            )

    # Bursts of qualifications by one agent.
    conds = _base_conds(session, flt, audit.IDENTITY_STATUS_CHANGED)
    if conds is not None:
        stmt = (
            sa.select(t.id, t.at, t.actor, t.identity_id)
            .where(*conds, t.details["to"].as_string() == "QUAL")
            .order_by(t.actor, t.at, t.id)
        )
        by_agent: dict[str | None, list[Any]] = defaultdict(list)
        for r in session.execute(stmt):
            by_agent[r.actor].append(r)
        for agent, evs in by_agent.items():
            out.extend(_bursts(agent, evs, th))

    out.extend(_shared_ins(session, flt))

    names = _patients(session, (a.identity_id for a in out if a.identity_id is not None))
    out = [
        replace(a, patient=names.get(a.identity_id)) if a.identity_id is not None and a.patient is None else a
        for a in out
    ]
    out.sort(key=lambda a: (a.at, a.event_ids[-1] if a.event_ids else 0), reverse=True)
    return out


def _shared_ins(session: Session, flt: ReviewFilter) -> list[Anomaly]:
    """One INS matricule on several identities that are not merge tombstones (``merged_into``
    set): two people under one INS, or one person twice. A state of the identities, so it is
    found in databases that already hold some (the services now refuse to create one); dated by
    the last INS attachment of the identities concerned, else their creation. The agent and date
    filters apply to those events, the patient filter to the identities.

    Unfiltered: one grouped scan of the ``ins_matricule`` index. Filtered (the screens' usual
    case on large logs): only the matricules of the identities whose attachment or creation
    events the filter selects (an id range of the log, like the other detectors) are looked up."""
    it = Identity.__table__.c  # type: ignore[attr-defined]
    t = _t()
    # coalesce(): keeps the planners on the ins_matricule index (nearly every row has no
    # merged_into, an index on it would select everything).
    live = sa.and_(it.ins_matricule.is_not(None), sa.func.coalesce(it.merged_into, 0) == 0)
    dup = sa.select(it.ins_matricule).where(it.ins_matricule.is_not(None))  # index only
    if flt.agent or flt.date_from or flt.date_to or flt.patient or flt.identity_id is not None:
        conds = _conditions(
            session,
            ReviewFilter(
                agent=flt.agent,
                date_from=flt.date_from,
                date_to=flt.date_to,
                identity_id=flt.identity_id,
                patient=flt.patient,
                kinds=(audit.IDENTITY_INS_ATTACHED, audit.IDENTITY_CREATED),
            ),
        )
        if conds is None:
            return []
        touched = sa.select(t.identity_id).where(*conds, t.identity_id.is_not(None))
        it2 = Identity.__table__.alias("candidate")  # type: ignore[attr-defined]
        candidates = sa.select(it2.c.ins_matricule).where(
            it2.c.id.in_(touched),
            it2.c.ins_matricule.is_not(None),
            sa.func.coalesce(it2.c.merged_into, 0) == 0,
        )
        dup = dup.where(it.ins_matricule.in_(candidates))
    dup = dup.group_by(it.ins_matricule).having(sa.func.count() > 1)
    rows = session.execute(
        sa.select(it.id, it.ins_matricule)
        .where(live, it.ins_matricule.in_(dup))
        .order_by(it.ins_matricule, it.id)
    ).all()
    groups: dict[str, list[int]] = defaultdict(list)
    for ident, matricule in rows:
        groups[str(matricule)].append(int(ident))
    groups = {m: ids for m, ids in groups.items() if len(ids) > 1}  # tombstones left aside
    if not groups:
        return []
    all_ids = sorted({i for ids in groups.values() for i in ids})
    names = _patients(session, all_ids)
    events: dict[int, list[Any]] = defaultdict(list)
    for chunk in range(0, len(all_ids), 500):
        part = all_ids[chunk : chunk + 500]
        stmt = sa.select(t.id, t.at, t.actor, t.identity_id, t.kind).where(
            t.identity_id.in_(part), t.kind.in_((audit.IDENTITY_INS_ATTACHED, audit.IDENTITY_CREATED))
        )
        for r in session.execute(stmt.order_by(t.id)):
            events[int(r.identity_id)].append(r)
    start, end = day_bounds(flt.date_from, flt.date_to)
    found: list[Anomaly] = []
    for ids in groups.values():
        evs = [e for i in ids for e in events.get(i, [])]
        attached = [e for e in evs if e.kind == audit.IDENTITY_INS_ATTACHED]
        chosen = sorted(attached or evs, key=lambda e: e.id)
        if flt.agent or start is not None or end is not None:
            chosen = [
                e
                for e in chosen
                if (not flt.agent or e.actor == flt.agent)
                and (start is None or e.at >= start)
                and (end is None or e.at < end)
            ]
            if not chosen:
                continue
        last = chosen[-1] if chosen else None
        newest = int(last.identity_id) if last is not None else ids[-1]
        who = " et ".join(f"n° {i} ({names[i]})" if i in names else f"n° {i}" for i in ids)
        found.append(
            Anomaly(
                INS_SHARED,
                last.at if last is not None else datetime.now(PARIS),
                last.actor if last is not None else None,
                newest,
                tuple(int(e.id) for e in chosen),
                f"Le même INS est porté par les identités {who} : doublon ou collision à corriger "
                "(fusion ou correction de l'INS)",
            )
        )
    return found


def _bursts(agent: str | None, evs: list[Any], th: AnomalyThresholds) -> list[Anomaly]:
    """Windows of ``burst_window`` holding at least ``burst_count`` qualifications; overlapping
    windows are merged into one anomaly."""
    found: list[Anomaly] = []
    lo = 0
    cur: list[int] | None = None  # [first, last] indexes of the burst being built
    for j in range(len(evs)):
        while evs[j].at - evs[lo].at > th.burst_window:
            lo += 1
        if j - lo + 1 < th.burst_count:
            continue
        if cur is not None and lo <= cur[1]:
            cur[1] = j
        else:
            if cur is not None:
                found.append(_burst(agent, evs[cur[0] : cur[1] + 1], th))
            cur = [lo, j]
    if cur is not None:
        found.append(_burst(agent, evs[cur[0] : cur[1] + 1], th))
    return found


def _burst(agent: str | None, evs: list[Any], th: AnomalyThresholds) -> Anomaly:
    minutes = int(th.burst_window.total_seconds() // 60)
    span = evs[-1].at - evs[0].at
    return Anomaly(
        QUALIFICATION_BURST,
        evs[-1].at,
        agent,
        None,
        tuple(int(e.id) for e in evs),
        f"{len(evs)} identités qualifiées par {agent} en {int(span.total_seconds() // 60)} min "
        f"(seuil : {th.burst_count} en {minutes} min)",
    )


# ---------------------------------------------------------------------------------------------
# Drill-down


@dataclass(frozen=True)
class InsiExchangeView:
    call_id: int
    identity_id: int | None
    at: datetime
    user_login: str | None
    operation: str
    cr: str | None
    error_code: str | None
    duration_ms: int | None
    automatic: bool
    auth_mode: str | None
    traits_sent: Mapping[str, Any] | None
    request_xml: str | None
    response_xml: str | None

    @property
    def purged(self) -> bool:
        """True when the raw XML was removed by the retention purge."""
        return self.request_xml is None and self.response_xml is None


def insi_exchange(session: Session, call_id: int) -> InsiExchangeView | None:
    """The raw INSi request/response of one call (None if there is no such call)."""
    call = session.get(InsiCall, call_id)
    if call is None or call.id is None:
        return None
    return InsiExchangeView(
        call_id=call.id,
        identity_id=call.identity_id,
        at=call.at,
        user_login=call.user_login,
        operation=call.operation,
        cr=call.cr,
        error_code=call.error_code,
        duration_ms=call.duration_ms,
        automatic=call.automatic,
        auth_mode=call.auth_mode,
        traits_sent=call.traits_sent,
        request_xml=call.request_xml,
        response_xml=call.response_xml,
    )


# ---------------------------------------------------------------------------------------------
# One call for the screen


@dataclass(frozen=True)
class ReviewPage:
    """What the review screen shows: anomalies first, then one page of events (newest first)."""

    anomalies: list[Anomaly]
    rows: list[ReviewRow]
    total: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "anomalies": [a.as_dict() for a in self.anomalies],
            "events": [r.as_dict() for r in self.rows],
            "total": self.total,
        }


def review_page(
    session: Session,
    flt: ReviewFilter | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
    thresholds: AnomalyThresholds | None = None,
    with_anomalies: bool = True,
) -> ReviewPage:
    """``anomalies`` + ``review_events`` (rows marked with them) + ``count_events``."""
    flt = flt or ReviewFilter()
    found = anomalies(session, flt, thresholds=thresholds) if with_anomalies else []
    rows = review_events(session, flt, limit=limit, offset=offset, known_anomalies=found)
    return ReviewPage(anomalies=found, rows=rows, total=count_events(session, flt))

"""Re-verifying the stored INS (``insi reverify``, supervisor).

The stored INS not checked for N days are searched again by traits (no public "verify INS"
operation exists: docs/insi-simulator.md) and compared; matches refresh ``ins_checked_at``,
mismatches are reported, nothing else changes. Every call is traced (``automatic``), with the
verdict in its audit event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import col, select

from services.desk.insi_search import refused, stored_traits_search
from services.errors import BadRequest, InsdeskError, InvalidData
from services.identity.ins_claims import holder_of
from services.identity.records import TraitDifference, compare_traits, identity_traits
from services.identity.traits import StrictTraits
from services.insi.errors import InsiError, InsiFault, InsiTlsError, InsiUnavailable
from services.insi.exchange import CR_FOUND, CR_SEVERAL
from services.insi.strategy import SearchOutcome, TraitsSearcher
from services.insi.trace import CallRecord, RecordingSearcher, auth_mode, record_calls
from services.storage.db import Database
from services.storage.models import Identity, utcnow
from services.users import Actor, Right, require

__all__ = [
    "REASON_DUPLICATE",
    "REASON_INS_DIFFERS",
    "REASON_NOT_FOUND",
    "REASON_SEVERAL",
    "REASON_TRAITS_DIFFER",
    "ReverifyError",
    "ReverifyMismatch",
    "ReverifyProgress",
    "ReverifyReport",
    "reverify",
]

REASON_NOT_FOUND: Final = "not_found"
REASON_SEVERAL: Final = "several"
REASON_INS_DIFFERS: Final = "ins_differs"
REASON_TRAITS_DIFFER: Final = "traits_differ"
REASON_DUPLICATE: Final = "duplicate"

_REASON_LABELS: Final = {
    REASON_NOT_FOUND: "l'INSi ne trouve plus cette identité (01)",
    REASON_SEVERAL: "l'INSi trouve plusieurs identités (02)",
    REASON_INS_DIFFERS: "l'INSi renvoie un autre INS que celui enregistré",
    REASON_TRAITS_DIFFER: "les traits renvoyés par l'INSi diffèrent de ceux enregistrés",
    REASON_DUPLICATE: "l'INS renvoyé par l'INSi est celui d'une autre identité (doublon à fusionner)",
}


@dataclass(frozen=True)
class ReverifyMismatch:
    """An identity whose stored INS INSi no longer confirms as it is."""

    identity_id: int
    reason: str
    """``not_found`` (01), ``several`` (02), ``ins_differs``, ``traits_differ``."""
    cr: str
    differences: list[TraitDifference] = field(default_factory=list)
    stored_ins: dict[str, str] | None = None
    insi_ins: dict[str, str] | None = None
    duplicate_of: int | None = None

    @property
    def message(self) -> str:
        return _REASON_LABELS.get(self.reason, self.reason)

    def as_dict(self) -> dict[str, Any]:
        payload = {
            "id": self.identity_id,
            "reason": self.reason,
            "cr": self.cr,
            "differences": [d.as_dict() for d in self.differences],
            "message": self.message,
            "stored_ins": self.stored_ins,
            "insi_ins": self.insi_ins,
        }
        if self.duplicate_of is not None:
            payload["duplicate_of"] = self.duplicate_of
        return payload


@dataclass(frozen=True)
class ReverifyError:
    """An identity that could not be checked (its traits refused, an INSi error, a conflict)."""

    identity_id: int
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.identity_id, "code": self.code, "message": self.message}


@dataclass
class ReverifyReport:
    """Result of :func:`reverify`.

    Exit code (``exit_code``): 0 the run completed and every INS checked was confirmed; 1 the
    run completed but something needs a person (``mismatches`` or ``errors``); 3 the run was
    stopped because INSi became unreachable (``interrupted``: the report covers what was done,
    ``error`` says why). INSi unreachable at the very start raises the ``InsiError`` instead.
    """

    candidates: int = 0
    checked: int = 0
    ok: int = 0
    mismatches: list[ReverifyMismatch] = field(default_factory=list)
    errors: list[ReverifyError] = field(default_factory=list)
    interrupted: bool = False
    error: InsdeskError | None = None
    older_than_days: int = 0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 3
        return 1 if self.mismatches or self.errors else 0

    def as_cli_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "checked": self.checked,
            "ok": self.ok,
            "mismatches": [m.as_dict() for m in self.mismatches],
            "errors": [e.as_dict() for e in self.errors],
            "candidates": self.candidates,
            "interrupted": self.interrupted,
            "older_than_days": self.older_than_days,
        }
        if self.error is not None:
            payload["error"] = self.error.as_dict()
        return payload


ReverifyProgress = Callable[[int, int, int], None]
"""``progress(done, total, identity_id)`` after each identity."""


def _stops_run(err: InsiError) -> bool:
    """INSi as a whole is out of reach (not this identity's request): stop the batch."""
    if isinstance(err, InsiUnavailable | InsiTlsError):
        return True
    if isinstance(err, InsiFault):
        return err.retryable or err.error_code in ("desir_550", "desir_560") or err.siram_code == "siram_100"
    return False


def _candidates(db: Database, *, cutoff: dt.datetime, limit: int | None) -> list[int]:
    stmt = (
        select(Identity.id)
        .where(
            col(Identity.ins_matricule).is_not(None),
            col(Identity.flag_douteuse).is_(False),
            col(Identity.flag_fictive).is_(False),
            sa.or_(col(Identity.ins_checked_at).is_(None), col(Identity.ins_checked_at) < cutoff),
        )
        .order_by(col(Identity.ins_checked_at).is_not(None), col(Identity.ins_checked_at), col(Identity.id))
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    with db.session() as session:
        return [int(i) for i in session.exec(stmt).all() if i is not None]


@dataclass(frozen=True)
class _Snapshot:
    version: int
    traits: StrictTraits
    ins: tuple[str, str, str]
    blocked: bool


def _snapshot(db: Database, identity_id: int) -> _Snapshot | None:
    with db.session() as session:
        identity = session.get(Identity, identity_id)
        if identity is None or identity.ins_matricule is None:
            return None
        return _Snapshot(
            version=identity.version,
            traits=identity_traits(identity),
            ins=(identity.ins_matricule, identity.ins_key or "", identity.ins_oid or ""),
            blocked=identity.flag_douteuse or identity.flag_fictive,
        )


def _ins_of(ins: tuple[str, str, str]) -> dict[str, str]:
    return {"matricule": ins[0], "key": ins[1], "oid": ins[2]}


def _verdict(snapshot: _Snapshot, outcome: SearchOutcome) -> ReverifyMismatch | None:
    stored = _ins_of(snapshot.ins)
    if outcome.cr == CR_SEVERAL:
        return ReverifyMismatch(0, REASON_SEVERAL, outcome.cr, stored_ins=stored)
    if outcome.cr != CR_FOUND or outcome.identity is None:
        return ReverifyMismatch(0, REASON_NOT_FOUND, outcome.cr, stored_ins=stored)
    found = outcome.identity
    returned = (found.matricule.number, found.matricule.key, found.oid)
    differences = compare_traits(snapshot.traits, found.traits)
    if returned != snapshot.ins:
        return ReverifyMismatch(0, REASON_INS_DIFFERS, outcome.cr, differences, stored, found.ins_cli_dict())
    if differences:
        return ReverifyMismatch(
            0, REASON_TRAITS_DIFFER, outcome.cr, differences, stored, found.ins_cli_dict()
        )
    return None


def reverify(
    db: Database,
    *,
    actor: Actor,
    client: TraitsSearcher,
    older_than_days: int,
    limit: int | None = None,
    progress: ReverifyProgress | None = None,
    now: dt.datetime | None = None,
) -> ReverifyReport:
    """Re-verify the stored INS not checked (``ins_checked_at``) for ``older_than_days`` days
    (Right.REVERIFY), oldest first: a traits search with the stored traits, then a comparison.

    A confirmed INS (same INS, same strict traits) gets ``ins_checked_at`` refreshed — only if
    the identity did not change during the call (its version is compared in the UPDATE); a
    mismatch (01, 02, another INS, other traits) or an error is reported and changes nothing.
    Every call is traced with ``automatic=True`` and the verdict in its audit event.
    ``InsiError`` is raised when INSi is unreachable before any identity could be checked.
    """
    require(actor, Right.REVERIFY)
    require(actor, Right.INSI_SEARCH)
    if isinstance(older_than_days, bool) or not isinstance(older_than_days, int) or older_than_days < 0:
        raise BadRequest("Le nombre de jours doit être un entier positif ou nul.", code="reverify_days")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise BadRequest("La limite doit être un entier d'au moins 1.", code="reverify_limit")
    started = now if now is not None else utcnow()
    ids = _candidates(db, cutoff=started - dt.timedelta(days=older_than_days), limit=limit)
    report = ReverifyReport(candidates=len(ids), older_than_days=older_than_days)
    for index, identity_id in enumerate(ids, start=1):
        snapshot = _snapshot(db, identity_id)
        if snapshot is None or snapshot.blocked:  # changed since the selection: nothing to check
            if progress is not None:
                progress(index, len(ids), identity_id)
            continue
        stop = _reverify_one(
            db, actor=actor, client=client, identity_id=identity_id, snap=snapshot, report=report
        )
        if progress is not None:
            progress(index, len(ids), identity_id)
        if stop is not None:
            if report.checked == 0:  # INSi unreachable from the start: nothing was checked
                raise stop
            report.interrupted = True
            report.error = stop
            break
    return report


def _reverify_one(
    db: Database,
    *,
    actor: Actor,
    client: TraitsSearcher,
    identity_id: int,
    snap: _Snapshot,
    report: ReverifyReport,
) -> InsiError | None:
    """Check one identity; returns the error that must stop the batch, if any."""
    recorder = RecordingSearcher(client)
    mode = auth_mode(recorder.config)

    def store(records: Sequence[CallRecord], verdict: str, checked_ok: bool) -> bool:
        """The trace (and, when confirmed, ``ins_checked_at``) in one transaction; returns
        False when the identity changed during the call (the date is then not refreshed)."""
        with db.transaction() as session:
            record_calls(
                session,
                user_login=actor.login,
                records=records,
                identity_id=identity_id,
                automatic=True,
                auth=mode,
                extra_details={"reverify": verdict},
            )
            if not checked_ok:
                return True
            # A Core UPDATE guarded by the version read before the call: no StaleDataError
            # that would roll the trace back, and the desk's own version is not bumped for a
            # date only the batch maintains.
            table = Identity.__table__  # type: ignore[attr-defined]
            result = session.execute(
                sa.update(table)
                .where(table.c.id == identity_id, table.c.version == snap.version)
                .values(ins_checked_at=utcnow())
            )
            return bool(getattr(result, "rowcount", 0) == 1)

    try:
        outcome = stored_traits_search(recorder, snap.traits)
    except InvalidData as err:
        if recorder.records:
            store(recorder.records, "error", False)
        report.errors.append(ReverifyError(identity_id, "traits_refused", refused(err).message))
        return None
    except InsiError as err:
        store(recorder.records, "error", False)
        report.errors.append(ReverifyError(identity_id, err.code, err.message))
        return err if _stops_run(err) else None
    report.checked += 1
    mismatch = _verdict(snap, outcome)
    if mismatch is None and outcome.identity is not None:
        # Confirmed, but the INS (or a matricule of its history) is another identity's too.
        found = outcome.identity
        held = [found.matricule.number] + [h.matricule.number for h in found.history if h.key_valid]
        with db.session() as session:
            holder = holder_of(session, held, exclude=identity_id)
        if holder is not None:
            mismatch = ReverifyMismatch(
                0,
                REASON_DUPLICATE,
                outcome.cr,
                stored_ins=_ins_of(snap.ins),
                insi_ins=found.ins_cli_dict(),
                duplicate_of=holder,
            )
    if mismatch is not None:
        store(recorder.records, mismatch.reason, False)
        report.mismatches.append(
            ReverifyMismatch(
                identity_id,
                mismatch.reason,
                mismatch.cr,
                mismatch.differences,
                mismatch.stored_ins,
                mismatch.insi_ins,
                mismatch.duplicate_of,
            )
        )
        return None
    if store(recorder.records, "ok", True):
        report.ok += 1
    else:
        report.errors.append(
            ReverifyError(
                identity_id,
                "concurrent_update",
                "L'identité a été modifiée pendant la vérification : la date de vérification n'a pas été "
                "mise à jour ; elle sera revérifiée au prochain passage.",
            )
        )
    return None

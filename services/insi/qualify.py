"""INSi use cases: a traced search, the qualification of an identity, the batch re-verification.

* :func:`search_insi` — ``insdesk insi search``: the certified strategy (CNDA 2.07) for traits
  typed at the desk, every exchange traced (EXI REC 07/08) with no identity attached.
* :func:`qualify_with_insi` — ``insdesk identity insi``: search with the identity's stored
  strict traits, trace, then on ``00`` attach the INS (:func:`services.identity.service.attach_ins`:
  PROV→RECUP, VALI→QUAL, RNIV EXI SI 07), unless INSi's traits differ and the agent has not
  confirmed them with the document in hand (ins-rules.md "INSi results and mismatches").
* :func:`reverify` — ``insdesk insi reverify``: the stored INS not checked for N days are
  searched again by traits (no public "verify INS" operation exists, insi-protocol.md) and
  compared; matches refresh ``ins_checked_at``, mismatches are reported, nothing else changes.

Order of things, the same everywhere:

1. rights, then the identity's flags (douteuse/fictive forbid any call, EXI SI 09) and the
   traits (characters outside the INSi set are refused before any call): ``BadRequest`` /
   :class:`TraitsRefused`, exit 2, no call;
2. the identity's ``version`` is read **before** the call (which can take seconds);
3. the calls are written in a transaction of their own (:mod:`services.insi.trace`), also when
   the search fails (fault, timeout: the ``InsiError`` is re-raised afterwards, exit 3) — and
   that transaction never touches an identity;
4. only then the identity changes, in a second transaction, guarded by the version read in 2:
   an identity edited on another desk during the call is refused (``ConcurrentUpdate``,
   exit 4), never overwritten.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import col, select

from services.errors import BadRequest, FieldIssue, InsdeskError, InvalidData
from services.identity import service
from services.identity.birthdate import BirthDate
from services.identity.ins_claims import holder_of
from services.identity.service import TraitDifference, compare_traits, identity_flags, identity_traits
from services.identity.status import check_insi_allowed
from services.identity.traits import StrictTraits, check_traits
from services.insi.errors import InsiError, InsiFault, InsiTlsError, InsiUnavailable
from services.insi.exchange import CR_FOUND, CR_SEVERAL, InsiIdentity
from services.insi.strategy import Attempt, SearchOutcome, TraitsSearcher, run_strategy
from services.insi.trace import CallRecord, RecordingSearcher, auth_mode, record_calls, save_calls
from services.storage.db import Database
from services.storage.models import Identity, Status, utcnow
from services.users import Actor, Right, require

__all__ = [
    "ADVICE_DIFFERENCES",
    "QualifyResult",
    "ReverifyError",
    "ReverifyMismatch",
    "ReverifyReport",
    "TracedSearch",
    "TraitsRefused",
    "check_qualify_allowed",
    "qualify_with_insi",
    "reverify",
    "search_insi",
    "validate_search_traits",
]

ADVICE_DIFFERENCES: Final = (
    "Les traits renvoyés par l'INSi diffèrent de ceux de l'identité : comparez-les avec la pièce "
    "d'identité du patient. Si la pièce correspond aux traits INSi, confirmez-les : ils remplaceront les "
    "traits saisis. Sinon, rien n'est modifié et le patient doit faire corriger l'erreur : à la mairie "
    "(carte d'identité, passeport), à la préfecture (titre de séjour), auprès de l'INSEE (INS d'une "
    "personne née en France) ou de sa CPAM (personne née à l'étranger)."
)

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


class TraitsRefused(InvalidData):
    """Traits refused by the local input rules before any INSi call (cli.md ``insi search``:
    exit 2 — nothing changed, no call made)."""

    exit_code = 2
    default_code = "traits_refused"
    title = "Traits refusés avant l'appel INSi"


def _refused(err: InvalidData) -> TraitsRefused:
    return TraitsRefused(
        f"Aucun appel INSi n'a été fait : {err.message}",
        errors=err.errors,
        warnings=err.warnings,
        detail=err.detail,
    )


def validate_search_traits(
    *,
    birth_name: str,
    first_names: str | Sequence[str],
    sex: str,
    birth_date: str | BirthDate,
    first_name: str | None = None,
    birthplace: str | None = None,
) -> tuple[StrictTraits, list[FieldIssue]]:
    """The traits as they will be sent, and the warnings; :class:`TraitsRefused` when invalid."""
    check = check_traits(
        birth_name=birth_name,
        first_names=first_names,
        sex=sex,
        birth_date=birth_date,
        first_name=first_name,
        birthplace=birthplace,
    )
    try:
        traits = check.raise_if_invalid()
    except InvalidData as err:
        raise _refused(err) from None
    return traits, list(check.warnings)


# ---------------------------------------------------------------------------------------------
# Traced search


@dataclass(frozen=True)
class TracedSearch:
    """A certified search and the ``insi_call`` ids it was recorded under (in call order)."""

    outcome: SearchOutcome
    call_ids: list[int]

    def as_cli_dict(self) -> dict[str, Any]:
        """The ``insi search`` JSON of cli.md, plus ``advice``, ``warnings`` and ``calls``."""
        return {
            **self.outcome.as_cli_dict(),
            "advice": self.outcome.advice,
            "warnings": [w.as_dict() for w in self.outcome.warnings],
            "calls": list(self.call_ids),
        }


def _traced(
    db: Database,
    *,
    actor: Actor,
    client: TraitsSearcher,
    identity_id: int | None,
    automatic: bool,
    run: Callable[[TraitsSearcher], SearchOutcome],
) -> TracedSearch:
    """Run a search through a recorder and store every exchange, whatever happens (EXI REC 07/08)."""
    recorder = RecordingSearcher(client)

    def store() -> list[int]:
        return save_calls(
            db,
            user_login=actor.login,
            records=recorder.records,
            identity_id=identity_id,
            automatic=automatic,
            auth=auth_mode(recorder.config),
        )

    try:
        outcome = run(recorder)
    except InvalidData as err:
        if not recorder.records:  # refused by the input rules: nothing was sent
            raise _refused(err) from None
        store()
        raise
    except BaseException:
        # Fault, timeout, TLS, interruption...: the calls made so far (the failed one included)
        # are stored, in their own transaction, before the error goes up; no identity is touched.
        store()
        raise
    ids = store()
    return TracedSearch(outcome, ids)


def search_insi(
    db: Database,
    *,
    actor: Actor,
    client: TraitsSearcher,
    traits: StrictTraits,
    warnings: Sequence[FieldIssue] = (),
    automatic: bool = False,
    identity_id: int | None = None,
) -> TracedSearch:
    """``insi search``: the certified strategy for validated ``traits`` (see
    :func:`validate_search_traits`), traced with ``identity_id`` (null for a search typed at the
    desk). An ``InsiError`` (exit 3) is raised after the calls are stored."""
    require(actor, Right.INSI_SEARCH)
    return _traced(
        db,
        actor=actor,
        client=client,
        identity_id=identity_id,
        automatic=automatic,
        run=lambda searcher: run_strategy(searcher, traits, warnings=warnings),
    )


def _stored_traits_search(searcher: TraitsSearcher, traits: StrictTraits) -> SearchOutcome:
    """The stored traits, validated again by the input rules before any call."""
    check = check_traits(
        birth_name=traits.birth_name,
        first_names=traits.first_names,
        sex=traits.sex,
        birth_date=traits.birth_date,
        first_name=traits.first_name,
        birthplace=traits.birthplace,
    )
    return run_strategy(searcher, check.raise_if_invalid(), warnings=check.warnings)


# ---------------------------------------------------------------------------------------------
# Qualification of one identity


def _ins_dict(found: InsiIdentity | None) -> dict[str, str] | None:
    return found.ins_cli_dict() if found is not None else None


@dataclass
class QualifyResult:
    """What ``identity insi`` did. ``attached``: the INS was attached (exit 0); otherwise the
    answer is negative (exit 1): ``01``/``02`` (see ``advice``) or INSi traits that differ and
    were not confirmed (``differences``, nothing changed)."""

    identity_id: int
    status: str
    version: int
    cr: str
    label: str
    ins: dict[str, str] | None
    """The INS INSi returned (``00``), attached or not."""
    differences: list[TraitDifference]
    attempts: list[Attempt]
    advice: str | None
    attached: bool
    call_ids: list[int]
    insi_traits: StrictTraits | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[FieldIssue] = field(default_factory=list)
    duplicate_of: int | None = None
    """The identity that already holds the INS INSi returned (nothing attached, exit 1)."""

    @property
    def exit_code(self) -> int:
        return 0 if self.attached else 1

    def as_cli_dict(self) -> dict[str, Any]:
        """The ``identity insi`` JSON of cli.md (``id``, ``status``, ``cr``, ``ins``,
        ``differences``) plus the details a script or the TUI may want."""
        return {
            "id": self.identity_id,
            "status": self.status,
            "cr": self.cr,
            "ins": self.ins,
            "differences": [d.as_dict() for d in self.differences],
            "attached": self.attached,
            "version": self.version,
            "label": self.label,
            "advice": self.advice,
            "insi_traits": self.insi_traits.as_dict() if self.insi_traits is not None else None,
            "history": self.history,
            "attempts": [a.as_cli_dict() for a in self.attempts],
            "calls": list(self.call_ids),
            "warnings": [w.as_dict() for w in self.warnings],
        } | ({"duplicate_of": self.duplicate_of} if self.duplicate_of is not None else {})


def history_entries(found: InsiIdentity) -> list[service.InsHistoryEntry]:
    """INSi's INSHISTO entries as :func:`services.identity.service.attach_ins` takes them."""
    return [
        service.InsHistoryEntry(h.matricule, h.oid, h.valid_from, h.valid_to, key_valid=h.key_valid)
        for h in found.history
    ]


ADVICE_DUPLICATE: Final = (
    "L'INS renvoyé par l'INSi est déjà celui d'une autre identité : c'est probablement la même personne "
    "(doublon). Rien n'a été rattaché. Ouvrez l'identité existante ; la cellule d'identitovigilance peut "
    "fusionner les deux."
)


def _load_for_call(db: Database, *, actor: Actor, identity_id: int) -> tuple[int, StrictTraits]:
    """(version, stored strict traits) of an identity INSi may be asked about; BadRequest
    (exit 2, before any call) when it is douteuse or fictive (EXI SI 09)."""
    with db.session() as session:
        identity = service.get_identity(session, actor=actor, identity_id=identity_id)
        check_insi_allowed(identity_flags(identity))
        return identity.version, identity_traits(identity)


def check_qualify_allowed(db: Database, *, actor: Actor, identity_id: int) -> None:
    """Everything :func:`qualify_with_insi` checks before a call (rights, identity, flags), for
    a caller that wants to refuse before building an INSi client."""
    require(actor, Right.INSI_SEARCH)
    require(actor, Right.IDENTITY_WRITE)
    _load_for_call(db, actor=actor, identity_id=identity_id)


def qualify_with_insi(
    db: Database,
    *,
    actor: Actor,
    identity_id: int,
    client: TraitsSearcher,
    accept_insi_traits: bool = False,
    automatic: bool = False,
) -> QualifyResult:
    """Search INSi with the identity's strict traits, record the calls, attach the INS on ``00``.

    Raises before any call: ``PermissionDenied`` (exit 4), ``NotFound`` (exit 1), ``BadRequest``
    for a douteuse/fictive identity and :class:`TraitsRefused` for stored traits the input rules
    refuse (exit 2). After the calls are stored: ``InsiError`` (exit 3) with no identity change;
    ``ConcurrentUpdate`` (exit 4) when the identity changed during the call.
    """
    require(actor, Right.INSI_SEARCH)
    require(actor, Right.IDENTITY_WRITE)
    version, traits = _load_for_call(db, actor=actor, identity_id=identity_id)
    traced = _traced(
        db,
        actor=actor,
        client=client,
        identity_id=identity_id,
        automatic=automatic,
        run=lambda searcher: _stored_traits_search(searcher, traits),
    )
    outcome = traced.outcome
    found = outcome.identity if outcome.found else None
    warnings = list(outcome.warnings) + (list(found.warnings) if found is not None else [])
    if found is None:
        with db.session() as session:
            identity = service.get_identity(session, actor=actor, identity_id=identity_id)
            status, current_version = Status(identity.status).value, identity.version
        return QualifyResult(
            identity_id=identity_id,
            status=status,
            version=current_version,
            cr=outcome.cr,
            label=outcome.label,
            ins=None,
            differences=[],
            attempts=outcome.attempts,
            advice=outcome.advice,
            attached=False,
            call_ids=traced.call_ids,
            warnings=warnings,
        )
    with db.transaction() as session:
        attach = service.attach_ins(
            session,
            actor=actor,
            identity_id=identity_id,
            matricule=found.matricule,
            oid=found.oid,
            insi_traits=found.traits,
            history=history_entries(found),
            insi_call_id=traced.call_ids[-1] if traced.call_ids else None,
            accept_insi_traits=accept_insi_traits,
            expect_version=version,
        )
        status = Status(attach.identity.status).value
    # The version after the commit (the row was flushed: version_id_col is up to date).
    new_version = attach.identity.version
    return QualifyResult(
        identity_id=identity_id,
        status=status,
        version=new_version,
        cr=outcome.cr,
        label=outcome.label,
        ins=_ins_dict(found),
        differences=attach.differences,
        attempts=outcome.attempts,
        advice=(
            ADVICE_DUPLICATE
            if attach.duplicate_of is not None
            else ADVICE_DIFFERENCES
            if attach.differences and not attach.attached
            else None
        ),
        attached=attach.attached,
        duplicate_of=attach.duplicate_of,
        call_ids=traced.call_ids,
        insi_traits=found.traits,
        history=[h.as_cli_dict() for h in found.history],
        warnings=warnings,
    )


# ---------------------------------------------------------------------------------------------
# Batch re-verification


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
        outcome = _stored_traits_search(recorder, snap.traits)
    except InvalidData as err:
        if recorder.records:
            store(recorder.records, "error", False)
        report.errors.append(ReverifyError(identity_id, "traits_refused", _refused(err).message))
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

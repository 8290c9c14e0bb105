"""Verification of the whole audit chain (``insdesk audit verify``): every stored event read raw in
id order, against the head row and this desk's anchor; appends nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import Session

from services.audit.chain import Walk, is_sqlite, raw_event_select, read_head
from services.storage.anchor import Anchor, AnchorFile, AnchorState
from services.storage.models import AuditEvent

if TYPE_CHECKING:
    from services.storage.db import Database

__all__ = ["ChainReport", "verify_chain", "verify_database"]

_VERIFY_BATCH = 5000


@dataclass
class ChainReport:
    ok: bool
    events: int
    first_bad: int | None = None
    reason: str | None = None
    anchor: Anchor | None = field(default=None, compare=False)
    """The anchored head the chain was checked against (None: no anchor)."""
    anchor_written_at: datetime | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"ok": self.ok, "events": self.events, "first_bad": self.first_bad}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def verify_chain(
    session: Session, *, anchor: Anchor | AnchorState | None = None, strict: bool = False
) -> ChainReport:
    """Check the whole chain, streaming raw stored values in id order; name the FIRST bad event.

    Detects: a modified event (its hash no longer matches, or a stored value no append could
    have written: that event), a broken link (its ``prev_hash`` differs from the previous hash:
    that event), a missing id (the first missing id), events swapped between ids (the first of
    them), an ``audit_head`` that disagrees with the last event, and — with ``anchor`` — removed
    last events (the first missing id) or a rewritten tail (the anchored id); with ``strict``
    too (this anchor witnesses every writer), events after the anchored one (the first of them:
    written without insdesk, or the anchor replaced by an older copy). ``events`` is the number
    of events read.

    Run it in ``Database.session()`` (one consistent snapshot) with the anchor read at the same
    instant, or use ``verify_database``.
    """
    state = AnchorState(anchor=anchor) if isinstance(anchor, Anchor) else anchor
    report = _verify(session, state, strict)
    if state is not None:
        report.anchor_written_at = state.written_at
    return report


def _verify(session: Session, state: AnchorState | None, strict: bool) -> ChainReport:
    head = read_head(session)
    t = AuditEvent.__table__.c  # type: ignore[attr-defined]
    result = session.execute(raw_event_select().order_by(t.id).execution_options(yield_per=_VERIFY_BATCH))
    walk = Walk(sqlite=is_sqlite(session))
    wanted: set[int] = set()
    if state is not None:
        wanted.add(state.anchor.last_id)
        if state.pending is not None:
            wanted.add(state.pending.last_id)
    hashes: dict[int, str] = {}
    count = 0
    for row in result:
        count += 1
        failure = walk.step(row)
        if failure is not None:
            result.close()
            return ChainReport(False, count, failure[0], failure[1])
        if row[0] in wanted:
            hashes[row[0]] = walk.prev_hash
    last_id = walk.last_id

    anchored: Anchor | None = None
    if state is not None:
        anchored = state.resolve(hashes.get)
        if anchored.last_id > 0:
            if last_id < anchored.last_id:
                return ChainReport(
                    False,
                    count,
                    last_id + 1,
                    f"Les derniers événements ont été supprimés : le n°{last_id + 1} manque "
                    f"(l'ancre de contrôle en attend {anchored.last_id}).",
                    anchored,
                )
            if hashes.get(anchored.last_id) != anchored.last_hash:
                return ChainReport(
                    False,
                    count,
                    anchored.last_id,
                    f"La chaîne a été réécrite : l'événement n°{anchored.last_id} "
                    "ne correspond plus à l'ancre de contrôle.",
                    anchored,
                )
        if strict and last_id > anchored.last_id:
            return ChainReport(
                False,
                count,
                anchored.last_id + 1,
                f"L'événement n°{anchored.last_id + 1} n'est pas témoigné par l'ancre de contrôle "
                f"(ancre au n°{anchored.last_id}) : écrit sans passer par insdesk, ou ancre remplacée "
                "par une copie plus ancienne.",
                anchored,
            )

    if head is None:
        return ChainReport(False, count, 1, "L'en-tête du journal d'audit est absent ou illisible.", anchored)
    if head.last_id < last_id:
        return ChainReport(
            False,
            count,
            head.last_id + 1,
            f"L'événement n°{head.last_id + 1} a été ajouté hors du journal (en-tête au n°{head.last_id}).",
            anchored,
        )
    if head.last_id > last_id:
        return ChainReport(
            False,
            count,
            last_id + 1,
            f"Les derniers événements ont été supprimés : le n°{last_id + 1} manque "
            f"(l'en-tête du journal en attend {head.last_id}).",
            anchored,
        )
    if head.last_hash != walk.prev_hash:
        return ChainReport(
            False,
            count,
            last_id if last_id > 0 else None,
            "L'en-tête du journal ne correspond pas au dernier événement.",
            anchored,
        )
    return ChainReport(True, count, None, None, anchored)


def verify_database(db: Database, *, anchor_path: Path | None = None) -> ChainReport:
    """``verify_chain`` on a consistent snapshot of ``db``, against its anchor when present
    (strictly when that anchor witnesses every writer, ``Database.anchor_guard``).

    ``anchor_path`` checks against another anchor file instead of this desk's own (e.g. a copy
    kept elsewhere, or another desk's): a missing file is an error, not "no anchor", and the
    check is never strict (a copy may lag behind the head). Appends nothing.
    """
    guard = db.anchor_guard
    if anchor_path is not None:
        file: AnchorFile | None = AnchorFile(anchor_path)
        strict = False
    else:
        file = guard.file if guard is not None else None
        strict = guard.strict if guard is not None else False
    with db.session() as session:
        state: AnchorState | None = None
        try:
            if file is not None:
                # Shared lock: no commit of this desk lands between reading the anchor and
                # taking the snapshot (the first read of the session).
                with file.shared():
                    state = file.read_state()
                    read_head(session)
                if state is None and anchor_path is not None:
                    raise FileNotFoundError(str(anchor_path))
        except (ValueError, OSError):  # an unreadable anchor is itself a sign of tampering
            report = verify_chain(session)
            if not report.ok:
                return report
            return ChainReport(
                ok=False,
                events=report.events,
                first_bad=None,
                reason="Le fichier d'ancrage de la chaîne d'audit est illisible ou altéré : "
                "la suppression des derniers évènements ne peut pas être exclue.",
            )
        return verify_chain(session, anchor=state, strict=strict)

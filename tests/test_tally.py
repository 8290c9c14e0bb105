"""The dashboard's counters (issue #17, ``services.storage.tally``): the dashboard reads only them,
and they always equal a recount of the rows, whatever changed them, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from services.audit.log import IDENTITY_MERGED, IDENTITY_STATUS_CHANGED
from services.desk import flags as desk_flags
from services.desk import identities as desk_identities
from services.desk import merge as desk_merge
from services.desk import proofs as desk_proofs
from services.results.catalog import set_mapping
from services.results.models import LabReport, ReportStatus
from services.stats import desk_stats
from services.storage import tally
from services.storage.db import Database
from services.storage.models import Identity, Status
from services.supervision import dashboard as dash
from tests import test_results_gate
from tests.results_support import (
    BIOLOGIST,
    DURAND,
    INS_DURAND,
    LAB_A,
    LAB_B,
    MARTIN,
    RECEPTION,
    SUPERVISOR,
    create_identity,
    import_path,
    qualify,
)
from tests.test_identity_service import NEXT_YEAR, make_traits

# The results tests' database: SQLite and PostgreSQL, the value set and catalogue loaded.
db = test_results_gate.db


def raw_identity(name: str, created_by: str, **kw: object) -> Identity:
    return Identity(
        birth_name=name,
        first_names="CLAIRE",
        sex="F",
        birth_date=date(1985, 6, 21),
        created_by=created_by,
        **kw,
    )


def assert_in_step(db: Database) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str, str], int]]:
    with db.session() as s:
        conn = s.connection()
        kept = (dict(tally.read_identities(conn)), dict(tally.read_days(conn)))
        ids, days = tally.recount(conn)
    assert kept == (dict(ids), dict(days))
    return kept


def test_constants_agree_with_the_floors_above() -> None:
    assert tally.STATUS_CHANGED == IDENTITY_STATUS_CHANGED
    assert tally.MERGED_EVENT == IDENTITY_MERGED
    assert ReportStatus.BLOCKED.value == tally.BLOCKED


def test_paris_day() -> None:
    assert tally.paris_day(datetime(2026, 1, 15, 22, 59, tzinfo=UTC)) == "2026-01-15"
    assert tally.paris_day(datetime(2026, 1, 15, 23, 0, tzinfo=UTC)) == "2026-01-16"  # CET
    assert tally.paris_day(datetime(2026, 7, 15, 21, 59, tzinfo=UTC)) == "2026-07-15"
    assert tally.paris_day(datetime(2026, 7, 15, 22, 0, tzinfo=UTC)) == "2026-07-16"  # CEST


def test_counters_follow_every_kind_of_change(db: Database) -> None:
    today = tally.paris_day(datetime.now(UTC))
    durand = create_identity(db, DURAND, local_id="IPP-1002")
    martin = create_identity(db, MARTIN, local_id="IPP-1001")
    ids, days = assert_in_step(db)
    assert sum(ids.values()) == 2 and days[(today, tally.CREATED, "")] == 2

    # PROV → RECUP → QUAL, then a proof and a flag (downgrade) on another identity.
    with db.transaction() as s:
        qualify(s, durand, INS_DURAND)
    with db.transaction() as s:
        desk_proofs.add_proof(
            s, actor=RECEPTION, identity_id=martin, document_type="passeport", expires=NEXT_YEAR
        )
    with db.transaction() as s:
        desk_flags.set_flag(s, actor=RECEPTION, identity_id=martin, flag="douteuse", reason="pièce suspecte")
    ids, days = assert_in_step(db)
    assert sum(n for (_, _, status), n in ids.items() if status == "QUAL") == 1
    assert days[(today, tally.QUAL_DELTA, "")] == 1

    # Reports: imported (received, blocked by reason), verdicts recomputed by a mapping fix.
    import_path(db, LAB_A)
    import_path(db, LAB_B)
    ids, days = assert_in_step(db)
    assert days[(today, tally.RECEIVED, "")] >= 2
    with db.session() as s:
        blocked = s.execute(
            sa.select(sa.func.count()).where(LabReport.status == ReportStatus.BLOCKED)
        ).scalar()
    assert days.get((today, tally.REPORTS_BLOCKED, ""), 0) == blocked
    with db.transaction() as s:
        set_mapping(s, actor=BIOLOGIST, local_code="GLU", loinc="2345-7")
    assert_in_step(db)

    # A strict trait edited on a qualified identity (→ PROV, −1 QUAL) by a supervisor.
    with db.transaction() as s:
        desk_identities.edit_identity(
            s, actor=SUPERVISOR, identity_id=durand, birth_name="DURANT", reason="erreur de saisie"
        )
    ids, days = assert_in_step(db)
    assert days.get((today, tally.QUAL_DELTA, ""), 0) == 0

    # A report handed to the DMP, then a newer version to send as its replacement.
    with db.transaction() as s:
        sent = s.execute(sa.select(LabReport).order_by(LabReport.id).limit(1)).scalar_one()
        sent.status, sent.sent_version = ReportStatus.SENT, 1
    ids, days = assert_in_step(db)
    assert days[(tally.NOW, tally.SENDING, "sent")] == 1
    with db.transaction() as s:
        sent = s.execute(sa.select(LabReport).order_by(LabReport.id).limit(1)).scalar_one()
        sent.status = ReportStatus.READY
    ids, days = assert_in_step(db)
    assert (tally.NOW, tally.SENDING, "sent") not in days and days[
        (tally.NOW, tally.SENDING, "to_replace")
    ] == 1
    with db.session() as s:
        assert dash.compute_dashboard(s).sending == {"sent": 0, "refused": 0, "withdrawn": 0, "to_replace": 1}

    # A merge: the duplicate's reports move, the kept identity's verdicts are recomputed.
    dup = create_identity(db, DURAND, local_id="IPP-9999")
    with db.transaction() as s:
        desk_merge.merge_identities(s, actor=SUPERVISOR, keep_id=durand, dup_id=dup, reason="doublon")
    assert_in_step(db)


def test_a_merged_duplicate_is_not_a_patient_in_the_figures(db: Database) -> None:
    """A duplicate merged into another identity stays as a tombstone: ``stats`` and the dashboard
    (rate, per agent, per channel) count it no more, before or after the merge day, and the
    counters still equal a recount (which the migration 0011 did for an existing database).
    Before, the tombstone was counted as a patient of its former status (QUAL here: the rate said
    2 identities, 2 QUAL, for one patient)."""
    today = datetime.now(UTC).astimezone(tally.PARIS).date()
    keep = create_identity(db, DURAND, local_id="IPP-1002")
    dup = create_identity(db, DURAND, local_id="IPP-9999")
    with db.transaction() as s:
        qualify(s, dup, INS_DURAND)  # the duplicate holds the INS and is QUAL; the kept one PROV
    with db.transaction() as s:
        desk_merge.merge_identities(s, actor=SUPERVISOR, keep_id=keep, dup_id=dup, reason="doublon")
    ids, days = assert_in_step(db)
    assert ids[("accueil1", "manual", tally.MERGED)] == 1
    assert days[(today.isoformat(), tally.MERGED, "")] == 1
    with db.session() as s:
        kept_status = s.get(Identity, keep).status  # type: ignore[union-attr]
        stats = desk_stats(s, actor=SUPERVISOR)
        board = dash.compute_dashboard(s)
        rate = dash.qualification_rate(s, by="day", since=today - timedelta(days=1))
    assert kept_status == Status.QUAL  # the INS moved, the duplicate's checked document counts
    assert stats["identities"] == 1 and stats["by_status"]["QUAL"] == 1 and stats["qualification_rate"] == 1.0
    assert [(p.period, p.identities, p.qual) for p in rate] == [
        (today - timedelta(days=1), 0, 0),
        (today, 1, 1),
    ]
    assert [(a.agent, a.created, a.created_qual) for a in board.agents if a.created] == [("accueil1", 1, 1)]
    assert [(c.channel, c.identities, c.qual) for c in board.channels] == [("manual", 1, 1)]


def test_a_rolled_back_unit_of_work_counts_nothing(db: Database) -> None:
    durand = create_identity(db, DURAND, local_id="IPP-1002")
    with db.transaction() as s:
        qualify(s, durand, INS_DURAND)
    before = assert_in_step(db)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.transaction() as s:
        desk_identities.create_identity(s, actor=RECEPTION, traits=make_traits(birth_name="FANTOME"))
        s.flush()
        raise Boom
    assert assert_in_step(db) == before
    # The same INS on a second identity: the attachment is refused (audited), the proof stays.
    other = create_identity(db, MARTIN, local_id="IPP-1001")
    with db.transaction() as s:
        qualify(s, other, INS_DURAND)
    ids, _ = assert_in_step(db)
    assert ids[("accueil1", "manual", "VALI")] == 1


def test_a_savepoint_rolled_back_takes_its_counts_with_it(db: Database) -> None:
    create_identity(db, DURAND, local_id="IPP-1002")
    before = assert_in_step(db)
    with db.transaction() as s:
        try:
            with s.begin_nested():
                s.add(raw_identity("EPHEMERE", "x"))
                s.flush()
                raise RuntimeError("undone")
        except RuntimeError:
            pass
        s.add(raw_identity("DURABLE", "y"))
    ids, _ = assert_in_step(db)
    assert sum(ids.values()) == sum(before[0].values()) + 1
    assert ("x", "manual", "PROV") not in ids and ids[("y", "manual", "PROV")] == 1


def test_rebuild_fills_counters_of_rows_loaded_in_bulk(db: Database) -> None:
    """Rows written by bulk inserts (an import by other means, the benches) are counted by a
    rebuild, as migration 0010 does for an existing database."""
    long_ago = datetime.now(UTC) - timedelta(days=400)
    old = raw_identity("ANCIEN", "old", status=Status.QUAL, created_at=long_ago, updated_at=long_ago)
    row = {c: getattr(old, c) for c in ("birth_name", "first_names", "sex", "birth_date", "created_by")}
    row.update(status="QUAL", capture_channel="insi", created_at=long_ago, updated_at=long_ago, version=1)
    with db.engine.begin() as conn:
        conn.execute(sa.insert(Identity.__table__), [row])  # type: ignore[attr-defined]
    with db.session() as s:
        assert tally.read_identities(s.connection()) != tally.recount(s.connection())[0]
    with db.engine.begin() as conn:
        tally.rebuild(conn)
    ids, days = assert_in_step(db)
    assert ids[("old", "insi", "QUAL")] == 1
    assert days[(tally.paris_day(long_ago), tally.CREATED, "")] == 1


def test_the_dashboard_reads_counters_not_identities_or_events(db: Database) -> None:
    """Issue #17: on 1,000,000 identities and 5,000,000 events the dashboard took 1.5 s (4 s by
    month over two years) because it scanned them at each opening; now it reads the counters."""
    durand = create_identity(db, DURAND, local_id="IPP-1002")
    with db.transaction() as s:
        qualify(s, durand, INS_DURAND)
    import_path(db, LAB_A)
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.session() as s:
            figures = dash.compute_dashboard(
                s, by="month", since=datetime.now(UTC).date() - timedelta(days=730)
            )
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    read = " ".join(statements).lower()
    assert "identity_tally" in read and "day_tally" in read
    for table in ("from identity ", "from audit_event", "from lab_report "):
        assert table not in read + " ", (table, statements)
    assert figures.rate[-1].qual == 1 and figures.rate[-1].identities == 1
    assert sum(p.received for p in figures.blocked) >= 1

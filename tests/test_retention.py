"""Retention purge (issue #7): raw INSi XML and document scans, audited, chain kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.audit.log import DATA_PURGED, list_events, verify_database
from services.desk import identities as desk_identities
from services.desk import proofs as desk_proofs
from services.errors import BadRequest, PermissionDenied
from services.storage.db import Database
from services.storage.models import AuditEvent, Identity, IdentityProof, InsiCall, Role, Setting
from services.supervision import retention as rt
from services.users import Actor
from tests.test_cli import Cli, cli, create  # noqa: F401  (cli is a fixture)
from tests.test_identity_service import NEXT_YEAR, RECEPTION, SUPERVISOR, make_traits

ADMIN = Actor("admin1", Role.ADMIN)
NOW = datetime.now(UTC)


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


def add_call(db: Database, *, days_ago: int, identity_id: int | None = None) -> int:
    with db.transaction() as s:
        call = InsiCall(
            identity_id=identity_id,
            user_login="accueil1",
            operation="rechercherInsAvecTraitsIdentite",
            cr="00",
            at=NOW - timedelta(days=days_ago),
            request_xml="<req/>",
            response_xml="<resp/>",
        )
        s.add(call)
        s.flush()
        assert call.id is not None
        return call.id


def identity_with_scan(db: Database, name: str, *, last_visit_days_ago: int) -> tuple[int, int]:
    with db.transaction() as s:
        identity = desk_identities.create_identity(s, actor=RECEPTION, traits=make_traits(birth_name=name))
        assert identity.id is not None
        desk_proofs.add_proof(
            s, actor=RECEPTION, identity_id=identity.id, document_type="passeport", expires=NEXT_YEAR
        )
        proof = (
            s.exec(sa.select(IdentityProof).where(IdentityProof.identity_id == identity.id)).scalars().one()
        )  # type: ignore[call-overload]
        proof.scan = b"%PDF scan"
        iid, pid = identity.id, proof.id
    assert pid is not None
    # Age the identity (its last visit) directly: no service sets dates in the past.
    with db.transaction() as s:
        s.execute(
            sa.update(Identity.__table__)  # type: ignore[attr-defined]
            .where(Identity.__table__.c.id == iid)  # type: ignore[attr-defined]
            .values(updated_at=NOW - timedelta(days=last_visit_days_ago))
        )
    return iid, pid


def xml(db: Database, call_id: int) -> tuple[str | None, str | None]:
    with db.session() as s:
        call = s.get(InsiCall, call_id)
        assert call is not None
        return call.request_xml, call.response_xml


def test_purge_insi_xml_old_only_audited_chain_ok(db: Database) -> None:
    old = add_call(db, days_ago=200)
    recent = add_call(db, days_ago=10)
    with db.session() as s:
        audit_before = s.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar()

    dry = rt.purge(db, actor=ADMIN, insi_xml_days=90, dry_run=True)
    assert dry.insi_calls == 1 and dry.audit_events == []
    assert xml(db, old) == ("<req/>", "<resp/>")

    report = rt.purge(db, actor=ADMIN, insi_xml_days=90)
    assert report.insi_calls == 1 and report.insi_xml_days == 90
    assert xml(db, old) == (None, None)
    assert xml(db, recent) == ("<req/>", "<resp/>")
    with db.session() as s:
        call = s.get(InsiCall, old)
        assert call is not None and call.cr == "00" and call.user_login == "accueil1"  # trace kept
        events = list_events(s, kind=DATA_PURGED)
        total = s.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar()
    assert [e.id for e in events] == report.audit_events
    assert {e.details["what"]: e.details["count"] for e in events} == {"insi_xml": 1, "document_scans": 0}
    assert events[0].details["insi_xml_days"] == 90 and events[0].actor == "admin1"
    assert total == (audit_before or 0) + 2  # nothing deleted, two events added
    assert verify_database(db).ok

    again = rt.purge(db, actor=ADMIN, insi_xml_days=90)
    assert again.insi_calls == 0
    assert verify_database(db).ok


def test_purge_scans_after_last_visit(db: Database) -> None:
    old_iid, old_pid = identity_with_scan(db, "ANCIEN", last_visit_days_ago=6 * 366)
    _, recent_pid = identity_with_scan(db, "RECENT", last_visit_days_ago=30)
    # An old identity with a recent INSi call was seen recently: its scan stays.
    seen_iid, seen_pid = identity_with_scan(db, "REVENU", last_visit_days_ago=6 * 366)
    add_call(db, days_ago=3, identity_id=seen_iid)

    report = rt.purge(db, actor=ADMIN, scans_years=5)
    assert report.scans == 1
    with db.session() as s:
        scans = {pid: s.get(IdentityProof, pid) for pid in (old_pid, recent_pid, seen_pid)}
        assert scans[old_pid] is not None and scans[old_pid].scan is None
        assert scans[old_pid].scan_purged_at is not None
        assert scans[old_pid].document_type == "passeport"  # the proof itself is kept
        assert scans[recent_pid] is not None and scans[recent_pid].scan == b"%PDF scan"
        assert scans[seen_pid] is not None and scans[seen_pid].scan == b"%PDF scan"
        assert s.get(Identity, old_iid) is not None
    assert verify_database(db).ok


def test_settings_defaults_limits_and_rights(db: Database) -> None:
    with db.transaction() as s:
        s.add(Setting(key=rt.SETTING_INSI_XML_DAYS, value="30"))
    add_call(db, days_ago=45)
    report = rt.purge(db, actor=ADMIN, dry_run=True)
    assert (report.insi_xml_days, report.scans_years, report.insi_calls) == (30, 5, 1)
    with pytest.raises(BadRequest):
        rt.purge(db, actor=ADMIN, scans_years=6)
    with pytest.raises(BadRequest):
        rt.purge(db, actor=ADMIN, insi_xml_days=0)
    for actor in (SUPERVISOR, RECEPTION):
        with pytest.raises(PermissionDenied):
            rt.purge(db, actor=actor)


def test_cli_purge(cli: Cli) -> None:  # noqa: F811
    code, out, _ = cli("audit", "purge", "--insi-xml-days", "30", "--dry-run", user="admin")
    assert code == 0, out
    assert out["dry_run"] is True and out["insi_xml"]["days"] == 30 and out["audit_events"] == []
    assert set(out) == {"dry_run", "insi_xml", "scans", "audit_events"}
    code, out, _ = cli("audit", "purge", "--scans-years", "5", user="admin")
    assert code == 0 and len(out["audit_events"]) == 2 and out["scans"]["proofs"] == 0
    code, out, _ = cli("audit", "purge", "--scans-years", "9", user="admin")
    assert code == 2
    for user in ("accueil1", "superviseur1"):
        code, out, _ = cli("audit", "purge", user=user)
        assert code == 4
    code, out, _ = cli("audit", "verify", user="superviseur1")
    assert code == 0 and out["ok"] is True

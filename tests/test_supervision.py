"""Supervisor review (issue #7): filters, anomalies, INSi drill-down, dashboard figures."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.audit.log import INSI_CALL, append_event, verify_database
from services.desk import flags as desk_flags
from services.desk import identities as desk_identities
from services.desk import proofs as desk_proofs
from services.desk import qualify as desk_qualify
from services.identity.matricule import OID_INS_NIR
from services.storage.db import Database
from services.storage.models import AuditEvent, InsiCall, Role
from services.supervision import anomalies as an
from services.supervision import dashboard as dash
from services.supervision import events as ev
from services.supervision import insi_exchange as ix
from services.supervision import log_filter as lf
from services.supervision import review as rv
from services.users import Actor
from tests.test_cli import Cli, cli  # noqa: F401  (cli is a fixture)
from tests.test_cli import create as cli_create
from tests.test_identity_service import NEXT_YEAR, RECEPTION, SUPERVISOR, make_traits, matricule

RAPIDE = Actor("rapide", Role.RECEPTION)
NAMES = ["ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO"]


def today() -> datetime:
    return datetime.now(lf.PARIS)


def create(db: Database, name: str, actor: Actor = RECEPTION, **kw: object) -> int:
    with db.transaction() as s:
        identity = desk_identities.create_identity(s, actor=actor, traits=make_traits(birth_name=name, **kw))
        assert identity.id is not None
        return identity.id


def insi(db: Database, iid: int, crs: Sequence[str], actor: Actor = RECEPTION) -> list[int]:
    """One INSi search (its attempts in one transaction, as ``save_calls`` does)."""
    ids: list[int] = []
    with db.transaction() as s:
        for cr in crs:
            call = InsiCall(
                identity_id=iid,
                user_login=actor.login,
                operation="rechercherInsAvecTraitsIdentite",
                cr=cr,
                request_xml=f"<soap:Envelope>req {iid}</soap:Envelope>",
                response_xml=f"<soap:Envelope>CR {cr}</soap:Envelope>",
            )
            s.add(call)
            s.flush()
            assert call.id is not None
            ids.append(call.id)
            append_event(
                s,
                actor=actor.login,
                kind=INSI_CALL,
                identity_id=iid,
                details={"call_id": call.id, "cr": cr, "error_code": None, "automatic": False},
            )
    return ids


def attach(db: Database, iid: int, body: str, actor: Actor = RECEPTION, **kw: object) -> None:
    kw.setdefault("insi_traits", None)
    with db.transaction() as s:
        desk_qualify.attach_ins(
            s, actor=actor, identity_id=iid, matricule=matricule(body), oid=OID_INS_NIR, **kw
        )  # type: ignore[arg-type]


def proof(db: Database, iid: int, actor: Actor = RECEPTION) -> None:
    with db.transaction() as s:
        desk_proofs.add_proof(s, actor=actor, identity_id=iid, document_type="passeport", expires=NEXT_YEAR)


@dataclass
class Seeded:
    db: Database
    ids: dict[str, int]


def seed(db: Database, *, burst: int = 4) -> Seeded:
    ids: dict[str, int] = {}
    # ALPHA: INSi traits differing, accepted → traits_differ.
    ids["ALPHA"] = a = create(db, "ALPHA")
    call = insi(db, a, ["00"])[0]
    with db.transaction() as s:
        desk_qualify.attach_ins(
            s,
            actor=RECEPTION,
            identity_id=a,
            matricule=matricule("2850675115101"),
            oid=OID_INS_NIR,
            insi_traits=make_traits(birth_name="ALPHA", birthplace="75115"),
            insi_call_id=call,
            accept_insi_traits=True,
        )
    # BRAVO: proof without INSi (PROV→VALI), then flagged douteuse (VALI→PROV: downgrade).
    ids["BRAVO"] = b = create(db, "BRAVO")
    proof(db, b)
    with db.transaction() as s:
        desk_flags.set_flag(s, actor=RECEPTION, identity_id=b, flag="douteuse", reason="pièce suspecte")
    # CHARLIE: RECUP, then a strict trait edited by a supervisor (→ PROV).
    ids["CHARLIE"] = c = create(db, "CHARLIE")
    call = insi(db, c, ["00"])[0]
    attach(db, c, "2850675115102", insi_call_id=call)
    with db.transaction() as s:
        desk_identities.edit_identity(
            s, actor=SUPERVISOR, identity_id=c, birth_name="CHARLY", reason="erreur de saisie"
        )
    # DELTA: two searches without a unique answer (01 then 02) → repeated.
    ids["DELTA"] = d = create(db, "DELTA")
    insi(db, d, ["01", "01", "01"])
    with db.transaction() as s:  # the agent changes something and tries again
        desk_identities.edit_identity(s, actor=RECEPTION, identity_id=d, used_name="DELTA-NOUVEAU")
    insi(db, d, ["02"])
    # ECHO: one search of three attempts ending in 00, never attached (traits differ,
    # not confirmed) → insi_not_attached, but not repeated.
    ids["ECHO"] = e = create(db, "ECHO")
    insi(db, e, ["01", "01", "00"])
    # RAPIDE qualifies `burst` identities in a row (INSi then proof: no other anomaly).
    for n in range(burst):
        iid = create(db, f"RAPIDE{chr(65 + n)}", actor=RAPIDE)
        call = insi(db, iid, ["00"], actor=RAPIDE)[0]
        attach(db, iid, f"28506751152{n:02d}", actor=RAPIDE, insi_call_id=call)
        proof(db, iid, actor=RAPIDE)
        ids[f"RAPIDE{n}"] = iid
    return Seeded(db, ids)


@pytest.fixture
def db(sqlite_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def any_db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


TH = an.AnomalyThresholds(burst_count=4, burst_window=timedelta(minutes=10))


def test_each_anomaly_kind_is_surfaced(any_db: Database) -> None:
    seeded = seed(any_db)
    ids = seeded.ids
    with any_db.session() as s:
        found = an.anomalies(s, lf.ReviewFilter(), thresholds=TH)
    by_kind: dict[str, list[an.Anomaly]] = {}
    for a in found:
        by_kind.setdefault(a.kind, []).append(a)
    # The services refuse to attach an INS held by another identity: no shared INS in the seed
    # (test_ins_shared_by_two_identities builds one the way older databases have them).
    assert set(by_kind) == set(an.ANOMALY_KINDS) - {an.INS_SHARED}
    assert [a.identity_id for a in by_kind[an.TRAITS_DIFFER]] == [ids["ALPHA"]]
    # Each anomaly names its patient.
    assert by_kind[an.TRAITS_DIFFER][0].patient == "ALPHA CLAIRE"
    assert by_kind[an.TRAITS_DIFFER][0].subject == f"ALPHA CLAIRE (identité n° {ids['ALPHA']})"
    assert by_kind[an.QUALIFICATION_BURST][0].patient is None
    assert "birthplace" in by_kind[an.TRAITS_DIFFER][0].message
    assert [a.identity_id for a in by_kind[an.STATUS_DOWNGRADE]] == [ids["BRAVO"]]
    assert [a.identity_id for a in by_kind[an.PROOF_WITHOUT_INSI]] == [ids["BRAVO"]]
    assert [a.identity_id for a in by_kind[an.STRICT_EDIT_VERIFIED]] == [ids["CHARLIE"]]
    assert by_kind[an.STRICT_EDIT_VERIFIED][0].agent == SUPERVISOR.login
    assert [a.identity_id for a in by_kind[an.INSI_NOT_ATTACHED]] == [ids["ECHO"]]
    repeated = by_kind[an.REPEATED_NO_MATCH]
    assert [a.identity_id for a in repeated] == [ids["DELTA"]]  # ECHO's one search is not repeated
    assert len(repeated[0].event_ids) == 4 and "01/02" in repeated[0].message
    burst = by_kind[an.QUALIFICATION_BURST]
    assert len(burst) == 1 and burst[0].agent == "rapide" and len(burst[0].event_ids) == 4
    # Newest first.
    assert [a.at for a in found] == sorted((a.at for a in found), reverse=True)
    # Default thresholds (20 in 10 min): no burst for 4 qualifications.
    with any_db.session() as s:
        assert not [a for a in an.anomalies(s) if a.kind == an.QUALIFICATION_BURST]
        # Filters narrow the anomalies too.
        only = an.anomalies(s, lf.ReviewFilter(agent="rapide"), thresholds=TH)
        assert {a.kind for a in only} == {an.QUALIFICATION_BURST}
        assert (
            an.anomalies(s, lf.ReviewFilter(patient="delta"), thresholds=TH)[0].kind == an.REPEATED_NO_MATCH
        )
    assert verify_database(any_db).ok


def test_review_rows_filters_and_marks(db: Database) -> None:
    seeded = seed(db)
    ids = seeded.ids
    d = today().date()
    with db.session() as s:
        total = s.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar()
        rows = ev.review_events(s, lf.ReviewFilter(), limit=1000)
        assert len(rows) == total == ev.count_events(s)  # every event here is an identity event
        assert [r.id for r in rows] == sorted((r.id for r in rows), reverse=True)
        page = ev.review_events(s, lf.ReviewFilter(), limit=5, offset=5)
        assert [r.id for r in page] == [r.id for r in rows[5:10]]

        # Agent, dates (inclusive Paris days), patient, kinds, outcome.
        by_agent = ev.review_events(s, lf.ReviewFilter(agent="rapide"), limit=1000)
        assert by_agent and {r.agent for r in by_agent} == {"rapide"}
        same_day = ev.review_events(s, lf.ReviewFilter(date_from=d, date_to=d), limit=1000)
        assert len(same_day) == total
        assert ev.review_events(s, lf.ReviewFilter(date_to=d - timedelta(days=1))) == []
        assert ev.review_events(s, lf.ReviewFilter(date_from=d + timedelta(days=1))) == []
        delta = ev.review_events(s, lf.ReviewFilter(patient="del"), limit=1000)
        assert {r.identity_id for r in delta} == {ids["DELTA"]}
        assert delta[0].patient == "DELTA CLAIRE"
        assert {r.identity_id for r in ev.review_events(s, lf.ReviewFilter(patient=f"#{ids['ECHO']}"))} == {
            ids["ECHO"]
        }
        assert ev.review_events(s, lf.ReviewFilter(patient="ZZZ")) == []
        assert {r.identity_id for r in ev.review_events(s, lf.ReviewFilter(identity_id=ids["BRAVO"]))} == {
            ids["BRAVO"]
        }
        proofs = ev.review_events(s, lf.ReviewFilter(kinds=("identity.proof_added",)), limit=1000)
        assert proofs and {r.kind for r in proofs} == {"identity.proof_added"}
        failed = ev.review_events(s, lf.ReviewFilter(outcome="01"), limit=1000)
        assert len(failed) == 5 and {r.outcome for r in failed} == {"01"}
        assert len(ev.review_events(s, lf.ReviewFilter(outcome="02"))) == 1
        assert ev.count_events(s, lf.ReviewFilter(outcome="01", patient="ECHO")) == 2

        # Row-level anomaly marks, and aggregate ones from anomalies().
        bravo = {r.kind: r for r in ev.review_events(s, lf.ReviewFilter(identity_id=ids["BRAVO"]))}
        assert bravo["identity.proof_added"].anomaly_reasons == (an.PROOF_WITHOUT_INSI,)
        downgrade = [
            r for r in ev.review_events(s, lf.ReviewFilter(identity_id=ids["BRAVO"])) if r.is_anomaly
        ]
        assert {x for r in downgrade for x in r.anomaly_reasons} == {
            an.PROOF_WITHOUT_INSI,
            an.STATUS_DOWNGRADE,
        }
        found = an.anomalies(s, thresholds=TH)
        marked = ev.review_events(s, lf.ReviewFilter(patient="DELTA"), known_anomalies=found)
        assert all(r.is_anomaly for r in marked if r.kind == INSI_CALL)
        assert any("Statut VALI → PROV" in r.summary for r in downgrade)


def test_insi_exchange_drill_down(db: Database) -> None:
    iid = create(db, "FOXTROT")
    call_id = insi(db, iid, ["01"])[0]
    with db.session() as s:
        row = ev.review_events(s, lf.ReviewFilter(kinds=(INSI_CALL,)))[0]
        assert row.insi_call_id == call_id and row.outcome == "01"
        ex = ix.insi_exchange(s, call_id)
        assert ex is not None and not ex.purged
        assert ex.request_xml == f"<soap:Envelope>req {iid}</soap:Envelope>"
        assert ex.response_xml == "<soap:Envelope>CR 01</soap:Envelope>"
        assert ix.insi_exchange(s, 999) is None


def test_bad_outcome_filter(db: Database) -> None:
    with db.session() as s, pytest.raises(ValueError):
        ev.review_events(s, lf.ReviewFilter(outcome="maybe"))


def test_review_query_plans_use_indexes(db: Database) -> None:
    """The page queries are index range scans in id order (no full sort)."""
    seed(db, burst=1)
    d = today().date()
    with db.session() as s:
        for flt in (
            lf.ReviewFilter(agent="rapide", date_from=d, date_to=d),
            lf.ReviewFilter(date_from=d, date_to=d),
            lf.ReviewFilter(kinds=("identity.proof_added",)),
        ):
            conds = lf.conditions(s, flt)
            assert conds is not None
            t = AuditEvent.__table__.c  # type: ignore[attr-defined]
            stmt = sa.select(t.id).where(*conds).order_by(t.id.desc()).limit(50)
            sql = str(stmt.compile(s.get_bind(), compile_kwargs={"literal_binds": True}))
            plan = " | ".join(str(r[-1]) for r in s.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))
            assert "SEARCH audit_event USING" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


def test_shared_ins_query_is_index_lookups_when_filtered(db: Database) -> None:
    """With a date range (the screens' case on large logs) the shared-INS detector looks up only
    the matricules of the identities the range touched: no scan of the identity table."""
    seed(db, burst=1)
    d = today().date()
    statements: list[tuple[str, object]] = []

    def record(conn: object, cursor: object, statement: str, params: object, *args: object) -> None:
        if "GROUP BY identity.ins_matricule" in statement:
            statements.append((statement, params))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.session() as s:
            an.anomalies(s, lf.ReviewFilter(date_from=d, date_to=d))
            assert len(statements) == 1
            sql, params = statements[0]
            plan = " | ".join(
                str(r[-1])
                for r in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)  # type: ignore[arg-type]
            )
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert "USING INDEX ix_identity_ins_matricule (ins_matricule=?)" in plan, plan
    assert "SCAN identity" not in plan and "ix_identity_merged_into" not in plan, plan


def test_dashboard_figures(db: Database) -> None:
    seeded = seed(db)
    d = today().date()
    with db.session() as s:
        points = dash.qualification_rate(s, by="day", since=d - timedelta(days=2))
        assert [p.period for p in points] == [d - timedelta(days=2), d - timedelta(days=1), d]
        last = points[-1]
        assert last.identities == len(seeded.ids)
        assert last.qual == 4  # the four RAPIDE identities
        assert last.rate == pytest.approx(4 / len(seeded.ids))
        assert points[0].identities == 0
        weeks = dash.qualification_rate(s, by="week", since=d)
        assert weeks[-1].qual == 4 and weeks[-1].period.weekday() == 0
        months = dash.qualification_rate(s, by="month", since=d)
        assert months[-1].period.day == 1
        agents = {a.agent: a for a in dash.qualification_by_agent(s)}
        assert agents["rapide"].created == 4 and agents["rapide"].created_qual == 4
        assert agents["rapide"].qualified == 4 and agents["rapide"].rate == 1.0
        assert agents["accueil1"].created == 5 and agents["accueil1"].created_qual == 0
        channels = {c.channel: c for c in dash.qualification_by_channel(s)}
        assert channels["manual"].identities == len(seeded.ids)
        blocked = dash.blocked_by_reason(s, by="day", since=d)
        assert blocked[-1].received == 0
        full = dash.compute_dashboard(s, by="week").as_dict()
        assert full["qualification_rate"][-1]["qual"] == 4


def test_review_page_and_cli(cli: Cli) -> None:  # noqa: F811
    iid = cli_create(cli, name="MARTIN")
    code, _, _ = cli("identity", "proof", str(iid), "--document", "passeport", user="accueil1")
    assert code == 0
    code, out, _ = cli("audit", "review", user="superviseur1")
    assert code == 0, out
    assert set(out) == {"anomalies", "events", "total"}
    assert [a["kind"] for a in out["anomalies"]] == [an.PROOF_WITHOUT_INSI]
    assert out["total"] == len(out["events"]) == 3
    assert out["events"][0]["kind"] == "identity.status_changed"
    proof_row = next(e for e in out["events"] if e["kind"] == "identity.proof_added")
    assert proof_row["is_anomaly"] and proof_row["patient"].startswith("MARTIN")
    code, out, _ = cli("audit", "review", "--kind", "identity.created", "--limit", "1", user="superviseur1")
    assert code == 0 and out["total"] == 1 and out["events"][0]["kind"] == "identity.created"
    code, out, _ = cli("audit", "review", "--outcome", "01", user="superviseur1")
    assert code == 0 and out["events"] == []
    code, out, _ = cli("audit", "review", "--from", "demain", user="superviseur1")
    assert code == 1
    code, out, _ = cli("audit", "review", user="accueil1")
    assert code == 4


def _set_ins(db: Database, iid: int, body: str, *, merged_into: int | None = None) -> None:
    """An INS written the way older databases hold duplicates (the services now refuse them)."""
    m = matricule(body)
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE identity SET ins_matricule = :m, ins_key = :k, ins_oid = :o, merged_into = :g "
                "WHERE id = :i"
            ),
            {"m": m.number, "k": m.key, "o": OID_INS_NIR, "g": merged_into, "i": iid},
        )


def test_ins_shared_by_two_identities(any_db: Database) -> None:
    """Issue #13: one INS matricule on two identities that are not merge tombstones."""
    a = create(any_db, "DUPONT")
    b = create(any_db, "DUPONTEL")
    c = create(any_db, "DURAND")
    tomb = create(any_db, "DUPONDE")
    call = insi(any_db, a, ["00"])[0]
    attach(any_db, a, "2850675115101", insi_call_id=call)
    _set_ins(any_db, b, "2850675115101")  # a second identity under the same INS
    _set_ins(any_db, tomb, "2850675115101", merged_into=a)  # a merged duplicate: not an anomaly
    attach(any_db, c, "2850675115102")
    with any_db.session() as s:
        found = [x for x in an.anomalies(s) if x.kind == an.INS_SHARED]
        assert len(found) == 1
        shared = found[0]
        assert shared.label == "Même INS sur plusieurs identités"
        assert shared.identity_id == a and shared.patient == "DUPONT CLAIRE"
        assert f"n° {a} (DUPONT CLAIRE)" in shared.message and f"n° {b} (DUPONTEL CLAIRE)" in shared.message
        assert f"n° {tomb}" not in shared.message and "285067511510" not in shared.message  # no matricule
        attached = s.execute(
            sa.select(AuditEvent.id).where(
                AuditEvent.kind == "identity.ins_attached", AuditEvent.identity_id == a
            )
        ).scalar_one()
        assert shared.event_ids == (attached,)
        # Shown in the review like the other anomalies: the attachment row is marked.
        page = rv.review_page(s, lf.ReviewFilter())
        assert an.INS_SHARED in {x.kind for x in page.anomalies}
        row = next(r for r in page.rows if r.id == attached)
        assert row.is_anomaly and an.INS_SHARED in row.anomaly_reasons
        # The patient filter finds it from either identity, not from another one.
        assert [x.kind for x in an.anomalies(s, lf.ReviewFilter(patient=f"#{b}"))] == [an.INS_SHARED]
        assert an.INS_SHARED not in {x.kind for x in an.anomalies(s, lf.ReviewFilter(patient="DURAND"))}
        assert an.INS_SHARED not in {x.kind for x in an.anomalies(s, lf.ReviewFilter(agent="personne"))}
    # Older databases may hold no attachment event at all: dated by the identities' creation.
    d = create(any_db, "MARTINEZ")
    e = create(any_db, "MARTINEZE")
    _set_ins(any_db, d, "1850675115103")
    _set_ins(any_db, e, "1850675115103")
    with any_db.session() as s:
        both = sorted(
            (x for x in an.anomalies(s) if x.kind == an.INS_SHARED), key=lambda x: x.identity_id or 0
        )
    assert [x.identity_id for x in both] == [a, e]
    assert len(both[1].event_ids) == 2  # the two identity.created events
    # Once the duplicate is merged, the anomaly is gone.
    _set_ins(any_db, b, "2850675115101", merged_into=a)
    with any_db.session() as s:
        assert [x.identity_id for x in an.anomalies(s) if x.kind == an.INS_SHARED] == [e]

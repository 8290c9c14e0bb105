"""One INS, one patient (issue #13): the INS attached to one identity only, even with two desks
racing; ``identity duplicates``; ``identity merge`` — on SQLite and on PostgreSQL.

The race runs two real OS processes on the same database: desk A attaches the INS and keeps its
transaction open until desk B is on its way to attach it to another identity; B must end with
``duplicate_of`` A (SQLite: B's write waits for A's, then sees its claim; PostgreSQL: B's claim
waits on the primary key, then fails and names A), and the database holds one holder.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from services.audit.log import IDENTITY_DUPLICATE_REFUSED, IDENTITY_MERGED, verify_database
from services.desk import flags as desk_flags
from services.desk import identities as desk_identities
from services.desk import proofs as desk_proofs
from services.desk import qualify as desk_qualify
from services.identity import attach as identity_attach
from services.identity import records as identity_records
from services.identity import search as identity_search
from services.identity.matricule import OID_INS_NIR, MatriculeINS, compute_key
from services.identity.traits import check_traits
from services.results.models import LabReport
from services.storage.db import Database
from services.storage.models import AuditEvent, Identity, IdentityAlias, InsClaim, Role
from services.users import Actor
from tests.results_support import LAB_A, import_data, load_reference_data
from tui.cli import main

ROOT = Path(__file__).resolve().parent.parent
RECEPTION = Actor("accueil1", Role.RECEPTION)
SUPERVISOR = Actor("superviseur1", Role.SUPERVISOR)
PASSWORDS = {"admin": "admin-secret-1", "accueil1": "accueil-secret-1", "superviseur1": "superv-secret-1"}
DURAND = {"birth_name": "DURAND", "first_names": "PIERRE LOUIS", "sex": "M", "birth_date": "1962-03-07"}
MATRICULE = "1620369123045"
INS = MatriculeINS(MATRICULE, compute_key(MATRICULE))


def make(db: Database, traits: dict[str, str] = DURAND, *, local_id: str | None = None, **extra: str) -> int:
    with db.transaction() as session:
        identity = desk_identities.create_identity(
            session,
            actor=RECEPTION,
            traits=check_traits(**{**traits, **extra}).raise_if_invalid(),
            local_id=local_id,
        )
        return int(identity.id or 0)


def attach(
    db: Database, identity_id: int, ins: MatriculeINS = INS, **kw: Any
) -> identity_attach.AttachResult:
    with db.transaction() as session:
        return desk_qualify.attach_ins(
            session,
            actor=RECEPTION,
            identity_id=identity_id,
            matricule=ins,
            oid=OID_INS_NIR,
            insi_traits=None,
            **kw,
        )


def proof(db: Database, identity_id: int) -> None:
    with db.transaction() as session:
        desk_proofs.add_proof(
            session,
            actor=RECEPTION,
            identity_id=identity_id,
            document_type="passeport",
            expires=date.today() + timedelta(days=365),
        )


def legacy_duplicate(db: Database, identity_id: int, ins: MatriculeINS = INS) -> None:
    """What a database from before migration 0005 may hold: an INS on a second identity, written
    without a claim (as the old code did when two desks raced, or the desk was misled)."""
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE identity SET ins_matricule=:m, ins_key=:k, ins_oid=:o, status='RECUP' WHERE id=:i"
            ),
            {"m": ins.number, "k": ins.key, "o": OID_INS_NIR, "i": identity_id},
        )


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    # The default anchor (beside a SQLite file): the one the CLI and the racing desks use too — on
    # SQLite the anchor witnesses every writer, so a second anchor would refuse their appends.
    database = Database(db_url)
    yield database
    report = verify_database(database)
    assert report.ok, report
    database.dispose()


def claims(db: Database) -> dict[str, int]:
    with db.session() as session:
        return {c.matricule: c.identity_id for c in session.exec(select(InsClaim)).all()}


# --- one INS, one identity ------------------------------------------------------------------------


def test_an_ins_attached_elsewhere_names_its_holder_and_changes_nothing(db: Database) -> None:
    first, second = make(db, local_id="IPP-1"), make(db, local_id="IPP-2")
    assert attach(db, first).attached
    result = attach(db, second)
    assert (result.attached, result.duplicate_of) == (False, first)
    assert result.as_dict()["duplicate_of"] == first
    with db.session() as session:
        other = identity_records.get_identity(session, actor=RECEPTION, identity_id=second)
        assert (other.ins_matricule, str(other.status)) == (None, "PROV")
        (refused,) = session.exec(
            select(AuditEvent).where(AuditEvent.kind == IDENTITY_DUPLICATE_REFUSED)
        ).all()
    assert refused.identity_id == second and refused.details["duplicate_of"] == first
    assert claims(db) == {MATRICULE: first}


def test_an_ins_in_another_identitys_history_is_held_too(db: Database) -> None:
    """INSHISTO: an identity whose INSi answer listed an old matricule holds it; the old matricule
    attached as the active INS of another identity, or the other way round, is refused."""
    old = MatriculeINS("8620369123012", compute_key("8620369123012"))
    first, second, third = make(db), make(db, birth_date="1962-03-08"), make(db, birth_date="1962-03-09")
    entry = identity_attach.InsHistoryEntry(old, "1.2.250.1.213.1.4.9")
    assert attach(db, first, history=[entry]).attached
    assert attach(db, second, ins=old).duplicate_of == first
    # the history of the answer holds the other identity's active INS
    other = MatriculeINS("1620369123099", compute_key("1620369123099"))
    assert (
        attach(db, third, ins=other, history=[identity_attach.InsHistoryEntry(INS, OID_INS_NIR)]).duplicate_of
        == first
    )
    # an entry whose key did not check holds nothing (CNDA TEST_2.08)
    bad = identity_attach.InsHistoryEntry(
        MatriculeINS("8620369123077", "00"), "1.2.250.1.213.1.4.9", key_valid=False
    )
    assert attach(db, third, ins=other, history=[bad]).attached
    assert "8620369123077" not in claims(db)


def test_an_invalidated_ins_is_free_again(db: Database) -> None:
    first, second = make(db), make(db, local_id="IPP-2")
    attach(db, first)
    with db.transaction() as session:
        desk_flags.dequalify(session, actor=SUPERVISOR, identity_id=first, reason="erreur de personne")
    assert claims(db) == {}
    assert attach(db, second).attached and claims(db) == {MATRICULE: second}


_RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from services.desk import flags as desk_flags
    from services.desk import identities as desk_identities
    from services.desk import proofs as desk_proofs
    from services.desk import qualify as desk_qualify
    from services.identity import attach as identity_attach
    from services.identity import records as identity_records
    from services.identity import search as identity_search
    from services.identity.matricule import MatriculeINS
    from services.storage.db import Database
    from services.storage.models import Role
    from services.users import Actor

    url, identity_id, role, folder = sys.argv[1:5]
    folder = Path(folder)

    def wait_for(name):
        for _ in range(1200):
            if (folder / name).exists():
                return
            time.sleep(0.05)
        raise SystemExit(f"no {name}")

    db = Database(url)  # the default anchor, as every desk of this machine
    if role == "B":
        wait_for("a-attached")
        (folder / "b-starting").touch()
    with db.transaction() as session:
        result = desk_qualify.attach_ins(
            session, actor=Actor("desk-" + role, Role.RECEPTION), identity_id=int(identity_id),
            matricule=MatriculeINS("1620369123045", "KEY"), oid="1.2.250.1.213.1.4.8", insi_traits=None,
        )
        if role == "A":
            (folder / "a-attached").touch()
            wait_for("b-starting")
            time.sleep(1.0)  # B is now blocked on its write (SQLite) or on the claim (PostgreSQL)
    print(json.dumps({"attached": result.attached, "duplicate_of": result.duplicate_of}))
    db.dispose()
    """
).replace("KEY", compute_key(MATRICULE))


def test_two_desks_racing_to_attach_the_same_ins(db: Database, db_url: str, tmp_path: Path) -> None:
    first, second = make(db, local_id="IPP-A"), make(db, local_id="IPP-B")
    script = tmp_path / "racer.py"
    script.write_text(_RACER, encoding="utf-8")

    def desk(identity_id: int, role: str) -> subprocess.Popen[str]:
        args = [sys.executable, str(script), db_url, str(identity_id)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this tree's code, whatever is installed
        return subprocess.Popen(
            [*args, role, str(tmp_path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    a, b = desk(first, "A"), desk(second, "B")
    out_a, err_a = a.communicate(timeout=120)
    out_b, err_b = b.communicate(timeout=120)
    assert a.returncode == 0 and b.returncode == 0, (err_a, err_b)
    assert json.loads(out_a) == {"attached": True, "duplicate_of": None}
    assert json.loads(out_b) == {"attached": False, "duplicate_of": first}
    with db.session() as session:
        holders = session.exec(select(Identity.id).where(Identity.ins_matricule == MATRICULE)).all()
    assert list(holders) == [first] and claims(db) == {MATRICULE: first}


def test_the_claim_itself_refuses_a_second_holder(db: Database) -> None:
    """The database, not only the service, refuses it (a desk that skipped the check)."""
    first, second = make(db), make(db, local_id="IPP-2")
    attach(db, first)
    with pytest.raises(sa.exc.IntegrityError), db.transaction() as session:
        session.add(InsClaim(matricule=MATRICULE, identity_id=second))
        session.flush()


# --- duplicates ------------------------------------------------------------------------------------


def test_duplicates_same_ins_same_traits_and_look_alikes(db: Database) -> None:
    from services.identity.duplicates import find_duplicates

    a, b = make(db, local_id="IPP-1"), make(db, local_id="IPP-2", birthplace="69123")
    attach(db, a)
    legacy_duplicate(db, b)  # a database from before 0005
    c = make(db, {"birth_name": "LEFEBVRE", "first_names": "CAMILLE", "sex": "F", "birth_date": "1999-07-14"})
    d = make(db, {"birth_name": "LEFEVRE", "first_names": "CAMILLE", "sex": "F", "birth_date": "1999-07-14"})
    e = make(db, {"birth_name": "ROUX", "first_names": "ANNE", "sex": "F", "birth_date": "1970-01-01"})
    f = make(db, {"birth_name": "ROUX", "first_names": "ANNE", "sex": "F", "birth_date": "1970-01-01"})
    g = make(db, {"birth_name": "ROUX", "first_names": "ANNE", "sex": "F", "birth_date": "1970-10-01"})
    h = make(db, {"birth_name": "DUPRE", "first_names": "MARC", "sex": "M", "birth_date": "1955-02-02"})
    i = make(db, {"birth_name": "DUPRE", "first_names": "MARC", "sex": "M", "birth_date": "1955-02-02"})
    for homonym in (h, i):  # the cell has said they are two people
        with db.transaction() as session:
            desk_flags.set_flag(session, actor=RECEPTION, identity_id=homonym, flag="homonyme")
    with db.session() as session:
        pairs = find_duplicates(session, actor=SUPERVISOR)
    got = [(p.ids, p.reason) for p in pairs]
    assert got[0] == ((a, b), "same_ins")
    assert got[1] == ((e, f), "same_traits")
    similar = {p.ids: p.score for p in pairs if p.reason == "similar"}
    assert (c, d) in similar and 0.85 <= similar[(c, d)] < 1
    assert (e, g) in similar and (f, g) in similar  # a mistyped month
    assert (h, i) not in {p.ids for p in pairs}
    assert [p.score for p in pairs if p.reason == "similar"] == sorted(similar.values(), reverse=True)


# --- merge -----------------------------------------------------------------------------------------


class Cli:
    def __init__(
        self, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.db_url, self.capsys, self.monkeypatch = db_url, capsys, monkeypatch

    def __call__(self, *args: str, user: str, stdin: str = "") -> tuple[int, dict[str, Any]]:
        self.monkeypatch.setenv("INSDESK_PASSWORD", PASSWORDS[user])
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        self.capsys.readouterr()
        code = main(["--db", self.db_url, "--as", user, *args, "--json"])
        out, _ = self.capsys.readouterr()
        lines = [line for line in out.splitlines() if line.strip()]
        assert len(lines) == 1, out
        return code, json.loads(lines[0])


@pytest.fixture
def cli(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    monkeypatch.delenv("INSDESK_USER", raising=False)
    c = Cli(db_url, capsys, monkeypatch)
    monkeypatch.setenv("INSDESK_PASSWORD", "")
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORDS["admin"] + "\n"))
    assert main(["--db", db_url, "users", "add", "admin", "--role", "admin", "--json"]) == 0
    for login, role in (("accueil1", "reception"), ("superviseur1", "supervisor")):
        code, out = c("users", "add", login, "--role", role, user="admin", stdin=PASSWORDS[login] + "\n")
        assert code == 0, out
    return c


def _later_durand_message() -> str:
    """DURAND's message of LAB_A again, as a new report of a later day (same lab patient number)."""
    text = LAB_A.read_text(encoding="utf-8")
    durand = "MSH" + text.split("\rMSH")[1] if "\rMSH" in text else "MSH" + text.split("\nMSH")[1]
    return durand.replace("BMP-20240412-0002", "BMP-20240420-0007").replace("0043", "0099")


def test_merge_moves_everything_and_leaves_a_tombstone(cli: Cli, db: Database) -> None:
    load_reference_data(db)
    keep = make(db, local_id="IPP-9", birthplace="69123")
    dup = make(db, local_id="IPP-1002", birthplace="69123")  # the lab system's number in LAB_A
    proof(db, dup)
    import_data(db, LAB_A.read_bytes(), source=LAB_A.name)
    with db.session() as session:
        (durand_report,) = session.exec(select(LabReport).where(LabReport.identity_id == dup)).all()

    code, out = cli("identity", "merge", str(keep), str(dup), "--reason", "doublon", user="accueil1")
    assert code == 4 and out["error"]["code"] == "permission_denied"
    code, out = cli("identity", "duplicates", user="accueil1")
    assert code == 4

    code, out = cli("identity", "duplicates", user="superviseur1")
    assert code == 0 and {"ids": [keep, dup], "reason": "same_traits", "score": 1.0} in out["pairs"]

    code, out = cli(
        "identity", "merge", str(keep), str(dup), "--reason", "doublon créé à l'accueil", user="superviseur1"
    )
    assert code == 0, out
    assert (out["id"], out["merged"], out["status"]) == (keep, dup, "VALI")  # DUP's passport, same traits
    assert out["moved"]["proofs"] == 1 and out["moved"]["reports"] == 1

    code, shown = cli("identity", "show", str(dup), user="accueil1")
    assert code == 0 and shown["merged_into"] == keep and shown["local_id"] is None
    code, kept = cli("identity", "show", str(keep), user="accueil1")
    assert kept["aliases"] == ["IPP-1002"] and len(kept["proofs"]) == 1 and kept["merged_into"] is None
    with db.session() as session:
        assert session.get(LabReport, durand_report.id).identity_id == keep  # type: ignore[union-attr]
        found = identity_search.search_identities(session, query="DURAND")
        assert [i.id for i in found] == [keep]  # the tombstone is never found again
        assert [i.id for i in identity_search.search_identities(session, query="IPP-1002")] == [keep]
        (merged,) = session.exec(select(AuditEvent).where(AuditEvent.kind == IDENTITY_MERGED)).all()
        assert merged.identity_id == keep and merged.details["merged"] == dup
        assert merged.details["merged_before"]["local_id"] == "IPP-1002"

    # A later result with the old local id lands on KEEP, through the real import.
    later = import_data(db, _later_durand_message(), source="later.hl7")
    with db.session() as session:
        new_report = session.get(LabReport, later.report_ids[0])
        assert new_report is not None and new_report.identity_id == keep

    # The tombstone changes no more; the same merge twice is refused.
    code, out = cli("identity", "edit", str(dup), "--used-name", "X", user="accueil1")
    assert code == 2 and out["error"]["code"] == "identity_merged"
    code, out = cli("identity", "merge", str(keep), str(dup), "--reason", "encore", user="superviseur1")
    assert code == 2 and out["error"]["code"] == "identity_merged"
    code, out = cli("audit", "verify", user="superviseur1")
    assert code == 0 and out["ok"] is True


def test_two_different_ins_are_two_people(cli: Cli, db: Database) -> None:
    keep, dup = make(db), make(db, local_id="IPP-2")
    attach(db, keep)
    other = MatriculeINS("1620369123099", compute_key("1620369123099"))
    attach(db, dup, ins=other)
    code, out = cli("identity", "merge", str(keep), str(dup), "--reason", "doublon ?", user="superviseur1")
    assert code == 1 and out["error"]["code"] == "merge_two_ins"
    code, out = cli("identity", "show", str(dup), user="accueil1")
    assert out["merged_into"] is None and out["ins"]["matricule"] == "1620369123099"


def test_merging_a_legacy_duplicate_pair_keeps_one_holder(cli: Cli, db: Database) -> None:
    keep, dup = make(db, local_id="IPP-1"), make(db, local_id="IPP-2")
    attach(db, keep)
    legacy_duplicate(db, dup)
    code, out = cli("identity", "merge", str(keep), str(dup), "--reason", "même INS", user="superviseur1")
    assert code == 0, out
    code, out = cli("identity", "duplicates", user="superviseur1")
    assert out["pairs"] == []
    assert claims(db) == {MATRICULE: keep}
    with db.session() as session:
        aliases = session.exec(select(IdentityAlias.local_id).where(IdentityAlias.identity_id == keep)).all()
        holders = session.exec(select(Identity.id).where(col(Identity.ins_matricule) == MATRICULE)).all()
    assert list(aliases) == ["IPP-2"] and list(holders) == [keep]


def test_merge_needs_a_reason_and_two_identities(cli: Cli, db: Database) -> None:
    keep = make(db)
    code, out = cli("identity", "merge", str(keep), str(keep), "--reason", "x", user="superviseur1")
    assert code == 2 and out["error"]["code"] == "merge_same"
    code, out = cli("identity", "merge", str(keep), "999", "--reason", "x", user="superviseur1")
    assert code == 1 and out["error"]["code"] == "identity_not_found"
    code, out = cli("identity", "merge", str(keep), "999", "--reason", " ", user="superviseur1")
    assert code == 2 and out["error"]["code"] == "reason_missing"


# --- the upgrade keeps the duplicates a database already holds ---------------------------------------


def test_migration_0005_keeps_existing_duplicates_visible(db_url: str, tmp_path: Path) -> None:
    from alembic import command

    from services.storage.db import _alembic_config

    old = Database(db_url, anchor_path=tmp_path / "a", migrate=False)
    with old.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0004")
    now = "2025-01-01 00:00:00"
    with old.engine.begin() as conn:
        for ident in (1, 2):
            conn.execute(
                sa.text(
                    "INSERT INTO identity (version, local_id, birth_name, first_names, first_name, sex,"
                    " birth_date, birth_date_uncertain, status, flag_douteuse, flag_fictive, flag_homonyme,"
                    " capture_channel, ins_matricule, ins_key, ins_oid, created_at, updated_at) VALUES"
                    " (1, :l, 'DURAND', 'PIERRE LOUIS', 'PIERRE', 'M', '1962-03-07', false, 'QUAL',"
                    " false, false, false, 'manual', :m, :k, :o, :t, :t)"
                ),
                {"l": f"IPP-{ident}", "m": MATRICULE, "k": INS.key, "o": OID_INS_NIR, "t": now},
            )
    old.dispose()
    db = Database(db_url, anchor_path=tmp_path / "a")  # upgrades to the head: must not fail
    try:
        assert claims(db) == {MATRICULE: 1}
        from services.identity.duplicates import find_duplicates

        with db.session() as session:
            assert [(p.ids, p.reason) for p in find_duplicates(session, actor=SUPERVISOR)] == [
                ((1, 2), "same_ins")
            ]
        third = make(db, local_id="IPP-3", birth_date="1962-03-08")
        assert attach(db, third).duplicate_of == 1
        assert attach(db, 2).duplicate_of == 1  # re-verifying the later holder names the first
    finally:
        db.dispose()

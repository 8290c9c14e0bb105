"""Identity use cases on SQLite and PostgreSQL, through ``Database(url).transaction()``."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import func, select

from services.audit import log as audit_log
from services.audit.log import list_events, verify_chain
from services.desk import flags as desk_flags
from services.desk import identities as desk_identities
from services.desk import proofs as desk_proofs
from services.desk import qualify as desk_qualify
from services.errors import (
    BadRequest,
    ConcurrentUpdate,
    InsdeskError,
    InvalidData,
    NotFound,
    PermissionDenied,
)
from services.identity import attach as identity_attach
from services.identity import records as identity_records
from services.identity import search as identity_search
from services.identity import view as identity_show
from services.identity.attach import InsHistoryEntry
from services.identity.birthdate import BirthDate
from services.identity.documents import SHIPPED_DOCUMENT_TYPES, document_types, set_document_types
from services.identity.matricule import OID_INS_NIR, MatriculeINS, compute_key
from services.identity.status import Flag
from services.identity.traits import StrictTraits, check_traits
from services.storage.db import Database
from services.storage.models import (
    AuditEvent,
    Identity,
    IdentityProof,
    InsHistory,
    InsiCall,
    Role,
    Status,
)
from services.users import Actor

RECEPTION = Actor("accueil1", Role.RECEPTION)
SUPERVISOR = Actor("superv1", Role.SUPERVISOR)
BIOLOGIST = Actor("bio1", Role.BIOLOGIST)
ADMIN = Actor("admin1", Role.ADMIN)

NEXT_YEAR = date.today() + timedelta(days=365)


def make_traits(**over: Any) -> StrictTraits:
    values: dict[str, Any] = {
        "birth_name": "MARTIN",
        "first_names": "CLAIRE MARIE",
        "sex": "F",
        "birth_date": "1985-06-21",
        "birthplace": None,
    }
    values.update(over)
    return check_traits(**values).raise_if_invalid()


def matricule(body: str = "2850675115123") -> MatriculeINS:
    return MatriculeINS(body, compute_key(body))


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


def create(db: Database, traits: StrictTraits | None = None, **kw: Any) -> int:
    with db.transaction() as s:
        identity = desk_identities.create_identity(s, actor=RECEPTION, traits=traits or make_traits(), **kw)
        assert identity.id is not None
        return identity.id


def show(db: Database, identity_id: int) -> dict[str, Any]:
    with db.session() as s:
        return identity_show.identity_view(
            s, identity=identity_records.get_identity(s, actor=RECEPTION, identity_id=identity_id)
        )


def kinds(db: Database, identity_id: int) -> list[str]:
    with db.session() as s:
        return [e.kind for e in list_events(s, identity_id=identity_id)]


def events(db: Database, identity_id: int, kind: str) -> list[AuditEvent]:
    with db.session() as s:
        return list_events(s, identity_id=identity_id, kind=kind)


def snapshot(db: Database, identity_id: int) -> tuple[Any, ...]:
    """Everything a refused call must leave untouched."""
    with db.session() as s:
        identity = s.get(Identity, identity_id)
        assert identity is not None
        counts = tuple(
            int(s.exec(select(func.count()).select_from(model)).one())
            for model in (Identity, IdentityProof, InsHistory, AuditEvent)
        )
        return (identity.version, identity.model_dump(), counts)


def assert_chain_ok(db: Database) -> None:
    anchor = db.read_anchor()
    with db.session() as s:
        report = verify_chain(s, anchor=anchor)
    assert report.ok, report


def refused(db: Database, iid: int, exc: type[InsdeskError], fn: Any, /, **kw: Any) -> InsdeskError:
    """Run ``fn`` in a transaction, expect ``exc`` and check that nothing changed."""
    before = snapshot(db, iid)
    with pytest.raises(exc) as info, db.transaction() as s:
        fn(s, **kw)
    assert snapshot(db, iid) == before
    assert info.value.message  # French message for the desk
    return info.value


def attach(
    db: Database, identity_id: int, actor: Actor = RECEPTION, **kw: Any
) -> identity_attach.AttachResult:
    kw.setdefault("matricule", matricule())
    kw.setdefault("oid", OID_INS_NIR)
    kw.setdefault("insi_traits", make_traits())
    with db.transaction() as s:
        result = desk_qualify.attach_ins(s, actor=actor, identity_id=identity_id, **kw)
        return result


def proof(db: Database, identity_id: int, document: str = "passeport", **kw: Any) -> Identity:
    kw.setdefault("expires", NEXT_YEAR)
    with db.transaction() as s:
        return desk_proofs.add_proof(
            s, actor=RECEPTION, identity_id=identity_id, document_type=document, **kw
        )


# ---------------------------------------------------------------------------------------------
# create / show


def test_create_and_show(db: Database) -> None:
    """EXI SI 07: a new identity is PROV; EXI ID 08: complementary traits never auto-filled."""
    iid = create(db, local_id="IPP001")
    view = show(db, iid)
    assert {"id", "local_id", "version", "status", "flags", "traits", "ins", "proofs", "insi_calls"} <= set(
        view
    )
    assert view["id"] == iid
    assert view["local_id"] == "IPP001"
    assert view["status"] == "PROV"
    assert view["flags"] == []
    assert view["ins"] is None
    assert view["proofs"] == []
    assert view["insi_calls"] == 0
    assert view["traits"]["birth_name"] == "MARTIN"
    assert view["traits"]["first_names"] == ["CLAIRE", "MARIE"]
    assert view["traits"]["first_name"] == "CLAIRE"
    assert view["traits"]["birth_date"] == "1985-06-21"
    assert view["used_name"] is None and view["used_first_name"] is None  # EXI ID 08
    assert view["capture_channel"] == "manual"
    assert kinds(db, iid) == ["identity.created"]
    created = events(db, iid, "identity.created")[0]
    assert created.actor == RECEPTION.login
    assert created.details["traits"]["birth_name"] == "MARTIN"
    assert_chain_ok(db)


def test_create_stores_used_names_only_when_given(db: Database) -> None:
    """EXI ID 08: used name/first name stored as typed (normalised), never derived."""
    iid = create(db, used_name="dupont", used_first_name=None)
    view = show(db, iid)
    assert view["used_name"] == "DUPONT"
    assert view["used_first_name"] is None


def test_create_refusals(db: Database) -> None:
    """Duplicate local id (BadRequest), rights (biologist), invalid used name: nothing created."""
    iid = create(db, local_id="IPP7")
    before = snapshot(db, iid)
    with pytest.raises(BadRequest, match="IPP7"), db.transaction() as s:
        desk_identities.create_identity(
            s, actor=RECEPTION, traits=make_traits(birth_name="DURAND"), local_id=" IPP7 "
        )
    with pytest.raises(PermissionDenied), db.transaction() as s:
        desk_identities.create_identity(s, actor=BIOLOGIST, traits=make_traits())
    with pytest.raises(InvalidData), db.transaction() as s:
        desk_identities.create_identity(s, actor=RECEPTION, traits=make_traits(), used_name="CŒUR")
    assert snapshot(db, iid) == before


def test_get_identity_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="introuvable") as info, db.session() as s:
        identity_records.get_identity(s, actor=RECEPTION, identity_id=999)
    assert info.value.exit_code == 1


# ---------------------------------------------------------------------------------------------
# full paths


def test_path_prov_vali_qual(db: Database) -> None:
    """EXI SI 07: PROV→VALI (document), VALI→QUAL (INSi); EXI SI 08: INS usable only when QUAL."""
    iid = create(db)
    v0 = show(db, iid)["version"]
    identity = proof(db, iid, "passeport")
    assert identity.status is Status.VALI
    view = show(db, iid)
    assert view["version"] > v0
    assert view["proofs"][0]["document_type"] == "passeport"
    assert view["proofs"][0]["checked_by"] == RECEPTION.login
    assert view["proofs"][0]["expires"] == NEXT_YEAR.isoformat()

    result = attach(db, iid)
    assert result.attached and result.differences == []
    view = show(db, iid)
    assert view["status"] == "QUAL"
    m = matricule()
    assert view["ins"] == {"matricule": m.number, "key": m.key, "oid": OID_INS_NIR, "usable": True}
    assert kinds(db, iid) == [
        "identity.created",
        "identity.proof_added",
        "identity.status_changed",
        "identity.ins_attached",
        "identity.status_changed",
    ]
    changes = [
        (e.details["from"], e.details["to"], e.details["event"])
        for e in events(db, iid, "identity.status_changed")
    ]
    assert changes == [("PROV", "VALI", "document_checked"), ("VALI", "QUAL", "insi_match")]
    assert_chain_ok(db)


def test_path_prov_recup_qual(db: Database) -> None:
    """EXI SI 07: PROV→RECUP (INSi), RECUP→QUAL (document); INSHISTO kept."""
    iid = create(db)
    old = matricule("2850675115001")
    history = [
        InsHistoryEntry(old, OID_INS_NIR, date(2000, 1, 1), date(2010, 1, 1)),
        {"matricule": "2850675115002", "key": compute_key("2850675115002"), "oid": OID_INS_NIR},
    ]
    result = attach(db, iid, history=history)
    assert result.identity.status is Status.RECUP
    view = show(db, iid)
    assert view["status"] == "RECUP"
    assert view["ins"]["usable"] is False  # EXI SI 08: only QUAL transmits
    sources = sorted((h["source"], h["matricule"]) for h in view["ins_history"])
    assert sources == [("active", "2850675115123"), ("histo", "2850675115001"), ("histo", "2850675115002")]

    # attaching the same INS again (re-verification) does not duplicate the history
    attach(db, iid, history=history)
    assert len(show(db, iid)["ins_history"]) == 3

    proof(db, iid, "cni")
    view = show(db, iid)
    assert view["status"] == "QUAL"
    assert view["ins"]["usable"] is True
    assert_chain_ok(db)


def test_every_change_bumps_version(db: Database) -> None:
    """Optimistic concurrency: each use case changes ``version``."""
    iid = create(db)
    versions = [show(db, iid)["version"]]
    proof(db, iid)
    versions.append(show(db, iid)["version"])
    proof(db, iid, "cni")  # VALI stays VALI, still a new version
    versions.append(show(db, iid)["version"])
    with db.transaction() as s:
        desk_flags.set_flag(s, actor=RECEPTION, identity_id=iid, flag="homonyme")
    versions.append(show(db, iid)["version"])
    with db.transaction() as s:
        desk_flags.clear_flag(s, actor=SUPERVISOR, identity_id=iid, flag="homonyme", reason="erreur")
    versions.append(show(db, iid)["version"])
    with db.transaction() as s:
        desk_identities.edit_identity(s, actor=RECEPTION, identity_id=iid, used_name="DUPONT")
    versions.append(show(db, iid)["version"])
    assert versions == sorted(set(versions))
    assert len(versions) == 6


# ---------------------------------------------------------------------------------------------
# INSi differences


def test_insi_differences_not_accepted_change_nothing(db: Database) -> None:
    """A missing local birthplace counts as a difference; unconfirmed: nothing changes."""
    iid = create(db)
    before = snapshot(db, iid)
    insi = make_traits(birthplace="75115", first_names="CLAIRE")
    result = attach(db, iid, insi_traits=insi)
    assert not result.attached
    fields = {d.field: (d.local, d.insi) for d in result.differences}
    assert fields == {"birthplace": (None, "75115"), "first_names": ("CLAIRE MARIE", "CLAIRE")}
    assert snapshot(db, iid) == before
    assert result.as_dict()["differences"][0].keys() == {"field", "local", "insi"}


@pytest.mark.parametrize(("with_proof", "expected"), [(False, "RECUP"), (True, "QUAL")])
def test_insi_differences_accepted(db: Database, with_proof: bool, expected: str) -> None:
    """Accepted INSi traits replace the local ones: RECUP from PROV, QUAL from VALI."""
    iid = create(db)
    if with_proof:
        proof(db, iid)
    insi = make_traits(birthplace="75115", birth_date="1985-06-20")
    result = attach(db, iid, insi_traits=insi, accept_insi_traits=True)
    assert result.attached
    view = show(db, iid)
    assert view["status"] == expected
    assert view["traits"]["birthplace"] == "75115"
    assert view["traits"]["birth_date"] == "1985-06-20"
    edited = events(db, iid, "identity.edited")
    assert len(edited) == 1
    assert edited[0].details["source"] == "insi"
    assert edited[0].details["changes"]["birthplace"] == {"before": None, "after": "75115"}
    assert_chain_ok(db)


def test_insi_uncertain_birth_date_is_a_difference(db: Database) -> None:
    """EXI ID 11/12: an uncertain local date against a certain INSi date is shown as a difference."""
    iid = create(db, traits=make_traits(birth_date="1985-06"))
    result = attach(db, iid, insi_traits=make_traits(birth_date="1985-06-01"))
    assert [d.field for d in result.differences] == ["birth_date"]


def test_insi_verification_without_traits_matches(db: Database) -> None:
    """An INSi verification (no traits returned) confirms the local traits."""
    iid = create(db)
    assert attach(db, iid, insi_traits=None).identity.status is Status.RECUP


def test_insi_new_matricule_replaces_old(db: Database) -> None:
    """A new matricule from INSi: the old one goes to the history as invalidated."""
    iid = create(db)
    attach(db, iid)
    attach(db, iid, matricule=matricule("2850675115999"))
    view = show(db, iid)
    assert view["ins"]["matricule"] == "2850675115999"
    sources = {(h["matricule"], h["source"]) for h in view["ins_history"]}
    assert sources == {("2850675115123", "invalidated"), ("2850675115999", "active")}
    assert "identity.ins_invalidated" in kinds(db, iid)


def test_insi_differences_on_qual_need_supervisor(db: Database) -> None:
    """EXI SI 07: strict traits of a QUAL identity are locked; accepting INSi changes needs the right."""
    iid = create(db)
    proof(db, iid)
    attach(db, iid)
    insi = make_traits(birthplace="75115")
    refused(
        db,
        iid,
        PermissionDenied,
        desk_qualify.attach_ins,
        actor=RECEPTION,
        identity_id=iid,
        matricule=matricule(),
        oid=OID_INS_NIR,
        insi_traits=insi,
        accept_insi_traits=True,
    )
    result = attach(db, iid, actor=SUPERVISOR, insi_traits=insi, accept_insi_traits=True)
    assert result.identity.status is Status.QUAL


# ---------------------------------------------------------------------------------------------
# proof


def test_proof_refusals(db: Database) -> None:
    """EXI ID 19: only configured high-trust documents; expired refused; minors-only documents."""
    iid = create(db)
    error = refused(
        db,
        iid,
        BadRequest,
        desk_proofs.add_proof,
        actor=RECEPTION,
        identity_id=iid,
        document_type="carte_vitale",
        expires=None,
    )
    assert error.exit_code == 2
    assert "carte Vitale n'est pas une pièce d'identité à haut niveau de confiance" in error.message
    refused(
        db,
        iid,
        BadRequest,
        desk_proofs.add_proof,
        actor=RECEPTION,
        identity_id=iid,
        document_type="permis",
        expires=None,
    )
    error = refused(
        db,
        iid,
        BadRequest,
        desk_proofs.add_proof,
        actor=RECEPTION,
        identity_id=iid,
        document_type="passeport",
        expires=date.today() - timedelta(days=1),
    )
    assert "expiré" in error.message
    error = refused(
        db,
        iid,
        BadRequest,
        desk_proofs.add_proof,
        actor=RECEPTION,
        identity_id=iid,
        document_type="livret_famille",
        expires=None,
    )
    assert "mineur" in error.message
    refused(
        db,
        iid,
        PermissionDenied,
        desk_proofs.add_proof,
        actor=BIOLOGIST,
        identity_id=iid,
        document_type="cni",
        expires=None,
    )


def test_proof_for_a_minor(db: Database) -> None:
    """EXI ID 19: livret de famille accepted for a minor."""
    child = make_traits(
        birth_name="PETIT", first_names="LEO", sex="M", birth_date=f"{date.today().year - 5}-01-15"
    )
    iid = create(db, traits=child)
    assert proof(db, iid, "livret_famille", expires=None).status is Status.VALI


@pytest.mark.parametrize("document", ["dcem", "tuteur_decision"])
def test_current_rniv_cases_for_minors(db: Database, document: str) -> None:
    """Issue #13 item 8: a foreign minor's travel document (DCEM), a guardian's document with the
    court decision: accepted for a minor, refused for an adult, configurable like the others."""
    child = make_traits(
        birth_name="PETIT", first_names="LEO", sex="M", birth_date=f"{date.today().year - 12}-01-15"
    )
    assert proof(db, create(db, traits=child), document, expires=None).status is Status.VALI
    adult = create(
        db, traits=make_traits(birth_name="GRAND", first_names="LEO", sex="M", birth_date="1970-01-15")
    )
    with pytest.raises(BadRequest, match="mineur"):
        proof(db, adult, document, expires=None)


def test_no_document_type_is_preselected() -> None:
    """EXI ID 19, RNIV EXI SI 10/23: no default document type anywhere."""
    param = inspect.signature(desk_proofs.add_proof).parameters["document_type"]
    assert param.default is inspect.Parameter.empty
    assert [d.code for d in SHIPPED_DOCUMENT_TYPES] == [
        "passeport",
        "cni",
        "titre_sejour",
        "livret_famille",
        "extrait_naissance",
        "dcem",
        "tuteur_decision",
        "identite_numerique",
    ]
    assert [d.code for d in SHIPPED_DOCUMENT_TYPES if d.minors] == [
        "livret_famille",
        "extrait_naissance",
        "dcem",
        "tuteur_decision",
    ]


def test_document_types_configurable(db: Database) -> None:
    """EXI ID 19: the list is per lab (setting ``document_types``), CONFIG right, no carte Vitale."""
    with db.session() as s:
        assert document_types(s) == SHIPPED_DOCUMENT_TYPES
    with pytest.raises(PermissionDenied), db.transaction() as s:
        set_document_types(s, actor=SUPERVISOR, types=[{"code": "passeport", "label": "Passeport"}])
    with pytest.raises(BadRequest, match="carte Vitale"), db.transaction() as s:
        set_document_types(s, actor=ADMIN, types=[{"code": "carte_vitale", "label": "Vitale"}])
    with pytest.raises(BadRequest), db.transaction() as s:
        set_document_types(s, actor=ADMIN, types=[])
    with db.transaction() as s:
        set_document_types(
            s, actor=ADMIN, types=[{"code": "passeport", "label": "Passeport", "minors": False}]
        )
    with db.session() as s:
        assert [d.code for d in document_types(s)] == ["passeport"]
        changes = list_events(s, kind=audit_log.CONFIG_CHANGED)
    assert len(changes) == 1, "a configuration change is audited"
    assert changes[0].actor == ADMIN.login and changes[0].details["after"] == ["passeport"]
    iid = create(db)
    refused(
        db,
        iid,
        BadRequest,
        desk_proofs.add_proof,
        actor=RECEPTION,
        identity_id=iid,
        document_type="cni",
        expires=None,
    )
    assert proof(db, iid, "passeport").status is Status.VALI


# ---------------------------------------------------------------------------------------------
# flags


def test_flag_douteuse_on_qual(db: Database) -> None:
    """EXI SI 09: douteuse sends QUAL back to PROV and invalidates the INS (kept in history)."""
    iid = create(db)
    proof(db, iid)
    attach(db, iid)
    with db.transaction() as s:
        identity = desk_flags.set_flag(
            s, actor=RECEPTION, identity_id=iid, flag=Flag.DOUTEUSE, reason="pièce suspecte"
        )
        assert identity.status is Status.PROV
    view = show(db, iid)
    assert view["flags"] == ["douteuse"]
    assert view["ins"] is None
    assert [h["source"] for h in view["ins_history"]] == ["invalidated"]
    assert kinds(db, iid)[-3:] == ["identity.flag_set", "identity.ins_invalidated", "identity.status_changed"]
    status_event = events(db, iid, "identity.status_changed")[-1]
    assert status_event.details == {
        "from": "QUAL",
        "to": "PROV",
        "event": "flag_doubtful_or_fictitious",
        "reason": "pièce suspecte",
    }

    # EXI SI 09: no INSi, no proof, no fictive on top
    refused(
        db,
        iid,
        BadRequest,
        desk_qualify.attach_ins,
        actor=RECEPTION,
        identity_id=iid,
        matricule=matricule(),
        oid=OID_INS_NIR,
        insi_traits=None,
    )
    error = refused(
        db,
        iid,
        BadRequest,
        desk_proofs.add_proof,
        actor=RECEPTION,
        identity_id=iid,
        document_type="cni",
        expires=None,
    )
    assert "lever" in error.message
    refused(db, iid, BadRequest, desk_flags.set_flag, actor=RECEPTION, identity_id=iid, flag="fictive")

    # douteuse + homonyme combine (EXI ID 24/26)
    with db.transaction() as s:
        desk_flags.set_flag(s, actor=RECEPTION, identity_id=iid, flag="homonyme")
    assert show(db, iid)["flags"] == ["douteuse", "homonyme"]

    # clearing: supervisor only, reason mandatory; the identity stays PROV
    refused(
        db,
        iid,
        PermissionDenied,
        desk_flags.clear_flag,
        actor=RECEPTION,
        identity_id=iid,
        flag="douteuse",
        reason="ok",
    )
    refused(
        db,
        iid,
        BadRequest,
        desk_flags.clear_flag,
        actor=SUPERVISOR,
        identity_id=iid,
        flag="douteuse",
        reason=" ",
    )
    with db.transaction() as s:
        desk_flags.clear_flag(
            s, actor=SUPERVISOR, identity_id=iid, flag="douteuse", reason="pièce authentique"
        )
    view = show(db, iid)
    assert view["flags"] == ["homonyme"]
    assert view["status"] == "PROV"
    cleared = events(db, iid, "identity.flag_cleared")[0]
    assert cleared.details["reason"] == "pièce authentique"
    assert cleared.actor == SUPERVISOR.login
    assert_chain_ok(db)


def test_flag_homonyme_keeps_status(db: Database) -> None:
    """EXI SI 09: homonyme alone does not change the status nor the INS."""
    iid = create(db)
    attach(db, iid)
    with db.transaction() as s:
        desk_flags.set_flag(s, actor=RECEPTION, identity_id=iid, flag="homonyme")
    view = show(db, iid)
    assert view["status"] == "RECUP"
    assert view["ins"] is not None
    refused(db, iid, BadRequest, desk_flags.set_flag, actor=RECEPTION, identity_id=iid, flag="fictive")
    refused(db, iid, BadRequest, desk_flags.set_flag, actor=RECEPTION, identity_id=iid, flag="inconnu")


# ---------------------------------------------------------------------------------------------
# déqualification


def test_dequalify(db: Database) -> None:
    """EXI SI 07: déqualification (supervisor, reason) back to PROV, INS into the history."""
    iid = create(db)
    refused(
        db, iid, BadRequest, desk_flags.dequalify, actor=SUPERVISOR, identity_id=iid, reason="x"
    )  # PROV already
    proof(db, iid)
    attach(db, iid)
    refused(
        db, iid, PermissionDenied, desk_flags.dequalify, actor=RECEPTION, identity_id=iid, reason="erreur"
    )
    refused(db, iid, BadRequest, desk_flags.dequalify, actor=SUPERVISOR, identity_id=iid, reason="")
    with db.transaction() as s:
        assert (
            desk_flags.dequalify(s, actor=SUPERVISOR, identity_id=iid, reason="collision").status
            is Status.PROV
        )
    view = show(db, iid)
    assert view["ins"] is None
    assert [h["source"] for h in view["ins_history"]] == ["invalidated"]
    assert kinds(db, iid)[-3:] == [
        "identity.dequalified",
        "identity.ins_invalidated",
        "identity.status_changed",
    ]
    assert events(db, iid, "identity.dequalified")[0].details == {"from": "QUAL", "reason": "collision"}
    assert_chain_ok(db)


# ---------------------------------------------------------------------------------------------
# edit


def test_edit_prov_by_reception(db: Database) -> None:
    """Editing a PROV identity: field-level before/after, no status change."""
    iid = create(db)
    v = show(db, iid)["version"]
    with db.transaction() as s:
        desk_identities.edit_identity(
            s, actor=RECEPTION, identity_id=iid, expect_version=v, first_names="claire", birthplace="75115"
        )
    view = show(db, iid)
    assert view["version"] == v + 1
    assert view["traits"]["first_names"] == ["CLAIRE"]
    assert view["traits"]["birthplace"] == "75115"
    edited = events(db, iid, "identity.edited")[0]
    assert edited.details["changes"] == {
        "first_names": {"before": "CLAIRE MARIE", "after": "CLAIRE"},
        "birthplace": {"before": None, "after": "75115"},
    }
    assert "identity.status_changed" not in kinds(db, iid)


def test_edit_first_names_rederives_first_name(db: Database) -> None:
    """EXI ID 10: a new list that no longer starts with the first name gives a new first name."""
    iid = create(db)
    with db.transaction() as s:
        desk_identities.edit_identity(s, actor=RECEPTION, identity_id=iid, first_names="ANNE CLAIRE")
    assert show(db, iid)["traits"]["first_name"] == "ANNE"


@pytest.mark.parametrize("path", ["RECUP", "VALI", "QUAL"])
def test_strict_edit_of_verified_identity(db: Database, path: str) -> None:
    """EXI SI 07: strict trait of RECUP/VALI/QUAL: supervisor only, back to PROV, INS to history."""
    iid = create(db)
    if path in ("VALI", "QUAL"):
        proof(db, iid)
    if path in ("RECUP", "QUAL"):
        attach(db, iid)
    assert show(db, iid)["status"] == path
    error = refused(
        db, iid, PermissionDenied, desk_identities.edit_identity, actor=RECEPTION, identity_id=iid, sex="M"
    )
    assert error.exit_code == 4
    # complementary traits stay editable and keep the status
    with db.transaction() as s:
        desk_identities.edit_identity(s, actor=RECEPTION, identity_id=iid, used_name="DURAND")
    assert show(db, iid)["status"] == path
    with db.transaction() as s:
        identity = desk_identities.edit_identity(
            s, actor=SUPERVISOR, identity_id=iid, birth_date="1985-06-22", reason="erreur de saisie"
        )
        assert identity.status is Status.PROV
    view = show(db, iid)
    assert view["status"] == "PROV"
    assert view["ins"] is None
    if path != "VALI":
        assert [h["source"] for h in view["ins_history"]] == ["invalidated"]
    status_event = events(db, iid, "identity.status_changed")[-1]
    assert status_event.details == {
        "from": path,
        "to": "PROV",
        "event": "strict_trait_edited",
        "reason": "erreur de saisie",
    }
    assert_chain_ok(db)


def test_edit_expect_version_conflict(db: Database) -> None:
    """docs/cli.md identity edit --expect-version: a stale version is refused (exit 4), nothing changed."""
    iid = create(db)
    v = show(db, iid)["version"]
    with db.transaction() as s:
        desk_identities.edit_identity(s, actor=RECEPTION, identity_id=iid, used_name="DUPONT")
    error = refused(
        db,
        iid,
        ConcurrentUpdate,
        desk_identities.edit_identity,
        actor=RECEPTION,
        identity_id=iid,
        expect_version=v,
        sex="M",
    )
    assert error.exit_code == 4


@pytest.mark.parametrize(
    "changes",
    [
        {"birth_name": "CŒUR"},
        {"first_names": "D’ÆION"},
        {"sex": "X"},
        {"birth_date": "2999-01-01"},
        {"birthplace": "00000"},
        {"used_name": "É"},
    ],
)
def test_edit_bad_input_changes_nothing(db: Database, changes: dict[str, Any]) -> None:
    """Input rules (docs/cli.md, traits check): invalid traits refused (exit 1, errors), nothing changed."""
    iid = create(db)
    error = refused(
        db, iid, InvalidData, desk_identities.edit_identity, actor=RECEPTION, identity_id=iid, **changes
    )
    assert isinstance(error, InvalidData) and error.errors
    assert error.exit_code == 1


def test_edit_noop_changes_nothing(db: Database) -> None:
    iid = create(db)
    before = snapshot(db, iid)
    with db.transaction() as s:
        desk_identities.edit_identity(s, actor=RECEPTION, identity_id=iid, birth_name="martin")
    assert snapshot(db, iid) == before


def test_edit_keeps_odd_insi_traits(db: Database) -> None:
    """INSi traits are stored as received: an odd stored value does not block editing another field."""
    odd = StrictTraits("O'NEIL--", ("JEAN",), "JEAN", "M", BirthDate(date(1960, 1, 1)), None)
    iid = create(db, traits=odd)
    with db.transaction() as s:
        desk_identities.edit_identity(s, actor=RECEPTION, identity_id=iid, birthplace="75115")
    view = show(db, iid)
    assert view["traits"]["birth_name"] == "O'NEIL--"
    assert view["traits"]["birthplace"] == "75115"


def test_local_id_edit_unique(db: Database) -> None:
    a = create(db, local_id="A1")
    b = create(db, traits=make_traits(birth_name="DURAND"), local_id="B1")
    refused(db, b, BadRequest, desk_identities.edit_identity, actor=RECEPTION, identity_id=b, local_id="A1")
    with db.transaction() as s:
        desk_identities.edit_identity(s, actor=RECEPTION, identity_id=a, local_id="A2")
    assert show(db, a)["local_id"] == "A2"


def test_concurrent_update_is_refused(pg_url: str, tmp_path: Path) -> None:
    """Two desks edit the same identity: the stale one is refused (ConcurrentUpdate, exit 4)."""
    db = Database(pg_url, anchor_path=tmp_path / "a.json")
    try:
        iid = create(db)
        before = snapshot(db, iid)
        with pytest.raises(ConcurrentUpdate), db.transaction() as s1:
            card = identity_records.get_identity(
                s1, actor=RECEPTION, identity_id=iid
            )  # desk 1 holds the card
            with db.transaction() as s2:  # desk 2 saves first
                desk_identities.edit_identity(s2, actor=RECEPTION, identity_id=iid, used_name="SECOND")
            assert card.version == before[0]
            desk_identities.edit_identity(s1, actor=RECEPTION, identity_id=iid, used_name="PREMIER")
        view = show(db, iid)
        assert view["used_name"] == "SECOND"
        assert view["version"] == before[0] + 1
        assert kinds(db, iid) == ["identity.created", "identity.edited"]
        assert_chain_ok(db)
    finally:
        db.dispose()


# ---------------------------------------------------------------------------------------------
# search


@pytest.fixture
def people(db: Database) -> dict[str, int]:
    rows = {
        "martin_claire": create(db, local_id="IPP100"),
        "martin_paul": create(db, traits=make_traits(first_names="PAUL", sex="M", birth_date="1990-01-02")),
        "martineau": create(db, traits=make_traits(birth_name="MARTINEAU", first_names="ANNE")),
        "le_gall": create(db, traits=make_traits(birth_name="LE GALL", first_names="YANN", sex="M")),
        "durand": create(db, traits=make_traits(birth_name="DURAND", first_names="HELENE")),
        "mary": create(db, traits=make_traits(birth_name="MARZ", first_names="ZOE")),
    }
    attach(db, rows["durand"], insi_traits=None)
    return rows


def ids(db: Database, query: str, limit: int = 50) -> list[int]:
    with db.session() as s:
        return [
            i.id for i in identity_search.search_identities(s, query=query, limit=limit) if i.id is not None
        ]


def test_search(db: Database, people: dict[str, int]) -> None:
    p = people
    assert ids(db, "MART") == [p["martin_claire"], p["martin_paul"], p["martineau"]]
    assert ids(db, "mart") == ids(db, "MART")
    assert ids(db, "MARTIN") == [p["martin_claire"], p["martin_paul"], p["martineau"]]
    assert ids(db, "MARTIN CLAIRE") == [p["martin_claire"]]
    assert ids(db, "MARTIN MARIE") == [p["martin_claire"]]  # any birth first name
    assert ids(db, "MART PA") == [p["martin_paul"]]
    assert ids(db, "LE GALL") == [p["le_gall"]]
    assert ids(db, "LE GALL YANN") == [p["le_gall"]]
    assert ids(db, "MARZ") == [p["mary"]]
    assert ids(db, "ARTIN") == []  # no leading wildcard
    assert set(ids(db, "21/06/1985")) == {
        p["martin_claire"],
        p["martineau"],
        p["le_gall"],
        p["durand"],
        p["mary"],
    }
    assert ids(db, "1990-01-02") == [p["martin_paul"]]
    assert ids(db, "MARTIN 21/06/1985") == [p["martin_claire"], p["martineau"]]
    assert ids(db, "IPP100") == [p["martin_claire"]]
    m = matricule()
    assert ids(db, m.value) == [p["durand"]]
    assert ids(db, m.formatted()) == [p["durand"]]
    assert ids(db, "Hélène") == []  # first names alone do not search (birth name first)
    assert ids(db, "durand hélène") == [p["durand"]]
    assert ids(db, "MART", limit=2) == [p["martin_claire"], p["martin_paul"]]
    assert ids(db, "  ") == []
    assert ids(db, "50%") == []


def _captured_sql(db: Database, query: str) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "FROM identity" in statement:
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        ids(db, query)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    return seen


@pytest.mark.parametrize(
    "query",
    ["MART", "MARTIN CLAIRE", "MART PA", "21/06/1985", "MARTIN 21/06/1985", "IPP100", matricule().value],
)
def test_search_is_index_backed(db: Database, people: dict[str, int], query: str) -> None:
    """Every search statement uses an index (no full scan), so it stays fast on 1,000,000 rows."""
    statements = _captured_sql(db, query)
    assert statements
    with db.engine.connect() as conn:
        for statement, params in statements:
            if db.is_sqlite:
                plan = " ".join(
                    str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                )
                assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
                assert "SCAN identity" not in plan.replace("USING INDEX", ""), plan
            else:
                conn.exec_driver_sql("SET enable_seqscan = off")
                plan = " ".join(str(r[0]) for r in conn.exec_driver_sql("EXPLAIN " + statement, params))
                assert "Seq Scan" not in plan, plan
                assert "Index" in plan, plan
        conn.rollback()


# ---------------------------------------------------------------------------------------------
# audit over a whole story


def test_audit_chain_over_a_story(db: Database) -> None:
    """Every change produces its events; the hash chain verifies."""
    iid = create(db)
    proof(db, iid)
    attach(db, iid)
    with db.transaction() as s:
        desk_flags.set_flag(s, actor=RECEPTION, identity_id=iid, flag="douteuse")
    with db.transaction() as s:
        desk_flags.clear_flag(s, actor=SUPERVISOR, identity_id=iid, flag="douteuse", reason="vérifié")
    attach(db, iid)
    proof(db, iid, "cni")
    with db.transaction() as s:
        desk_flags.dequalify(s, actor=SUPERVISOR, identity_id=iid, reason="doublon")
    assert kinds(db, iid) == [
        "identity.created",
        "identity.proof_added",
        "identity.status_changed",
        "identity.ins_attached",
        "identity.status_changed",
        "identity.flag_set",
        "identity.ins_invalidated",
        "identity.status_changed",
        "identity.flag_cleared",
        "identity.ins_attached",
        "identity.status_changed",
        "identity.proof_added",
        "identity.status_changed",
        "identity.dequalified",
        "identity.ins_invalidated",
        "identity.status_changed",
    ]
    with db.session() as s:
        insi_calls = s.exec(select(func.count()).select_from(InsiCall)).one()
        assert insi_calls == 0
        rows = s.execute(sa.text("SELECT COUNT(*) FROM identity_proof")).scalar_one()
        assert rows == 2
    assert_chain_ok(db)


def test_proof_checked_at_recorded(db: Database) -> None:
    iid = create(db)
    at = datetime.now(UTC) - timedelta(hours=1)
    proof(db, iid, checked_at=at)
    with db.session() as s:
        row = s.exec(select(IdentityProof).where(IdentityProof.identity_id == iid)).one()
        assert abs((row.checked_at - at).total_seconds()) < 1
    with pytest.raises(BadRequest), db.transaction() as s:
        desk_proofs.add_proof(
            s,
            actor=RECEPTION,
            identity_id=iid,
            document_type="cni",
            expires=None,
            checked_at=datetime.now(UTC) + timedelta(days=1),
        )

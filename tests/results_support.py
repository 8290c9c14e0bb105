"""Helpers of the results tests (ingest, gate): reference data, identities, imports, audit."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from services.desk import identities as desk_identities
from services.desk import proofs as desk_proofs
from services.desk import qualify as desk_qualify
from services.desk.catalog import import_catalog
from services.desk.loinc import import_value_set
from services.identity.matricule import OID_INS_NIR, MatriculeINS, compute_key
from services.identity.traits import check_traits
from services.results.ingest import ImportResult, import_results
from services.results.models import LabReport, Observation
from services.storage.db import Database
from services.storage.models import AuditEvent, Role
from services.users import Actor

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "results"
ADMIN = Actor("admin1", Role.ADMIN)
BIOLOGIST = Actor("bio1", Role.BIOLOGIST)
RECEPTION = Actor("accueil1", Role.RECEPTION)
SUPERVISOR = Actor("superv1", Role.SUPERVISOR)

LAB_A = FIXTURES / "oru_labo_a_biomed.hl7"
LAB_B = FIXTURES / "oru_labo_b_kalisil.hl7"
LAB_C = FIXTURES / "hprim_labo_c_centre.hpr"
KEY_MARTIN = "hl7:GLIMS/BIOMED PARIS:dossier:D240412-0042"
KEY_DURAND = "hl7:GLIMS/BIOMED PARIS:dossier:D240412-0043"
INS_MARTIN = "285067511234592"
INS_DURAND = "1620369123045" + compute_key("1620369123045")

MARTIN = {
    "birth_name": "MARTIN",
    "first_names": "CLAIRE ANNE",
    "sex": "F",
    "birth_date": "1985-06-21",
    "birthplace": "75115",
}
DURAND = {
    "birth_name": "DURAND",
    "first_names": "PIERRE LOUIS",
    "sex": "M",
    "birth_date": "1962-03-07",
    "birthplace": "69123",
}


def load_reference_data(db: Database) -> None:
    """Our value-set extract and the BIOMED catalogue, through the catalogue/LOINC services."""
    import_value_set(db, actor=ADMIN, path=FIXTURES / "jdv_loinc_extrait_tests.csv")
    import_catalog(db, actor=ADMIN, path=FIXTURES / "catalogue_biomed.csv")


def create_identity(db: Database, traits: dict[str, str], local_id: str | None = None) -> int:
    with db.transaction() as s:
        identity = desk_identities.create_identity(
            s, actor=RECEPTION, traits=check_traits(**traits).raise_if_invalid(), local_id=local_id
        )
        return int(identity.id or 0)


def qualify(session: Any, identity_id: int, ins: str) -> None:
    """Document checked + INSi match: PROV → VALI → QUAL (through the identity service)."""
    desk_proofs.add_proof(
        session,
        actor=RECEPTION,
        identity_id=identity_id,
        document_type="passeport",
        expires=date.today() + timedelta(days=365),
    )
    desk_qualify.attach_ins(
        session,
        actor=RECEPTION,
        identity_id=identity_id,
        matricule=MatriculeINS.parse(ins),
        oid=OID_INS_NIR,
        insi_traits=None,
    )


def import_data(
    db: Database, data: bytes | str, *, actor: Actor = BIOLOGIST, source: str = "test"
) -> ImportResult:
    with db.transaction() as s:
        return import_results(s, actor=actor, data=data, source=source)


def import_path(db: Database, path: Path) -> ImportResult:
    return import_data(db, path.read_bytes(), source=path.name)


def report(db: Database, key: str) -> LabReport:
    with db.session() as s:
        row = s.exec(select(LabReport).where(LabReport.source_key == key)).one()
        return row


def verdict(db: Database, key: str) -> tuple[str, list[tuple[str, str | None]]]:
    row = report(db, key)
    return str(row.status), [(r["code"], r["observation"]) for r in row.reasons]


def events(db: Database, kind: str) -> list[AuditEvent]:
    with db.session() as s:
        return list(
            s.exec(select(AuditEvent).where(AuditEvent.kind == kind).order_by(col(AuditEvent.id))).all()
        )


def count(db: Database, table: Any) -> int:
    with db.session() as s:
        return len(s.exec(select(table)).all())


def observations(db: Database, report_id: int) -> list[Observation]:
    with db.session() as s:
        return list(
            s.exec(
                select(Observation).where(Observation.report_id == report_id).order_by(col(Observation.id))
            ).all()
        )

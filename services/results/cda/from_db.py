"""The CR-BIO of a stored report: :func:`cda_report_from_db` reads one report of the
``lab_report`` / ``lab_request`` / ``observation`` tables (refusing a report the MES gate blocks)
and the lab's identity from the ``cda.*`` settings (:func:`lab_from_settings`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final, Literal

from sqlmodel import col, select

from services.errors import NegativeAnswer, NotFound
from services.identity.birthplace import load_cog
from services.results.cda.model import (
    STRUCTURE_ROOT,
    Address,
    CdaLab,
    CdaObservation,
    CdaPatient,
    CdaReport,
    CdaRequest,
    Organization,
    PatientIns,
    Practitioner,
)
from services.results.cda.values import interpretation_code, parse_reference_range, parse_value
from services.results.models import CatalogEntry, LabReport, LabRequest, LoincCode, Observation, ReportStatus
from services.results.units import normalize_unit, to_ucum
from services.settings_store import read_settings
from services.storage.models import Identity, Status

__all__ = ["LAB_SETTING_KEYS", "SETTING_PREFIX", "cda_report_from_db", "lab_from_settings"]


SETTING_PREFIX: Final = "cda."
LAB_SETTING_KEYS: Final[tuple[str, ...]] = (
    "lab_name",
    "lab_id",
    "lab_id_root",
    "lab_telecom",
    "lab_street",
    "lab_postal_code",
    "lab_city",
    "lab_accreditation",
    "biologist_rpps",
    "biologist_family",
    "biologist_given",
    "biologist_telecom",
    "local_id_root",
    "local_code_system",
)
"""Lab identity used in the CDA: ``setting`` rows ``cda.<key>`` (demo values when absent)."""

_DEMO_LAB: Final[Mapping[str, str]] = {
    "lab_name": "Laboratoire de biologie médicale (démonstration insdesk)",
    "lab_id": "1999999999",
    "lab_id_root": STRUCTURE_ROOT,
    "lab_telecom": "tel:0100000000",
    "lab_street": "1 rue de la Démonstration",
    "lab_postal_code": "75001",
    "lab_city": "PARIS",
    "biologist_rpps": "899999999999",
    "biologist_family": "BIOLOGISTE",
    "biologist_given": "Démo",
    "local_id_root": "1.2.250.1.213.1.1.9",
}


def lab_from_settings(values: Mapping[str, str]) -> CdaLab:
    """The lab of the CDA from ``cda.*`` settings (keys without the prefix), demo values otherwise."""
    v = {**_DEMO_LAB, **{k: s for k, s in values.items() if s}}
    address = Address(
        street=v.get("lab_street"), postal_code=v.get("lab_postal_code"), city=v.get("lab_city")
    )
    org = Organization(
        name=v["lab_name"],
        id_extension=v["lab_id"],
        id_root=v["lab_id_root"],
        telecom=v.get("lab_telecom"),
        address=address,
        accreditation=v.get("lab_accreditation"),
    )
    biologist = Practitioner(
        family=v["biologist_family"],
        given=v["biologist_given"],
        id_extension=v["biologist_rpps"],
        telecom=v.get("biologist_telecom") or v.get("lab_telecom"),
        address=address,
    )
    return CdaLab(
        organization=org,
        biologist=biologist,
        local_id_root=v.get("local_id_root"),
        local_code_system=v.get("local_code_system"),
    )


def _settings(session: Any) -> dict[str, str]:
    return read_settings(session, SETTING_PREFIX)


def _birthplace_name(code: str | None, birth_date: dt.date) -> str | None:
    if not code:
        return None
    try:
        periods = load_cog().periods(code)
    except Exception:  # the name is a courtesy: the code is what counts
        return None
    if not periods:
        return None
    valid = [p for p in periods if p.valid_at(birth_date)]
    return (valid or periods)[-1].name


def _resolve_loinc(obs: Any, catalog: Mapping[str, Any]) -> tuple[str | None, Any]:
    """(LOINC code, catalogue entry), as the MES gate resolves it (``services.results.gate``):
    the catalogue's mapping of the local code, else the LOINC the lab sent in OBX-3 (``LN``)."""
    entry = catalog.get(obs.local_code or "")
    if entry is not None and (entry.loinc or "").strip():
        return str(entry.loinc).strip(), entry
    if obs.loinc_in_message and obs.loinc_in_message.strip():
        return str(obs.loinc_in_message).strip(), entry
    return None, entry


def _normalise_unit(unit: str | None, loinc_property: str | None) -> str | None:
    """The UCUM code of a received unit (the reading that fits the LOINC property)."""
    if unit is None or not unit.strip():
        return None
    return to_ucum(unit, loinc_property) or normalize_unit(unit)


def cda_report_from_db(
    session: Any,
    report_id: int,
    *,
    lab: CdaLab | None = None,
    now: dt.datetime | None = None,
    allow_sent: bool = True,
) -> CdaReport:
    """The :class:`CdaReport` of ``lab_report`` ``report_id``.

    A report the MES gate blocks is refused (:class:`NegativeAnswer`, exit 1, with its reason
    codes), as is one whose identity is not qualified any more (EXI SI 08).
    """
    report = session.get(LabReport, report_id)
    if report is None:
        raise NotFound(f"Compte rendu n° {report_id} introuvable.", code="report_not_found")
    if report.status == ReportStatus.BLOCKED:
        codes_txt = ", ".join(sorted({str(r.get("code")) for r in report.reasons or []})) or "non précisé"
        raise NegativeAnswer(
            f"Le compte rendu n° {report_id} est bloqué pour Mon Espace Santé ({codes_txt}) : "
            "pas de CDA tant que le blocage n'est pas levé.",
            code="report_blocked",
        )
    if report.status == ReportStatus.SENT and not allow_sent:
        raise NegativeAnswer(f"Le compte rendu n° {report_id} a déjà été envoyé.", code="report_sent")
    identity = session.get(Identity, report.identity_id) if report.identity_id is not None else None
    if (
        identity is None
        or identity.status != Status.QUAL
        or identity.flag_douteuse
        or identity.flag_fictive
        or not identity.ins_matricule
        or not identity.ins_key
        or not identity.ins_oid
    ):
        raise NegativeAnswer(
            f"Le compte rendu n° {report_id} n'a pas de patient à l'identité qualifiée (INS) : "
            "pas de CDA (EXI SI 08).",
            code="report_blocked",
        )
    first_names = tuple(identity.first_names.split())
    patient = CdaPatient(
        ins=PatientIns(identity.ins_matricule + identity.ins_key, identity.ins_oid),
        birth_name=identity.birth_name,
        first_names=first_names,
        sex=identity.sex,
        birth_date=identity.birth_date,
        birthplace=identity.birthplace,
        birthplace_name=_birthplace_name(identity.birthplace, identity.birth_date),
        used_name=identity.used_name,
        used_first_name=identity.used_first_name,
        local_id=identity.local_id or next(iter(report.patient_local_ids or []), None),
    )

    requests = session.exec(
        select(LabRequest).where(LabRequest.report_id == report_id).order_by(col(LabRequest.seq))
    ).all()
    observations = session.exec(
        select(Observation).where(Observation.report_id == report_id).order_by(col(Observation.seq))
    ).all()
    local_codes = {o.local_code for o in observations if o.local_code}
    catalog = (
        {
            e.local_code: e
            for e in session.exec(
                select(CatalogEntry).where(col(CatalogEntry.local_code).in_(local_codes))
            ).all()
        }
        if local_codes
        else {}
    )
    resolved = [(o, *_resolve_loinc(o, catalog)) for o in observations]
    wanted = {code for _, code, _ in resolved if code}
    loinc_rows = (
        {c.code: c for c in session.exec(select(LoincCode).where(col(LoincCode.code).in_(wanted))).all()}
        if wanted
        else {}
    )

    by_request: dict[int | None, list[CdaObservation]] = {}
    for obs, code, entry in resolved:
        if not code:
            raise NegativeAnswer(
                f"Le résultat « {obs.label or obs.local_code} » n'a pas de code LOINC : pas de CDA.",
                code="report_blocked",
            )
        row = loinc_rows.get(code)
        unit = _normalise_unit(
            obs.unit or (entry.unit if entry is not None else None), row.property if row is not None else None
        )
        value = parse_value(obs.value_type, _with_comparator(obs.comparator, obs.value), unit)
        status: Literal["completed", "aborted"] = (
            "aborted" if (obs.result_status or "").upper() in ("X", "D") else "completed"
        )
        by_request.setdefault(obs.request_id, []).append(
            CdaObservation(
                loinc=code,
                display_name=(row.label_fr if row is not None else None) or obs.label or code,
                value=value,
                interpretation=interpretation_code(obs.abnormal_flag),
                reference_range=parse_reference_range(obs.reference_range, unit),
                observed_at=obs.observed_at,
                status=status,
                local_code=obs.local_code,
                local_label=obs.label or (entry.label if entry is not None else None),
                comments=tuple(str(c) for c in obs.comments or () if str(c).strip()),
                chapter=row.chapter if row is not None else None,
                flag=obs.abnormal_flag,
            )
        )
    cda_requests = [
        CdaRequest(
            label=req.label or req.code or f"Demande {req.seq}",
            observations=tuple(by_request.pop(req.id, [])),
            code=req.code,
            specimen=req.specimen,
            collected_at=req.collected_at,
            placer_id=req.placer_id,
            filler_id=req.filler_id,
        )
        for req in requests
    ]
    leftovers = [o for group in by_request.values() for o in group]
    if leftovers:
        cda_requests.append(CdaRequest(label="Examens", observations=tuple(leftovers)))
    when = now or dt.datetime.now(dt.UTC)
    return CdaReport(
        set_id=report.set_id,
        version=report.version_number,
        patient=patient,
        lab=lab or lab_from_settings(_settings(session)),
        requests=tuple(r for r in cda_requests if r.observations),
        created_at=when,
        validated_at=report.verdict_at or when,
        report_id=report.id,
        # A version after one that was sent replaces it (RPLC); otherwise it replaces nothing.
        replaces_version=report.sent_version if report.sent_version else 0,
    )


def _with_comparator(comparator: str | None, value: str | None) -> str | None:
    """A stored numeric result and its comparator as one value (``<`` + ``0.5`` → ``<0.5``)."""
    if comparator and value is not None:
        return f"{comparator}{value}"
    return value

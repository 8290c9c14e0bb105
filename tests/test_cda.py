"""CDA R2 CR-BIO: the validation engine (ANS XSD + CR-BIO 2024.01 schematron on SaxonC-HE), the
documents we generate (each must pass both with zero failed asserts), the PDF copy (INS in clear
and its DataMatrix on page 1, EXI DIF 02), the outbox and the ``results cda|send`` commands.

Nothing here is skipped: if SaxonC-HE cannot start, these tests fail.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlmodel import select

from services.desk.results import send_reports
from services.errors import ExternalFailure, NegativeAnswer, NotFound
from services.identity.matricule import OID_INS_NIA, OID_INS_NIR, OID_INS_NIR_TEST, compute_key
from services.results import validate as validate_mod
from services.results.cda import (
    Address,
    CdaLab,
    CdaObservation,
    CdaPatient,
    CdaReport,
    CdaRequest,
    Coded,
    Organization,
    PatientIns,
    Practitioner,
    Quantity,
    QuantityRange,
    Text,
    build_cda,
    cda_report_from_db,
    chapter_for,
    interpretation_code,
    lab_from_settings,
    parse_reference_range,
    parse_value,
)
from services.results.cda.pdf import render_report_pdf
from services.results.models import (
    CatalogEntry,
    LabReport,
    LabRequest,
    LoincCode,
    LoincVersion,
    Observation,
    ReportFormat,
    ReportStatus,
)
from services.results.outbox import FileDropSender, StubSender, XdsSender
from services.results.validate import CdaValidator, SchematronUnavailable
from services.storage.db import Database
from services.storage.models import AuditEvent, Identity, Role, Status
from services.users import Actor, add_user
from services.vitale import datamatrix

ROOT = Path(__file__).resolve().parent.parent
ANS_EXAMPLE = ROOT / "fixtures" / "cda" / "sample_CR-BIO_2024.01_Glycemie_mole_ANS.xml"
SHARED_CDA = ROOT.parent / "shared" / "reference" / "cda"
HL7 = {"h": "urn:hl7-org:v3", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
UTC = dt.UTC
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    return CdaValidator(cache_dir=tmp_path_factory.mktemp("cda-cache")).load()


def _assert_conforms(validator: CdaValidator, xml: bytes) -> None:
    report = validator.validate(xml)
    assert report.fired_rules > 0
    assert report.xsd_errors == [], report.summary()
    assert report.failed_asserts == [], report.summary()
    assert report.ok


# --- the engine --------------------------------------------------------------------------------


def test_ans_example_passes_xsd_and_schematron(validator: CdaValidator) -> None:
    report = validator.validate(ANS_EXAMPLE.read_bytes())
    assert report.xsd_errors == []
    assert report.failed_asserts == []
    assert report.fired_rules >= 10  # header, sections, entries, observations, value set
    assert validator.compiled_path is not None
    # compiled next to (a copy of) the .sch: the value-set path '../jeuxDeValeurs/…' resolves
    assert validator.compiled_path.parent.name == "schematrons"
    assert (validator.compiled_path.parent.parent / "jeuxDeValeurs").is_dir()
    assert not validator.compiled_path.is_relative_to(validate_mod.ARTEFACTS_DIR)


def test_ans_example_and_artefacts_are_the_shared_ones_when_present() -> None:
    shared = SHARED_CDA / ANS_EXAMPLE.name
    if shared.exists():  # CI lays shared/ beside the clone; a bare clone still has its copies
        assert shared.read_bytes() == ANS_EXAMPLE.read_bytes()
        for path in (SHARED_CDA / "validation").rglob("*"):
            if path.is_file():
                ours = validate_mod.ARTEFACTS_DIR / path.relative_to(SHARED_CDA / "validation")
                assert ours.read_bytes() == path.read_bytes(), ours
    provenance = json.loads((validate_mod.ARTEFACTS_DIR / "PROVENANCE.json").read_text())
    assert provenance["repo"] == "ansforge/TestContenuCDA-3-0"
    for name in provenance["files"]:
        assert (validate_mod.ARTEFACTS_DIR / name).is_file(), name
    assert (validate_mod.ARTEFACTS_DIR / "schematrons/moteur/LICENSE.txt").is_file()


def _ans_tree() -> etree._ElementTree:
    return etree.parse(str(ANS_EXAMPLE))


def test_broken_document_fails_with_named_asserts(validator: CdaValidator) -> None:
    tree = _ans_tree()
    root = tree.getroot()
    root.find("h:title", HL7).text = "Compte rendu"
    root.remove(root.find("h:setId", HL7))
    root.find("h:versionNumber", HL7).set("value", "0")
    interp = root.find(".//h:observation/h:interpretationCode", HL7)
    interp.set("code", "ZZZ")  # not in the CI-SIS value set (read through the relative path)
    pdf_section = root.xpath("//h:section[h:templateId/@root='1.2.250.1.213.1.1.2.243']", namespaces=HL7)[0]
    pdf_section.getparent().getparent().remove(pdf_section.getparent())
    report = validator.validate(etree.tostring(tree))
    assert not report.ok
    texts = "\n".join(a.text for a in report.failed_asserts)
    assert "L'élément setId est obligatoire" in texts
    assert "L'élément title est obligatoire" in texts
    assert 'L\'élément "versionNumber" doit être présent' in texts
    assert "FR-Document-PDF-copie (1.2.250.1.213.1.1.2.243) doit être présente" in texts
    assert "[dansJeuDeValeurs]" in texts and "ZZZ" in texts
    assert len(report.failed_asserts) == 5
    assert all(a.location for a in report.failed_asserts)


def test_xsd_errors_are_reported(validator: CdaValidator) -> None:
    tree = _ans_tree()
    root = tree.getroot()
    etree.SubElement(root.find("h:recordTarget", HL7), "{urn:hl7-org:v3}unexpected")
    root.find("h:effectiveTime", HL7).set("value", "hier")
    report = validator.validate(etree.tostring(tree))
    assert not report.ok
    assert len(report.xsd_errors) == 2
    assert any("unexpected" in e.message for e in report.xsd_errors)


def test_not_a_cda_gives_xsd_errors_not_a_pass(validator: CdaValidator) -> None:
    report = validator.validate(b"<note>bonjour</note>")
    assert not report.ok and report.xsd_errors


def test_doctype_is_refused(validator: CdaValidator) -> None:
    evil = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    with pytest.raises(NegativeAnswer, match="DOCTYPE"):
        validator.validate(evil)


def test_no_saxon_is_an_error_never_a_pass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "saxonche", None)  # import saxonche → ImportError
    fresh = CdaValidator(cache_dir=tmp_path)
    with pytest.raises(SchematronUnavailable, match="SaxonC-HE") as info:
        fresh.validate(ANS_EXAMPLE.read_bytes())
    assert info.value.exit_code == 3


def test_engine_producing_nothing_is_an_error(
    validator: CdaValidator, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_svrl = '<svrl:schematron-output xmlns:svrl="http://purl.oclc.org/dsdl/svrl"/>'
    monkeypatch.setattr(CdaValidator, "_run", lambda self, executable, doc: empty_svrl)
    with pytest.raises(SchematronUnavailable, match="aucune règle"):
        validator.validate(ANS_EXAMPLE.read_bytes())


def test_compiled_schematron_is_reused(tmp_path: Path) -> None:
    first = CdaValidator(cache_dir=tmp_path).load()
    assert first.compiled_path is not None
    stamp = first.compiled_path.stat().st_mtime_ns
    second = CdaValidator(cache_dir=tmp_path).load()
    assert second.compiled_path == first.compiled_path
    assert second.compiled_path.stat().st_mtime_ns == stamp


# --- documents built from plain data ------------------------------------------------------------

T0 = dt.datetime(2025, 3, 14, 7, 35, tzinfo=UTC)
T1 = dt.datetime(2025, 3, 14, 16, 5, tzinfo=UTC)

LAB = CdaLab(
    organization=Organization(
        name="Laboratoire des Tilleuls",
        id_extension="1750012345",
        telecom="tel:0144556677",
        address=Address(street="12 rue des Tilleuls", postal_code="75015", city="PARIS"),
        accreditation="8-1234",
    ),
    biologist=Practitioner(
        family="DURAND",
        given="Sophie",
        id_extension="810001234567",
        telecom="tel:0144556677",
        address=Address(street="12 rue des Tilleuls", postal_code="75015", city="PARIS"),
    ),
    local_id_root="1.2.250.1.999.1.1",
    local_code_system="1.2.250.1.999.1.2",
)


def _nia() -> str:
    number = "7850675999123"
    return number + compute_key(number)


PATIENT_NIR = CdaPatient(
    ins=PatientIns("279035121518989", OID_INS_NIR_TEST),
    birth_name="PAT-TROIS",
    first_names=("DOMINIQUE", "MARIE-LOUISE"),
    sex="F",
    birth_date=dt.date(1979, 3, 28),
    birthplace="51215",
    birthplace_name="DOMPREMY",
    used_name="MARTIN",
    used_first_name="DOMINIQUE",
    local_id="IPP000123",
)
PATIENT_NIA = CdaPatient(
    ins=PatientIns(_nia(), OID_INS_NIA),
    birth_name="N'DIAYE",
    first_names=("AMINATA",),
    sex="F",
    birth_date=dt.date(1985, 6, 1),
    birthplace="99341",
)


def _obs(loinc: str, label: str, value: Any, chapter: str, **kw: Any) -> CdaObservation:
    return CdaObservation(loinc=loinc, display_name=label, value=value, chapter=chapter, **kw)


def report_biochemistry_hematology() -> CdaReport:
    glucose = _obs(
        "40193-5",
        "Glucose à jeun [Moles/Volume] Sérum/Plasma ; Numérique",
        parse_value("NM", "4,89", "mmol/L"),
        "Biochimie",
        interpretation=interpretation_code("N"),
        reference_range=parse_reference_range("3,89-6,00", "mmol/L"),
        local_code="GLY",
        local_label="Glycémie à jeun",
        observed_at=T1,
        comments=("Prélèvement à jeun confirmé.",),
    )
    glucose_gl = _obs(
        "2345-7",
        "Glucose [Masse/Volume] Sérum/Plasma ; Numérique",
        parse_value("NM", "0.88", "g/L"),
        "Biochimie",
        interpretation="N",
        reference_range=parse_reference_range("(0,70 - 1,08)", "g/L"),
    )
    crp = _obs(
        "1988-5",
        "Protéine C réactive [Masse/Volume] Sérum/Plasma ; Numérique",
        parse_value("NM", "<0,5", "mg/L"),
        "Biochimie",
        interpretation="<",
        reference_range=parse_reference_range("< 5"),
    )
    alt = _obs(
        "1742-6",
        "Alanine aminotransférase [Activité catalytique/Volume] Sérum/Plasma ; Numérique",
        parse_value("NM", "58", "U/L"),
        "Biochimie",
        interpretation="H",
        reference_range=parse_reference_range("> 5"),
    )
    wbc = _obs(
        "6690-2",
        "Leucocytes [Nombre/Volume] Sang ; Numérique",
        parse_value("NM", "12,3", "10*9/L"),
        "Hématologie",
        interpretation="HH",
        reference_range=parse_reference_range("4,0 - 10,0", "10*9/L"),
    )
    hct = _obs(
        "4544-3",
        "Hématocrite [Fraction volumique] Sang ; Numérique",
        parse_value("NM", "31", "%"),
        "Hématologie",
        interpretation="L",
        reference_range=parse_reference_range("37-47", "%"),
    )
    aspect = _obs(
        "5767-9",
        "Aspect [Type] Urine ; Nominal",
        parse_value("ST", "Trouble, présence d'œufs ≤ 3", None),
        "Urines",
        reference_range=parse_reference_range("limpide"),
        interpretation="A",
    )
    return CdaReport(
        set_id=str(uuid.UUID(int=1)),
        version=1,
        patient=PATIENT_NIR,
        lab=LAB,
        requests=(
            CdaRequest(
                label="Bilan glucidique et hépatique",
                specimen="Sérum",
                collected_at=T0,
                received_at=T0 + dt.timedelta(hours=1),
                placer_id="DEM-2025-001",
                observations=(glucose, glucose_gl, crp, alt),
            ),
            CdaRequest(label="Hémogramme", specimen="Sang", collected_at=T0, observations=(wbc, hct)),
            CdaRequest(label="Examen des urines", specimen="urines", collected_at=T0, observations=(aspect,)),
        ),
        created_at=T1,
        validated_at=T1,
        comments=("Résultats vérifiés par le biologiste.",),
        report_id=42,
    )


def report_nia_microbiology() -> CdaReport:
    culture = _obs(
        "630-4",
        "Bactéries identifiées [Présence] Urine ; Nominal",
        Coded("264395009", "2.16.840.1.113883.6.96", "Microorganisme"),
        "Microbiologie",
        interpretation="POS",
        comments=("Escherichia coli > 10^5 UFC/mL", "Antibiogramme à suivre"),
    )
    serology = _obs(
        "5196-1",
        "Virus de l'hépatite B antigène de surface [Présence] Sérum ; Qualitatif",
        parse_value("CE", "NEG^Négatif^L", None),
        "Sérologie infectieuse",
        interpretation="NEG",
    )
    ratio = _obs(
        "34714-6",
        "INR Sang ; Numérique",
        parse_value("NM", "2.4", None),
        "Hémostase",
        reference_range=parse_reference_range("2 à 3"),
    )
    pending = _obs(
        "2160-0", "Créatinine [Masse/Volume] Sérum/Plasma ; Numérique", None, "Chimie", status="aborted"
    )
    odd = _obs("14749-6", "Glucose [Moles/Volume] Sérum/Plasma", Text("hémolysé"), "Chapitre inconnu")
    interval = _obs(
        "2093-3", "Cholestérol [Masse/Volume] Sérum/Plasma", parse_value("SN", "1.5-2", "g/L"), "Biochimie"
    )
    return CdaReport(
        set_id=str(uuid.UUID(int=2)),
        version=3,
        patient=PATIENT_NIA,
        lab=lab_from_settings({}),
        requests=(
            CdaRequest(label="ECBU", specimen="prélèvement urinaire sur sonde", observations=(culture,)),
            CdaRequest(
                label="Sérologies", collected_at=T0, observations=(serology, ratio, pending, odd, interval)
            ),
        ),
        created_at=T1,
    )


def report_single_result_nir() -> CdaReport:
    matricule = "185067511234592"[:13]
    return CdaReport(
        set_id=str(uuid.uuid4()),
        version=1,
        patient=CdaPatient(
            ins=PatientIns(matricule + compute_key(matricule), OID_INS_NIR),
            birth_name="DUPONT",
            first_names=("JEAN", "PIERRE", "MARIE"),
            sex="M",
            birth_date=dt.date(1985, 6, 1),
            birthplace="75112",
        ),
        lab=LAB,
        requests=(
            CdaRequest(
                label="TSH",
                specimen="plasma",
                collected_at=T0,
                observations=(
                    _obs(
                        "3016-3",
                        "Thyréostimuline [Unités arbitraires/Volume] Sérum/Plasma ; Numérique",
                        QuantityRange("10", None, "m[IU]/L", inclusive=True),
                        "Endocrinologie",
                        interpretation=">",
                        reference_range=parse_reference_range("0,4-4"),
                    ),
                ),
            ),
        ),
        created_at=T1,
    )


GENERATED = {
    "biochemistry_hematology": report_biochemistry_hematology,
    "nia_microbiology": report_nia_microbiology,
    "single_result_nir": report_single_result_nir,
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_documents_conform(validator: CdaValidator, name: str) -> None:
    _assert_conforms(validator, build_cda(GENERATED[name]()))


def test_header_carries_ins_traits_set_and_version() -> None:
    report = report_biochemistry_hematology()
    doc = etree.fromstring(build_cda(report))
    roots = [t.get("root") for t in doc.findall("h:templateId", HL7)]
    assert roots == [
        "2.16.840.1.113883.2.8.2.1",
        "1.2.250.1.213.1.1.1.1",
        "1.3.6.1.4.1.19376.1.3.3",
        "1.2.250.1.213.1.1.1.55",
    ]
    assert doc.find("h:templateId[@root='1.2.250.1.213.1.1.1.55']", HL7).get("extension") == "2024.01"
    assert doc.find("h:code", HL7).get("code") == "11502-2"
    assert doc.find("h:setId", HL7).get("root") == f"2.25.{uuid.UUID(report.set_id).int}"
    assert doc.find("h:versionNumber", HL7).get("value") == "1"
    ins = doc.find("h:recordTarget/h:patientRole/h:id", HL7)
    assert (ins.get("root"), ins.get("extension")) == (OID_INS_NIR_TEST, "279035121518989")
    assert len(ins.get("extension")) == 15
    name = doc.find("h:recordTarget/h:patientRole/h:patient/h:name", HL7)
    assert name.find("h:family[@qualifier='BR']", HL7).text == "PAT-TROIS"
    assert [g.text for g in name.findall("h:given", HL7) if g.get("qualifier") is None] == [
        "DOMINIQUE MARIE-LOUISE"
    ]
    assert name.find("h:given[@qualifier='BR']", HL7).text == "DOMINIQUE"
    assert name.find("h:family[@qualifier='CL']", HL7).text == "MARTIN"
    patient = doc.find("h:recordTarget/h:patientRole/h:patient", HL7)
    assert patient.find("h:birthTime", HL7).get("value") == "19790328"
    assert patient.find("h:administrativeGenderCode", HL7).get("code") == "F"
    assert patient.find("h:birthplace/h:place/h:addr/h:county", HL7).text == "51215"


def test_body_chapters_entries_units_interpretation_and_ranges() -> None:
    doc = etree.fromstring(build_cda(report_biochemistry_hematology()))
    chapters = doc.xpath(
        "//h:structuredBody/h:component/h:section[h:templateId/@root='1.2.250.1.213.1.1.2.70']",
        namespaces=HL7,
    )
    assert [c.find("h:code", HL7).get("code") for c in chapters] == ["18719-5", "18723-7", "18729-4"]
    subs = chapters[0].xpath(
        "h:component/h:section[h:templateId/@root='1.2.250.1.213.1.1.2.71']", namespaces=HL7
    )
    assert len(subs) == 1 and subs[0].find("h:title", HL7).text == "Bilan glucidique et hépatique"
    observations = doc.xpath("//h:observation[h:templateId/@root='1.2.250.1.213.1.1.3.80']", namespaces=HL7)
    assert len(observations) == 7
    by_code = {o.find("h:code", HL7).get("code"): o for o in observations}
    glucose = by_code["40193-5"]
    value = glucose.find("h:value", HL7)
    assert (value.get(XSI_TYPE), value.get("value"), value.get("unit")) == (
        "PQ",
        "4.89",
        "mmol/L",
    )
    assert glucose.find("h:code/h:translation", HL7).get("code") == "GLY"
    rng = glucose.find("h:referenceRange/h:observationRange/h:value", HL7)
    assert (rng.find("h:low", HL7).get("value"), rng.find("h:high", HL7).get("value")) == ("3.89", "6.00")
    assert by_code["6690-2"].find("h:value", HL7).get("unit") == "10*9/L"
    assert by_code["6690-2"].find("h:interpretationCode", HL7).get("code") == "HH"
    crp = by_code["1988-5"].find("h:value", HL7)
    assert crp.get(XSI_TYPE) == "IVL_PQ"
    assert (
        crp.find("h:high", HL7).get("value") == "0.5" and crp.find("h:high", HL7).get("inclusive") == "false"
    )
    text = by_code["5767-9"].find("h:value", HL7)
    assert text.get(XSI_TYPE) == "ST" and "œufs" in text.text
    specimen = doc.xpath("//h:procedure[h:templateId/@root='1.3.6.1.4.1.19376.1.3.1.2']", namespaces=HL7)
    assert [s.find(".//h:playingEntity/h:code", HL7).get("code") for s in specimen] == ["SER", "BLD", "UR"]


def test_version_above_one_replaces_the_previous_document() -> None:
    doc = etree.fromstring(build_cda(report_nia_microbiology()))
    related = doc.find("h:relatedDocument", HL7)
    assert related.get("typeCode") == "RPLC"
    assert related.find("h:parentDocument/h:id", HL7).get("root") != doc.find("h:id", HL7).get("root")
    assert doc.find("h:recordTarget/h:patientRole/h:id", HL7).get("root") == OID_INS_NIA


def _embedded_pdf(xml: bytes) -> bytes:
    doc = etree.fromstring(xml)
    section = doc.xpath("//h:section[h:templateId/@root='1.2.250.1.213.1.1.2.243']", namespaces=HL7)
    assert len(section) == 1
    value = section[0].find(".//h:observationMedia/h:value", HL7)
    assert (value.get("mediaType"), value.get("representation")) == ("application/pdf", "B64")
    return base64.b64decode(value.text, validate=True)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_pdf_copy_has_ins_in_clear_and_datamatrix_on_page_one(name: str) -> None:
    import pypdf

    report = GENERATED[name]()
    pdf = _embedded_pdf(build_cda(report))
    assert pdf.startswith(b"%PDF")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    page = reader.pages[0]
    text = page.extract_text()
    m = report.patient.ins.matricule
    assert " ".join((m[0], m[1:3], m[3:5], m[5:7], m[7:10], m[10:13], m[13:15])) in text
    assert report.patient.ins.oid in text
    assert report.patient.birth_name in text
    for obs in report.observations:
        assert obs.loinc in "".join(p.extract_text() for p in reader.pages)
    images = page.images
    assert len(images) == 1
    decoded = datamatrix.read_image(images[0].image)
    assert len(decoded) == 1
    content = datamatrix.parse(decoded[0])
    assert content.matricule == m
    assert content.oid == report.patient.ins.oid
    assert content.birth_name == report.patient.birth_name
    assert content.first_names == report.patient.first_names


def test_pdf_is_deterministic() -> None:
    report = report_biochemistry_hematology()
    assert render_report_pdf(report) == render_report_pdf(report)


def test_invalid_report_view_is_refused() -> None:
    report = report_single_result_nir()
    bad = CdaReport(
        set_id=report.set_id,
        version=1,
        patient=report.patient,
        lab=report.lab,
        requests=(
            CdaRequest(label="X", observations=(_obs("2345-8", "Glucose", Quantity("1"), "Biochimie"),)),
        ),
        created_at=T1,
    )
    with pytest.raises(NegativeAnswer, match="LOINC"):
        build_cda(bad)


def test_value_and_range_parsing() -> None:
    assert parse_value("NM", "4,89", "mmol/L") == Quantity("4.89", "mmol/L")
    assert parse_value("NM", "12", None) == Quantity("12", "1")
    assert parse_value("SN", ">= 90", "mL/min") == QuantityRange("90", None, "mL/min", True)
    assert parse_value("NM", "hémolysé", "g/L") == Text("hémolysé")
    assert parse_value("SN", "=12.5", "g/L") == Quantity("12.5", "g/L")
    assert parse_value("SN", "10-20", "U/L") == QuantityRange("10", "20", "U/L", True)
    assert parse_value("SN", "<0.5", "mg/L") == QuantityRange(None, "0.5", "mg/L", False)
    assert parse_value("SN", "1:64", None) == Text("1:64")
    assert parse_value("CE", "260373001^Détecté^SCT", None) == Coded(
        "260373001", "2.16.840.1.113883.6.96", "Détecté"
    )
    assert parse_value("TX", "  ", None) is None
    rr = parse_reference_range("3,89 - 6,00 mmol/L")
    assert rr is not None and (rr.low, rr.high) == ("3.89", "6.00")
    rr = parse_reference_range("< 5")
    assert rr is not None and (rr.low, rr.high) == (None, "5")
    rr = parse_reference_range("négatif")
    assert rr is not None and rr.text == "négatif" and rr.low is None
    assert interpretation_code("h") == "H" and interpretation_code("?") is None
    assert interpretation_code("?,HH,A") == "HH"
    assert chapter_for("Biochimie").code == "18719-5"
    assert chapter_for("Hématologie").code == "18723-7"
    assert chapter_for("Immuno-hématologie").code == "18717-9"
    assert chapter_for(None).code == "26436-6"


# --- from the database, the outbox, the commands -----------------------------------------------

ACTOR = Actor("bio1", Role.BIOLOGIST)
PASSWORD = "biolog-secret-1"


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Database]:
    database = Database(sqlite_url)
    with database.transaction() as session:
        add_user(session, login="admin", role=Role.ADMIN, password="admin-secret-1", actor=None)
        add_user(
            session, login="bio1", role=Role.BIOLOGIST, password=PASSWORD, actor=Actor("admin", Role.ADMIN)
        )
        add_user(
            session,
            login="accueil1",
            role=Role.RECEPTION,
            password=PASSWORD,
            actor=Actor("admin", Role.ADMIN),
        )
        version = LoincVersion(version="test 2.80", rows=4, active=True)
        session.add(version)
        session.flush()
        for code, label, prop, chapter in (
            ("40193-5", "Glucose à jeun [Moles/Volume] Sérum/Plasma ; Numérique", "SCnc", "Biochimie"),
            ("6690-2", "Leucocytes [Nombre/Volume] Sang ; Numérique", "NCnc", "Hématologie"),
            (
                "1742-6",
                "Alanine aminotransférase [Activité catalytique/Volume] Sérum/Plasma",
                "CCnc",
                "Biochimie",
            ),
            ("5767-9", "Aspect [Type] Urine ; Nominal", "Type", "Urines"),
        ):
            session.add(
                LoincCode(
                    code=code, label_fr=label, property=prop, chapter=chapter, version_id=version.id or 0
                )
            )
        for local, label, unit, loinc in (
            ("GLY", "Glycémie à jeun", "mmol/L", "40193-5"),
            ("GB", "Leucocytes", "G/L", "6690-2"),
            ("ALAT", "ALAT", "UI/L", "1742-6"),
            ("ASP", "Aspect des urines", None, "5767-9"),
        ):
            session.add(CatalogEntry(local_code=local, label=label, unit=unit, loinc=loinc))
    yield database
    database.dispose()


def _identity(session: Any, *, nia: bool = False, status: Status = Status.QUAL) -> int:
    matricule = _nia() if nia else "279035121518989"
    identity = Identity(
        birth_name="N'DIAYE" if nia else "PAT-TROIS",
        first_names="AMINATA" if nia else "DOMINIQUE MARIE-LOUISE",
        first_name="AMINATA" if nia else "DOMINIQUE",
        sex="F",
        birth_date=dt.date(1985, 6, 1) if nia else dt.date(1979, 3, 28),
        birthplace="99341" if nia else "51215",
        local_id="IPP-NIA" if nia else "IPP-NIR",
        status=status,
        ins_matricule=matricule[:13] if status == Status.QUAL else None,
        ins_key=matricule[13:] if status == Status.QUAL else None,
        ins_oid=(OID_INS_NIA if nia else OID_INS_NIR_TEST) if status == Status.QUAL else None,
    )
    session.add(identity)
    session.flush()
    return int(identity.id or 0)


def _seed_report(
    db: Database, key: str, *, status: ReportStatus = ReportStatus.READY, nia: bool = False
) -> int:
    with db.transaction() as session:
        identity_id = _identity(
            session, nia=nia, status=Status.QUAL if status != ReportStatus.BLOCKED else Status.PROV
        )
        report = LabReport(
            source_key=key,
            format=ReportFormat.HL7,
            patient_local_ids=["IPP-NIA" if nia else "IPP-NIR"],
            identity_id=identity_id,
            status=status,
            reasons=[]
            if status != ReportStatus.BLOCKED
            else [{"code": "INS_NOT_QUALIFIED", "observation": None, "message": "identité provisoire"}],
            verdict_at=T1,
        )
        session.add(report)
        session.flush()
        rid = int(report.id or 0)
        bio = LabRequest(report_id=rid, seq=1, code="BIO", label="Biochimie", specimen="SER", collected_at=T0)
        nfs = LabRequest(
            report_id=rid, seq=2, code="NFS", label="Numération formule", specimen="sang", collected_at=T0
        )
        session.add_all([bio, nfs])
        session.flush()
        rows = [
            (bio, "GLY", "Glycémie", "NM", "5,2", "mmol/l", "3,89-6,00", "N", []),
            (bio, "ALAT", "ALAT", "NM", "58", "UI/L", "< 45", "H", ["Contrôle à prévoir"]),
            (nfs, "GB", "Leucocytes", "NM", "12,3", "G/L", "4-10", "H", []),
            (nfs, "ASP", "Aspect", "ST", "limpide", None, None, None, []),
        ]
        for seq, (req, local, label, vt, value, unit, rr, flag, comments) in enumerate(rows, start=1):
            session.add(
                Observation(
                    report_id=rid,
                    request_id=req.id,
                    seq=seq,
                    local_code=local,
                    label=label,
                    coding_system="L",
                    value_type=vt,
                    value=value,
                    unit=unit,
                    reference_range=rr,
                    abnormal_flag=flag,
                    result_status="F",
                    comments=comments,
                    observed_at=T1,
                )
            )
    return rid


@pytest.mark.parametrize("nia", [False, True], ids=["ins_nir", "ins_nia"])
def test_cda_from_database_conforms(db: Database, validator: CdaValidator, nia: bool) -> None:
    rid = _seed_report(db, f"LAB|MSG{int(nia)}", nia=nia)
    with db.session() as session:
        view = cda_report_from_db(session, rid, now=T1)
    assert view.patient.ins.oid == (OID_INS_NIA if nia else OID_INS_NIR_TEST)
    assert len(view.patient.ins.matricule) == 15
    units = {o.loinc: o.shown_unit for o in view.observations}
    assert units == {"40193-5": "mmol/L", "1742-6": "U/L", "6690-2": "10*9/L", "5767-9": ""}
    assert [c for o in view.observations for c in o.comments] == ["Contrôle à prévoir"]
    xml = build_cda(view)
    _assert_conforms(validator, xml)
    if not nia:
        assert b"<city>Dompremy</city>" in xml  # birthplace name from the COG


def test_blocked_report_is_refused(db: Database) -> None:
    rid = _seed_report(db, "LAB|BLOCKED", status=ReportStatus.BLOCKED)
    with db.session() as session, pytest.raises(NegativeAnswer, match="bloqué") as info:
        cda_report_from_db(session, rid)
    assert info.value.exit_code == 1
    assert "INS_NOT_QUALIFIED" in info.value.message
    with db.session() as session, pytest.raises(NotFound):
        cda_report_from_db(session, 9999)


def test_outbox_file_drop_marks_sent_and_audits(
    db: Database, validator: CdaValidator, tmp_path: Path
) -> None:
    ready = _seed_report(db, "LAB|R1")
    ready_nia = _seed_report(db, "LAB|R2", nia=True)
    blocked = _seed_report(db, "LAB|B1", status=ReportStatus.BLOCKED)
    outbox = tmp_path / "outbox"
    result = send_reports(db, actor=ACTOR, sender=FileDropSender(outbox), all_ready=True, validator=validator)
    assert result.sent == [ready, ready_nia]
    assert result.refused == []
    with db.session() as session:
        reports = {r.id: r for r in session.exec(select(LabReport)).all()}
        events = session.exec(select(AuditEvent).where(AuditEvent.kind == "report.sent")).all()
    files = sorted(p.name for p in outbox.iterdir())
    assert files == sorted(f"{reports[i].set_id}_1.xml" for i in (ready, ready_nia))
    for rid in (ready, ready_nia):
        assert reports[rid].status == ReportStatus.SENT and reports[rid].sent_at is not None
        _assert_conforms(validator, (outbox / f"{reports[rid].set_id}_1.xml").read_bytes())
    assert reports[blocked].status == ReportStatus.BLOCKED
    assert sorted(e.details["report_id"] for e in events) == [ready, ready_nia]
    assert all(e.actor == "bio1" and e.details["sender"] == "file" for e in events)

    again = send_reports(
        db, actor=ACTOR, sender=FileDropSender(outbox), report_ids=[ready, blocked, 9999], validator=validator
    )
    assert again.sent == []
    assert [r["id"] for r in again.refused] == [ready, blocked, 9999]
    assert "déjà envoyé" in again.refused[0]["reason"]
    assert "bloqué" in again.refused[1]["reason"]


def test_outbox_stub_and_failures(db: Database, validator: CdaValidator) -> None:
    rid = _seed_report(db, "LAB|S1")
    with pytest.raises(ExternalFailure):
        send_reports(db, actor=ACTOR, sender=StubSender(fail=True), report_ids=[rid], validator=validator)
    with pytest.raises(ExternalFailure, match="non disponible"):
        send_reports(
            db, actor=ACTOR, sender=XdsSender("https://dmp.example"), report_ids=[rid], validator=validator
        )
    with db.session() as session:
        assert session.get(LabReport, rid).status == ReportStatus.READY  # nothing half-done
    stub = StubSender()
    result = send_reports(db, actor=ACTOR, sender=stub, report_ids=[rid], validator=validator)
    assert result.sent == [rid]
    assert len(stub.sent) == 1 and stub.sent[0].xml.startswith(b"<?xml")
    assert stub.sent[0].patient_ins == "279035121518989"


def test_outbox_requires_the_results_right(db: Database, validator: CdaValidator) -> None:
    from services.errors import PermissionDenied

    rid = _seed_report(db, "LAB|P1")
    with pytest.raises(PermissionDenied):
        send_reports(
            db,
            actor=Actor("accueil1", Role.RECEPTION),
            sender=StubSender(),
            report_ids=[rid],
            validator=validator,
        )


def _cli(
    db: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, Any]]:
    from tui.cli import main

    monkeypatch.setenv("INSDESK_PASSWORD", PASSWORD)
    monkeypatch.delenv("INSDESK_USER", raising=False)
    capsys.readouterr()
    code = main(["--db", db.url, "--as", "bio1", *args, "--json"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return code, json.loads(lines[0])


def test_cli_results_cda_and_send(
    db: Database,
    validator: CdaValidator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(validate_mod, "_DEFAULT", validator)
    ready = _seed_report(db, "LAB|C1")
    blocked = _seed_report(db, "LAB|C2", status=ReportStatus.BLOCKED)
    out = tmp_path / "cr.xml"
    code, payload = _cli(db, monkeypatch, capsys, "results", "cda", str(ready), "--out", str(out))
    assert (code, payload) == (0, {"path": str(out)})
    _assert_conforms(validator, out.read_bytes())
    code, payload = _cli(
        db, monkeypatch, capsys, "results", "cda", str(blocked), "--out", str(tmp_path / "b.xml")
    )
    assert code == 1 and payload["error"]["code"] == "report_blocked"
    assert not (tmp_path / "b.xml").exists()

    outbox = tmp_path / "outbox"
    code, payload = _cli(
        db, monkeypatch, capsys, "results", "send", str(ready), str(blocked), "--outbox", str(outbox)
    )
    assert code == 1
    assert payload["sent"] == [ready]
    assert [r["id"] for r in payload["refused"]] == [blocked]
    assert len(list(outbox.glob("*_1.xml"))) == 1
    code, payload = _cli(db, monkeypatch, capsys, "results", "send", "--all-ready", "--outbox", str(outbox))
    assert (code, payload) == (0, {"sent": [], "refused": []})
    code, payload = _cli(db, monkeypatch, capsys, "results", "send", "--outbox", str(outbox))
    assert code == 2 and payload["error"]["code"] == "usage"


# --- end to end: real result files through import, gate, CDA -----------------------------------

RESULTS = ROOT / "fixtures" / "results"


def test_imported_reports_make_conforming_cda(
    sqlite_url: str, validator: CdaValidator, tmp_path: Path
) -> None:
    """ORU^R01 of fixtures/results (value set and catalogue imported, CRP given its unit, the
    uncoded conclusion left out), two QUAL patients (INS-NIR and INS-NIA): both reports pass the
    gate, and their CDA passes the XSD and the CR-BIO schematron."""
    from services.desk.catalog import import_catalog
    from services.desk.loinc import import_value_set
    from services.desk.results import import_results_file

    db = Database(sqlite_url)
    admin = Actor("admin", Role.ADMIN)
    nia = "8620369123004"
    with db.transaction() as session:
        add_user(session, login="admin", role=Role.ADMIN, password="admin-secret-1", actor=None)
        session.add_all(
            [
                Identity(
                    birth_name="MARTIN",
                    first_names="CLAIRE ANNE",
                    first_name="CLAIRE",
                    sex="F",
                    birth_date=dt.date(1985, 6, 21),
                    birthplace="75115",
                    local_id="IPP-1001",
                    status=Status.QUAL,
                    ins_matricule="2850675112345",
                    ins_key="92",
                    ins_oid=OID_INS_NIR,
                ),
                Identity(
                    birth_name="DURAND",
                    first_names="PIERRE LOUIS",
                    first_name="PIERRE",
                    sex="M",
                    birth_date=dt.date(1962, 3, 7),
                    birthplace="69123",
                    local_id="IPP-1002",
                    status=Status.QUAL,
                    ins_matricule=nia,
                    ins_key=compute_key(nia),
                    ins_oid=OID_INS_NIA,
                ),
            ]
        )
    import_value_set(db, actor=admin, path=RESULTS / "jdv_loinc_extrait_tests.csv")
    import_catalog(db, actor=admin, path=RESULTS / "catalogue_biomed.csv")
    raw = (RESULTS / "oru_labo_a_biomed.hl7").read_bytes()
    segments = [s for s in raw.split(b"\r") if not s.startswith(b"OBX|3|TX|CONCL")]
    fixed = b"\r".join(segments).replace(b"|3.1||<5|", b"|3.1|mg/L|<5|")
    path = tmp_path / "oru.hl7"
    path.write_bytes(fixed)
    result = import_results_file(db, actor=admin, path=path)
    assert (result.reports, result.ready, result.blocked) == (2, 2, 0), result.as_dict()
    with db.session() as session:
        views = [cda_report_from_db(session, rid) for rid in result.report_ids]
    assert sum(len(v.observations) for v in views) == result.observations
    assert {v.patient.ins.oid for v in views} == {OID_INS_NIR, OID_INS_NIA}
    for view in views:
        xml = build_cda(view)
        _assert_conforms(validator, xml)
        assert view.patient.ins.matricule.encode() in xml


def test_units_shown_to_people_in_the_pdf() -> None:
    from services.results.cda.pdf import display_unit

    assert display_unit("10*9/L") == "10^9/L"
    assert display_unit("umol/L") == "µmol/L"
    assert display_unit("mmol/L") == "mmol/L"

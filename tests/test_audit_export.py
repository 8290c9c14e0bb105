"""``insdesk audit export`` / ``audit dashboard`` and the export services (issue #7)."""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pypdf
import pytest

from services.audit.log import AUDIT_EXPORTED, list_events, verify_database
from services.errors import BadRequest, PermissionDenied
from services.storage.db import Database
from services.storage.models import Role
from services.supervision import export as ex
from services.supervision.log_filter import PARIS, REVIEW_KINDS
from services.users import Actor
from tests.test_cli import Cli, cli, create  # noqa: F401  (cli is a fixture)
from tests.test_identity_service import SUPERVISOR

ADMIN = Actor("admin", Role.ADMIN)


def paris_today() -> str:
    return datetime.now(PARIS).date().isoformat()


def seeded(cli: Cli) -> list[int]:  # noqa: F811
    ids = [create(cli, name=name) for name in ("MARTIN", "DURAND", "PETIT")]
    code, _, _ = cli("identity", "proof", str(ids[0]), "--document", "passeport", user="accueil1")
    assert code == 0
    code, _, _ = cli("identity", "flag", str(ids[1]), "--set", "homonyme", user="accueil1")
    assert code == 0
    return ids


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_export_rows_header_audited_chain_ok(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    ids = seeded(cli)
    out = tmp_path / "journal.csv"
    day = paris_today()
    code, payload, _ = cli(
        "audit",
        "export",
        "--format",
        "csv",
        "--out",
        str(out),
        "--from",
        day,
        "--to",
        day,
        user="superviseur1",
    )
    assert code == 0, payload
    assert set(payload) == {"path", "events"}
    assert Path(payload["path"]) == out.resolve()
    rows = read_csv(out)
    with out.open(encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    assert header[:6] == ["id", "time", "agent", "kind", "identity", "details"] or {
        "id",
        "time",
        "agent",
        "kind",
        "identity",
        "details",
    } <= set(header)
    assert payload["events"] == len(rows)
    db = Database(cli.db_url)
    try:
        with db.session() as s:
            expected = [e for e in list_events(s, tz=PARIS) if e.kind in REVIEW_KINDS]
            exported = list_events(s, kind=AUDIT_EXPORTED)
        assert [int(r["id"]) for r in rows] == [e.id for e in expected]
        assert {int(r["identity"]) for r in rows} == set(ids)
        assert {r["kind"] for r in rows} >= {
            "identity.created",
            "identity.proof_added",
            "identity.status_changed",
            "identity.flag_set",
        }
        assert all(r["agent"] == "accueil1" for r in rows)
        first = next(r for r in rows if r["kind"] == "identity.created")
        assert json.loads(first["details"])["traits"]["birth_name"] == "MARTIN"
        assert first["hash"] == expected[0].hash
        # The export is audited with the filter, format and the number of rows written.
        assert len(exported) == 1
        ev = exported[0]
        assert ev.actor == "superviseur1"
        assert ev.details["format"] == "csv" and ev.details["events"] == len(rows)
        assert ev.details["filter"] == {"from": day, "to": day, "agent": None}
        assert verify_database(db).ok
    finally:
        db.dispose()
    code, verify, _ = cli("audit", "verify", user="superviseur1")
    assert code == 0 and verify["ok"] is True


def test_export_filters_dates_and_agent(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    seeded(cli)
    out = tmp_path / "x.csv"
    yesterday = (datetime.now(PARIS).date() - timedelta(days=1)).isoformat()
    code, payload, _ = cli(
        "audit", "export", "--format", "csv", "--out", str(out), "--to", yesterday, user="admin"
    )
    assert (code, payload["events"]) == (0, 0)
    assert read_csv(out) == [] and out.read_text(encoding="utf-8").startswith("id,time,agent,kind,identity")
    code, payload, _ = cli(
        "audit",
        "export",
        "--format",
        "csv",
        "--out",
        str(out),
        "--agent",
        "superviseur1",
        "--force",
        user="admin",
    )
    assert (code, payload["events"]) == (0, 0)
    code, payload, _ = cli(
        "audit",
        "export",
        "--format",
        "csv",
        "--out",
        str(out),
        "--agent",
        "accueil1",
        "--force",
        user="admin",
    )
    assert code == 0 and payload["events"] == len(read_csv(out)) > 0
    # Exports themselves and user events are not part of the identity-verification log.
    assert not {r["kind"] for r in read_csv(out)} & {"audit.exported", "user.added"}


def test_pdf_export_prints_anchor_and_chain_status(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    seeded(cli)
    out = tmp_path / "journal.pdf"
    code, payload, _ = cli("audit", "export", "--format", "pdf", "--out", str(out), user="superviseur1")
    assert code == 0 and payload["events"] > 0
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    db = Database(cli.db_url)
    try:
        with db.session() as s:
            (event,) = list_events(s, kind=AUDIT_EXPORTED)
    finally:
        db.dispose()
    anchor = event.details["anchor"]
    assert event.details["format"] == "pdf" and event.details["chain_ok"] is True
    assert event.details["events"] == payload["events"]
    assert f"audit-anchor {anchor['last_id']} {anchor['last_hash']}".encode() in data


def test_export_rights_and_bad_input(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    seeded(cli)
    out = tmp_path / "x.csv"
    for user in ("accueil1", "bio1"):
        code, payload, _ = cli("audit", "export", "--format", "csv", "--out", str(out), user=user)
        assert code == 4, payload
    assert not out.exists()
    code, payload, _ = cli(
        "audit", "export", "--format", "csv", "--out", str(out), "--from", "2024-13-01", user="superviseur1"
    )
    assert code == 1 and payload["errors"][0]["field"] == "from"
    code, payload, _ = cli(
        "audit",
        "export",
        "--format",
        "csv",
        "--out",
        str(out),
        "--from",
        "2024-02-02",
        "--to",
        "2024-02-01",
        user="superviseur1",
    )
    assert code == 2
    code, payload, _ = cli("audit", "export", "--format", "xls", "--out", str(out), user="superviseur1")
    assert code == 2
    code, payload, _ = cli(
        "audit", "export", "--format", "csv", "--out", str(tmp_path / "nope" / "x.csv"), user="superviseur1"
    )
    assert code == 2
    assert not out.exists()


def test_dashboard_export_cli_and_service(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    seeded(cli)
    out = tmp_path / "tableau.csv"
    code, payload, _ = cli("audit", "dashboard", "--format", "csv", "--out", str(out), user="superviseur1")
    assert code == 0, payload
    rows = read_csv(out)
    assert payload["rows"] == len(rows) > 0
    assert {r["section"] for r in rows} >= {"qualification_rate", "agent", "channel", "blocked_reports"}
    today = paris_today()
    ident = [r for r in rows if r["section"] == "qualification_rate" and r["key"] == today]
    assert {r["metric"]: r["value"] for r in ident}["identities"] == "3"
    pdf = tmp_path / "tableau.pdf"
    code, payload, _ = cli(
        "audit", "dashboard", "--format", "pdf", "--out", str(pdf), "--by", "week", user="admin"
    )
    assert code == 0 and pdf.read_bytes().startswith(b"%PDF")
    text = "".join(page.extract_text() for page in pypdf.PdfReader(pdf).pages)
    assert re.search(r"Depuis le \d\d/\d\d/\d{4}, par semaine", text), text  # dates read in French
    assert "\nsaisie manuelle 3 0 0,0 %" in text  # the channel in words, as on the screen
    assert re.search(r"\n\d\d/\d\d/\d{4} 3 \d", text) and not re.search(r"\d{4}-\d\d-\d\d", text), text
    code, _, _ = cli("audit", "dashboard", "--format", "pdf", "--out", str(pdf), user="accueil1")
    assert code == 4
    db = Database(cli.db_url)
    try:
        with db.session() as s:
            exported = list_events(s, kind=AUDIT_EXPORTED)
        assert [e.details["what"] for e in exported] == ["dashboard", "dashboard"]
        assert verify_database(db).ok
    finally:
        db.dispose()


def test_service_refuses_without_right_and_unaudited_export_leaves_no_file(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(sqlite_url, anchor_path=tmp_path / "a.json")
    try:
        with pytest.raises(PermissionDenied):
            ex.export_log(db, actor=Actor("x", Role.RECEPTION), fmt="csv", out=tmp_path / "a.csv")
        with pytest.raises(BadRequest):
            ex.export_log(db, actor=SUPERVISOR, fmt="xml", out=tmp_path / "a.csv")  # type: ignore[arg-type]

        def boom(*a: object, **k: object) -> None:
            raise RuntimeError("audit failed")

        monkeypatch.setattr(ex, "append_event", boom)
        with pytest.raises(RuntimeError):
            ex.export_log(db, actor=ADMIN, fmt="csv", out=tmp_path / "b.csv")
        assert not (tmp_path / "b.csv").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.csv")] == []
    finally:
        db.dispose()


def test_export_streams_in_batches_on_both_engines(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.desk import identities as desk_identities
    from tests.test_identity_service import RECEPTION, make_traits

    monkeypatch.setattr(ex, "_BATCH", 2)
    db = Database(db_url, anchor_path=tmp_path / "a.json")
    try:
        for name in ("AA", "BB", "CC", "DD", "EE"):
            with db.transaction() as s:
                desk_identities.create_identity(s, actor=RECEPTION, traits=make_traits(birth_name=name))
        result = ex.export_log(db, actor=SUPERVISOR, fmt="csv", out=tmp_path / "x.csv")
        rows = read_csv(tmp_path / "x.csv")
        assert result.events == len(rows) == 5
        assert [r["patient"] for r in rows] == [
            "AA CLAIRE",
            "BB CLAIRE",
            "CC CLAIRE",
            "DD CLAIRE",
            "EE CLAIRE",
        ]
        pdf = ex.export_log(db, actor=SUPERVISOR, fmt="pdf", out=tmp_path / "x.pdf", agent="accueil1")
        assert pdf.events == 5 and pdf.chain is not None and pdf.chain.ok
        assert verify_database(db).ok
    finally:
        db.dispose()


# --- where an export may be written (issue #12, item 2) -----------------------------------------------
# On main, `audit export --out` replaced whatever the path named with exit 0: the database itself
# (then "file is not a database"), its anchor, a FIFO, a device node as root.


def _db_file(cli: Cli) -> Path:  # noqa: F811
    return Path(cli.db_url.removeprefix("sqlite:///"))


def _exported_count(cli: Cli) -> int:  # noqa: F811
    db = Database(cli.db_url)
    try:
        with db.session() as s:
            return len(list_events(s, kind=AUDIT_EXPORTED))
    finally:
        db.dispose()


@pytest.mark.parametrize("command", ["export", "dashboard"])
@pytest.mark.parametrize("target", ["database", "wal", "shm", "anchor", "symlink_to_database"])
def test_export_never_replaces_the_database_or_its_anchor(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
    command: str,
    target: str,
) -> None:
    seeded(cli)
    database = _db_file(cli)
    paths = {
        "database": database,
        "wal": database.with_name(database.name + "-wal"),
        "shm": database.with_name(database.name + "-shm"),
        "anchor": database.with_name(database.name + ".anchor"),
        "symlink_to_database": tmp_path / "lien.csv",
    }
    paths["symlink_to_database"].symlink_to(database)
    out = paths[target]
    exports = _exported_count(cli)
    for extra in ((), ("--force",)):
        code, payload, err = cli(
            "audit", command, "--format", "csv", "--out", str(out), *extra, user="superviseur1"
        )
        assert code == 2, payload
        assert payload["error"]["code"] == "protected_path"
        assert "jamais" in payload["error"]["message"] and "Traceback" not in err
    assert _exported_count(cli) == exports
    assert database.read_bytes().startswith(b"SQLite format 3\x00")
    assert paths["symlink_to_database"].is_symlink()
    code, verify, _ = cli("audit", "verify", user="superviseur1")
    assert code == 0 and verify["ok"] is True  # still a database, and its anchor still matches it


def test_export_never_writes_into_a_fifo_or_a_device(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    import os
    import stat

    seeded(cli)
    tmp_path = tmp_path / "exports"
    tmp_path.mkdir()
    fifo = tmp_path / "tube.csv"
    os.mkfifo(fifo)
    for out in (fifo, Path("/dev/null")):
        for extra in ((), ("--force",)):
            code, payload, _ = cli(
                "audit", "export", "--format", "csv", "--out", str(out), *extra, user="superviseur1"
            )
            assert code == 2 and payload["error"]["code"] == "not_a_regular_file", payload
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tube.csv"]  # no temporary file left


@pytest.mark.parametrize("out", ["", "   ", "dossier", "dossier/", "a\0b.csv"])
def test_export_refuses_a_directory_an_empty_name_or_a_nul(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    out: str,
) -> None:
    seeded(cli)
    tmp_path = tmp_path / "exports"
    (tmp_path / "dossier").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    exports = _exported_count(cli)
    code, payload, err = cli("audit", "export", "--format", "pdf", "--out", out, user="superviseur1")
    assert code == 2, payload
    assert payload["error"]["code"] == "bad_path" and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dossier"]
    assert list((tmp_path / "dossier").iterdir()) == []
    assert _exported_count(cli) == exports


def test_an_existing_file_is_replaced_only_with_force(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    seeded(cli)
    tmp_path = tmp_path / "exports"
    tmp_path.mkdir()
    out = tmp_path / "journal.csv"
    out.write_text("mes notes\n", encoding="utf-8")
    code, payload, _ = cli("audit", "export", "--format", "csv", "--out", str(out), user="superviseur1")
    assert (
        code == 2 and payload["error"]["code"] == "file_exists" and "--force" in payload["error"]["message"]
    )
    assert out.read_text(encoding="utf-8") == "mes notes\n"
    code, payload, _ = cli(
        "audit", "export", "--format", "csv", "--out", str(out), "--force", user="superviseur1"
    )
    assert code == 0 and payload["events"] == len(read_csv(out)) > 0
    assert out.stat().st_mode & 0o777 == 0o600  # health data: private to the user
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.csv"]


def test_excel_fr_dialect_on_the_command_line(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    seeded(cli)
    out = tmp_path / "journal.csv"
    code, payload, _ = cli(
        "audit", "export", "--format", "csv", "--out", str(out), "--dialect", "excel-fr", user="superviseur1"
    )
    assert code == 0
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: French Excel reads the accents right
    text = raw.decode("utf-8-sig")
    rows = list(csv.reader(text.splitlines(), delimiter=";"))
    assert rows[0] == list(ex.CSV_COLUMNS_FR)
    assert len(rows) - 1 == payload["events"]
    first = rows[1]
    assert first[3] == "Création" and first[5].startswith("MARTIN")
    assert datetime.strptime(first[1], "%d/%m/%Y %H:%M:%S")  # « 06/12/2026 14:05:03 »
    dash = tmp_path / "tableau.csv"
    code, payload, _ = cli(
        "audit",
        "dashboard",
        "--format",
        "csv",
        "--out",
        str(dash),
        "--dialect",
        "excel-fr",
        user="superviseur1",
    )
    assert code == 0
    rows = list(csv.reader(dash.read_text(encoding="utf-8-sig").splitlines(), delimiter=";"))
    assert rows[0] == ["Rubrique", "Clé", "Indicateur", "Valeur"]
    taux = [r for r in rows if r[0] == "Taux de qualification" and r[2] == "taux"]
    assert taux and all("," in r[3] and "." not in r[3] for r in taux)  # decimal comma
    assert all(datetime.strptime(r[1], "%d/%m/%Y") for r in taux)
    code, payload, _ = cli(
        "audit", "export", "--format", "csv", "--out", str(out), "--dialect", "xls", user="superviseur1"
    )
    assert code == 2


def test_dashboard_pdf_names_the_blocking_reasons_in_french(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    """The « Motifs » column reads as the F8 list does (« INS non qualifiée 1 »), not raw codes."""
    from tests.results_support import LAB_A, import_path, load_reference_data

    db = Database(cli.db_url)
    try:
        load_reference_data(db)
        import_path(db, LAB_A)  # no identity carries the lab's local ids: both reports unmatched
    finally:
        db.dispose()
    pdf = tmp_path / "tableau.pdf"
    code, payload, _ = cli("audit", "dashboard", "--format", "pdf", "--out", str(pdf), user="superviseur1")
    assert code == 0, payload
    text = "".join(page.extract_text() for page in pypdf.PdfReader(pdf).pages)
    assert "patient non rapproché 2" in text, text
    assert "PATIENT_UNMATCHED" not in text and "_" not in text.split("Motifs", 1)[1], text

"""``insdesk doctor`` (docs/cli.md, doctor): what this installation would use and whether it answers,
each part missing or failing in turn — the database, INSi (endpoint, certificate subject and expiry
with a warning 30 days before, a connection test over mutual TLS), the card reader (real pcscd +
vpcd), the audit chain, the outbox — exit 0 when everything configured answers, 3 otherwise; no
patient data in the answer."""

from __future__ import annotations

import datetime
import io
import ipaddress
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fixtures.demo import DEMO_PATIENTS, seed_demo
from services.insi_sim import InsiSimulator
from services.storage.db import Database
from tests.rig.pcsc import PcscRig
from tui.cli import main

SECTIONS = {"database", "insi", "reader", "audit", "outbox"}
ADMIN_PASSWORD = "admin-demo"


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:  # type: ignore[override]
    """A demo database (users, patients, audit events): the answer must name none of its patients."""
    url = f"sqlite:///{tmp_path / 'desk.db'}"
    db = Database(url)
    seed_demo(db)
    db.dispose()
    yield url


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("INSDESK_"):
            monkeypatch.delenv(key)
    outbox = tmp_path / "outbox"
    monkeypatch.setenv("INSDESK_OUTBOX", str(outbox))
    return outbox


def doctor(capsys: pytest.CaptureFixture[str], db_url: str, *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["--db", db_url, "doctor", *args, "--json"])
    out = capsys.readouterr().out
    payload = json.loads(out)
    assert set(payload) >= SECTIONS, payload.keys()
    for surname, first, *_rest in DEMO_PATIENTS:
        assert surname not in out and first.split()[0] not in out, "no patient data"
    return code, payload


def config_set(monkeypatch: pytest.MonkeyPatch, db_url: str, *assignments: str) -> None:
    monkeypatch.setenv("INSDESK_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["--db", db_url, "--as", "admin", "config", "set", *assignments, "--json"]) == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a small PKI: the INSi server, the establishment's certificate ----------------------------------


class Pki:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_key, self.ca_cert = self.issue("CA DOCTOR", None, ca=True, days=365)
        self.ca = self.write("ca", self.ca_key, self.ca_cert)[0]
        key, cert = self.issue("127.0.0.1", self, server=True, days=365)
        self.server_cert, self.server_key = self.write("server", key, cert)

    def issue(
        self, cn: str, issuer: Pki | None, *, days: int, ca: bool = False, server: bool = False
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        start = now - datetime.timedelta(days=400 if days < 0 else 1)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LABO DOCTOR"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.ca_cert.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return key, builder.sign(issuer.ca_key if issuer else key, hashes.SHA256())

    def write(self, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
        cert_path, key_path = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path

    def client(self, days: int) -> tuple[Path, Path]:
        key, cert = self.issue("INSI-AUTO", self, days=days)
        return self.write(f"client-{days}", key, cert)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("doctor-pki"))


@pytest.fixture(scope="module")
def tls_sim(pki: Pki) -> Iterator[InsiSimulator]:
    with InsiSimulator(tls_cert=pki.server_cert, tls_key=pki.server_key, client_ca=pki.ca) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[InsiSimulator]:
    with InsiSimulator() as simulator:
        yield simulator


def _https_settings(
    monkeypatch: pytest.MonkeyPatch, db_url: str, sim: InsiSimulator, pki: Pki, days: int
) -> None:
    cert, key = pki.client(days)
    config_set(
        monkeypatch,
        db_url,
        f"insi.endpoint={sim.url}",
        "insi.idam=IDAM-TEST-DOCTOR",
        f"insi.cert_file={cert}",
        f"insi.key_file={key}",
        f"insi.verify={pki.ca}",
    )


# --- everything answers -------------------------------------------------------------------------------


def test_everything_configured_answers(
    db_url: str,
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tls_sim: InsiSimulator,
    pki: Pki,
    pcsc_rig: PcscRig,
) -> None:
    _https_settings(monkeypatch, db_url, tls_sim, pki, days=200)
    config_set(monkeypatch, db_url, "desk.reader=00 00")
    tls_sim.clear_requests()
    code, out = doctor(capsys, db_url)
    assert code == 0, json.dumps(out, ensure_ascii=False, indent=1)
    assert out["ok"] is True
    database = out["database"]
    assert database["status"] == "ok" and database["schema"] == database["schema_expected"]
    insi = out["insi"]
    assert insi["status"] in ("ok", "warning") and insi["endpoint"] == tls_sim.url
    assert insi["connection"]["ok"] is True and insi["connection"]["http_status"] == 405
    cert = insi["certificate"]
    assert "CN=INSI-AUTO" in cert["subject"] and "O=LABO DOCTOR" in cert["subject"]
    assert 198 <= cert["days_left"] <= 200 and cert["expires"] > datetime.date.today().isoformat()
    assert [r.method for r in tls_sim.requests] == ["GET"], "a connection test, never a search"
    reader = out["reader"]
    assert reader["status"] == "ok" and reader["service"] == "pcscd"
    assert [r["name"] for r in reader["readers"]] == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
    assert out["audit"]["status"] == "ok" and out["audit"]["events"] > 10
    assert out["outbox"] == {**out["outbox"], "status": "ok", "kind": "file", "folder": str(env)}
    assert out["lab"]["status"] == "warning"  # demo values in the CDA until cda.* are set
    assert "passeport" in out["documents"]["types"]

    # The same for people: French, one line per part.
    capsys.readouterr()
    assert main(["--db", db_url, "doctor"]) == 0
    text = capsys.readouterr().out
    assert (
        "Base de données" in text
        and "Téléservice INSi" in text
        and "Tout ce qui est configuré répond" in text
    )


def test_certificate_expiring_within_30_days_is_a_warning(
    db_url: str,
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tls_sim: InsiSimulator,
    pki: Pki,
) -> None:
    _https_settings(monkeypatch, db_url, tls_sim, pki, days=12)
    code, out = doctor(capsys, db_url, "--reader", "aucun")
    assert code == 0
    insi = out["insi"]
    assert insi["status"] == "warning" and insi["connection"]["ok"] is True
    assert "expire le" in insi["message"] and "renouvellement" in insi["message"]
    assert 10 <= insi["certificate"]["days_left"] <= 12


def test_expired_certificate_fails_before_any_connection(
    db_url: str,
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tls_sim: InsiSimulator,
    pki: Pki,
) -> None:
    _https_settings(monkeypatch, db_url, tls_sim, pki, days=-3)
    tls_sim.clear_requests()
    code, out = doctor(capsys, db_url, "--reader", "aucun")
    assert code == 3 and out["ok"] is False
    assert out["insi"]["status"] == "failed" and "a expiré" in out["insi"]["message"]
    assert out["insi"]["connection"] is None and tls_sim.requests == []


def test_certificate_the_server_refuses(
    db_url: str,
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tls_sim: InsiSimulator,
    pki: Pki,
    tmp_path: Path,
) -> None:
    """The connection test is a real mutual-TLS handshake: a certificate from another authority is
    refused by the server, and doctor says so."""
    other = Pki(tmp_path)
    cert, key = other.client(200)
    config_set(
        monkeypatch,
        db_url,
        f"insi.endpoint={tls_sim.url}",
        "insi.idam=IDAM-TEST",
        f"insi.cert_file={cert}",
        f"insi.key_file={key}",
        f"insi.verify={pki.ca}",
    )
    code, out = doctor(capsys, db_url, "--reader", "aucun")
    assert code == 3
    insi = out["insi"]
    assert insi["status"] == "failed" and insi["connection"]["ok"] is False
    assert "certificat" in insi["message"].lower()


def test_certificate_file_missing(
    db_url: str,
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tls_sim: InsiSimulator,
) -> None:
    config_set(
        monkeypatch,
        db_url,
        f"insi.endpoint={tls_sim.url}",
        "insi.idam=IDAM-TEST",
        "insi.cert_file=/nowhere/insi.crt",
        "insi.key_file=/nowhere/insi.key",
    )
    code, out = doctor(capsys, db_url, "--reader", "aucun")
    assert code == 3 and out["insi"]["status"] == "failed" and "/nowhere/insi.crt" in out["insi"]["message"]


# --- each part missing or failing ---------------------------------------------------------------------


def test_insi_not_configured_is_not_a_failure(
    db_url: str, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = doctor(capsys, db_url, "--reader", "aucun")
    assert code == 0
    assert out["insi"]["status"] == "not_configured" and out["insi"]["ok"] is None
    assert out["reader"]["status"] == "not_configured"


def test_insi_not_answering(
    db_url: str, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSDESK_INSI_URL", f"http://127.0.0.1:{_closed_port()}/lps")
    code, out = doctor(capsys, db_url, "--reader", "sim")
    assert code == 3
    insi = out["insi"]
    assert (
        insi["status"] == "failed" and insi["source"] == "environment" and insi["connection"]["ok"] is False
    )
    assert "injoignable" in insi["message"]
    assert out["reader"]["status"] == "ok"  # the demo's simulated reader


def test_insi_simulator_answers(
    db_url: str, env: Path, capsys: pytest.CaptureFixture[str], sim: InsiSimulator
) -> None:
    code, out = doctor(capsys, db_url, "--reader", "aucun", "--insi-url", sim.url)
    assert code == 0 and out["insi"]["label"] == "simulateur" and out["insi"]["connection"]["ok"] is True


def test_named_reader_absent(
    db_url: str, env: Path, capsys: pytest.CaptureFixture[str], pcsc_rig: PcscRig
) -> None:
    code, out = doctor(capsys, db_url, "--reader", "Gemalto")
    assert code == 3
    assert out["reader"]["status"] == "failed" and "Gemalto" in out["reader"]["message"]
    assert "Virtual PCD 00 00" in out["reader"]["message"]


def test_pcscd_absent(db_url: str, tmp_path: Path) -> None:
    """A process whose libpcsclite finds no pcscd socket (the "pcscd not running" case)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSDESK_")}
    env.update(
        PCSCLITE_CSOCK_NAME=str(tmp_path / "no-pcscd" / "pcscd.comm"), INSDESK_OUTBOX=str(tmp_path / "o")
    )
    run = subprocess.run(
        [str(Path(sys.executable).with_name("insdesk")), "--db", db_url, "doctor", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 3, run.stderr
    reader = json.loads(run.stdout)["reader"]
    assert reader["status"] == "failed" and reader["service"] == "absent"
    assert "lancez pcscd" in reader["message"]
    assert "Traceback" not in run.stderr


def test_database_unreachable(env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"postgresql+psycopg://insdesk:secret-pw@127.0.0.1:{_closed_port()}/insdesk?connect_timeout=3"
    capsys.readouterr()
    code = main(["--db", url, "doctor", "--reader", "aucun", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 3
    assert out["database"]["status"] == "failed" and "secret-pw" not in json.dumps(out)
    assert out["database"]["url"].startswith("postgresql+psycopg://insdesk@127.0.0.1:")
    assert out["audit"]["status"] == "not_checked" and out["documents"]["status"] == "not_checked"


def test_broken_audit_chain(db_url: str, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("update audit_event set actor = 'quelqu-un' where id = 3"))
    engine.dispose()
    code, out = doctor(capsys, db_url, "--reader", "aucun")
    assert code == 3
    assert out["audit"]["status"] == "failed" and out["audit"]["first_bad"] == 3


def test_outbox_not_writable(
    db_url: str,
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("INSDESK_OUTBOX", str(blocker / "outbox"))
    code, out = doctor(capsys, db_url, "--reader", "aucun")
    assert code == 3
    assert out["outbox"]["status"] == "failed" and out["outbox"]["writable"] is False


def test_no_user_needed_and_a_missing_sqlite_file_is_not_created(
    env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nothing-yet.db"
    capsys.readouterr()
    code = main(["--db", f"sqlite:///{missing}", "doctor", "--reader", "aucun", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["database"]["status"] == "warning" and "sera créée" in out["database"]["message"]
    assert not missing.exists()

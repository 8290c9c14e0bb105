# ruff: noqa: E501  (tracebacks quoted as they are printed)
"""The application log (issue #12, item 7): configured for the CLI and the TUI, a rotating file in the
state directory, redacted (no NIR, no traits, no SQL parameters, no XML); an unexpected error prints
a French message with a short error id and the log path, its traceback goes to the log only; no
English line on stderr (logging's "last resort" handler never runs)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.insi_sim import InsiSimulator
from services.logsafe import (
    DATE_MASK,
    MASK,
    PARAMETERS_MASK,
    VALUE_MASK,
    XML_MASK,
    configure_file_logging,
    configure_logging,
    current_log,
    redact,
    redact_message,
    redact_traceback,
)

INSDESK = Path(sys.executable).with_name("insdesk")
ERROR_ID = re.compile(r"E-[0-9A-F]{8}")
PASSWORD = "admin-secret-1"


def test_redact_masks_nir_with_and_without_key_and_spaces() -> None:
    assert redact("nir=180032B02040123 ok") == f"nir={MASK} ok"
    assert redact("2 85 06 75 112 345 92") == MASK
    assert redact("matricule 1600120777000") == f"matricule {MASK}"
    assert redact("IPP-000123 le 2024-01-02") == "IPP-000123 le 2024-01-02"


def test_log_file_never_contains_a_nir(tmp_path: Path) -> None:
    handler = configure_file_logging(tmp_path / "app.log")
    try:
        log = logging.getLogger("insdesk.test")
        log.info("INSi answered %s for %s", "160012B02077713", "ADRTROIS")
        try:
            raise ValueError("bad 160012B020777")
        except ValueError:
            log.exception("failure")
    finally:
        logging.getLogger("insdesk").removeHandler(handler)
        handler.close()
    text = (tmp_path / "app.log").read_text()
    assert "160012B020777" not in text
    assert "ADRTROIS" in text  # what the application writes itself is chosen; only NIRs are masked
    assert text.count(MASK) >= 2


# --- what a traceback of this application can carry -------------------------------------------------

SQLALCHEMY_TRACEBACK = """Traceback (most recent call last):
  File "/app/services/identity/service.py", line 310, in create_identity
    session.flush()
sqlalchemy.exc.IntegrityError: (psycopg.errors.CheckViolation) new row for relation "identity" violates check constraint "c"
DETAIL:  Failing row contains (7, IPP-77, 1, PROV, f, f, f, MARTINEZ, CLAIRE ANNE, CLAIRE, F, 1985-06-21, f, 75115).
[SQL: INSERT INTO identity (local_id, birth_name, birth_date) VALUES (%(local_id)s, %(birth_name)s, %(birth_date)s)]
[parameters: {'local_id': 'IPP-77', 'birth_name': 'MARTINEZ', 'birth_date': datetime.date(1985, 6, 21)}]
(Background on this error at: https://sqlalche.me/e/20/gkpj)"""

XML_TRACEBACK = """Traceback (most recent call last):
  File "/app/services/insi/parse.py", line 88, in parse_xml
    root = etree.fromstring(body, parser)
lxml.etree.XMLSyntaxError: bad answer <soap:Envelope><NomNaissance>MARTINEZ</NomNaissance><DateNaissance>1985-06-21</DateNaissance>
  <Prenom>CLAIRE</Prenom></soap:Envelope>"""

REPR_TRACEBACK = """Traceback (most recent call last):
  File "/app/tui/screens/home.py", line 12, in _open
    row = rows["MARTINEZ"]
          ~~~~^^^^^^^^^^^^
KeyError: 'MARTINEZ'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/tui/screens/home.py", line 14, in _open
    raise ValueError(f"no row for {name!r} born {born}")
ValueError: no row for « MARTINEZ » born 21/06/1985, 19850621, matricule 2850675115001"""


def test_traceback_sql_parameters_and_database_details_are_removed() -> None:
    text = redact_traceback(SQLALCHEMY_TRACEBACK)
    for secret in ("MARTINEZ", "CLAIRE", "1985", "IPP-77", "75115"):
        assert secret not in text, (secret, text)
    assert PARAMETERS_MASK in text and "DETAIL:" in text
    # What a developer needs stays: files, lines, code, the exception type, the statement.
    assert 'File "/app/services/identity/service.py", line 310, in create_identity' in text
    assert "    session.flush()" in text
    assert "sqlalchemy.exc.IntegrityError:" in text and "[SQL: INSERT INTO identity" in text


def test_traceback_xml_quoted_values_and_dates_are_masked() -> None:
    text = redact_traceback(XML_TRACEBACK)
    assert "MARTINEZ" not in text and "CLAIRE" not in text and "1985" not in text
    assert XML_MASK in text and "lxml.etree.XMLSyntaxError: bad answer" in text
    text = redact_traceback(REPR_TRACEBACK)
    assert "MARTINEZ" not in text.replace('rows["MARTINEZ"]', "")  # the code line is code, kept
    assert "KeyError: " + VALUE_MASK in text
    assert DATE_MASK in text and "21/06/1985" not in text and "19850621" not in text
    assert "2850675115001" not in text
    assert "During handling of the above exception, another exception occurred:" in text


def test_messages_lose_xml_and_parameters_but_keep_words() -> None:
    message = redact_message("INSi answer <NomNaissance>MARTINEZ</NomNaissance> [parameters: ('X',)]")
    assert "MARTINEZ" not in message and XML_MASK in message and PARAMETERS_MASK in message
    assert redact_message("results inbox: lot-12.hl7 imported (3 reports)") == (
        "results inbox: lot-12.hl7 imported (3 reports)"
    )


def test_configure_logging_rotating_file_in_the_state_directory(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("INSDESK_LOG_DIR", raising=False)
    root = logging.getLogger()
    before = list(root.handlers)
    setup = configure_logging(hooks=False)
    try:
        assert setup.path == tmp_path / "state" / "insdesk" / "log" / "insdesk.log"
        assert current_log() == setup
        handler = next(h for h in root.handlers if h not in before)
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        assert handler.maxBytes > 0 and handler.backupCount > 0
        assert (setup.path.stat().st_mode & 0o077) == 0, "the log is private to its user"
        name = "MARTINEZ"
        try:
            raise KeyError(name)
        except KeyError:
            logging.getLogger("services.anything").exception("boom 180032B02040123")
        text = setup.path.read_text()
        assert "boom" in text and MASK in text and "Traceback" in text
        assert "MARTINEZ" not in text and "180032B02040123" not in text
        again = configure_logging(hooks=False)  # idempotent: one handler of ours
        assert len([h for h in root.handlers if h not in before]) == 1 and again.path == setup.path
    finally:
        for h in [h for h in root.handlers if h not in before]:
            root.removeHandler(h)
            h.close()


# --- the installed entry point: an unexpected error on PostgreSQL, an INSi fault ---------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSDESK_")}
    env.update(
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        LANG="C.UTF-8",
        COLUMNS="200",
        **extra,
    )
    return env


def _run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSDESK), *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )


def _log_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "insdesk" / "log" / "insdesk.log"


@pytest.mark.postgres
def test_unexpected_database_error_french_message_with_id_traceback_only_in_the_redacted_log(
    pg_url: str, tmp_path: Path
) -> None:
    """A PostgreSQL error carries the patient's traits twice (SQLAlchemy's parameters, the server's
    « Failing row contains (…) »): none of it reaches the terminal or the log."""
    env = _env(tmp_path, INSDESK_PASSWORD=PASSWORD)
    run = _run(env, "--db", pg_url, "users", "add", "admin", "--role", "admin", stdin=PASSWORD + "\n")
    assert run.returncode == 0, run.stderr
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:  # a constraint the application does not expect: an "unexpected" error
        conn.execute(sa.text("ALTER TABLE identity ADD CONSTRAINT c CHECK (birth_name <> 'MARTINEZ')"))
    engine.dispose()
    run = _run(
        env,
        "--db", pg_url, "--as", "admin", "identity", "create", "--birth-name", "MARTINEZ",
        "--first-names", "CLAIRE ANNE", "--sex", "F", "--birth-date", "1985-06-21",
        "--birthplace", "75115", "--local-id", "IPP-77",
    )  # fmt: skip
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and "Error" not in run.stderr
    for secret in ("MARTINEZ", "CLAIRE", "1985", "IPP-77"):
        assert secret not in run.stderr and secret not in run.stdout, secret
    assert "Erreur inattendue" in run.stderr
    ids = ERROR_ID.findall(run.stderr)
    assert ids, run.stderr
    log = _log_file(tmp_path)
    assert str(log) in run.stderr.replace("\n", "")
    text = log.read_text(encoding="utf-8")
    assert ids[0] in text and "Traceback (most recent call last)" in text and "IntegrityError" in text
    for secret in ("MARTINEZ", "CLAIRE", "1985-06-21", "IPP-77", "Failing row contains ("):
        assert secret not in text, secret

    # The same for the JSON form: one object, the id in its message.
    run = _run(
        env,
        "--db", pg_url, "--as", "admin", "identity", "create", "--birth-name", "MARTINEZ",
        "--first-names", "CLAIRE", "--sex", "F", "--birth-date", "1985-06-21", "--json",
    )  # fmt: skip
    error = json.loads(run.stdout)["error"]
    assert run.returncode == 1 and error["code"] == "internal_error" and ERROR_ID.search(error["message"])


@pytest.fixture
def failing_insi() -> Iterator[InsiSimulator]:
    with InsiSimulator(fault="unavailable") as simulator:
        yield simulator


def test_insi_fault_no_english_line_on_stderr(failing_insi: InsiSimulator, tmp_path: Path) -> None:
    """The INSi client logs its retries and failures (English, for the log): with the log configured
    they go to the file, never to the terminal (logging's last-resort handler)."""
    db = f"sqlite:///{tmp_path / 'x.db'}"
    env = _env(tmp_path, INSDESK_PASSWORD=PASSWORD, INSDESK_INSI_URL=failing_insi.url)
    assert (
        _run(env, "--db", db, "users", "add", "admin", "--role", "admin", stdin=PASSWORD + "\n").returncode
        == 0
    )
    run = _run(env, "--db", db, "--as", "admin", "config", "set", "insi.retry_backoff=0.05")
    assert run.returncode == 0, run.stderr
    run = _run(
        env,
        "--db", db, "--as", "admin", "insi", "search", "--birth-name", "ADRTROIS",
        "--first-names", "TOUSSAINT", "--sex", "M", "--birth-date", "1960-01-01",
    )  # fmt: skip
    assert run.returncode == 3
    assert "indisponible" in run.stderr
    for english in ("retrying", "failed", "attempt", "INSi rechercher"):
        assert english not in run.stderr, run.stderr
    text = _log_file(tmp_path).read_text(encoding="utf-8")
    assert "retrying" in text and "failed: siram_40/desir_1020" in text


def test_database_unreachable_is_a_french_external_failure(tmp_path: Path) -> None:
    """``insdesk`` (the desk) and a command on a PostgreSQL server that does not answer: exit 3 with a
    French message, the URL without its password, no traceback, no « Erreur inattendue »."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://desk:secret-pw@127.0.0.1:{port}/insdesk?connect_timeout=3"
    env = _env(tmp_path, INSDESK_PASSWORD=PASSWORD)
    for args in (["--db", url], ["--db", url, "--as", "admin", "stats"]):
        run = _run(env, *args)
        assert run.returncode == 3, (args, run.stderr)
        assert "Base de données injoignable" in run.stderr and "insdesk doctor" in run.stderr
        assert "secret-pw" not in run.stderr and "Traceback" not in run.stderr
        assert "Erreur inattendue" not in run.stderr

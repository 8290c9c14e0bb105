"""The command-line contract (docs/cli.md): names, options, JSON keys, exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tui.cli import main

PASSWORDS = {
    "admin": "admin-secret-1",
    "accueil1": "accueil-secret-1",
    "superviseur1": "superv-secret-1",
    "bio1": "biolog-secret-1",
}


class Cli:
    def __init__(
        self, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.db_url = db_url
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, user: str | None = None, stdin: str = "", password: str | None = None):
        argv = ["--db", self.db_url]
        if user:
            argv += ["--as", user]
            self.monkeypatch.setenv("INSDESK_PASSWORD", password if password is not None else PASSWORDS[user])
        else:
            self.monkeypatch.delenv("INSDESK_PASSWORD", raising=False)
        self.monkeypatch.delenv("INSDESK_USER", raising=False)
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        self.capsys.readouterr()
        code = main([*argv, *args, "--json"])
        out, err = self.capsys.readouterr()
        lines = [line for line in out.splitlines() if line.strip()]
        assert len(lines) == 1, f"--json must print exactly one JSON object, got {out!r} (stderr {err!r})"
        return code, json.loads(lines[0]), err


@pytest.fixture
def cli(sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    c = Cli(sqlite_url, capsys, monkeypatch)
    code, out, _ = c("users", "add", "admin", "--role", "admin", stdin=PASSWORDS["admin"] + "\n")
    assert (code, out) == (0, {"login": "admin", "role": "admin"})
    for login, role in (("accueil1", "reception"), ("superviseur1", "supervisor"), ("bio1", "biologist")):
        code, out, _ = c("users", "add", login, "--role", role, user="admin", stdin=PASSWORDS[login] + "\n")
        assert code == 0, out
    return c


def create(cli: Cli, *extra: str, name: str = "MARTIN", first: str = "CLAIRE ANNE") -> int:
    code, out, _ = cli(
        "identity",
        "create",
        "--birth-name",
        name,
        "--first-names",
        first,
        "--sex",
        "F",
        "--birth-date",
        "1985-06-21",
        "--birthplace",
        "75115",
        *extra,
        user="accueil1",
    )
    assert code == 0, out
    assert out["status"] == "PROV"
    return int(out["id"])


# --- nir check / traits check: no user, no database --------------------------------------------------


def test_nir_check_valid_corsica(cli: Cli) -> None:
    code, out, _ = cli("nir", "check", "1 80 03 2B 020 401 23")
    assert code == 0
    assert out == {"valid": True, "matricule": "180032B020401", "key": "23", "errors": []}


def test_nir_check_wrong_key_is_exit_1_with_errors(cli: Cli) -> None:
    code, out, _ = cli("nir", "check", "180032B02040124")
    assert code == 1
    assert out["valid"] is False and out["errors"] and out["key"] == "24"


def test_traits_check_refuses_ligature_naming_it(cli: Cli) -> None:
    """CNDA case "D’ÆION / CŒUR" is refused before any call, naming the characters."""
    code, out, _ = cli(
        "traits",
        "check",
        "--birth-name",
        "D’ÆION",
        "--first-names",
        "CŒUR",
        "--sex",
        "F",
        "--birth-date",
        "1990-01-01",
    )
    assert code == 1
    assert out["valid"] is False and out["normalized"] is None
    text = " ".join(e["message"] for e in out["errors"])
    assert "Æ" in text and "Œ" in text
    assert {e["field"] for e in out["errors"]} >= {"birth_name", "first_names"}


@pytest.mark.parametrize("value", ["\u0301\u0301", "A\u200b\u0301", "\u0301"])
def test_lone_combining_marks_are_a_validation_answer(cli: Cli, value: str) -> None:
    """Issue #12 item 5: ``\u0301\u0301`` was an internal error in ``traits check`` and
    ``identity create``; any Unicode now gets a validation answer (exit 1) and nothing is created."""
    traits = ["--first-names", value, "--sex", "M", "--birth-date", "1960-01-01"]
    code, out, err = cli("traits", "check", "--birth-name", value, *traits)
    assert code == 1 and "internal_error" not in json.dumps(out) and "Traceback" not in err
    assert {e["field"] for e in out["errors"]} == {"birth_name", "first_names"}
    assert all("U+" in e["message"] for e in out["errors"])
    code, out, err = cli("identity", "create", "--birth-name", value, *traits, user="accueil1")
    assert code == 1 and out["error"]["code"] == "invalid", out
    code, out, _ = cli("identity", "show", "1", user="accueil1")
    assert code == 1 and out["error"]["code"] == "identity_not_found"


def test_undecodable_argument_bytes_are_a_validation_answer(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates: still one JSON answer, in UTF-8."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui",
            "traits",
            "check",
            "--birth-name",
            b"\xff\xcc\x81",
            "--first-names",
            "A",
            "--sex",
            "M",
            "--birth-date",
            "1960-01-01",
            "--json",
        ],
        capture_output=True,
        env={**os.environ, "INSDESK_DB": f"sqlite:///{tmp_path / 'x.db'}", "PYTHONIOENCODING": "utf-8"},
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    out = json.loads(run.stdout.decode("utf-8"))
    assert out["valid"] is False and out["errors"][0]["field"] == "birth_name"


def test_traits_check_normalises_with_warnings_and_partial_date(cli: Cli) -> None:
    code, out, _ = cli(
        "traits",
        "check",
        "--birth-name",
        "d’arc",
        "--first-names",
        "jeanne marie",
        "--sex",
        "F",
        "--birth-date",
        "1960-05",
    )
    assert code == 0, out
    assert out["valid"] is True
    n = out["normalized"]
    assert (
        n["birth_name"] == "D'ARC" and n["first_names"] == ["JEANNE", "MARIE"] and n["first_name"] == "JEANNE"
    )
    assert n["birth_date"] == "1960-05-01" and n["birth_date_uncertain"] is True
    assert len(out["warnings"]) >= 2


def test_traits_check_bad_sex_is_negative_answer_not_usage(cli: Cli) -> None:
    code, out, _ = cli(
        "traits",
        "check",
        "--birth-name",
        "A",
        "--first-names",
        "B",
        "--sex",
        "X",
        "--birth-date",
        "2000-01-01",
    )
    assert code == 1 and any(e["field"] == "sex" for e in out["errors"])


def test_missing_option_is_usage_error_exit_2_in_french(cli: Cli) -> None:
    code, out, err = cli("traits", "check", "--birth-name", "A")
    assert code == 2
    assert out["error"]["code"] == "usage"
    assert "obligatoire" in out["error"]["message"]
    assert "obligatoire" in err


def test_unknown_option_is_usage_error(cli: Cli) -> None:
    code, out, _ = cli("nir", "check", "123", "--frobnicate")
    assert code == 2 and "inconnue" in out["error"]["message"]


# --- users and authentication --------------------------------------------------------------------------


def test_users_add_needs_admin_after_first_run(cli: Cli) -> None:
    code, out, _ = cli("users", "add", "intrus", "--role", "admin", stdin="whatever-123\n")
    assert code == 4
    code, out, _ = cli("users", "add", "x2", "--role", "admin", user="accueil1", stdin="whatever-123\n")
    assert code == 4 and out["error"]["code"] == "permission_denied"


def test_wrong_password_and_unknown_user_exit_4(cli: Cli) -> None:
    code, out, _ = cli("identity", "show", "1", user="accueil1", password="nope")
    assert code == 4
    cli.monkeypatch.setenv("INSDESK_PASSWORD", "x")
    code2, out2, _ = cli("identity", "show", "1", user="ghost", password="x")
    assert code2 == 4
    assert out["error"]["message"] == out2["error"]["message"], "unknown user and wrong password look alike"


# --- identities ------------------------------------------------------------------------------------------


def test_full_path_prov_vali_qual_and_show(cli: Cli) -> None:
    ident = create(cli, "--local-id", "IPP-42")
    code, out, _ = cli(
        "identity", "proof", str(ident), "--document", "passeport", "--expires", "2031-01-01", user="accueil1"
    )
    assert (code, out) == (0, {"id": ident, "status": "VALI"})
    code, view, _ = cli("identity", "show", str(ident), user="accueil1")
    assert code == 0
    assert view["id"] == ident and view["local_id"] == "IPP-42" and view["status"] == "VALI"
    assert view["flags"] == [] and view["ins"] is None and view["insi_calls"] == 0
    assert view["traits"]["birth_name"] == "MARTIN" and view["traits"]["first_names"] == ["CLAIRE", "ANNE"]
    assert len(view["proofs"]) == 1
    assert isinstance(view["version"], int)


def test_proof_with_carte_vitale_is_refused_exit_2(cli: Cli) -> None:
    ident = create(cli)
    code, out, _ = cli("identity", "proof", str(ident), "--document", "carte_vitale", user="accueil1")
    assert code == 2 and "carte Vitale" in out["error"]["message"]
    code, view, _ = cli("identity", "show", str(ident), user="accueil1")
    assert view["status"] == "PROV" and view["proofs"] == []


def test_proof_bad_expiry_date_is_exit_1(cli: Cli) -> None:
    ident = create(cli)
    code, out, _ = cli(
        "identity", "proof", str(ident), "--document", "cni", "--expires", "2031-13-45", user="accueil1"
    )
    assert code == 1 and out["errors"][0]["field"] == "expires"


def test_create_with_invalid_traits_is_exit_1_and_creates_nothing(cli: Cli) -> None:
    code, out, _ = cli(
        "identity",
        "create",
        "--birth-name",
        "CŒUR",
        "--first-names",
        "ANNE",
        "--sex",
        "F",
        "--birth-date",
        "1985-06-21",
        user="accueil1",
    )
    assert code == 1 and out["errors"]
    code, out, _ = cli("identity", "show", "1", user="accueil1")
    assert code == 1 and out["error"]["code"] == "identity_not_found"


def test_flags_unflag_rights_and_constraints(cli: Cli) -> None:
    ident = create(cli)
    cli("identity", "proof", str(ident), "--document", "cni", user="accueil1")
    code, out, _ = cli(
        "identity", "flag", str(ident), "--set", "douteuse", "--reason", "doute", user="accueil1"
    )
    assert code == 0 and out["status"] == "PROV" and out["flags"] == ["douteuse"]
    code, out, _ = cli("identity", "flag", str(ident), "--set", "fictive", user="accueil1")
    assert code == 2, "douteuse and fictive are never combined (EXI SI 09)"
    code, out, _ = cli(
        "identity", "unflag", str(ident), "--flag", "douteuse", "--reason", "levé", user="accueil1"
    )
    assert code == 4, "only a supervisor clears a flag"
    code, out, _ = cli(
        "identity", "unflag", str(ident), "--flag", "douteuse", "--reason", "levé", user="superviseur1"
    )
    assert code == 0 and out["flags"] == []


def test_unknown_flag_value_is_usage_error(cli: Cli) -> None:
    ident = create(cli)
    code, _, _ = cli("identity", "flag", str(ident), "--set", "bizarre", user="accueil1")
    assert code == 2


def test_edit_expect_version_conflict_exit_4(cli: Cli) -> None:
    ident = create(cli)
    _, view, _ = cli("identity", "show", str(ident), user="accueil1")
    version = view["version"]
    code, out, _ = cli(
        "identity",
        "edit",
        str(ident),
        "--expect-version",
        str(version),
        "--used-name",
        "DUPONT",
        user="accueil1",
    )
    assert code == 0 and out["version"] > version
    code, out, _ = cli(
        "identity",
        "edit",
        str(ident),
        "--expect-version",
        str(version),
        "--used-name",
        "DURAND",
        user="accueil1",
    )
    assert code == 4 and out["error"]["code"] == "concurrent_update"
    _, view, _ = cli("identity", "show", str(ident), user="accueil1")
    assert view.get("used_name", "DUPONT") == "DUPONT"


def test_dequalify_needs_supervisor(cli: Cli) -> None:
    ident = create(cli)
    cli("identity", "proof", str(ident), "--document", "cni", user="accueil1")
    code, _, _ = cli("identity", "dequalify", str(ident), "--reason", "erreur", user="accueil1")
    assert code == 4
    code, out, _ = cli("identity", "dequalify", str(ident), "--reason", "erreur", user="superviseur1")
    assert (code, out) == (0, {"id": ident, "status": "PROV"})


def test_biologist_reads_but_cannot_create(cli: Cli) -> None:
    ident = create(cli)
    code, _, _ = cli("identity", "show", str(ident), user="bio1")
    assert code == 0
    code, out, _ = cli(
        "identity",
        "create",
        "--birth-name",
        "A",
        "--first-names",
        "B",
        "--sex",
        "F",
        "--birth-date",
        "1985-06-21",
        user="bio1",
    )
    assert code == 4 and out["error"]["code"] == "permission_denied"


# --- audit -----------------------------------------------------------------------------------------------


def test_audit_verify_ok_then_tampered(cli: Cli) -> None:
    ident = create(cli)
    cli("identity", "proof", str(ident), "--document", "cni", user="accueil1")
    code, out, _ = cli("audit", "verify", user="superviseur1")
    assert code == 0 and out["ok"] is True and out["first_bad"] is None and out["events"] >= 4
    code, _, _ = cli("audit", "verify", user="accueil1")
    assert code == 4, "audit verify is a supervisor right"
    engine = sa.create_engine(cli.db_url)
    with engine.begin() as conn:
        target = conn.execute(
            sa.text("select id from audit_event where kind = 'identity.proof_added'")
        ).scalar_one()
        conn.execute(sa.text("update audit_event set actor = 'someone-else' where id = :i"), {"i": target})
    engine.dispose()
    code, out, _ = cli("audit", "verify", user="superviseur1")
    assert code == 1 and out["ok"] is False and out["first_bad"] == target


# --- the installed entry point ----------------------------------------------------------------------------


def test_console_script_runs_and_prints_one_json_object(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "insdesk"
    env = {**os.environ, "INSDESK_DB": f"sqlite:///{tmp_path / 'x.db'}"}
    run = subprocess.run(
        [str(exe), "nir", "check", "180032B02040123", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"valid": True, "matricule": "180032B020401", "key": "23", "errors": []}


def test_audit_verify_with_corrupt_anchor_is_broken_not_a_crash(cli: Cli) -> None:
    create(cli)
    anchor = Path(cli.db_url.removeprefix("sqlite:///") + ".anchor")
    assert anchor.exists(), "the anchor lives beside the SQLite file"
    anchor.write_text("{not json")
    code, out, _ = cli("audit", "verify", user="superviseur1")
    assert code == 1 and out["ok"] is False and "ancrage" in out["reason"]


def test_audit_verify_against_a_copied_anchor(cli: Cli, tmp_path: Path) -> None:
    """A copy of the anchor kept elsewhere still reveals removed last events."""
    create(cli)
    own = Path(cli.db_url.removeprefix("sqlite:///") + ".anchor")
    copy = tmp_path / "central.anchor"
    copy.write_bytes(own.read_bytes())
    code, out, _ = cli("audit", "verify", "--anchor", str(copy), user="superviseur1")
    assert code == 0 and out["ok"] is True
    engine = sa.create_engine(cli.db_url)
    with engine.begin() as conn:
        last = conn.execute(sa.text("select max(id) from audit_event")).scalar_one()
        anchored = json.loads(copy.read_text())["last_id"]
        assert anchored <= last
        conn.execute(sa.text("delete from audit_event where id >= :i"), {"i": anchored})
        conn.execute(
            sa.text(
                "update audit_head set last_id = :i - 1, last_hash = (select hash from audit_event "
                "where id = :i - 1) where id = 1"
            ),
            {"i": anchored},
        )
    engine.dispose()
    code, out, _ = cli("audit", "verify", "--anchor", str(copy), user="superviseur1")
    assert code == 1 and out["ok"] is False
    code, out, _ = cli("audit", "verify", "--anchor", str(tmp_path / "missing.anchor"), user="superviseur1")
    assert code == 1 and out["ok"] is False


def test_config_set_lab_identity_for_the_cda_audited_and_admin_only(cli: Cli) -> None:
    code, out, _ = cli("config", "set", "cda.lab_name=Labo Bio Centre", "insi.idam=IDAM-42", user="admin")
    assert code == 0, out
    assert out["cda"]["lab_name"] == "Labo Bio Centre" and out["insi"]["idam"] == "IDAM-42"
    code, out, _ = cli("config", "show", user="admin")
    assert out["cda"] == {"lab_name": "Labo Bio Centre"}
    code, out, _ = cli("config", "set", "cda.lab_name=", user="admin")
    assert code == 0 and "lab_name" not in out["cda"], "an empty value removes the setting"
    code, out, _ = cli("config", "set", "cda.nope=1", user="admin")
    assert code == 2 and out["error"]["code"] == "cda_setting_unknown"
    code, out, _ = cli("config", "set", "lab_name", user="admin")
    assert code == 2 and out["error"]["code"] == "usage"
    code, out, _ = cli("config", "set", "cda.lab_name=X", user="superviseur1")
    assert code == 4
    engine = sa.create_engine(cli.db_url)
    with engine.connect() as conn:
        changes = conn.execute(
            sa.text("select count(*) from audit_event where kind = 'config.changed'")
        ).scalar_one()
    engine.dispose()
    assert changes == 3, "two changes and one removal, each audited; refused ones leave nothing"

"""`insdesk` draws its login screen before its services exist (issue #17): they open in a worker
behind it. The agent can type at once (the password check waits for the database); a database
that cannot open ends the desk with the French message and exit code the command line gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.storage.db import Database
from tests.test_tui_support import demo_db, demo_template, login, settle
from tui.app import make_app
from tui.keymap import ENV_VAR
from tui.screens.login import LoginScreen

__all__ = ["demo_db", "demo_template"]  # fixtures


async def test_the_login_screen_is_up_before_the_services_and_login_waits_for_them(demo_db: Database) -> None:
    app = make_app(demo_db.url, lazy=True)
    assert not app.services_ready
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, LoginScreen)
        # Typed at once, the login goes through once the services are open (the worker waits).
        await login(pilot)
        for _ in range(400):
            if app.actor is not None:
                break
            await pilot.pause(0.05)
        assert app.services_ready
        assert app.actor is not None and app.actor.login == "accueil1"
        assert type(app.screen).__name__ == "HomeScreen"
    app.services.close()


async def test_a_database_that_cannot_open_ends_the_desk_with_its_exit_code() -> None:
    app = make_app("postgresql+psycopg://insdesk@127.0.0.1:9/nowhere", lazy=True)
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, LoginScreen)
        for _ in range(400):
            if app.open_error is not None:
                break
            await pilot.pause(0.05)
        await settle(pilot)
    assert app.open_error is not None
    assert app.open_error.code == "database_unavailable" and app.open_error.exit_code == 3
    assert "Base de données injoignable" in app.open_error.message
    assert app.return_code == 3
    assert not app.services_ready


@pytest.mark.parametrize(
    ("argv", "command", "registered"),
    [
        (["--db", "sqlite:///x.db"], None, set()),
        (["--db", "sqlite:///x.db", "identity", "show", "1"], "identity", {"identity"}),
        (["--as", "admin", "results", "send", "--all-ready"], "results", {"results", "stats"}),
        (["--help"], "?", {"identity", "results", "demo", "doctor", "dmp-sim"}),
        (["no-such-command"], "?", {"identity", "results", "demo", "doctor", "dmp-sim"}),
    ],
)
def test_the_command_line_registers_only_what_it_needs(
    argv: list[str], command: str | None, registered: set[str]
) -> None:
    import tui.cli
    from tui.cli.commands import command_of

    assert command_of(argv) == command
    parser = tui.cli.build_parser(argv)
    sub = next(a for a in parser._actions if a.dest == "command")
    choices = set(sub.choices)  # type: ignore[attr-defined]
    assert registered <= choices if command == "?" else choices == registered


async def test_the_users_keys_are_read_with_the_services_and_applied(
    demo_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`insdesk` reads the keymap in the services' worker (after the first frame): once they are
    open, the remapped key acts and an unknown id is reported."""
    keymap = tmp_path / "keymap.toml"
    keymap.write_text('[keys]\napp.help = "f11"\n"app.nope" = "f10"\n', encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(keymap))
    app = make_app(demo_db.url, lazy=True)
    assert app.user_keymap is None
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(400):
            if app.services_ready and app.user_keymap is not None:
                break
            await pilot.pause(0.05)
        await settle(pilot)
        assert app.user_keymap is not None and app.user_keymap.keys == {"app.help": "f11"}
        assert any("app.nope" in n.message for n in app._notifications)
        await pilot.press("f11")
        await settle(pilot)
        assert type(app.screen).__name__ == "HelpScreen"
    app.services.close()


def test_the_login_screens_path_imports_none_of_what_opens_behind_it() -> None:
    """What ``insdesk`` imports before its first frame (the command line, the App, the login
    screen) leaves out the database layer, the teleservice clients and what only an answer, an
    error or the user's keymap needs: they load in the services' worker, or when used."""
    import subprocess
    import sys

    probe = (
        "import sys, tui.cli, tui.app, tui.screens.login; "
        "print(' '.join(sorted(m for m in sys.modules if '.' not in m)))"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert {"tui", "textual", "argparse"} <= loaded  # the probe saw the start-up's modules
    late = {"sqlalchemy", "sqlmodel", "alembic", "httpx", "lxml", "argon2", "json", "tomllib", "hashlib"}
    assert loaded & late == set()

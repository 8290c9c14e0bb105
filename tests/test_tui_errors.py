"""Unexpected errors at the desk (issue #12, item 7): a worker's failure is an error modal with a short
error id and the log path, an error no handler caught stops the App with a French message (never
Textual's traceback with its local variables: patient traits); the traceback goes to the redacted
application log only."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Static
from textual.worker import WorkerFailed

from services.logsafe import LogSetup, configure_logging
from services.storage.db import Database
from tests.test_tui_support import demo_db, demo_template, login, make_app, settle, type_text
from tui.screens.error_modal import ErrorModal
from tui.screens.home import HomeScreen

__all__ = ["demo_db", "demo_template"]  # fixtures

ERROR_ID = re.compile(r"E-[0-9A-F]{8}")


@pytest.fixture
def app_log(tmp_path: Path) -> Iterator[LogSetup]:
    root = logging.getLogger()
    before = list(root.handlers)
    setup = configure_logging(tmp_path / "log" / "insdesk.log", hooks=False)
    yield setup
    for handler in [h for h in root.handlers if h not in before]:
        root.removeHandler(handler)
        handler.close()


async def test_worker_failure_modal_names_the_error_id_and_the_log(
    demo_db: Database, app_log: LogSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_search(*_args: object, query: str, **_kw: object) -> list[object]:
        # KeyError with the typed query (a name and a year) in its message
        found: dict[str, object] = {}
        return [found[query.upper()]]

    monkeypatch.setattr("tui.screens.home.search_identities", broken_search)
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await type_text(pilot, "martinez 1985")
        with contextlib.suppress(WorkerFailed):  # the failure is the point: the modal shows it
            await settle(pilot)
        await pilot.pause()
        assert isinstance(app.screen, ErrorModal)
        message = str(app.screen.query_one("#error-message", Static).render())
        assert "Erreur inattendue" in str(app.screen.query_one("#error-title", Static).render())
        ids = ERROR_ID.findall(message)
        assert ids and str(app_log.path) in message.replace("\n", "")
    text = Path(str(app_log.path)).read_text(encoding="utf-8")
    assert ids[0] in text and "Traceback" in text and "KeyError" in text
    assert "MARTINEZ" not in text and "1985" not in text


async def test_uncaught_error_stops_with_a_french_message_not_a_traceback(
    demo_db: Database, app_log: LogSetup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_open(self: HomeScreen) -> None:
        name = "MARTIN Claire 21/06/1985"
        raise RuntimeError(f"cannot open {name!r}")

    monkeypatch.setattr(HomeScreen, "action_open_selected", broken_open)
    app = make_app(demo_db)
    capsys.readouterr()
    with pytest.raises(RuntimeError):
        async with app.run_test(size=(100, 30)) as pilot:
            await login(pilot)
            await type_text(pilot, "martin")
            await settle(pilot)
            await pilot.press("enter")
            await settle(pilot)
    assert app.return_code == 1
    assert app.crash_message is not None
    assert "erreur inattendue" in app.crash_message and str(app_log.path) in app.crash_message
    ids = ERROR_ID.findall(app.crash_message)
    printed = " ".join(capsys.readouterr().err.split())
    assert "Référence de l'erreur" in printed and ids[0] in printed, printed
    assert "Traceback" not in printed and "Claire" not in printed and "RuntimeError" not in printed
    text = Path(str(app_log.path)).read_text(encoding="utf-8")
    assert ids and ids[0] in text and "RuntimeError" in text and "Traceback" in text
    assert "Claire" not in text and "21/06/1985" not in text

"""``results watch``: the folder a lab system drops its results files in.

:func:`process_inbox` imports each file waiting there in a transaction of its own
(:func:`services.desk.results.import_results_file`) and moves it to ``done/``, or to
``rejected/`` beside a ``<name>.reason.txt`` saying why; :func:`watch_inbox` does so every few
seconds until stopped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from services.desk.results import import_results_file
from services.errors import BadRequest, InsdeskError
from services.results.ingest import ImportResult
from services.storage.db import Database
from services.storage.models import utcnow
from services.users import Actor, Right, require

__all__ = ["InboxOutcome", "process_inbox", "watch_inbox"]

log = logging.getLogger(__name__)

_DONE: Final = "done"
_REJECTED: Final = "rejected"


@dataclass(frozen=True)
class InboxOutcome:
    """What happened to one file of the inbox."""

    name: str
    ok: bool
    moved_to: str | None
    result: ImportResult | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.name,
            "ok": self.ok,
            "moved_to": self.moved_to,
            "result": self.result.as_dict() if self.result is not None else None,
            "error": self.error,
        }


def _unique_target(folder: Path, name: str) -> Path:
    target = folder / name
    if not target.exists():
        return target
    stem, suffix = os.path.splitext(name)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
    return folder / f"{stem}.{stamp}{suffix}"


def _candidates(folder: Path, *, settle_seconds: float) -> list[Path]:
    now = time.time()
    files: list[tuple[float, str, Path]] = []
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith(".") or name.endswith((".tmp", ".part", ".partial", ".reason.txt", "~")):
            continue
        try:
            if not entry.is_file():
                continue
            mtime = entry.stat().st_mtime
        except OSError:
            continue
        if now - mtime < settle_seconds:
            continue  # still being written
        files.append((mtime, name, entry))
    files.sort()
    return [path for _m, _n, path in files]


def process_inbox(
    db: Database, folder: str | Path, *, actor: Actor, settle_seconds: float = 1.0
) -> list[InboxOutcome]:
    """Import every file waiting in ``folder`` (oldest first), one transaction per file.

    Imported: moved to ``done/``. Refused (malformed, no report, bad input): moved to
    ``rejected/`` with ``<name>.reason.txt`` (the French reason, with the line). Any other
    error (database unavailable, permission…) leaves the file where it is for the next pass.
    Files starting with ``.`` or ending with ``.tmp``/``.part`` are skipped (writers drop files
    under such a name and rename them when complete), and so are files modified less than
    ``settle_seconds`` ago.
    """
    require(actor, Right.RESULTS)
    inbox = Path(folder)
    done, rejected = inbox / _DONE, inbox / _REJECTED
    done.mkdir(parents=True, exist_ok=True)
    rejected.mkdir(parents=True, exist_ok=True)
    outcomes: list[InboxOutcome] = []
    for path in _candidates(inbox, settle_seconds=settle_seconds):
        try:
            result = import_results_file(db, actor=actor, path=path)
        except BadRequest as err:
            target = _unique_target(rejected, path.name)
            os.replace(path, target)
            reason = err.message + ("\n" if not err.message.endswith("\n") else "")
            target.with_name(target.name + ".reason.txt").write_text(reason, encoding="utf-8")
            log.info("results inbox: %s rejected (%s)", path.name, err.code)
            outcomes.append(InboxOutcome(path.name, False, str(target), error=err.message))
            continue
        except InsdeskError as err:
            log.warning("results inbox: %s left in place (%s)", path.name, err.code)
            outcomes.append(InboxOutcome(path.name, False, None, error=err.message))
            continue
        target = _unique_target(done, path.name)
        os.replace(path, target)
        if result.refused:
            lines = [
                f"ligne {r['line']} : compte rendu n° {r['report_id']} : {r['reason']}"
                for r in result.refused
            ]
            target.with_name(target.name + ".reason.txt").write_text(
                "\n".join(lines) + "\n", encoding="utf-8"
            )
        log.info("results inbox: %s imported (%d reports)", path.name, result.reports)
        outcomes.append(InboxOutcome(path.name, True, str(target), result=result))
    return outcomes


def watch_inbox(
    db: Database,
    folder: str | Path,
    *,
    actor: Actor,
    interval: float = 2.0,
    settle_seconds: float = 1.0,
    stop: threading.Event | None = None,
    on_outcome: Callable[[InboxOutcome], None] | None = None,
    max_passes: int | None = None,
) -> list[InboxOutcome]:
    """Watch ``folder``: process it every ``interval`` seconds until ``stop`` is set (or after
    ``max_passes`` passes). Returns every outcome; ``on_outcome`` sees each one as it happens."""
    stop = stop or threading.Event()
    outcomes: list[InboxOutcome] = []
    passes = 0
    while not stop.is_set():
        for outcome in process_inbox(db, folder, actor=actor, settle_seconds=settle_seconds):
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        passes += 1
        if max_passes is not None and passes >= max_passes:
            break
        stop.wait(interval)
    return outcomes

"""The application log: a rotating file in the state directory that never holds patient data.

The matricule INS and the NIR live only in the database (ins-rules.md, "Traceability"), and so do
the patient's traits. What the application writes itself is chosen (no traits, no NIR); what it
does not choose is an unexpected error's traceback, whose exception messages can carry:

* SQLAlchemy's ``[parameters: …]`` (the bound values: names, birth dates, the request XML stored
  with an INSi call) — engines are also created with ``hide_parameters=True``;
* PostgreSQL's ``DETAIL:`` / ``CONTEXT:`` lines (« Failing row contains (…, MARTIN, …) »,
  « Key (local_id)=(…) already exists »);
* XML (an INSi request or answer in a parser's message);
* values quoted by ``repr`` (``KeyError('MARTIN')``), « » quotes, dates, a NIR.

:class:`RedactingFilter` rewrites every record before it is formatted: the message through
:func:`redact_message` (NIR, XML, SQL parameters, database details) and the traceback through
:func:`redact_traceback`, which also masks quoted values and dates in the exception lines while
keeping what a developer needs (files, lines, code, exception types).

:func:`configure_logging` is called once by each entry point (command line, TUI): a
``RotatingFileHandler`` at ``$INSDESK_LOG_DIR/insdesk.log``, else ``insdesk.log`` in the user log
directory (``~/.local/state/insdesk/log`` on Linux), on the root logger, so that no record ever
reaches logging's "last resort" handler (English lines on stderr); Python warnings, uncaught
exceptions of threads and unraisable exceptions go to the same file.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

ENV_LOG_DIR: Final = "INSDESK_LOG_DIR"
LOG_FILE_NAME: Final = "insdesk.log"
MAX_BYTES: Final = 5 * 1024 * 1024
BACKUP_COUNT: Final = 5

# 1 or 2 (NIR) / 3, 4, 7, 8 (NIA, temporary) then 12 more characters, 2A/2B allowed, spaces allowed.
_NIR_LIKE = re.compile(
    r"(?<![0-9A-Za-z])[1-478]\s?\d{2}\s?\d{2}\s?(?:\d{2}|2[AaBb])\s?\d{3}\s?\d{3}(?:\s?\d{2})?(?![0-9A-Za-z])"
)
MASK = "[NIR masqué]"
XML_MASK = "[XML masqué]"
PARAMETERS_MASK = "[paramètres masqués]"
DETAIL_MASK = "[détail de la base masqué]"
VALUE_MASK = "[valeur masquée]"
DATE_MASK = "[date masquée]"

# SQLAlchemy appends "[parameters: {...}]" (or a list of them) to a DBAPI error's message.
_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\s*(?:\n|$|\(Background on))", re.DOTALL)
# PostgreSQL's own details (psycopg puts them on their own lines): the failing row, the key…
_PG_DETAIL = re.compile(r"^(\s*(?:DETAIL|CONTEXT|Détail|CONTEXTE)\s*:).*$", re.MULTILINE)
# From the first tag-like "<x" (or "<?xml", "<!") to the last ">" of the same line.
_XML_SPAN = re.compile(r"<[?!A-Za-z_/][^\n]*>")
_QUOTED = re.compile(r"""b?'(?:[^'\\\n]|\\.)*'|b?"(?:[^"\\\n]|\\.)*"|«[^»\n]*»""")
_DATES = re.compile(
    r"(?<!\d)(?:\d{4}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|(?:19|20)\d{2}(?:0[1-9]|1[0-2])[0-3]\d)(?!\d)"
)
# The lines of a formatted traceback that are ours to keep: structure, files, code.
_KEEP_LINE = re.compile(
    r"^(?:Traceback \(most recent call last\):|  File \".*\", line \d+.*|\s*[~^]+\s*|"
    r"During handling of the above exception, another exception occurred:|"
    r"The above exception was the direct cause of the following exception:|"
    r"\s*\+[-+ ]*.*|\s*\|?\s*Exception Group Traceback.*|\s*\.\.\..*|\s*)$"
)


def redact(text: str) -> str:
    """Mask every NIR-shaped sequence of ``text``."""
    return _NIR_LIKE.sub(MASK, text)


def redact_message(text: str) -> str:
    """A log message without NIR, XML, SQL parameters nor database details."""
    text = _SQL_PARAMETERS.sub(PARAMETERS_MASK, text)
    text = _PG_DETAIL.sub(lambda m: f"{m.group(1)} {DETAIL_MASK}", text)
    text = _XML_SPAN.sub(XML_MASK, text)
    return redact(text)


def _scrub_exception_line(line: str) -> str:
    line = _XML_SPAN.sub(XML_MASK, line)
    line = _QUOTED.sub(VALUE_MASK, line)
    line = _DATES.sub(DATE_MASK, line)
    return redact(line)


def redact_traceback(text: str) -> str:
    """A formatted traceback keeping files, line numbers, code and exception types, with the
    exception messages scrubbed (SQL parameters, database details, XML, quoted values, dates, NIR).

    A code line is the indented line that follows a ``File "…", line N`` line; anything else
    that is not structure is an exception message (or its continuation) and is scrubbed.
    """
    text = _SQL_PARAMETERS.sub(PARAMETERS_MASK, text)
    text = _PG_DETAIL.sub(lambda m: f"{m.group(1)} {DETAIL_MASK}", text)
    out: list[str] = []
    after_file = False
    for line in text.split("\n"):
        stripped = line.lstrip(" |")
        if stripped.startswith('File "') and ", line " in stripped:
            out.append(redact(line))
            after_file = True
            continue
        if after_file and line.startswith("    "):
            out.append(redact(line))  # the source line of the frame: code, not data
            after_file = False
            continue
        after_file = False
        if _KEEP_LINE.match(line):
            out.append(line)
            continue
        head, sep, rest = line.partition(": ")
        if sep and re.fullmatch(r"\s*\|?\s*[A-Za-z_][\w.]*", head):
            out.append(f"{head}: {_scrub_exception_line(rest)}")  # "module.ExcType: message"
        else:
            out.append(_scrub_exception_line(line))
    return "\n".join(out)


class RedactingFilter(logging.Filter):
    """Rewrites the record's message (with its arguments) and its traceback, see the module doc."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record
            message = str(record.msg)
        record.msg = redact_message(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_traceback(record.exc_text)
        record.exc_info = None  # formatted (and scrubbed) above: never formatted again raw
        if record.stack_info:
            record.stack_info = redact_traceback(record.stack_info)
        return True


def new_error_id() -> str:
    """A short id naming one unexpected error in the message and in the log (``E-3FA2B1C9``)."""
    return "E-" + os.urandom(4).hex().upper()  # what secrets.token_hex reads, without hashlib


def default_log_dir(env: dict[str, str] | None = None) -> Path:
    """``$INSDESK_LOG_DIR``, else the user log directory (``~/.local/state/insdesk/log``)."""
    environ = os.environ if env is None else env
    explicit = environ.get(ENV_LOG_DIR, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_log_dir("insdesk"))


@dataclass(frozen=True)
class LogSetup:
    """Where the application log goes (``path`` None: it could not be opened, nothing is written)."""

    path: Path | None
    problem: str | None = None

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "journal de l'application indisponible"


_HANDLER_NAME = "insdesk-application-log"
_QUIET_LOGGERS = ("httpx", "httpcore", "urllib3", "PIL", "fontTools", "saxonche", "pint", "alembic")
_current: LogSetup | None = None


def current_log() -> LogSetup | None:
    """What :func:`configure_logging` set up in this process (None: not configured)."""
    return _current


def configure_logging(path: Path | None = None, *, level: int = logging.INFO, hooks: bool = True) -> LogSetup:
    """Send every log record of the process to the redacted rotating file (idempotent).

    Installed on the root logger (a previous call's handler is replaced). When the file cannot
    be opened, a :class:`logging.NullHandler` takes its place: nothing goes to stderr either.
    ``hooks``: uncaught exceptions of threads, unraisable exceptions and Python warnings are
    logged too instead of being printed.
    """
    global _current
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()
    target = path if path is not None else default_log_dir() / LOG_FILE_NAME
    new_handler: logging.Handler
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not target.exists():
            target.touch(mode=0o600)
        new_handler = logging.handlers.RotatingFileHandler(
            target, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
        )
        setup = LogSetup(target)
    except OSError as err:
        new_handler = logging.NullHandler()
        setup = LogSetup(None, f"{target} : {err.strerror or err}")
    new_handler.set_name(_HANDLER_NAME)
    new_handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    new_handler.addFilter(RedactingFilter())
    root.addHandler(new_handler)
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if hooks:
        logging.captureWarnings(True)
        threading.excepthook = _thread_excepthook
        sys.unraisablehook = _unraisable_hook
    _current = setup
    return setup


def configure_file_logging(path: Path, level: int = logging.INFO) -> logging.Handler:
    """Attach a redacting file handler to the ``insdesk`` logger tree and return it (tests, tools)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("insdesk")
    logger.setLevel(level)
    logger.addHandler(handler)
    return handler


_log = logging.getLogger("insdesk.errors")


def log_unexpected(
    error: BaseException,
    where: str,
    *,
    traceback: TracebackType | None = None,
    error_id: str | None = None,
) -> str:
    """Log an unexpected error with its (redacted) traceback; returns its short id."""
    error_id = error_id or new_error_id()
    exc_info: Any = (type(error), error, traceback if traceback is not None else error.__traceback__)
    _log.error("unexpected error %s in %s: %s", error_id, where, type(error).__name__, exc_info=exc_info)
    return error_id


def unexpected_error_message(error_id: str, setup: LogSetup | None = None) -> str:
    """The French sentence shown for an unexpected error: its id and where the detail is."""
    setup = setup if setup is not None else _current
    where = setup.where if setup is not None else "journal de l'application non configuré"
    return f"Référence de l'erreur : {error_id}. Le détail technique est dans le journal : {where}."


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    log_unexpected(args.exc_value, f"thread {name}", traceback=args.exc_traceback)


def _unraisable_hook(unraisable: Any) -> None:
    value = unraisable.exc_value
    if value is None:
        return
    log_unexpected(value, f"unraisable ({unraisable.err_msg or 'exception ignored'})")

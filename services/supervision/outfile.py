"""Where an export may be written, and writing it there without ever betraying the lab.

An export (``audit export``, ``audit dashboard``, the supervisor's screens) is written to a
temporary file in the target folder (mode 0600: it holds health data), flushed to disk, then
moved onto the chosen name, so a reader never sees half a file and a failure leaves nothing.
The destination is checked first (``check_destination``), all refusals being ``BadRequest``
(exit 2, French message, nothing changed):

- an empty name, a name with a NUL character, a directory (or a name ending with ``/``), a
  folder that does not exist;
- the database itself, its ``-wal``, ``-shm`` and ``-journal`` files, the audit anchor and its
  lock: never, even with ``force``;
- anything that is not a regular file (a FIFO, a device node, a socket): never;
- an existing regular file: only with ``force`` (``--force``); without it the file is linked
  into place, which fails if the name appeared meanwhile.

The screens propose a new file name in the exports folder (``default_export_dir``):
``$INSDESK_EXPORT_DIR``, else ``insdesk`` in the user's documents folder
(``~/Documents/insdesk`` on most desktops), created private (0700). A relative name typed on a
screen is taken in that folder, never in the current directory.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import platformdirs

from services.errors import BadRequest

__all__ = [
    "EXPORT_DIR_ENV",
    "check_destination",
    "default_export_dir",
    "proposed_path",
    "resolve_in_export_dir",
    "staged",
]

EXPORT_DIR_ENV = "INSDESK_EXPORT_DIR"


def default_export_dir() -> Path:
    """The exports folder (created, mode 0700): ``$INSDESK_EXPORT_DIR`` or ``<documents>/insdesk``."""
    env = os.environ.get(EXPORT_DIR_ENV)
    folder = Path(env).expanduser() if env else Path(platformdirs.user_documents_dir()) / "insdesk"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def proposed_path(stem: str, suffix: str, *, now: datetime, folder: Path | None = None) -> Path:
    """A file name that does not exist yet: ``<folder>/<stem>-AAAAMMJJ-HHMM.<suffix>``."""
    folder = folder if folder is not None else default_export_dir()
    base = f"{stem}-{now:%Y%m%d-%H%M}"
    candidate = folder / f"{base}.{suffix}"
    n = 2
    while os.path.lexists(candidate):
        candidate = folder / f"{base}-{n}.{suffix}"
        n += 1
    return candidate


def resolve_in_export_dir(text: str, *, folder: Path | None = None) -> Path:
    """What a person typed: ``~`` expanded, a relative name taken in the exports folder."""
    path = Path(text).expanduser()
    if path.is_absolute():
        return path
    return (folder if folder is not None else default_export_dir()) / path


def _same(a: Path, protected: set[Path]) -> bool:
    with contextlib.suppress(OSError, RuntimeError):
        if a.resolve() in protected:
            return True
    return a in protected


def check_destination(out: str | os.PathLike[str], *, force: bool, protected: Iterable[Path]) -> Path:
    """The absolute path ``out`` names, if an export may be written there (see the module)."""
    text = os.fspath(out)
    if not text.strip():
        raise BadRequest("Indiquez le fichier à écrire.", code="bad_path")
    if "\0" in text:
        raise BadRequest(
            "Le nom du fichier contient un caractère nul : choisissez un autre nom.", code="bad_path"
        )
    path = Path(os.path.abspath(Path(text).expanduser()))
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise BadRequest(f"{path} est un dossier : indiquez un nom de fichier.", code="bad_path")
    if not path.parent.is_dir():
        raise BadRequest(f"Le dossier {path.parent} n'existe pas.", code="bad_path")
    guarded: set[Path] = set()
    for p in protected:
        guarded.add(Path(os.path.abspath(p)))
        with contextlib.suppress(OSError, RuntimeError):
            guarded.add(p.resolve())
    if _same(path, guarded):
        raise BadRequest(
            f"{path} est la base de données d'insdesk ou son ancre de contrôle : "
            "un export ne la remplace jamais, même avec --force.",
            code="protected_path",
        )
    try:
        st = os.stat(path)  # follows a symbolic link: what would be written into
    except FileNotFoundError:
        if os.path.lexists(path):  # a dangling symbolic link
            raise BadRequest(
                f"{path} est un lien symbolique vers un fichier absent : choisissez un autre nom.",
                code="bad_path",
            ) from None
        return path
    except OSError as exc:
        raise BadRequest(f"{path} est inaccessible ({exc.strerror}).", code="bad_path") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest(
            f"{path} n'est pas un fichier ordinaire (tube, périphérique…) : un export ne l'écrase jamais.",
            code="not_a_regular_file",
        )
    if not force:
        raise _exists(path)
    return path


def _exists(dest: Path) -> BadRequest:
    return BadRequest(
        f"Le fichier {dest} existe déjà : choisissez un autre nom (ou --force pour le remplacer).",
        code="file_exists",
    )


def _publish(tmp: Path, dest: Path, *, force: bool) -> None:
    if not force:
        try:
            os.link(tmp, dest)  # fails if the name appeared since the check: never clobbers
            return
        except FileExistsError:
            raise _exists(dest) from None
        except OSError:  # no hard links here (e.g. a FAT USB key): check, then rename
            if os.path.lexists(dest):
                raise _exists(dest) from None
    else:
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.lstat(dest).st_mode):
                raise BadRequest(
                    f"{dest} n'est pas un fichier ordinaire : un export ne l'écrase jamais.",
                    code="not_a_regular_file",
                )
    os.replace(tmp, dest)


class Staged:
    """A temporary file beside the destination; ``publish`` moves it into place."""

    def __init__(self, dest: Path, *, force: bool) -> None:
        self.dest = dest
        self.force = force
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.published = False

    def publish(self) -> None:
        with self.tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        _publish(self.tmp, self.dest, force=self.force)
        self.published = True

    def withdraw(self) -> None:
        """Undo ``publish`` (the unit of work that audits the export failed)."""
        if self.published:
            with contextlib.suppress(OSError):
                self.dest.unlink()
            self.published = False


@contextlib.contextmanager
def staged(dest: Path, *, force: bool) -> Iterator[Staged]:
    """A ``Staged`` file for ``dest`` (checked by ``check_destination``); the temporary file is
    removed whatever happens, and ``dest`` too if the block fails after ``publish``."""
    file = Staged(dest, force=force)
    try:
        yield file
    except BaseException:
        file.withdraw()
        raise
    finally:
        file.tmp.unlink(missing_ok=True)

"""The audit anchor: the head of the chain (last id + hash) witnessed outside the database.

A hash chain shows an edited, removed or reordered event, but whoever can write the database can
also remove the *last* events, rewrite a whole tail consistently or append a well-formed event.
The anchor is this desk's witness of the head it last committed; ``services.audit.log`` checks
every append against it (an append extends only a head that descends from the anchored event)
and ``audit verify`` checks the chain against it. The file belongs to the database it witnesses,
so it lives here in storage (``Database`` writes it around the COMMIT); the audit layer above
reads and checks it.

The file is tiny JSON, written atomically (temporary file + fsync + rename + fsync of the
directory, mode 0600) under an advisory lock (``<anchor>.lock``)::

    {"last_id": 41, "last_hash": "…", "pending": {"last_id": 42, "last_hash": "…"},
     "written_at": "2026-12-06T13:05:00.000000+00:00"}

``Database.transaction`` writes it twice around the COMMIT of a unit of work that appended
events, holding the lock from the first write to the second:

1. before COMMIT: ``pending`` = the head this transaction is about to commit, ``last_*`` = the
   head it extended (verified against the previous anchor);
2. after COMMIT: ``last_*`` = that head, no ``pending``.

Whatever moment a process is killed at, the anchor then names the committed head exactly: a
``pending`` head that the database holds was committed, one that it does not hold was not
(``AnchorState.resolve``). Readers that must see the anchor and the database at the same
instant (``audit verify``) take the lock shared while they read both.

The anchor only moves forward: a final write whose head is behind the stored one is ignored
(two processes committing in turn may finish writing in the other order). A corrupt anchor is
evidence and is never overwritten. Leftover temporary files of a writer killed mid-write
(``<anchor>.*.tmp``) are removed by the next write.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

try:  # POSIX advisory locks; on other systems the forward-only rule still holds per process.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True)
class Anchor:
    last_id: int
    last_hash: str

    def as_dict(self) -> dict[str, object]:
        return {"last_id": self.last_id, "last_hash": self.last_hash}


@dataclass(frozen=True)
class AnchorState:
    """What the anchor file holds: the committed head, a head being committed, when written."""

    anchor: Anchor
    pending: Anchor | None = None
    written_at: datetime | None = None

    def resolve(self, hash_at: Callable[[int], object]) -> Anchor:
        """The head this anchor witnesses: ``pending`` when the database holds that very event
        (``hash_at(id)`` returns its stored hash, or None), else the committed ``anchor``."""
        if self.pending is not None and hash_at(self.pending.last_id) == self.pending.last_hash:
            return self.pending
        return self.anchor

    @property
    def top(self) -> int:
        return max(self.anchor.last_id, self.pending.last_id if self.pending else -1)

    def as_json(self) -> bytes:
        data: dict[str, object] = dict(self.anchor.as_dict())
        if self.pending is not None:
            data["pending"] = self.pending.as_dict()
        if self.written_at is not None:
            data["written_at"] = self.written_at.astimezone(UTC).isoformat(timespec="microseconds")
        return json.dumps(data, sort_keys=True).encode("utf-8")


def _parse_anchor(data: object, where: str) -> Anchor:
    last_id = data.get("last_id") if isinstance(data, dict) else None
    last_hash = data.get("last_hash") if isinstance(data, dict) else None
    if (
        not isinstance(last_id, int)
        or isinstance(last_id, bool)
        or last_id < 0
        or not isinstance(last_hash, str)
        or not _HASH_RE.match(last_hash)
    ):
        raise ValueError(f"malformed audit anchor file {where}")
    return Anchor(last_id=last_id, last_hash=last_hash)


def parse_state(raw: str, where: str = "") -> AnchorState:
    """The state held by anchor-file text; ValueError when it is not a well-formed anchor."""
    data = json.loads(raw)
    anchor = _parse_anchor(data, where)
    assert isinstance(data, dict)
    pending = None
    if data.get("pending") is not None:
        pending = _parse_anchor(data["pending"], where)
        if pending.last_id <= anchor.last_id:
            raise ValueError(f"malformed audit anchor file {where}")
    written_at = None
    if data.get("written_at") is not None:
        if not isinstance(data["written_at"], str):
            raise ValueError(f"malformed audit anchor file {where}")
        written_at = datetime.fromisoformat(data["written_at"])
        if written_at.tzinfo is None:
            raise ValueError(f"malformed audit anchor file {where}")
    return AnchorState(anchor=anchor, pending=pending, written_at=written_at)


class AnchorFile:
    """The anchor file at ``path`` (its lock is ``path`` + ``.lock``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"AnchorFile({str(self.path)!r})"

    # -- locking ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *, shared: bool = False) -> Iterator[None]:
        if shared and not self.path.parent.is_dir():
            yield  # nothing to read and nothing to protect
            return
        _make_dir(self.path.parent)
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock shared: no commit of this desk lands while reading anchor + database."""
        with self._locked(shared=True):
            yield

    @contextlib.contextmanager
    def committing(self, base: Anchor, head: Anchor) -> Iterator[None]:
        """Around the COMMIT of a transaction that moves the head from ``base`` to ``head``:
        writes the pending state first (OSError: the caller must not commit), holds the lock
        during the block, then records ``head`` as committed (best effort) if the block ends
        normally."""
        with self._locked():
            self._put(AnchorState(anchor=base, pending=head, written_at=_now()))
            yield
            # On failure the pending state already names ``head``: the anchor is still exact. For
            # the same reason the rename need not be made durable (no fsync of the directory): after
            # a power cut the file holds either state, and both name the committed head.
            with contextlib.suppress(OSError):
                self._write_final(head, durable=False)

    # -- reading ---------------------------------------------------------------------------------

    def read_state(self) -> AnchorState | None:
        """The stored state, or None when there is no anchor. A corrupt file raises ValueError."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as exc:
            raise ValueError(f"malformed audit anchor file {self.path}") from exc
        return parse_state(raw, str(self.path))

    def read(self) -> Anchor | None:
        """The committed anchor (``last_*``), or None when there is none. Corrupt: ValueError."""
        state = self.read_state()
        return state.anchor if state is not None else None

    # -- writing ---------------------------------------------------------------------------------

    def write(self, anchor: Anchor) -> bool:
        """Record ``anchor`` as committed unless the stored one is further ahead. True if written."""
        with self._locked():
            return self._write_final(anchor)

    def _write_final(self, anchor: Anchor, *, durable: bool = True) -> bool:
        try:
            current = self.read_state()
        except ValueError:
            # A corrupt anchor is evidence (someone may have tried to hide removed events):
            # keep it for `audit verify` to report, never overwrite it silently.
            return False
        if current is not None:
            if current.pending is not None and current.pending.last_id == anchor.last_id:
                pass  # our own pending head, now committed
            elif current.top >= anchor.last_id:
                return False
        self._put(AnchorState(anchor=anchor, written_at=_now()), durable=durable)
        return True

    def _put(self, state: AnchorState, *, durable: bool = True) -> None:
        """Atomically replace the file with ``state`` (the caller holds the lock); ``durable``:
        the rename itself survives a power cut (fsync of the directory)."""
        self._remove_leftovers()
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(state.as_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if durable:
            _fsync_dir(self.path.parent)

    def _remove_leftovers(self) -> None:
        """Temporary files of a writer killed between mkstemp and rename (we hold the lock, so
        no cooperating writer is using one)."""
        for leftover in self.path.parent.glob(f"{glob_escape(self.path.name)}.*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _now() -> datetime:
    return datetime.now(UTC)


def _make_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) private to the user when it does not exist."""
    if not directory.is_dir():
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)

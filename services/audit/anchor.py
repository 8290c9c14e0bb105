"""The audit anchor: the head of the chain (last id + hash) kept outside the database.

A hash chain shows an edited, removed or reordered event, but removing the *last* events
leaves a valid (shorter) chain; the anchor, written after every commit that appended events,
makes that visible (``verify_chain(..., anchor=...)``).

The file is tiny JSON, written atomically (temporary file + fsync + rename + fsync of the
directory) under an advisory lock, and it only moves forward: an anchor whose ``last_id`` is
lower than the stored one is ignored (two processes committing in turn may finish writing in
the other order).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

try:  # POSIX advisory locks; on other systems the forward-only rule still holds per process.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Anchor:
    last_id: int
    last_hash: str

    def as_dict(self) -> dict[str, object]:
        return {"last_id": self.last_id, "last_hash": self.last_hash}


class AnchorFile:
    """The anchor file at ``path`` (its lock is ``path`` + ``.lock``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"AnchorFile({str(self.path)!r})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def read(self) -> Anchor | None:
        """The stored anchor, or None when there is none. A corrupt file raises ValueError."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        data = json.loads(raw)
        last_id = data.get("last_id") if isinstance(data, dict) else None
        last_hash = data.get("last_hash") if isinstance(data, dict) else None
        if (
            not isinstance(last_id, int)
            or last_id < 0
            or not isinstance(last_hash, str)
            or not (_HASH_RE.match(last_hash))
        ):
            raise ValueError(f"malformed audit anchor file {self.path}")
        return Anchor(last_id=last_id, last_hash=last_hash)

    def write(self, anchor: Anchor) -> bool:
        """Store ``anchor`` unless the stored one is further ahead. Returns True if written."""
        with self._locked():
            try:
                current = self.read()
            except ValueError:
                # A corrupt anchor is evidence (someone may have tried to hide removed events):
                # keep it for `audit verify` to report, never overwrite it silently.
                return False
            if current is not None and current.last_id > anchor.last_id:
                return False
            if current == anchor:
                return False
            data = json.dumps(anchor.as_dict(), sort_keys=True).encode("utf-8")
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(self.path.parent)
            return True


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

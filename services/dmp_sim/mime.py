"""``multipart/related`` (MTOM/XOP) reading for the local DMP, per RFC 2046 §5.1.1 and W3C XOP.

A body part ends right before ``CRLF--boundary``; its headers end at the first empty line.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message


class MimeError(ValueError):
    pass


@dataclass(frozen=True)
class MimePart:
    headers: dict[str, str]  # lower-cased names
    content: bytes

    @property
    def content_id(self) -> str:
        return self.headers.get("content-id", "").strip().removeprefix("<").removesuffix(">")

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def content_type_params(value: str) -> tuple[str, dict[str, str]]:
    message = Message()
    message["Content-Type"] = value
    pairs = message.get_params(header="Content-Type") or []
    return message.get_content_type(), {str(k).lower(): str(val) for k, val in pairs[1:]}


def _headers(block: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in block.decode("latin-1").split("\r\n"):
        if not raw.strip():
            continue
        name, sep, value = raw.partition(":")
        if not sep:
            raise MimeError(f"en-tête MIME invalide : {raw[:60]}")
        found[name.strip().lower()] = value.strip()
    return found


def parse_multipart(boundary: str, body: bytes) -> list[MimePart]:
    delimiter = b"--" + boundary.encode("latin-1")
    if body.startswith(delimiter):
        body = b"\r\n" + body
    chunks = body.split(b"\r\n" + delimiter)
    if len(chunks) < 3:
        raise MimeError("corps multipart sans parties")
    parts: list[MimePart] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts
        if not chunk.startswith(b"\r\n") and not chunk.lstrip(b" \t").startswith(b"\r\n"):
            raise MimeError("délimiteur MIME mal formé")
        chunk = chunk.lstrip(b" \t")[2:]
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            if chunk.startswith(b"\r\n"):
                head, content = b"", chunk[2:]
            else:
                raise MimeError("partie MIME sans séparation en-têtes/contenu (CRLF CRLF)")
        parts.append(MimePart(_headers(head), content))
    raise MimeError("délimiteur de fin MIME absent")

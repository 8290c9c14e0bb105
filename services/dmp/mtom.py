"""MTOM/XOP packaging (W3C SOAP 1.2 MTOM, XOP) of a SOAP envelope and its binary parts, and the reverse.

The request is ``multipart/related; type="application/xop+xml"`` with the envelope as root part
(``start``) and one part per ``xop:Include`` (``cid:`` reference = the part's ``Content-ID``).
Answers may come as plain ``application/soap+xml`` or as the same MTOM package: :func:`root_part`
returns the envelope of either.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser

CRLF = b"\r\n"


@dataclass(frozen=True)
class Part:
    content_id: str  # without angle brackets
    content_type: str
    data: bytes


def new_content_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}@insdesk"


def package(envelope: bytes, parts: list[Part], *, action: str) -> tuple[str, bytes]:
    """``(Content-Type header, body)`` of the MTOM request."""
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    root_id = new_content_id("root")
    chunks = [
        f"--{boundary}".encode(),
        CRLF,
        (
            'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"; '
            f'action="{action}"'
        ).encode(),
        CRLF,
        b"Content-Transfer-Encoding: binary",
        CRLF,
        f"Content-ID: <{root_id}>".encode(),
        CRLF,
        CRLF,
        envelope,
        CRLF,
    ]
    for part in parts:
        chunks += [
            f"--{boundary}".encode(),
            CRLF,
            f"Content-Type: {part.content_type}".encode(),
            CRLF,
            b"Content-Transfer-Encoding: binary",
            CRLF,
            f"Content-ID: <{part.content_id}>".encode(),
            CRLF,
            CRLF,
            part.data,
            CRLF,
        ]
    chunks += [f"--{boundary}--".encode(), CRLF]
    content_type = (
        f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; start="<{root_id}>"; '
        f'start-info="application/soap+xml"; action="{action}"'
    )
    return content_type, b"".join(chunks)


def _params(content_type: str) -> tuple[str, dict[str, str]]:
    message = Message()
    message["Content-Type"] = content_type
    pairs = message.get_params(header="Content-Type") or []
    return message.get_content_type(), {str(k).lower(): str(v) for k, v in pairs[1:]}


class MtomError(ValueError):
    pass


def split(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a ``multipart/related`` body: (lower-cased headers, content)."""
    media, params = _params(content_type)
    boundary = params.get("boundary")
    if not media.startswith("multipart/") or not boundary:
        raise MtomError("not a multipart body")
    delimiter = b"--" + boundary.encode()
    pieces = body.split(delimiter)
    parts: list[tuple[dict[str, str], bytes]] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        piece = piece[2:] if piece.startswith(CRLF) else piece.lstrip(b"\n")
        head, sep, content = piece.partition(CRLF + CRLF)
        if not sep:
            head, sep, content = piece.partition(b"\n\n")
            if not sep:
                raise MtomError("part without headers")
        headers = BytesHeaderParser().parsebytes(head + CRLF + CRLF)
        if content.endswith(CRLF):
            content = content[:-2]
        elif content.endswith(b"\n"):
            content = content[:-1]
        parts.append(({k.lower(): str(v) for k, v in headers.items()}, content))
    if not parts:
        raise MtomError("empty multipart body")
    return parts


def root_part(content_type: str, body: bytes) -> bytes:
    """The SOAP envelope of an answer, plain or MTOM."""
    media, params = _params(content_type)
    if not media.startswith("multipart/"):
        return body
    parts = split(content_type, body)
    start = params.get("start", "").strip("<>")
    if start:
        for headers, content in parts:
            if headers.get("content-id", "").strip().strip("<>") == start:
                return content
    return parts[0][1]

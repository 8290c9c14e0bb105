#!/usr/bin/env python3
"""Our virtual carte Vitale 2, for the vpcd virtual reader of pcscd (standard library only).

Written from the public APDU flow of the carte Vitale 2 (SESAM-Vitale) and ISO/IEC 7816-4
alone; it shares NO code with ``services/vitale`` so that a misreading on one side shows up
as a failure on the other.

The vpcd protocol: the card is a TCP client of vpcd (``Virtual PCD 00 00`` listens on
35963, ``00 01`` on 35964). Every message, both ways, is a 2-byte big-endian length then
the payload. A 1-byte payload from the reader is a control: 0 power off, 1 power on,
2 reset, 4 "send the ATR" (answered with the ATR); a longer one is a C-APDU, answered with
an R-APDU. Connecting is inserting the card, disconnecting is removing it.

The card holds two files read with ``READ BINARY`` by short file identifier 2:
- under the master file 3F00: one BER-TLV ``65`` per person with ``80`` nom, ``81`` prénom,
  ``82`` date de naissance (AAAAMMJJ, ASCII);
- under the application ``D2 50 00 00 02 56 49 54 41 4C 45`` ("VITALE"): one ``65`` per person
  in the same order with ``93`` NIR (15 ASCII characters) and ``90`` nationalité when known.

Modes (``--mode``, several may be combined with commas):
- ``normal``: the flow above; ``READ BINARY`` with a longer Le than the data left answers
  ``6Cxx`` (xx = what is left), an offset past the end ``6B00``;
- ``getresponse``: ``READ BINARY`` answers ``61xx`` and the data come with ``GET RESPONSE``;
- ``remove-after=N``: the card is pulled out when the (N+1)-th APDU arrives (no answer);
- ``reinsert-after=S``: once removed, the card is inserted again S seconds later;
- ``mute``: the card gives its ATR but never answers an APDU;
- ``malformed``: the identity file holds a truncated BER-TLV;
- ``sw=XXXX``: selecting the Vitale application answers the status word XXXX (e.g. 6A82);
- ``vitale1``: the ATR of an old carte Vitale 1 (``3F 65 25 ...``); every APDU of class 00
  answers ``6E00`` (class not supported);
- ``atr=HEX``: any other ATR.

Signals: SIGUSR1 pulls the card out when it is in, or inserts it when it is out; SIGTERM
stops the program. It prints ``ready <CLOCK_MONOTONIC seconds>`` on stdout once the signals
are handled, then ``inserted <seconds>`` at each insertion and ``removed <seconds>`` at each
removal (used by the benchmark and the test rig).

Usage: ``python tests/vcard/virtual_vitale.py --data FILE [--port 35963] [--mode ...]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

ATR_VITALE2 = bytes.fromhex("3B7513000047 09EA9000".replace(" ", ""))
ATR_VITALE1 = bytes.fromhex("3F6525002B09699000")
AID_VITALE = bytes.fromhex("D25000000256495441 4C45".replace(" ", ""))
MF = b"\x3f\x00"

SW_OK = b"\x90\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_NOT_ALLOWED = b"\x69\x86"  # no current EF
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_WRONG_P1P2 = b"\x6b\x00"
SW_INS_UNKNOWN = b"\x6d\x00"
SW_CLA_UNKNOWN = b"\x6e\x00"
SW_NO_DATA = b"\x69\x85"  # conditions of use not satisfied (GET RESPONSE without data)


def tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV with a one-byte tag; lengths in short or long (81/82) form."""
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82, n >> 8, n & 0xFF])
    return bytes([tag]) + length + value


def build_files(persons: list[dict[str, object]], malformed: bool) -> tuple[bytes, bytes]:
    """The identity file (under 3F00) and the NIR file (under the application)."""
    ident = b""
    nirs = b""
    for person in persons:
        body = tlv(0x80, str(person["name"]).encode("latin-1"))
        body += tlv(0x81, str(person["first_name"]).encode("latin-1"))
        body += tlv(0x82, str(person["birth_date"]).encode("ascii"))
        ident += tlv(0x65, body)
        nir_body = b""
        if person.get("nir"):
            nir_body += tlv(0x93, str(person["nir"]).encode("ascii"))
        if person.get("nationality"):
            nir_body += tlv(0x90, str(person["nationality"]).encode("latin-1"))
        nirs += tlv(0x65, nir_body)
    if malformed:
        # The last person's template announces 40 bytes more than the file holds.
        last = tlv(0x65, tlv(0x80, b"TRONQUE") + tlv(0x81, b"X"))
        ident += bytes([0x65, len(last) + 40]) + last[2:]
    return ident, nirs


class Card:
    """The card's state machine: answers one C-APDU with one R-APDU."""

    def __init__(self, identity_file: bytes, nir_file: bytes, modes: dict[str, str]) -> None:
        self.files = {"mf": identity_file, "app": nir_file}
        self.modes = modes
        self.df = "mf"
        self.current: bytes | None = None
        self.pending = b""

    def reset(self) -> None:
        self.df = "mf"
        self.current = None
        self.pending = b""

    @property
    def atr(self) -> bytes:
        if "atr" in self.modes:
            return bytes.fromhex(self.modes["atr"])
        return ATR_VITALE1 if "vitale1" in self.modes else ATR_VITALE2

    def answer(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
        if "vitale1" in self.modes or cla != 0x00:
            return SW_CLA_UNKNOWN
        body = apdu[4:]
        if ins == 0xA4:
            return self.select(p1, body)
        if ins == 0xB0:
            if len(body) != 1:
                return SW_WRONG_LENGTH
            return self.read_binary(p1, p2, body[0] or 256)
        if ins == 0xC0:
            if len(body) != 1:
                return SW_WRONG_LENGTH
            return self.get_response(body[0] or 256)
        return SW_INS_UNKNOWN

    def select(self, p1: int, body: bytes) -> bytes:
        if not body or len(body) < 1 + body[0]:
            return SW_WRONG_LENGTH
        data = body[1 : 1 + body[0]]
        if p1 == 0x00 and data == MF:
            self.df, self.current = "mf", None
            return SW_OK
        if p1 == 0x04 and data == AID_VITALE:
            if "sw" in self.modes:
                return bytes.fromhex(self.modes["sw"])
            self.df, self.current = "app", None
            return SW_OK
        return SW_FILE_NOT_FOUND

    def read_binary(self, p1: int, p2: int, le: int) -> bytes:
        if p1 & 0x80:
            if p1 & 0x1F != 2:
                return SW_FILE_NOT_FOUND
            self.current = self.files[self.df]
            offset = p2
        else:
            if self.current is None:
                return SW_NOT_ALLOWED
            offset = (p1 << 8) | p2
        data = self.current
        if offset >= len(data):
            return SW_WRONG_P1P2
        left = len(data) - offset
        if le > left:
            return bytes([0x6C, left])
        chunk = data[offset : offset + le]
        if "getresponse" in self.modes:
            self.pending = chunk
            return bytes([0x61, len(chunk) & 0xFF])
        return chunk + SW_OK

    def get_response(self, le: int) -> bytes:
        if not self.pending:
            return SW_NO_DATA
        if le != len(self.pending):
            return bytes([0x6C, len(self.pending) & 0xFF])
        chunk, self.pending = self.pending, b""
        return chunk + SW_OK


QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            part = sock.recv(n - len(buf))
            if QUICKACK is not None and part:
                # vpcd writes a message's length and its payload separately: acknowledge at
                # once, or Nagle's algorithm on its side holds the payload back until our
                # delayed ACK (40 ms per message).
                sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        except OSError:
            return None
        if not part:
            return None
        buf += part
    return buf


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)


class Holder:
    """Inserts and removes the card (connects to and disconnects from vpcd)."""

    def __init__(self, card: Card, host: str, port: int, modes: dict[str, str]) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.modes = modes
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.want_in = True
        self.wake = threading.Event()
        self.stopping = False

    def say(self, what: str) -> None:
        sys.stdout.write(f"{what} {time.monotonic():.6f}\n")
        sys.stdout.flush()

    def toggle(self) -> None:
        with self.lock:
            self.want_in = not self.want_in
            sock = self.sock
        if sock is not None and not self.want_in:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        with self.lock:
            self.want_in = False
            sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.wake.set()

    def connect(self) -> socket.socket | None:
        deadline = time.monotonic() + 30
        while not self.stopping and time.monotonic() < deadline:
            try:
                return socket.create_connection((self.host, self.port), timeout=1)
            except OSError:
                time.sleep(0.05)
        return None

    def run(self) -> int:
        while not self.stopping:
            if not self.want_in:
                self.wake.wait()
                self.wake.clear()
                continue
            sock = self.connect()
            if sock is None:
                if not self.stopping:
                    sys.stderr.write(f"virtual_vitale: vpcd does not listen on {self.host}:{self.port}\n")
                    return 1
                break
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.sock = sock
            self.card.reset()
            self.say("inserted")
            why = self.serve(sock)
            with self.lock:
                self.sock = None
            with contextlib.suppress(OSError):
                sock.close()
            self.say("removed")
            if why == "remove-after":
                if "reinsert-after" in self.modes and not self.stopping:
                    time.sleep(float(self.modes["reinsert-after"]))
                else:
                    with self.lock:
                        self.want_in = False
            # "signal": want_in already says what to do; "vpcd": reconnect (pcscd restarted).
        return 0

    def serve(self, sock: socket.socket) -> str:
        """Answers vpcd until the card is pulled out ("signal", "remove-after") or vpcd goes ("vpcd")."""
        apdus = 0
        limit = int(self.modes["remove-after"]) if "remove-after" in self.modes else None
        while True:
            header = recv_exact(sock, 2)
            (size,) = struct.unpack(">H", header) if header is not None else (0,)
            payload = recv_exact(sock, size) if header is not None and size else b""
            if header is None or payload is None:
                return "signal" if (not self.want_in or self.stopping) else "vpcd"
            if size == 1:
                if payload[0] == 4:
                    send_frame(sock, self.card.atr)
                elif payload[0] in (0, 1, 2):
                    self.card.reset()
                continue
            if limit is not None and apdus >= limit:
                return "remove-after"  # pulled out in the middle of the read
            apdus += 1
            if "mute" in self.modes:
                continue  # the card never answers
            try:
                send_frame(sock, self.card.answer(payload))
            except OSError:
                return "signal" if (not self.want_in or self.stopping) else "vpcd"


def parse_modes(text: str) -> dict[str, str]:
    modes: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        modes[key] = value
    known = {
        "normal",
        "getresponse",
        "remove-after",
        "reinsert-after",
        "mute",
        "malformed",
        "sw",
        "vitale1",
        "atr",
    }
    unknown = set(modes) - known
    if unknown:
        raise SystemExit(f"virtual_vitale: unknown mode(s) {sorted(unknown)}")
    return modes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Virtual carte Vitale 2 for vpcd.")
    parser.add_argument("--data", required=True, type=Path, help="JSON data file of the card")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=35963)
    parser.add_argument("--mode", default="normal", help="comma-separated modes (see the module doc)")
    parser.add_argument("--removed", action="store_true", help="start with the card out (SIGUSR1 inserts)")
    args = parser.parse_args(argv)
    modes = parse_modes(args.mode)
    data = json.loads(args.data.read_text(encoding="utf-8"))
    identity_file, nir_file = build_files(list(data["persons"]), "malformed" in modes)
    holder = Holder(Card(identity_file, nir_file, modes), args.host, args.port, modes)
    holder.want_in = not args.removed
    signal.signal(signal.SIGUSR1, lambda *_: holder.toggle())
    signal.signal(signal.SIGTERM, lambda *_: holder.stop())
    signal.signal(signal.SIGINT, lambda *_: holder.stop())
    holder.say("ready")  # signals are handled from now on
    return holder.run()


if __name__ == "__main__":
    raise SystemExit(main())

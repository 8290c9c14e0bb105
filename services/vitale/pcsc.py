"""Reading a carte Vitale 2 through PC/SC: the APDU exchange and the pyscard transport.

The card flow (as public open-source readers do it):

1. ``SELECT`` the master file 3F00 (``00 A4 00 0C 02 3F 00``), ``READ BINARY`` by short file
   identifier 2 (``00 B0 82 00 Le``) → one BER-TLV ``65`` per person with ``80`` nom, ``81`` prénom,
   ``82`` date de naissance (AAAAMMJJ);
2. ``SELECT`` the application ``D2 50 00 00 02 56 49 54 41 4C 45`` ("VITALE") by name
   (``00 A4 04 0C 0B …``), ``READ BINARY`` SFI 2 → one ``65`` per person, same order, with
   ``93`` NIR and sometimes ``90`` nationalité.

Reads ask ``Le=00`` first: a shorter file answers ``6Cxx`` and the command is repeated with
``Le=xx``; a T=0 card may answer ``61xx``, then ``GET RESPONSE``. A file longer than 256 bytes is
read on at the next offset. The persons are then parsed by :func:`services.vitale.parse.parse_persons`.

Choice of reader: a name is matched as a case-insensitive substring of the PC/SC reader names
(the first matching reader that holds a card, else the first matching one); without a name,
the first reader, in PC/SC order, that holds a card. With two cards inserted and no name
given, the first reader wins: pass ``--reader`` to choose.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from services.vitale.backend import EventCallback, MonitorHandle
from services.vitale.model import (
    CardError,
    CardEvent,
    CardMute,
    CardRead,
    CardRemoved,
    CardStatusError,
    MalformedCardData,
    NoCard,
    NoReader,
    PcscServiceAbsent,
    ReaderUnavailable,
    UnsupportedCard,
)
from services.vitale.parse import check_atr, parse_persons

log = logging.getLogger("insdesk.vitale")

AID_VITALE = bytes.fromhex("D250000002564954414C45")  # D2 50 00 00 02 + "VITALE"
SFI_PERSONS = 2

MAX_APDUS_PER_READ = 200
MAX_FILE_SIZE = 0x7FFF  # READ BINARY offsets have 15 bits


_SW_MEANING = {
    0x6281: "données peut-être corrompues",
    0x6700: "longueur incorrecte",
    0x6981: "commande incompatible avec le fichier",
    0x6982: "données protégées (condition de sécurité non satisfaite)",
    0x6985: "conditions d'utilisation non satisfaites",
    0x6986: "commande non autorisée",
    0x6A81: "fonction non prise en charge",
    0x6A82: "fichier ou application introuvable",
    0x6A86: "paramètres incorrects",
    0x6B00: "paramètres incorrects",
    0x6D00: "instruction inconnue de la carte",
    0x6E00: "classe de commande non prise en charge",
    0x6F00: "erreur interne de la carte",
    0x6581: "erreur mémoire de la carte",
}


def _status_error(sw: int, action: str) -> CardStatusError:
    meaning = _SW_MEANING.get(sw, "code inattendu")
    sw_text = f"{sw:04X}"
    if sw == 0x6A82 and "application" in action:
        message = (
            f"Application Vitale introuvable sur la carte (code {sw_text}) : ce n'est pas une carte "
            "Vitale 2 lisible, ou elle est abîmée."
        )
    else:
        message = (
            f"La carte a refusé {action} (code {sw_text} : {meaning}) : ce n'est peut-être pas une "
            "carte Vitale 2, ou elle est abîmée."
        )
    return CardStatusError(message, sw=sw_text, detail=action)


Transmit = Callable[[bytes], tuple[bytes, int]]


class ApduSession:
    """The Vitale 2 command flow over any ``transmit(apdu) -> (data, sw)`` function."""

    def __init__(self, transmit: Transmit) -> None:
        self._transmit = transmit
        self.count = 0

    def _send(self, apdu: bytes) -> tuple[bytes, int]:
        self.count += 1
        if self.count > MAX_APDUS_PER_READ:
            raise MalformedCardData(
                "La carte ne termine pas l'échange : lecture abandonnée.",
                detail=f"plus de {MAX_APDUS_PER_READ} commandes",
            )
        return self._transmit(apdu)

    def command(self, apdu: bytes) -> tuple[bytes, int]:
        """Sends ``apdu``; repeats it with the right Le on ``6Cxx``; follows ``61xx`` with GET RESPONSE."""
        data, sw = self._send(apdu)
        if sw >> 8 == 0x6C and len(apdu) == 5:
            data, sw = self._send(apdu[:4] + bytes([sw & 0xFF]))
        collected = data
        while sw >> 8 == 0x61:
            get_response = bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF])
            data, sw = self._send(get_response)
            if sw >> 8 == 0x6C:
                data, sw = self._send(get_response[:4] + bytes([sw & 0xFF]))
            collected += data
        return collected, sw

    def select_mf(self) -> None:
        _, sw = self.command(bytes.fromhex("00A4000C023F00"))
        if sw != 0x9000:
            raise _status_error(sw, "la sélection du fichier principal (3F00)")

    def select_vitale(self) -> None:
        _, sw = self.command(bytes([0x00, 0xA4, 0x04, 0x0C, len(AID_VITALE)]) + AID_VITALE)
        if sw != 0x9000:
            raise _status_error(sw, "la sélection de l'application Vitale")

    def read_sfi(self, sfi: int, what: str) -> bytes:
        """The whole file with short identifier ``sfi``, in chunks of up to 256 bytes."""
        content = b""
        while True:
            if not content:
                apdu = bytes([0x00, 0xB0, 0x80 | sfi, 0x00, 0x00])
            else:
                offset = len(content)
                apdu = bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, 0x00])
            data, sw = self.command(apdu)
            if sw == 0x9000:
                content += data
                if len(data) < 256 or not data:
                    return content
            elif sw == 0x6282:  # end of file reached before Le bytes
                return content + data
            elif sw == 0x6B00 and content:  # offset past the end: the file is exactly read
                return content
            else:
                raise _status_error(sw, f"la lecture {what}")
            if len(content) > MAX_FILE_SIZE - 256:
                raise MalformedCardData(
                    "Fichier de carte trop long : lecture abandonnée.",
                    detail=f"{what}: {len(content)} octets",
                )

    def read_vitale(self) -> tuple[bytes, bytes]:
        """The identity file (under 3F00) and the NIR file (under the Vitale application)."""
        self.select_mf()
        identity = self.read_sfi(SFI_PERSONS, "des identités")
        self.select_vitale()
        nirs = self.read_sfi(SFI_PERSONS, "des numéros de sécurité sociale")
        return identity, nirs


# --- PC/SC (pyscard) ------------------------------------------------------------------------

_NO_SERVICE = (0x8010001D, 0x8010001E)  # SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED
_NO_READERS = 0x8010002E
_UNKNOWN_READER = (0x80100009, 0x80100017)  # unknown reader, reader unavailable
_NO_SMARTCARD = 0x8010000C
_REMOVED = 0x80100069
_RESET = 0x80100068
_MUTE = (0x80100066, 0x80100067)  # unresponsive, unpowered
_UNSUPPORTED = 0x80100065
_SHARING = 0x8010000B
_TIMEOUT = 0x8010000A


def _hex(code: int) -> str:
    return f"0x{code & 0xFFFFFFFF:08X}"


def pcsc_error(hresult: int, action: str, reader: str | None = None) -> CardError:
    """The French error for a PC/SC result code (``SCARD_E_…``/``SCARD_W_…``)."""
    code = hresult & 0xFFFFFFFF
    detail = f"{action}: {_hex(code)}"
    where = f" « {reader} »" if reader else ""
    if code in _NO_SERVICE:
        return PcscServiceAbsent(
            "Service PC/SC absent : lancez pcscd (paquet pcscd) puis recommencez.", detail=detail
        )
    if code == _NO_READERS:
        return NoReader(
            "Aucun lecteur de carte détecté : branchez le lecteur puis recommencez.", detail=detail
        )
    if code in _UNKNOWN_READER:
        return NoReader(f"Le lecteur{where} n'est plus disponible (débranché ?).", detail=detail)
    if code == _NO_SMARTCARD:
        return NoCard(f"Aucune carte dans le lecteur{where} : insérez la carte Vitale.", detail=detail)
    if code == _REMOVED:
        return CardRemoved(
            "Carte retirée pendant la lecture : réinsérez-la et laissez-la en place jusqu'à la fin.",
            detail=detail,
        )
    if code == _RESET:
        return CardRemoved(
            "La carte a été réinitialisée par un autre programme pendant la lecture : recommencez.",
            code="card_reset",
            detail=detail,
        )
    if code in _MUTE:
        return CardMute(
            f"La carte ne répond pas{where} : vérifiez le sens d'insertion, nettoyez la puce, réessayez.",
            detail=detail,
        )
    if code == _UNSUPPORTED:
        return UnsupportedCard("Carte non prise en charge par le lecteur.", detail=detail)
    if code == _SHARING:
        return CardError(
            f"Le lecteur{where} est utilisé par un autre programme : fermez-le puis recommencez.",
            code="reader_busy",
            detail=detail,
        )
    return CardError(
        f"Erreur de communication avec le lecteur{where} ({_hex(code)}) : réessayez.",
        code="pcsc_error",
        detail=detail,
    )


def pcsc_exception_error(exc: Exception, action: str) -> CardError:
    """Maps a pyscard exception (``EstablishContextException``… carry ``hresult``)."""
    hresult = getattr(exc, "hresult", None)
    if isinstance(hresult, int) and hresult:
        return pcsc_error(hresult, action)
    return CardError(f"Erreur PC/SC : {exc}", code="pcsc_error", detail=f"{action}: {type(exc).__name__}")


def _scard() -> Any:
    try:
        from smartcard import scard
    except ImportError as err:  # pragma: no cover - pyscard is a dependency
        raise ReaderUnavailable(
            "Lecture PC/SC indisponible : le module pyscard n'est pas installé.", detail=str(err)
        ) from err
    return scard


class _Context:
    """One PC/SC context (never shared between threads, never cached between reads)."""

    def __init__(self, scard: Any) -> None:
        self.scard = scard
        hresult, self.handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "SCardEstablishContext")
        self.abandoned = False  # a call is stuck (mute card): never touch the context again

    def release(self) -> None:
        if not self.abandoned:
            self.scard.SCardReleaseContext(self.handle)

    def readers(self) -> list[str]:
        hresult, readers = self.scard.SCardListReaders(self.handle, [])
        if (hresult & 0xFFFFFFFF) == _NO_READERS:
            return []
        if hresult != self.scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "SCardListReaders")
        return list(readers)

    def states(self, readers: list[str], timeout_ms: int = 0) -> dict[str, tuple[int, bytes]]:
        """Reader name → (event state, ATR) right now (or after a change within ``timeout_ms``)."""
        if not readers:
            return {}
        query = [(name, self.scard.SCARD_STATE_UNAWARE) for name in readers]
        hresult, states = self.scard.SCardGetStatusChange(self.handle, timeout_ms, query)
        if hresult != self.scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "SCardGetStatusChange")
        return {name: (state, bytes(atr)) for name, state, atr in states}

    def wait_change(self, reader: str, current: int, timeout_ms: int) -> tuple[int, bytes] | None:
        hresult, states = self.scard.SCardGetStatusChange(self.handle, timeout_ms, [(reader, current)])
        if (hresult & 0xFFFFFFFF) == _TIMEOUT:
            return None
        if hresult != self.scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "SCardGetStatusChange", reader)
        _, state, atr = states[0]
        return state, bytes(atr)


@contextlib.contextmanager
def _context(scard: Any) -> Iterator[_Context]:
    ctx = _Context(scard)
    try:
        yield ctx
    finally:
        ctx.release()


class PcscReader:
    """Reads a carte Vitale 2 through PC/SC (pyscard → libpcsclite → pcscd → reader driver).

    A fresh PC/SC context is made for every operation (none is cached, so a restarted pcscd
    is picked up). ``apdu_timeout``: seconds a card may take to answer one command before it
    is declared mute (pcscd itself may wait forever on some drivers).
    """

    def __init__(self, *, apdu_timeout: float = 5.0) -> None:
        self.apdu_timeout = apdu_timeout

    # -- reader choice

    def list_readers(self) -> list[str]:
        with _context(_scard()) as ctx:
            return ctx.readers()

    def _choose(self, ctx: _Context, wanted: str | None) -> tuple[str, int, bytes]:
        readers = ctx.readers()
        if not readers:
            raise NoReader("Aucun lecteur de carte détecté : branchez le lecteur puis recommencez.")
        candidates = readers
        if wanted:
            candidates = [name for name in readers if wanted.casefold() in name.casefold()]
            if not candidates:
                raise NoReader(
                    f"Aucun lecteur ne correspond à « {wanted} ». Lecteurs présents : "
                    + ", ".join(readers)
                    + ".",
                    code="unknown_reader",
                )
        states = ctx.states(candidates)
        present = ctx.scard.SCARD_STATE_PRESENT
        for name in candidates:
            state, atr = states.get(name, (0, b""))
            if state & present:
                return name, state, atr
        if wanted:
            raise NoCard(f"Aucune carte dans le lecteur « {candidates[0]} » : insérez la carte Vitale.")
        raise NoCard(
            "Aucune carte dans " + ("le lecteur" if len(readers) == 1 else "les lecteurs") + " : "
            "insérez la carte Vitale (puce vers le haut, vers le lecteur).",
            detail=", ".join(readers),
        )

    # -- reading

    def read(self, reader: str | None = None) -> CardRead:
        scard = _scard()
        ctx = _Context(scard)
        try:
            name, state, atr = self._choose(ctx, reader)
            if state & scard.SCARD_STATE_MUTE:
                raise CardMute(
                    f"La carte du lecteur « {name} » ne répond pas : vérifiez le sens d'insertion, "
                    "nettoyez la puce, réessayez.",
                    detail="SCARD_STATE_MUTE",
                )
            check_atr(atr)
            return self._read_card(ctx, name, atr, state)
        finally:
            ctx.release()

    def _read_card(self, ctx: _Context, name: str, atr: bytes, state: int) -> CardRead:
        scard = ctx.scard
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        hresult, card, protocol = scard.SCardConnect(ctx.handle, name, scard.SCARD_SHARE_SHARED, protocols)
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._explain(ctx, name, state, pcsc_error(hresult, "SCardConnect", name))
        in_transaction = False
        try:
            hresult = scard.SCardBeginTransaction(card)
            if hresult != scard.SCARD_S_SUCCESS:
                raise self._explain(ctx, name, state, pcsc_error(hresult, "SCardBeginTransaction", name))
            in_transaction = True

            def transmit(apdu: bytes) -> tuple[bytes, int]:
                return self._transmit(ctx, card, protocol, name, state, apdu)

            identity, nirs = ApduSession(transmit).read_vitale()
            persons = parse_persons(identity, nirs)
        finally:
            if not ctx.abandoned:
                if in_transaction:
                    scard.SCardEndTransaction(card, scard.SCARD_LEAVE_CARD)
                scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        return CardRead(reader=name, atr=atr.hex().upper(), persons=persons)

    def _transmit(
        self, ctx: _Context, card: Any, protocol: int, name: str, initial: int, apdu: bytes
    ) -> tuple[bytes, int]:
        scard = ctx.scard
        result: list[Any] = []

        def call() -> None:
            result.append(scard.SCardTransmit(card, protocol, list(apdu)))

        worker = threading.Thread(target=call, name="insdesk-pcsc-transmit", daemon=True)
        worker.start()
        worker.join(self.apdu_timeout)
        if worker.is_alive():
            ctx.abandoned = True  # the call stays stuck in pcscd until the card goes away
            raise CardMute(
                f"La carte du lecteur « {name} » ne répond plus (aucune réponse en "
                f"{self.apdu_timeout:g} s) : retirez-la, vérifiez-la et réessayez.",
                detail=f"APDU {apdu[:4].hex().upper()} sans réponse",
            )
        hresult, response = result[0]
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._explain(ctx, name, initial, pcsc_error(hresult, "SCardTransmit", name))
        response = bytes(response)
        if len(response) < 2:
            # vpcd (and some drivers) report a card gone in the middle of an exchange as an
            # empty answer.
            failure = CardError(
                f"Échange interrompu avec la carte du lecteur « {name} » : réessayez.",
                code="card_io",
                detail=f"réponse de {len(response)} octet(s) à {apdu[:4].hex().upper()}",
            )
            raise self._explain(ctx, name, initial, failure)
        return response[:-2], int.from_bytes(response[-2:], "big")

    def _explain(self, ctx: _Context, name: str, initial: int, error: CardError) -> CardError:
        """A failed exchange because the card went away (or was swapped) is reported as such.

        pcscd notices a removal at its next poll of the reader (a few hundred ms): wait for it
        a little. The high 16 bits of a PC/SC reader state count the insertions/removals.
        """
        if isinstance(error, CardRemoved | PcscServiceAbsent | NoReader):
            return error
        present = ctx.scard.SCARD_STATE_PRESENT
        try:
            state = ctx.states([name]).get(name, (0, b""))[0]
            deadline = time.monotonic() + 1.5
            while state & present and state >> 16 == initial >> 16 and time.monotonic() < deadline:
                change = ctx.wait_change(name, state, 300)
                if change is not None:
                    state = change[0]
        except CardError:
            return error
        if not state & present or state >> 16 != initial >> 16:
            return CardRemoved(
                "Carte retirée pendant la lecture : réinsérez-la et laissez-la en place jusqu'à la fin.",
                detail=error.detail,
            )
        return error

    # -- waiting and events

    def wait_for_card(self, timeout: float) -> CardEvent:
        scard = _scard()
        deadline = time.monotonic() + timeout
        with _context(scard) as ctx:
            while True:
                readers = ctx.readers()
                states = ctx.states(readers)
                for name in readers:
                    state, atr = states[name]
                    if state & scard.SCARD_STATE_PRESENT:
                        return CardEvent(reader=name, atr=atr.hex().upper())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NoCard(f"Aucune carte insérée en {timeout:g} s.")
                query = [(name, states[name][0]) for name in readers]
                query.append((_PNP, scard.SCARD_STATE_UNAWARE))
                hresult, _ = scard.SCardGetStatusChange(ctx.handle, int(min(left, 1.0) * 1000), query)
                if hresult not in (scard.SCARD_S_SUCCESS, scard.SCARD_E_TIMEOUT):
                    raise pcsc_error(hresult, "SCardGetStatusChange")

    def monitor(self, on_insert: EventCallback, on_remove: EventCallback) -> MonitorHandle:
        """Insertion/removal events, from a thread of ours blocked in ``SCardGetStatusChange``.

        Not pyscard's ``CardMonitor``: that one is a process-wide singleton whose thread cannot be
        stopped, prints tracebacks and dies for good when pcscd restarts (Debian's socket-activated
        pcscd exits when idle). This monitor stops promptly (``SCardCancel``), reconnects to a
        restarted pcscd (cards present then are reported again) and follows readers plugged in
        or out. Fails at once with :class:`PcscServiceAbsent` when pcscd is not there.
        """
        with _context(_scard()):
            pass
        watcher = _Watcher(_scard(), on_insert, on_remove)
        watcher.start()
        return MonitorHandle(watcher.stop)


_PNP = "\\\\?PnP?\\Notification"


class _Watcher(threading.Thread):
    """The monitoring thread of :meth:`PcscReader.monitor`."""

    def __init__(self, scard: Any, on_insert: EventCallback, on_remove: EventCallback) -> None:
        super().__init__(name="insdesk-card-monitor", daemon=True)
        self.scard = scard
        self.on_insert = on_insert
        self.on_remove = on_remove
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ctx: _Context | None = None
        self.cards: dict[str, tuple[int, str]] = {}  # reader → (event counter, ATR) of the card in it

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            if self.ctx is not None:
                self.scard.SCardCancel(self.ctx.handle)
        if threading.current_thread() is not self:
            self.join(5)

    def _deliver(self, callback: EventCallback, event: CardEvent) -> None:
        try:
            callback(event)
        except Exception:  # a failing callback must not end the monitoring
            log.exception("card event callback failed")

    def _removed(self, reader: str) -> None:
        _, atr = self.cards.pop(reader)
        self._deliver(self.on_remove, CardEvent(reader, atr))

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                ctx = _Context(self.scard)
            except CardError:
                self.stopping.wait(1.0)  # pcscd absent or restarting: try again
                continue
            with self.lock:
                self.ctx = ctx
            try:
                self._watch(ctx)
            except CardError as err:
                log.warning("card monitor: %s (%s), reconnecting", err.message, err.detail)
                for reader in list(self.cards):
                    self._removed(reader)
                self.stopping.wait(0.5)
            finally:
                with self.lock:
                    self.ctx = None
                    ctx.release()

    def _watch(self, ctx: _Context) -> None:
        scard = self.scard
        known: dict[str, int] = {}
        while not self.stopping.is_set():
            readers = ctx.readers()
            for gone in [r for r in self.cards if r not in readers]:
                self._removed(gone)
            query = [(r, known.get(r, scard.SCARD_STATE_UNAWARE)) for r in readers]
            query.append((_PNP, known.get(_PNP, scard.SCARD_STATE_UNAWARE)))
            hresult, states = scard.SCardGetStatusChange(ctx.handle, 1000, query)
            code = hresult & 0xFFFFFFFF
            if code == _TIMEOUT:
                continue
            if code == 0x80100002:  # SCARD_E_CANCELLED: stop() was called
                return
            if code == _UNKNOWN_READER[0]:
                continue  # a reader went away meanwhile: list them again
            if hresult != scard.SCARD_S_SUCCESS:
                raise pcsc_error(hresult, "SCardGetStatusChange")
            for name, state, atr in states:
                known[name] = state & ~scard.SCARD_STATE_CHANGED
                if name == _PNP:
                    continue
                present = bool(state & scard.SCARD_STATE_PRESENT)
                counter = state >> 16
                if name in self.cards and (not present or self.cards[name][0] != counter):
                    self._removed(name)
                if present and name not in self.cards:
                    self.cards[name] = (counter, bytes(atr).hex().upper())
                    self._deliver(self.on_insert, CardEvent(name, self.cards[name][1]))


# --- simulated reader (demo) ----------------------------------------------------------------


__all__ = ["ApduSession", "PcscReader", "pcsc_error", "pcsc_exception_error"]

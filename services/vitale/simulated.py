"""A simulated reader with a card in it, served from a JSON data file (``insdesk demo`` without
hardware). The values are encoded and decoded as on a card (BER-TLV), so it gives exactly what a
card with these values would."""

from __future__ import annotations

import importlib.resources
import json
import threading
from pathlib import Path

from services.vitale import tlv
from services.vitale.backend import EventCallback, MonitorHandle
from services.vitale.model import CardEvent, CardPerson, CardRead, NoCard, NoReader, ReaderUnavailable
from services.vitale.parse import (
    TAG_BIRTH_DATE,
    TAG_FIRST_NAME,
    TAG_NAME,
    TAG_NATIONALITY,
    TAG_NIR,
    TAG_PERSON,
    parse_persons,
)

SIMULATED_READER_NAME = "Lecteur simulé insdesk"
ATR_SIMULATED = "3B751300004709EA9000"


def default_demo_data() -> Path:
    """The demo card shipped with insdesk (``fixtures/vitale/demo.json``)."""
    return Path(str(importlib.resources.files("fixtures") / "vitale" / "demo.json"))


def load_card_file(path: Path) -> tuple[CardPerson, ...]:
    """Persons of a card data file (the JSON format of ``fixtures/vitale/``).

    ``{"label": str, "persons": [{"name", "first_name", "birth_date": "AAAAMMJJ", "nir"?,
    "nationality"?, "rank"?}]}``; values are encoded and decoded as on a card (BER-TLV), so the
    simulated reader gives exactly what a card with these values would.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = list(data["persons"])
        identity = b"".join(
            tlv.encode(
                TAG_PERSON,
                tlv.encode(TAG_NAME, str(row["name"]).encode("latin-1"))
                + tlv.encode(TAG_FIRST_NAME, str(row["first_name"]).encode("latin-1"))
                + tlv.encode(TAG_BIRTH_DATE, str(row["birth_date"]).encode("ascii")),
            )
            for row in rows
        )
        nirs = b"".join(
            tlv.encode(
                TAG_PERSON,
                (tlv.encode(TAG_NIR, str(row["nir"]).encode("ascii")) if row.get("nir") else b"")
                + (
                    tlv.encode(TAG_NATIONALITY, str(row["nationality"]).encode("latin-1"))
                    if row.get("nationality")
                    else b""
                ),
            )
            for row in rows
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ReaderUnavailable(
            f"Fichier de la carte simulée illisible : {path.name}.",
            code="simulated_card_file",
            detail=str(err),
        ) from err
    persons = parse_persons(identity, nirs)
    ranks = [row.get("rank") for row in rows]
    return tuple(
        CardPerson(
            name=p.name,
            first_name=p.first_name,
            birth_date_raw=p.birth_date_raw,
            nir=p.nir,
            rank=rank if isinstance(rank, int) else None,
            nationality=p.nationality,
        )
        for p, rank in zip(persons, ranks, strict=True)
    )


class SimulatedReader:
    """A reader with a card in it, served from a data file (``insdesk demo`` without hardware).

    It behaves like a card being inserted: a monitor is told about the card ``insert_delay``
    seconds after it starts watching (and at every :meth:`insert`), and :meth:`remove` takes
    the card out. ``read`` fails like a real reader would (no card, unknown reader name).
    """

    def __init__(
        self,
        data_file: Path | None = None,
        *,
        inserted: bool = True,
        insert_delay: float = 0.5,
        name: str = SIMULATED_READER_NAME,
    ) -> None:
        self.data_file = data_file or default_demo_data()
        self.name = name
        self.insert_delay = insert_delay
        self._lock = threading.Lock()
        self._present = inserted
        self._monitors: list[tuple[EventCallback, EventCallback]] = []
        self._changed = threading.Condition(self._lock)

    def list_readers(self) -> list[str]:
        return [self.name]

    def _check_name(self, reader: str | None) -> None:
        if reader and reader.casefold() not in self.name.casefold():
            raise NoReader(
                f"Aucun lecteur ne correspond à « {reader} ». Lecteurs présents : {self.name}.",
                code="unknown_reader",
            )

    def read(self, reader: str | None = None) -> CardRead:
        self._check_name(reader)
        with self._lock:
            present = self._present
        if not present:
            raise NoCard(f"Aucune carte dans le lecteur « {self.name} » : insérez la carte Vitale.")
        return CardRead(reader=self.name, atr=ATR_SIMULATED, persons=load_card_file(self.data_file))

    def insert(self, data_file: Path | None = None) -> None:
        """Puts a card (this data file, or the current one) in the reader and tells the monitors."""
        with self._lock:
            if data_file is not None:
                self.data_file = data_file
            self._present = True
            monitors = list(self._monitors)
            self._changed.notify_all()
        for on_insert, _ in monitors:
            on_insert(CardEvent(self.name, ATR_SIMULATED))

    def remove(self) -> None:
        with self._lock:
            was = self._present
            self._present = False
            monitors = list(self._monitors)
            self._changed.notify_all()
        if was:
            for _, on_remove in monitors:
                on_remove(CardEvent(self.name, ATR_SIMULATED))

    def wait_for_card(self, timeout: float) -> CardEvent:
        with self._changed:
            if not self._changed.wait_for(lambda: self._present, timeout):
                raise NoCard(f"Aucune carte insérée en {timeout:g} s.")
        return CardEvent(self.name, ATR_SIMULATED)

    def monitor(self, on_insert: EventCallback, on_remove: EventCallback) -> MonitorHandle:
        pair = (on_insert, on_remove)
        stopped = threading.Event()

        def first_insert() -> None:
            if stopped.wait(self.insert_delay):
                return
            with self._lock:
                self._monitors.append(pair)
                present = self._present
            if present:
                on_insert(CardEvent(self.name, ATR_SIMULATED))

        threading.Thread(target=first_insert, name="insdesk-simulated-card", daemon=True).start()

        def stop() -> None:
            stopped.set()
            with self._lock:
                if pair in self._monitors:
                    self._monitors.remove(pair)

        return MonitorHandle(stop)


__all__ = ["ATR_SIMULATED", "SIMULATED_READER_NAME", "SimulatedReader", "default_demo_data", "load_card_file"]

"""The local DMP's state: patients (whose DMP is open, closed or absent) and the registered entries.

Patients file (JSON, ``fixtures/dmp_patients.json``; format in ``docs/dmp-simulator.md``)::

    {"unknown_ins": "open",
     "patients": [{"ins": "279035121518989", "dmp": "closed", "closed_on": "2024-03-20",
                   "reason": "Demande du patient"}, ...]}

``unknown_ins``: the DMP of an INS the file does not list (``open``: every patient has one, as
most do since Mon Espace Santé; ``absent``: only the listed ones).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from services.errors import BadRequest

DEFAULT_PATIENTS_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "dmp_patients.json"
DMP_STATES = ("open", "closed", "absent")


@dataclass(frozen=True)
class DmpPatient:
    ins: str
    dmp: str = "open"
    closed_on: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Patients:
    unknown_ins: str = "open"
    patients: dict[str, DmpPatient] = field(default_factory=dict)

    def state(self, ins: str) -> DmpPatient:
        return self.patients.get(ins) or DmpPatient(ins=ins, dmp=self.unknown_ins)


def load_patients(path: str | Path | None = None) -> Patients:
    source = Path(path) if path is not None else DEFAULT_PATIENTS_PATH
    try:
        data: Any = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadRequest(
            f"Fichier de patients du DMP simulé introuvable : {source}.", code="dmp_sim_patients"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(
            f"Fichier de patients du DMP simulé illisible : {source}.",
            code="dmp_sim_patients",
            detail=str(exc),
        ) from None
    return patients_from_json(data, source=str(source))


def patients_from_json(data: Any, *, source: str = "patients") -> Patients:
    def bad(why: str) -> BadRequest:
        return BadRequest(
            f"Fichier de patients du DMP simulé invalide ({source}) : {why}.", code="dmp_sim_patients"
        )

    if not isinstance(data, dict):
        raise bad("un objet JSON est attendu")
    unknown = data.get("unknown_ins", "open")
    if unknown not in ("open", "absent"):
        raise bad("unknown_ins vaut open ou absent")
    found: dict[str, DmpPatient] = {}
    for index, item in enumerate(data.get("patients", [])):
        if not isinstance(item, dict) or not isinstance(item.get("ins"), str):
            raise bad(f"patient n° {index + 1} sans INS")
        state = item.get("dmp", "open")
        if state not in DMP_STATES:
            raise bad(f"état du DMP « {state} » inconnu (open, closed, absent)")
        ins = item["ins"].strip()
        if len(ins) != 15:
            raise bad(f"INS « {ins} » : 15 caractères attendus")
        found[ins] = DmpPatient(
            ins=ins, dmp=state, closed_on=item.get("closed_on"), reason=item.get("reason")
        )
    return Patients(unknown_ins=unknown, patients=found)


@dataclass(frozen=True)
class Entry:
    """A document entry of the registry."""

    entry_uuid: str
    unique_id: str
    patient_id: str  # CX
    ins: str
    status: str
    hash: str
    size: int
    mime_type: str
    confidentiality: tuple[tuple[str, str], ...]
    class_code: tuple[str, str]
    type_code: tuple[str, str]
    format_code: tuple[str, str]
    author_institution: str
    submission_set_uid: str
    document: bytes
    replaces: str | None = None  # entryUUID of the replaced entry


@dataclass
class Registry:
    """Entries by uniqueId, guarded by a lock (the server is threaded)."""

    entries: dict[str, Entry] = field(default_factory=dict)
    submission_sets: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def new_entry_uuid() -> str:
        return f"urn:uuid:{uuid.uuid4()}"

    def by_unique_id(self, unique_id: str) -> Entry | None:
        return self.entries.get(unique_id)

    def by_entry_uuid(self, entry_uuid: str) -> Entry | None:
        for entry in self.entries.values():
            if entry.entry_uuid == entry_uuid:
                return entry
        return None

    def set_status(self, entry: Entry, status: str) -> Entry:
        updated = replace(entry, status=status)
        self.entries[entry.unique_id] = updated
        return updated

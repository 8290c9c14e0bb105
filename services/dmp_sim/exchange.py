"""What a transaction works on (:class:`Context`: the patients, the registry, the trust anchor, the
fault mode) and what the server answers and records (:class:`Result`); the patient's DMP state
check every write goes through."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from services.dmp_sim.registry import Patients, Registry
from services.dmp_sim.security import Vihf
from services.dmp_sim.soap import refuse


@dataclass
class Result:
    """What the server answers and records."""

    http_status: int = 200
    content_type: str = "application/soap+xml; charset=utf-8"
    body: bytes = b""
    outcome: str = ""
    transaction: str | None = None
    action: str | None = None
    message_id: str | None = None
    vihf: Vihf | None = None
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    patient_id: str | None = None
    unique_ids: list[str] = field(default_factory=list)


@dataclass
class Context:
    patients: Patients
    registry: Registry
    trust_ca: str | None
    now: Callable[[], dt.datetime]
    mtom_answers: bool = True
    forced_error: str | None = None  # a RegistryError code every request gets (fault mode)


def patient_gate(ctx: Context, ins: str) -> None:
    state = ctx.patients.state(ins)
    if state.dmp == "absent":
        raise refuse("XDSUnknownPatientId", f"INS {ins}")
    if state.dmp == "closed":
        when = f" le {state.closed_on}" if state.closed_on else ""
        raise refuse("DMPClosed", f"DMP fermé{when}" + (f" ({state.reason})" if state.reason else ""))

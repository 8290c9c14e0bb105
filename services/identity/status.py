"""The identity status state machine and the flag constraints (pure, no database).

Rules implemented (RNIV 2.0, Guide d'implémentation de l'INS):

* RNIV **EXI SI 07** — four statuses on two independent axes: "INSi retrieval/verification
  succeeded" and "high-trust document checked"::

      PROV  = neither          RECUP = INSi only
      VALI  = document only    QUAL  = both

  PROV→RECUP and VALI→QUAL by a successful INSi call whose traits match (or are confirmed);
  PROV→VALI and RECUP→QUAL by recording a checked high-trust document. Editing a strict trait
  of a RECUP/VALI/QUAL identity, setting a *douteuse*/*fictive* flag and a déqualification send
  it back to PROV.
* **EXI SI 08 / EXI ID 29** — only a QUAL identity may carry and transmit the matricule INS and
  its OID (:func:`ins_usable`).
* **EXI SI 09 / EXI ID 24/26** — flags *douteuse*, *fictive*, *homonyme*: douteuse and fictive
  are never combined, only douteuse + homonyme combine (so fictive + homonyme is refused too);
  douteuse/fictive keep the identity PROV, forbid INSi calls and invalidate the stored
  matricule/OID (:func:`check_flag_set`, :func:`check_insi_allowed`).

What the identity keeps after each event (:data:`EFFECTS`), decided from those rules:

================================  ==============  ===========================================
event                             INS             proofs already recorded
================================  ==============  ===========================================
INSI_MATCH                        attached        kept, still count (VALI→QUAL)
DOCUMENT_CHECKED                  kept            the new proof is recorded and counts
STRICT_TRAIT_EDITED               invalidated     kept as records, no longer count
FLAG_DOUBTFUL_OR_FICTITIOUS       invalidated     kept as records, no longer count
DEQUALIFIED                       invalidated     kept as records, no longer count
INS_INVALIDATED                   invalidated     kept, still count (RECUP→PROV, QUAL→VALI)
================================  ==============  ===========================================

"Invalidated" means the matricule/OID leave the identity row and stay in ``ins_history``
(source ``invalidated``): the INS was checked against other traits (an edit), or the identity
is no longer trusted (flag, déqualification). Proofs are never deleted (traceability), but after
a return to PROV the document must be checked again: it was checked against the old traits, or
the identity is now in doubt. INS_INVALIDATED (INSi says the matricule is no longer valid, or
the agent removes a wrong INS) only removes the INSi axis and keeps the document axis.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from services.errors import BadRequest
from services.storage.models import Status

__all__ = [
    "EFFECTS",
    "Effect",
    "Event",
    "Flag",
    "Status",
    "blocking_flags",
    "check_flag_clear",
    "check_flag_set",
    "check_insi_allowed",
    "ins_usable",
    "next_status",
]


class Event(enum.StrEnum):
    """What can happen to an identity and changes (or may change) its status."""

    INSI_MATCH = "insi_match"
    """A successful INSi retrieval/verification with matching (or agent-confirmed) traits."""
    DOCUMENT_CHECKED = "document_checked"
    """A high-trust identity document was checked (EXI ID 19)."""
    STRICT_TRAIT_EDITED = "strict_trait_edited"
    """A strict trait was changed."""
    FLAG_DOUBTFUL_OR_FICTITIOUS = "flag_doubtful_or_fictitious"
    """The *douteuse* or *fictive* flag was set (EXI SI 09)."""
    DEQUALIFIED = "dequalified"
    """Déqualification by an authorised user."""
    INS_INVALIDATED = "ins_invalidated"
    """The INS attached to the identity is no longer valid (INSi verification, manual removal)."""


class Flag(enum.StrEnum):
    """Identity flags (EXI SI 09, EXI ID 24/26)."""

    DOUTEUSE = "douteuse"
    FICTIVE = "fictive"
    HOMONYME = "homonyme"

    @property
    def label(self) -> str:
        return _FLAG_LABELS[self]


_FLAG_LABELS = {
    Flag.DOUTEUSE: "identité douteuse",
    Flag.FICTIVE: "identité fictive",
    Flag.HOMONYME: "homonyme",
}

BLOCKING_FLAGS: frozenset[Flag] = frozenset({Flag.DOUTEUSE, Flag.FICTIVE})
"""Flags that keep the identity PROV, forbid INSi and invalidate the INS (EXI SI 09)."""

# The only combinations of flags allowed (EXI SI 09, EXI ID 24/26).
_ALLOWED_FLAG_SETS: frozenset[frozenset[Flag]] = frozenset(
    {
        frozenset(),
        frozenset({Flag.DOUTEUSE}),
        frozenset({Flag.FICTIVE}),
        frozenset({Flag.HOMONYME}),
        frozenset({Flag.DOUTEUSE, Flag.HOMONYME}),
    }
)


@dataclass(frozen=True)
class Effect:
    """What an event does to the INS and to the recorded proofs (see the module docstring)."""

    keeps_ins: bool
    """False: the stored matricule/OID are invalidated (moved to the history)."""
    proofs_count: bool
    """False: recorded proofs stay as records but no longer establish validation."""
    attaches_ins: bool = False
    records_proof: bool = False


EFFECTS: dict[Event, Effect] = {
    Event.INSI_MATCH: Effect(keeps_ins=True, proofs_count=True, attaches_ins=True),
    Event.DOCUMENT_CHECKED: Effect(keeps_ins=True, proofs_count=True, records_proof=True),
    Event.STRICT_TRAIT_EDITED: Effect(keeps_ins=False, proofs_count=False),
    Event.FLAG_DOUBTFUL_OR_FICTITIOUS: Effect(keeps_ins=False, proofs_count=False),
    Event.DEQUALIFIED: Effect(keeps_ins=False, proofs_count=False),
    Event.INS_INVALIDATED: Effect(keeps_ins=False, proofs_count=True),
}

# (insi_ok, document_ok) <-> status (EXI SI 07).
_AXES: dict[Status, tuple[bool, bool]] = {
    Status.PROV: (False, False),
    Status.RECUP: (True, False),
    Status.VALI: (False, True),
    Status.QUAL: (True, True),
}
_FROM_AXES: dict[tuple[bool, bool], Status] = {v: k for k, v in _AXES.items()}


def _status(value: Status | str) -> Status:
    return value if isinstance(value, Status) else Status(value)


def next_status(current: Status | str, event: Event) -> Status:
    """The status after ``event`` (RNIV EXI SI 07). Total: an event that does not apply keeps the status."""
    insi_ok, document_ok = _AXES[_status(current)]
    if event is Event.INSI_MATCH:
        insi_ok = True
    elif event is Event.DOCUMENT_CHECKED:
        document_ok = True
    elif event is Event.INS_INVALIDATED:
        insi_ok = False
    else:  # STRICT_TRAIT_EDITED, FLAG_DOUBTFUL_OR_FICTITIOUS, DEQUALIFIED
        insi_ok = document_ok = False
    return _FROM_AXES[(insi_ok, document_ok)]


def blocking_flags(flags: Iterable[Flag | str]) -> frozenset[Flag]:
    """The douteuse/fictive flags among ``flags``."""
    return frozenset(Flag(f) for f in flags) & BLOCKING_FLAGS


def check_flag_set(current_flags: Iterable[Flag | str], new: Flag | str) -> frozenset[Flag]:
    """The flags after setting ``new``.

    BadRequest (French) when the combination is forbidden (EXI SI 09, EXI ID 24/26).
    """
    current = frozenset(Flag(f) for f in current_flags)
    flag = Flag(new)
    if flag in current:
        raise BadRequest(f"L'identité porte déjà l'attribut « {flag.label} ».", code="flag_already_set")
    result = current | {flag}
    if result in _ALLOWED_FLAG_SETS:
        return result
    if {Flag.DOUTEUSE, Flag.FICTIVE} <= result:
        message = (
            "Une identité ne peut pas être à la fois douteuse et fictive : "
            "retirez d'abord l'attribut déjà posé (EXI SI 09)."
        )
    else:
        message = (
            "Une identité fictive ne peut porter aucun autre attribut ; seuls « douteuse » et "
            "« homonyme » peuvent être combinés (EXI SI 09)."
        )
    raise BadRequest(message, code="flag_combination")


def check_flag_clear(current_flags: Iterable[Flag | str], flag: Flag | str) -> frozenset[Flag]:
    """The flags after clearing ``flag``; BadRequest when it is not set."""
    current = frozenset(Flag(f) for f in current_flags)
    target = Flag(flag)
    if target not in current:
        raise BadRequest(f"L'identité ne porte pas l'attribut « {target.label} ».", code="flag_not_set")
    return current - {target}


def check_insi_allowed(flags: Iterable[Flag | str]) -> None:
    """BadRequest when a douteuse/fictive flag forbids any INSi call (EXI SI 09)."""
    blocking = blocking_flags(flags)
    if blocking:
        labels = " et ".join(sorted(f.label for f in blocking))
        raise BadRequest(
            f"Appel INSi interdit : {labels}. Faites lever l'attribut par la cellule "
            "d'identitovigilance avant toute interrogation (EXI SI 09).",
            code="identity_flagged",
        )


def ins_usable(status: Status | str, flags: Iterable[Flag | str] = ()) -> bool:
    """Whether the INS may be transmitted (EXI SI 08, EXI ID 29).

    Only by a QUAL identity, never by a douteuse/fictive one.
    """
    return _status(status) is Status.QUAL and not blocking_flags(flags)

"""The identity state machine and flag constraints (pure), each test citing its rule."""

from __future__ import annotations

import contextlib
import itertools

import pytest

from services.errors import BadRequest
from services.identity.status import (
    EFFECTS,
    Event,
    Flag,
    blocking_flags,
    check_flag_clear,
    check_flag_set,
    check_insi_allowed,
    ins_usable,
    next_status,
)
from services.storage.models import Status

PROV, RECUP, VALI, QUAL = Status.PROV, Status.RECUP, Status.VALI, Status.QUAL
D, F, H = Flag.DOUTEUSE, Flag.FICTIVE, Flag.HOMONYME

# --- EXI SI 07: the transition table, complete (4 statuses x 6 events) -------------------------
TRANSITIONS = {
    # INSi retrieval/verification with matching traits: PROV→RECUP, VALI→QUAL (EXI SI 07)
    (PROV, Event.INSI_MATCH): RECUP,
    (RECUP, Event.INSI_MATCH): RECUP,
    (VALI, Event.INSI_MATCH): QUAL,
    (QUAL, Event.INSI_MATCH): QUAL,
    # high-trust document checked: PROV→VALI, RECUP→QUAL (EXI SI 07, EXI ID 19)
    (PROV, Event.DOCUMENT_CHECKED): VALI,
    (RECUP, Event.DOCUMENT_CHECKED): QUAL,
    (VALI, Event.DOCUMENT_CHECKED): VALI,
    (QUAL, Event.DOCUMENT_CHECKED): QUAL,
    # strict trait edited: back to PROV (EXI SI 07)
    (PROV, Event.STRICT_TRAIT_EDITED): PROV,
    (RECUP, Event.STRICT_TRAIT_EDITED): PROV,
    (VALI, Event.STRICT_TRAIT_EDITED): PROV,
    (QUAL, Event.STRICT_TRAIT_EDITED): PROV,
    # douteuse/fictive keep the identity PROV (EXI SI 09, EXI ID 24/26)
    (PROV, Event.FLAG_DOUBTFUL_OR_FICTITIOUS): PROV,
    (RECUP, Event.FLAG_DOUBTFUL_OR_FICTITIOUS): PROV,
    (VALI, Event.FLAG_DOUBTFUL_OR_FICTITIOUS): PROV,
    (QUAL, Event.FLAG_DOUBTFUL_OR_FICTITIOUS): PROV,
    # déqualification: back to PROV (EXI SI 07)
    (PROV, Event.DEQUALIFIED): PROV,
    (RECUP, Event.DEQUALIFIED): PROV,
    (VALI, Event.DEQUALIFIED): PROV,
    (QUAL, Event.DEQUALIFIED): PROV,
    # INS invalidated: the INSi axis is lost, the document axis stays (EXI SI 07)
    (PROV, Event.INS_INVALIDATED): PROV,
    (RECUP, Event.INS_INVALIDATED): PROV,
    (VALI, Event.INS_INVALIDATED): VALI,
    (QUAL, Event.INS_INVALIDATED): VALI,
}


def test_transition_table_is_complete() -> None:
    """EXI SI 07: every (status, event) pair has a defined outcome."""
    assert set(TRANSITIONS) == set(itertools.product(Status, Event))


@pytest.mark.parametrize(("current", "event"), sorted(TRANSITIONS, key=str))
def test_exi_si_07_transition(current: Status, event: Event) -> None:
    """EXI SI 07: PROV/RECUP/VALI/QUAL transitions."""
    assert next_status(current, event) is TRANSITIONS[(current, event)]


def test_exi_si_07_accepts_status_values_as_text() -> None:
    """EXI SI 07: the status stored as text in the database works too."""
    assert next_status("PROV", Event.INSI_MATCH) is RECUP
    assert next_status("VALI", Event.INSI_MATCH) is QUAL


def test_exi_si_07_full_paths() -> None:
    """EXI SI 07: both orders reach QUAL (INSi then document, document then INSi)."""
    assert next_status(next_status(PROV, Event.INSI_MATCH), Event.DOCUMENT_CHECKED) is QUAL
    assert next_status(next_status(PROV, Event.DOCUMENT_CHECKED), Event.INSI_MATCH) is QUAL


def test_exi_si_07_effects_on_ins_and_proofs() -> None:
    """EXI SI 07/EXI SI 08: what the identity keeps after each event."""
    assert EFFECTS[Event.INSI_MATCH].attaches_ins
    assert EFFECTS[Event.DOCUMENT_CHECKED].records_proof
    assert EFFECTS[Event.DOCUMENT_CHECKED].keeps_ins
    for event in (Event.STRICT_TRAIT_EDITED, Event.FLAG_DOUBTFUL_OR_FICTITIOUS, Event.DEQUALIFIED):
        # the INS was checked against other traits / the identity is no longer trusted
        assert not EFFECTS[event].keeps_ins
        assert not EFFECTS[event].proofs_count
    assert not EFFECTS[Event.INS_INVALIDATED].keeps_ins
    assert EFFECTS[Event.INS_INVALIDATED].proofs_count
    assert set(EFFECTS) == set(Event)


# --- EXI SI 08 / EXI ID 29: only QUAL transmits the INS --------------------------------------
@pytest.mark.parametrize(("status", "usable"), [(PROV, False), (RECUP, False), (VALI, False), (QUAL, True)])
def test_exi_si_08_only_qual_transmits_ins(status: Status, usable: bool) -> None:
    """EXI SI 08, EXI ID 29: only a QUAL identity may carry/transmit the INS."""
    assert ins_usable(status, frozenset()) is usable


def test_exi_si_08_homonyme_does_not_block() -> None:
    """EXI SI 08 / EXI SI 09: the homonyme flag alone does not stop the INS."""
    assert ins_usable(QUAL, {H})
    assert ins_usable("QUAL")


@pytest.mark.parametrize("flags", [{D}, {F}, {D, H}])
def test_exi_id_29_doubtful_or_fictitious_never_usable(flags: set[Flag]) -> None:
    """EXI ID 29 / EXI SI 09: a douteuse/fictive identity never transmits an INS."""
    assert not ins_usable(QUAL, flags)


# --- EXI SI 09 / EXI ID 24/26: flag combinations ----------------------------------------------
ALLOWED = [frozenset(), frozenset({D}), frozenset({F}), frozenset({H}), frozenset({D, H})]


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (frozenset(), D, {D}),
        (frozenset(), F, {F}),
        (frozenset(), H, {H}),
        (frozenset({D}), H, {D, H}),
        (frozenset({H}), D, {D, H}),
    ],
)
def test_exi_si_09_allowed_combinations(current: frozenset[Flag], new: Flag, expected: set[Flag]) -> None:
    """EXI SI 09, EXI ID 24/26: only douteuse + homonyme combine."""
    assert check_flag_set(current, new) == expected


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (frozenset({D}), F),  # douteuse and fictive never combined
        (frozenset({F}), D),
        (frozenset({F}), H),  # fictive + homonyme refused too
        (frozenset({H}), F),
        (frozenset({D, H}), F),
    ],
)
def test_exi_id_24_26_forbidden_combinations(current: frozenset[Flag], new: Flag) -> None:
    """EXI SI 09, EXI ID 24/26: douteuse+fictive and fictive+homonyme are refused (exit 2, French)."""
    with pytest.raises(BadRequest) as info:
        check_flag_set(current, new)
    assert info.value.exit_code == 2
    assert "fictive" in info.value.message
    assert info.value.code == "flag_combination"


def test_exi_si_09_every_reachable_set_is_allowed() -> None:
    """EXI SI 09: whatever the order of setting flags, only allowed sets are reachable."""
    for order in itertools.permutations(Flag):
        flags: frozenset[Flag] = frozenset()
        for flag in order:
            with contextlib.suppress(BadRequest):
                flags = check_flag_set(flags, flag)
            assert flags in ALLOWED


def test_exi_si_09_flag_already_set_refused() -> None:
    """EXI SI 09: setting a flag twice is refused (nothing changes)."""
    with pytest.raises(BadRequest, match="déjà"):
        check_flag_set({H}, H)


def test_exi_si_09_clear_flag() -> None:
    """EXI SI 09: clearing removes only that flag; clearing an absent flag is refused."""
    assert check_flag_clear({D, H}, D) == {H}
    assert check_flag_clear(["fictive"], "fictive") == frozenset()
    with pytest.raises(BadRequest, match="ne porte pas"):
        check_flag_clear({H}, D)


def test_exi_si_09_flag_values() -> None:
    """EXI SI 09: the flag names of the command line contract."""
    assert [f.value for f in Flag] == ["douteuse", "fictive", "homonyme"]
    assert Flag("douteuse") is D


@pytest.mark.parametrize("flags", [{D}, {F}, {D, H}, {"douteuse"}])
def test_exi_si_09_blocking_flags_forbid_insi(flags: set[Flag]) -> None:
    """EXI SI 09: douteuse/fictive forbid any INSi call (exit 2, French message)."""
    assert blocking_flags(flags)
    with pytest.raises(BadRequest, match="Appel INSi interdit") as info:
        check_insi_allowed(flags)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("flags", [set(), {H}])
def test_exi_si_09_homonyme_allows_insi(flags: set[Flag]) -> None:
    """EXI SI 09: no flag or homonyme alone: INSi allowed."""
    check_insi_allowed(flags)
    assert not blocking_flags(flags)

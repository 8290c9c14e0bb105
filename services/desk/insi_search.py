"""INSi traits search, traced: ``insi search`` and the searches every INSi use case makes.

* :func:`search_insi` — ``insdesk insi search``: the certified strategy (CNDA 2.07) for traits
  typed at the desk, every exchange traced (EXI REC 07/08) with no identity attached;
* :func:`traced_search` — any search through a recorder whose exchanges are stored, whatever
  happens (the qualification, the card's traits fallback, the re-verification use it).

Order of things, the same in every INSi use case (:mod:`services.desk.qualify`,
:mod:`services.desk.card`, :mod:`services.desk.reverify`):

1. rights, then the identity's flags (douteuse/fictive forbid any call, EXI SI 09) and the
   traits (characters outside the INSi set are refused before any call): ``BadRequest`` /
   :class:`TraitsRefused`, exit 2, no call;
2. the identity's ``version`` is read **before** the call (which can take seconds);
3. the calls are written in a transaction of their own (:mod:`services.insi.trace`), also when
   the search fails (fault, timeout: the ``InsiError`` is re-raised afterwards, exit 3) — and
   that transaction never touches an identity;
4. only then the identity changes, in a second transaction, guarded by the version read in 2:
   an identity edited on another desk during the call is refused (``ConcurrentUpdate``,
   exit 4), never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.errors import FieldIssue, InvalidData
from services.identity.birthdate import BirthDate
from services.identity.traits import StrictTraits, check_traits
from services.insi.strategy import SearchOutcome, TraitsSearcher, run_strategy
from services.insi.trace import RecordingSearcher, auth_mode, save_calls
from services.storage.db import Database
from services.users import Actor, Right, require

__all__ = [
    "TracedSearch",
    "TraitsRefused",
    "refused",
    "search_insi",
    "stored_traits_search",
    "traced_search",
    "validate_search_traits",
]


class TraitsRefused(InvalidData):
    """Traits refused by the local input rules before any INSi call (``docs/cli.md`` ``insi search``:
    exit 2 — nothing changed, no call made)."""

    exit_code = 2
    default_code = "traits_refused"
    title = "Traits refusés avant l'appel INSi"


def refused(err: InvalidData) -> TraitsRefused:
    return TraitsRefused(
        f"Aucun appel INSi n'a été fait : {err.message}",
        errors=err.errors,
        warnings=err.warnings,
        detail=err.detail,
    )


def validate_search_traits(
    *,
    birth_name: str,
    first_names: str | Sequence[str],
    sex: str,
    birth_date: str | BirthDate,
    first_name: str | None = None,
    birthplace: str | None = None,
) -> tuple[StrictTraits, list[FieldIssue]]:
    """The traits as they will be sent, and the warnings; :class:`TraitsRefused` when invalid."""
    check = check_traits(
        birth_name=birth_name,
        first_names=first_names,
        sex=sex,
        birth_date=birth_date,
        first_name=first_name,
        birthplace=birthplace,
    )
    try:
        traits = check.raise_if_invalid()
    except InvalidData as err:
        raise refused(err) from None
    return traits, list(check.warnings)


@dataclass(frozen=True)
class TracedSearch:
    """A certified search and the ``insi_call`` ids it was recorded under (in call order)."""

    outcome: SearchOutcome
    call_ids: list[int]

    def as_cli_dict(self) -> dict[str, Any]:
        """The ``insi search`` JSON of ``docs/cli.md``, plus ``advice``, ``warnings`` and ``calls``."""
        return {
            **self.outcome.as_cli_dict(),
            "advice": self.outcome.advice,
            "warnings": [w.as_dict() for w in self.outcome.warnings],
            "calls": list(self.call_ids),
        }


def traced_search(
    db: Database,
    *,
    actor: Actor,
    client: TraitsSearcher,
    identity_id: int | None,
    automatic: bool,
    run: Callable[[TraitsSearcher], SearchOutcome],
) -> TracedSearch:
    """Run a search through a recorder and store every exchange, whatever happens (EXI REC 07/08)."""
    recorder = RecordingSearcher(client)

    def store() -> list[int]:
        return save_calls(
            db,
            user_login=actor.login,
            records=recorder.records,
            identity_id=identity_id,
            automatic=automatic,
            auth=auth_mode(recorder.config),
        )

    try:
        outcome = run(recorder)
    except InvalidData as err:
        if not recorder.records:  # refused by the input rules: nothing was sent
            raise refused(err) from None
        store()
        raise
    except BaseException:
        # Fault, timeout, TLS, interruption...: the calls made so far (the failed one included)
        # are stored, in their own transaction, before the error goes up; no identity is touched.
        store()
        raise
    ids = store()
    return TracedSearch(outcome, ids)


def search_insi(
    db: Database,
    *,
    actor: Actor,
    client: TraitsSearcher,
    traits: StrictTraits,
    warnings: Sequence[FieldIssue] = (),
    automatic: bool = False,
    identity_id: int | None = None,
) -> TracedSearch:
    """``insi search``: the certified strategy for validated ``traits`` (see
    :func:`validate_search_traits`), traced with ``identity_id`` (null for a search typed at the
    desk). An ``InsiError`` (exit 3) is raised after the calls are stored."""
    require(actor, Right.INSI_SEARCH)
    return traced_search(
        db,
        actor=actor,
        client=client,
        identity_id=identity_id,
        automatic=automatic,
        run=lambda searcher: run_strategy(searcher, traits, warnings=warnings),
    )


def stored_traits_search(searcher: TraitsSearcher, traits: StrictTraits) -> SearchOutcome:
    """The stored traits, validated again by the input rules before any call."""
    check = check_traits(
        birth_name=traits.birth_name,
        first_names=traits.first_names,
        sex=traits.sex,
        birth_date=traits.birth_date,
        first_name=traits.first_name,
        birthplace=traits.birthplace,
    )
    return run_strategy(searcher, check.raise_if_invalid(), warnings=check.warnings)

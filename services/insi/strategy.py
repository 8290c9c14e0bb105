"""The certified INSi search strategy (CNDA test 2.07, ``docs/cli.md`` ``insi search``).

1. The traits are validated and normalised with :func:`~services.identity.traits.check_traits`
   before any call: invalid traits raise :class:`~services.errors.InvalidData` and nothing is sent
   (CNDA: characters outside the INSi set are refused before any call).
2. One birth first name: one attempt. Several: each first name alone, in order, then all of them
   together (space separated). The birthplace, when given, is sent on every attempt.
3. Stop at the first ``00``. The final ``cr`` is ``00`` if an attempt found one identity, else
   ``02`` if an attempt found several, else ``01``; with advice in French for ``02`` and ``01``
   (Guide d'implémentation de l'INS, INSi results).

A fault stops the search and propagates; the exchanges made so far (the failed one included)
are on the error, ``err.exchanges``, so that the caller records every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from services.errors import FieldIssue
from services.identity.birthdate import BirthDate
from services.identity.birthplace import Cog
from services.identity.traits import StrictTraits, check_traits
from services.insi.envelope import TraitsQuery
from services.insi.errors import InsiError, InsiProtocolError
from services.insi.exchange import CR_FOUND, CR_NONE, CR_SEVERAL, InsiExchange, InsiIdentity

ADVICE_SEVERAL = (
    "Plusieurs identités correspondent : ajoutez le lieu de naissance ou les autres prénoms de naissance "
    "(d'après la pièce d'identité), puis relancez la recherche."
)
ADVICE_SEVERAL_COMPLETE = (
    "Plusieurs identités correspondent, même avec le lieu de naissance et tous les prénoms : vérifiez "
    "les traits sur la pièce d'identité ; l'identité reste provisoire en attendant."
)
ADVICE_NONE = (
    "Aucune identité trouvée : vérifiez les traits saisis et réessayez (nom de naissance, prénoms de "
    "naissance, sexe, date et lieu de naissance, d'après la pièce d'identité)."
)


class TraitsSearcher(Protocol):
    """What the strategy needs from the client (:class:`~services.insi.client.InsiClient`)."""

    def search_traits(self, query: TraitsQuery) -> InsiExchange: ...


@dataclass(frozen=True)
class Attempt:
    """One call of the strategy: the first names sent in ``Prenom`` and the answer."""

    first_names: str
    cr: str
    exchange: InsiExchange

    def as_cli_dict(self) -> dict[str, str]:
        return {"first_names": self.first_names, "cr": self.cr}


@dataclass(frozen=True)
class SearchOutcome:
    """Result of the certified search (``insi search``)."""

    cr: str
    label: str
    identity: InsiIdentity | None
    attempts: list[Attempt]
    traits: StrictTraits
    """The validated traits the search was made with."""
    advice: str | None = None
    warnings: list[FieldIssue] = field(default_factory=list)
    """Warnings about the input traits (normalisation, EXI ID 10...)."""

    @property
    def found(self) -> bool:
        return self.cr == CR_FOUND and self.identity is not None

    @property
    def exchanges(self) -> list[InsiExchange]:
        return [attempt.exchange for attempt in self.attempts]

    def as_cli_dict(self) -> dict[str, object]:
        """Exactly the ``insi search`` JSON of ``docs/cli.md``."""
        identity = self.identity
        return {
            "cr": self.cr,
            "label": self.label,
            "ins": identity.ins_cli_dict() if identity is not None else None,
            "traits": identity.traits.as_dict() if identity is not None else None,
            "history": [entry.as_cli_dict() for entry in identity.history] if identity is not None else [],
            "attempts": [attempt.as_cli_dict() for attempt in self.attempts],
        }


def first_name_attempts(first_names: Sequence[str]) -> list[str]:
    """What goes in ``Prenom``, attempt by attempt (CNDA 2.07): each birth first name alone, in
    order (a repeated first name once), then all together; one first name: one attempt."""
    names = [name for name in first_names if name]
    if len(names) <= 1:
        return names
    singles = list(dict.fromkeys(names))
    return [*singles, " ".join(names)]


def _final(attempts: list[Attempt], traits: StrictTraits) -> tuple[str, str, InsiIdentity | None, str | None]:
    for attempt in attempts:
        answer = attempt.exchange.answer
        if attempt.cr == CR_FOUND and answer is not None:
            return CR_FOUND, answer.label, answer.identity, None
    several = [a for a in attempts if a.cr == CR_SEVERAL]
    if several:
        answer = several[0].exchange.answer
        complete = traits.birthplace is not None and len(traits.first_names) > 1
        return (
            CR_SEVERAL,
            answer.label if answer is not None else "",
            None,
            ADVICE_SEVERAL_COMPLETE if complete else ADVICE_SEVERAL,
        )
    last = attempts[-1].exchange.answer if attempts else None
    return CR_NONE, last.label if last is not None else "", None, ADVICE_NONE


def run_strategy(
    client: TraitsSearcher, traits: StrictTraits, *, warnings: Sequence[FieldIssue] = ()
) -> SearchOutcome:
    """The attempts for already validated ``traits`` (use :func:`certified_search` from raw input)."""
    attempts: list[Attempt] = []
    for first_names in first_name_attempts(traits.first_names):
        query = TraitsQuery.from_traits(traits, first_names=first_names)
        try:
            exchange = client.search_traits(query)
            if exchange.answer is None:  # the client raises instead; be safe with other clients
                raise InsiProtocolError(
                    "Réponse INSi absente. Contactez le support informatique.",
                    code="insi_protocol_unexpected",
                )
        except InsiError as err:
            err.exchanges = [a.exchange for a in attempts] + list(err.exchanges)
            raise
        attempts.append(Attempt(first_names, exchange.answer.cr, exchange))
        if exchange.answer.cr == CR_FOUND:
            break
    cr, label, identity, advice = _final(attempts, traits)
    return SearchOutcome(cr, label, identity, attempts, traits, advice, list(warnings))


def certified_search(
    client: TraitsSearcher,
    *,
    birth_name: str,
    first_names: str | Sequence[str],
    sex: str,
    birth_date: str | BirthDate,
    first_name: str | None = None,
    birthplace: str | None = None,
    cog: Cog | None = None,
) -> SearchOutcome:
    """Validate the traits (``InvalidData``, no call, when invalid), then search INSi with the
    certified first-name strategy."""
    check = check_traits(
        birth_name=birth_name,
        first_names=first_names,
        sex=sex,
        birth_date=birth_date,
        first_name=first_name,
        birthplace=birthplace,
        cog=cog,
    )
    traits = check.raise_if_invalid()
    return run_strategy(client, traits, warnings=check.warnings)


def certified_search_for_traits(
    client: TraitsSearcher, traits: StrictTraits, *, cog: Cog | None = None
) -> SearchOutcome:
    """Same as :func:`certified_search` for stored strict traits (validated again before any call)."""
    return certified_search(
        client,
        birth_name=traits.birth_name,
        first_names=traits.first_names,
        sex=traits.sex,
        birth_date=traits.birth_date,
        first_name=traits.first_name,
        birthplace=traits.birthplace,
        cog=cog,
    )

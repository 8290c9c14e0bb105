"""The simulator's population: personas (people INSi knows) and carte Vitale data.

The personas file is JSON (format in ``docs/insi-simulator.md``). Every matricule's key is
checked on load: key = 97 - (13-digit number mod 97), Corsica ``2A`` -> ``19`` and ``2B`` -> ``18``
before the modulo (Référentiel INS). This is computed here on purpose, not imported from the
identity rules: the simulator shares no code with the INSi client side.

Matching (traits search, ``RECSANSVITALE``): a persona matches when the birth name (or one of its
``match_also.birth_names``), the sex and the birth date are equal, the sent first names match
(one sent first name must be one of the persona's first names; several must equal the whole
list, in order) and the birthplace, when sent, is equal.

Matching (carte Vitale, ``RECVITALE``): ``MatriculeIndividu``, or else ``MatriculeOD`` (the
holder's NIR), is the NIR read on the card: the persona's own matricule, or the holder's NIR
of a card that lists the persona as a beneficiary (ayant droit); then the birth name and birth
date must be equal, and ``RangNaissance``, when sent, must equal the beneficiary's rank when the
card gives one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.errors import BadRequest

OID_NIR = "1.2.250.1.213.1.4.8"
OID_NIA = "1.2.250.1.213.1.4.9"
OID_NIR_TEST = "1.2.250.1.213.1.4.10"
OID_NIR_DEMO = "1.2.250.1.213.1.4.11"
KNOWN_OIDS = frozenset({OID_NIR, OID_NIA, OID_NIR_TEST, OID_NIR_DEMO})

#: Fault modes a persona, the simulator or a request may carry (see ``faults.py``).
FAULT_MODES = (
    "unavailable",
    "technical",
    "unknown-idam",
    "slow",
    "malformed",
    "html",
    "bomb",
    "xxe",
    "trickle",
    "busy",
    "huge-fault",
)
NAMESPACE_STYLES = ("default", "ns2")

DEFAULT_PERSONAS_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "insi_personas.json"

_MATRICULE = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}")
_KEY = re.compile(r"[0-9]{2}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_COG = re.compile(r"[0-9A-Z]{5}")


def nir_key(matricule: str) -> str:
    """The 2-digit key of a 13-character NIR or NIA (Corsica 2A/2B substituted)."""
    number = matricule.upper()
    digits = number[:5] + {"2A": "19", "2B": "18"}.get(number[5:7], number[5:7]) + number[7:]
    return f"{97 - int(digits) % 97:02d}"


@dataclass(frozen=True)
class InsNumber:
    """One INS: matricule (13 characters), key, OID and optional validity dates.

    ``key_valid`` false: the file deliberately gives a wrong key (an answer as the CNDA's
    TEST_2.08 shows one); the loader checks that it is indeed wrong."""

    matricule: str
    key: str
    oid: str
    valid_from: str | None = None
    valid_to: str | None = None
    key_valid: bool = True


@dataclass(frozen=True)
class Serialisation:
    """How the simulator writes this persona's answer (to exercise the client's robustness).

    ``namespace``: ``default`` = like the public sample (``RESULTAT xmlns=...``, no prefix);
    ``ns2`` = JAX-WS style (``ns2:`` prefix on every element, an unrelated default namespace,
    a WS-Addressing header). ``prenom``: also write ``TIQ/Prenom`` (the first first name).
    ``dates``: write ``DateDeb``/``DateFin`` when known. ``indent``: pretty-printed. ``cle``:
    write ``INSACTIF/IdIndividu/Cle`` (false: an answer without the active key).
    """

    namespace: str = "default"
    prenom: bool = True
    dates: bool = True
    indent: bool = False
    cle: bool = True


@dataclass(frozen=True)
class Persona:
    id: str
    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: str
    birthplace: str | None
    ins: InsNumber
    history: tuple[InsNumber, ...] = ()
    serialisation: Serialisation = field(default_factory=Serialisation)
    fault: str | None = None
    also_birth_names: tuple[str, ...] = ()

    def matches_traits(
        self,
        *,
        birth_name: str,
        first_names: Sequence[str],
        sex: str,
        birth_date: str,
        birthplace: str | None,
    ) -> bool:
        if birth_name != self.birth_name and birth_name not in self.also_birth_names:
            return False
        if sex != self.sex or birth_date != self.birth_date:
            return False
        if birthplace is not None and birthplace != self.birthplace:
            return False
        if len(first_names) == 1:
            return first_names[0] in self.first_names
        return tuple(first_names) == self.first_names


@dataclass(frozen=True)
class Beneficiary:
    persona_id: str
    rank: str | None = None


@dataclass(frozen=True)
class VitaleCard:
    """A carte Vitale: the holder's NIR and the people it covers (the holder and ayants droit)."""

    id: str
    holder_id: str
    holder_matricule: str
    holder_key: str
    beneficiaries: tuple[Beneficiary, ...]


@dataclass(frozen=True)
class PersonaBook:
    personas: tuple[Persona, ...] = ()
    cards: tuple[VitaleCard, ...] = ()
    unknown_idams: frozenset[str] = frozenset()
    scenarios: tuple[Mapping[str, Any], ...] = ()

    def get(self, persona_id: str) -> Persona:
        for persona in self.personas:
            if persona.id == persona_id:
                return persona
        raise KeyError(persona_id)

    def search_traits(
        self,
        *,
        birth_name: str,
        first_names: Sequence[str],
        sex: str,
        birth_date: str,
        birthplace: str | None = None,
    ) -> list[Persona]:
        return [
            p
            for p in self.personas
            if p.matches_traits(
                birth_name=birth_name,
                first_names=first_names,
                sex=sex,
                birth_date=birth_date,
                birthplace=birthplace,
            )
        ]

    def search_vitale(
        self,
        *,
        matricule: str,
        key: str | None,
        birth_name: str,
        birth_date: str,
        rank: str | None = None,
    ) -> list[Persona]:
        candidates: dict[str, str | None] = {}  # persona id -> rank on the card
        for persona in self.personas:
            if persona.ins.matricule == matricule and (key is None or key == persona.ins.key):
                candidates.setdefault(persona.id, None)
        for card in self.cards:
            if card.holder_matricule == matricule and (key is None or key == card.holder_key):
                for b in card.beneficiaries:
                    if candidates.get(b.persona_id) is None:
                        candidates[b.persona_id] = b.rank
        found: list[Persona] = []
        for persona_id, card_rank in candidates.items():
            p = self.get(persona_id)
            if birth_name != p.birth_name and birth_name not in p.also_birth_names:
                continue
            if birth_date != p.birth_date:
                continue
            if rank is not None and card_rank is not None and rank.lstrip("0") != card_rank.lstrip("0"):
                continue
            found.append(p)
        return found


# --- loading -------------------------------------------------------------------------------------


class _Invalid(Exception):
    pass


def _str(data: Mapping[str, Any], name: str, where: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise _Invalid(f"{where} : champ « {name} » manquant")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"{where} : « {name} » doit être une chaîne non vide")
    return value.strip()


def _req(data: Mapping[str, Any], name: str, where: str) -> str:
    value = _str(data, name, where)
    assert value is not None
    return value


def _date(data: Mapping[str, Any], name: str, where: str, *, required: bool) -> str | None:
    value = _str(data, name, where, required=required)
    if value is not None and not _DATE.fullmatch(value):
        raise _Invalid(f"{where} : « {name} » doit être une date AAAA-MM-JJ")
    return value


def _ins(data: Any, where: str) -> InsNumber:
    if not isinstance(data, Mapping):
        raise _Invalid(f"{where} : objet attendu")
    matricule = _req(data, "matricule", where).upper()
    key = _req(data, "key", where)
    oid = _req(data, "oid", where)
    if not _MATRICULE.fullmatch(matricule):
        raise _Invalid(f"{where} : matricule de 13 caractères attendu")
    key_valid = data.get("key_valid", True)
    if not isinstance(key_valid, bool):
        raise _Invalid(f"{where} : « key_valid » doit valoir true ou false")
    if not _KEY.fullmatch(key):
        raise _Invalid(f"{where} : clé de 2 chiffres attendue")
    if key_valid and key != nir_key(matricule):
        raise _Invalid(f"{where} : clé {key} incorrecte pour le matricule (attendue {nir_key(matricule)})")
    if not key_valid and key == nir_key(matricule):
        raise _Invalid(f"{where} : « key_valid » vaut false mais la clé {key} est correcte")
    if oid not in KNOWN_OIDS:
        raise _Invalid(f"{where} : OID inconnu {oid}")
    return InsNumber(
        matricule=matricule,
        key=key,
        oid=oid,
        valid_from=_date(data, "valid_from", where, required=False),
        valid_to=_date(data, "valid_to", where, required=False),
        key_valid=key_valid,
    )


def _fault(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if value not in FAULT_MODES:
        raise _Invalid(f"{where} : mode de panne inconnu « {value} » (possibles : {', '.join(FAULT_MODES)})")
    return str(value)


def _serialisation(data: Any, where: str) -> Serialisation:
    if data is None:
        return Serialisation()
    if not isinstance(data, Mapping):
        raise _Invalid(f"{where} : « serialisation » doit être un objet")
    namespace = data.get("namespace", "default")
    if namespace not in NAMESPACE_STYLES:
        raise _Invalid(f"{where} : « namespace » vaut default ou ns2")
    flags = {}
    for name in ("prenom", "dates", "indent", "cle"):
        if name in data:
            if not isinstance(data[name], bool):
                raise _Invalid(f"{where} : « {name} » doit valoir true ou false")
            flags[name] = data[name]
    return Serialisation(namespace=str(namespace), **flags)


def _persona(data: Any, index: int) -> Persona:
    where = f"persona n° {index + 1}"
    if not isinstance(data, Mapping):
        raise _Invalid(f"{where} : objet attendu")
    pid = _req(data, "id", where)
    where = f"persona « {pid} »"
    first_names = data.get("first_names")
    if (
        not isinstance(first_names, list)
        or not first_names
        or not all(isinstance(f, str) and f.strip() and " " not in f.strip() for f in first_names)
    ):
        raise _Invalid(f"{where} : « first_names » doit être une liste de prénoms (un prénom par élément)")
    sex = _req(data, "sex", where)
    if sex not in ("M", "F"):
        raise _Invalid(f"{where} : « sex » vaut M ou F")
    birthplace = _str(data, "birthplace", where, required=False)
    if birthplace is not None and not _COG.fullmatch(birthplace):
        raise _Invalid(f"{where} : « birthplace » doit être un code de 5 caractères")
    history = data.get("history") or []
    if not isinstance(history, list):
        raise _Invalid(f"{where} : « history » doit être une liste")
    match_also = data.get("match_also") or {}
    if not isinstance(match_also, Mapping):
        raise _Invalid(f"{where} : « match_also » doit être un objet")
    also = match_also.get("birth_names") or []
    if not isinstance(also, list) or not all(isinstance(a, str) and a for a in also):
        raise _Invalid(f"{where} : « match_also.birth_names » doit être une liste de noms")
    return Persona(
        id=pid,
        birth_name=_req(data, "birth_name", where),
        first_names=tuple(f.strip() for f in first_names),
        sex=sex,
        birth_date=_date(data, "birth_date", where, required=True) or "",
        birthplace=birthplace,
        ins=_ins(data, where),
        history=tuple(_ins(h, f"{where}, historique n° {i + 1}") for i, h in enumerate(history)),
        serialisation=_serialisation(data.get("serialisation"), where),
        fault=_fault(data.get("fault"), where),
        also_birth_names=tuple(also),
    )


def _card(data: Any, index: int, personas: Mapping[str, Persona]) -> VitaleCard:
    where = f"carte Vitale n° {index + 1}"
    if not isinstance(data, Mapping):
        raise _Invalid(f"{where} : objet attendu")
    cid = _req(data, "id", where)
    where = f"carte Vitale « {cid} »"
    holder_id = _req(data, "holder", where)
    if holder_id not in personas:
        raise _Invalid(f"{where} : titulaire « {holder_id} » inconnu")
    holder = personas[holder_id]
    if holder.ins.oid == OID_NIA:
        raise _Invalid(f"{where} : le titulaire d'une carte Vitale a un NIR, pas un NIA")
    raw = data.get("beneficiaries")
    if not isinstance(raw, list) or not raw:
        raise _Invalid(f"{where} : « beneficiaries » doit être une liste non vide")
    beneficiaries: list[Beneficiary] = []
    for b in raw:
        if not isinstance(b, Mapping):
            raise _Invalid(f"{where} : bénéficiaire : objet attendu")
        pid = _req(b, "persona", where)
        if pid not in personas:
            raise _Invalid(f"{where} : bénéficiaire « {pid} » inconnu")
        rank = b.get("rank")
        if rank is not None and not (isinstance(rank, str) and rank.isdigit()):
            raise _Invalid(f"{where} : « rank » doit être une chaîne de chiffres")
        beneficiaries.append(Beneficiary(persona_id=pid, rank=rank))
    return VitaleCard(
        id=cid,
        holder_id=holder_id,
        holder_matricule=holder.ins.matricule,
        holder_key=holder.ins.key,
        beneficiaries=tuple(beneficiaries),
    )


def parse_personas(data: Any, *, source: str = "personas") -> PersonaBook:
    """Builds a :class:`PersonaBook` from the decoded JSON; raises ``BadRequest`` (French) if invalid."""
    try:
        if not isinstance(data, Mapping):
            raise _Invalid("objet JSON attendu à la racine")
        raw_personas = data.get("personas")
        if not isinstance(raw_personas, list):
            raise _Invalid("« personas » doit être une liste")
        personas = [_persona(p, i) for i, p in enumerate(raw_personas)]
        by_id: dict[str, Persona] = {}
        for p in personas:
            if p.id in by_id:
                raise _Invalid(f"identifiant de persona en double : « {p.id} »")
            by_id[p.id] = p
        raw_cards = data.get("vitale_cards") or []
        if not isinstance(raw_cards, list):
            raise _Invalid("« vitale_cards » doit être une liste")
        cards = tuple(_card(c, i, by_id) for i, c in enumerate(raw_cards))
        idams = data.get("unknown_idams") or []
        if not isinstance(idams, list) or not all(isinstance(i, str) for i in idams):
            raise _Invalid("« unknown_idams » doit être une liste de chaînes")
        scenarios = data.get("scenarios") or []
        if not isinstance(scenarios, list) or not all(isinstance(s, Mapping) for s in scenarios):
            raise _Invalid("« scenarios » doit être une liste d'objets")
    except _Invalid as exc:
        raise BadRequest(
            f"Fichier de personas INSi invalide ({source}) : {exc}", code="insi_sim_personas"
        ) from None
    return PersonaBook(
        personas=tuple(personas),
        cards=cards,
        unknown_idams=frozenset(idams),
        scenarios=tuple(scenarios),
    )


def load_personas(path: str | Path | None = None) -> PersonaBook:
    """Reads a personas file (default: ``fixtures/insi_personas.json``)."""
    file = Path(path) if path is not None else DEFAULT_PERSONAS_PATH
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadRequest(
            f"Fichier de personas INSi illisible : {file}", code="insi_sim_personas", detail=str(exc)
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"Fichier de personas INSi invalide ({file.name}) : JSON incorrect ligne {exc.lineno}",
            code="insi_sim_personas",
        ) from None
    return parse_personas(data, source=file.name)


def merge_unknown_idams(book: PersonaBook, idams: Iterable[str]) -> PersonaBook:
    extra = frozenset(idams)
    if not extra:
        return book
    return PersonaBook(
        personas=book.personas,
        cards=book.cards,
        unknown_idams=book.unknown_idams | extra,
        scenarios=book.scenarios,
    )

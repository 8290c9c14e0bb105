"""The patient of a lab report: which identity it belongs to, and whether it is that identity.

- :func:`match_identity`: matched by hand (``results match``, kept across re-evaluations), else
  by the lab's local ids (PID-3 / HPRIM P-2, P-3 against ``identity.local_id`` or one of its
  aliases, ``identity_alias``), else by the INS the message carries. A merged duplicate
  (``merged_into``) is never matched: its tombstone is followed to the identity kept;
- :func:`trait_differences`: the traits the report gives that disagree with the identity's
  (names folded, the birth date as precise as the identity's, sex);
- :func:`identity_reasons` / :func:`mismatch_reason`: the gate's reasons about the patient
  (``INS_NOT_QUALIFIED``, ``IDENTITY_FLAGGED``, ``IDENTITY_MISMATCH``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.identity.status import Flag, Status
from services.results.models import LabReport, MatchSource
from services.results.reasons import (
    IDENTITY_FLAGGED,
    IDENTITY_MISMATCH,
    INS_NOT_QUALIFIED,
    PATIENT_OPPOSED,
    Reason,
)
from services.storage.models import DmpFeeding, Identity, IdentityAlias

__all__ = [
    "LocalIdIndex",
    "Match",
    "fold_name",
    "identity_reasons",
    "ins_of",
    "match_identity",
    "mismatch_reason",
    "trait_differences",
]

_MAX_MERGE_HOPS: Final = 16


@dataclass(frozen=True)
class Match:
    identity: Identity | None
    local_id: str | None
    """The local id that matched (else the first one the message gave)."""
    problem: str | None = None
    source: MatchSource | None = None
    mismatch: tuple[str, ...] = ()
    """Identifier disagreements found while matching (an INS that is not the identity's)."""


def _kept(session: Session, identity: Identity | None) -> Identity | None:
    """``identity``, or the identity kept when it is a merged duplicate (its tombstone)."""
    hops = 0
    while identity is not None and identity.merged_into is not None and hops < _MAX_MERGE_HOPS:
        identity = session.get(Identity, identity.merged_into)
        hops += 1
    if identity is not None and identity.merged_into is not None:
        return None  # a merge cycle: never match it
    return identity


class LocalIdIndex:
    """The identities carrying a batch's local ids (directly or as an alias), read in one go
    (a results file: one query for all its reports instead of one per report). Valid in the
    transaction it was read in, as long as no identity or alias is changed meanwhile."""

    def __init__(self, session: Session, local_ids: Iterable[str]) -> None:
        wanted = sorted({str(x) for x in local_ids if str(x).strip()})
        self.covered = frozenset(wanted)
        self.direct: dict[str, list[Identity]] = {}
        self.aliases: dict[str, tuple[int, int]] = {}
        """local id → (alias row id, identity id)."""
        self.by_id: dict[int, Identity] = {}
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start : start + _BATCH]
            alias_rows = session.exec(
                select(IdentityAlias.id, IdentityAlias.identity_id, IdentityAlias.local_id).where(
                    col(IdentityAlias.local_id).in_(chunk)
                )
            ).all()
            for alias_id, identity_id, local_id in alias_rows:
                self.aliases[local_id] = (int(alias_id or 0), identity_id)
            through_alias = sorted({identity_id for _a, identity_id, _l in alias_rows})
            condition: sa.ColumnElement[bool] = col(Identity.local_id).in_(chunk)
            if through_alias:
                condition = sa.or_(condition, col(Identity.id).in_(through_alias))
            for identity in session.exec(select(Identity).where(condition)).all():
                if identity.id is not None:
                    self.by_id[identity.id] = identity
        for identity in self.by_id.values():
            if identity.local_id is not None and identity.local_id in self.covered:
                self.direct.setdefault(identity.local_id, []).append(identity)

    def candidates(self, wanted: Sequence[str]) -> list[tuple[Identity, str | None]] | None:
        """What :func:`_candidates` reads for ``wanted`` (None: not every id was read here)."""
        if not self.covered.issuperset(wanted):
            return None
        found: dict[int, Identity] = {}
        for local_id in wanted:
            for identity in self.direct.get(local_id, ()):
                found[int(identity.id or 0)] = identity
            alias = self.aliases.get(local_id)
            if alias is not None and alias[1] in self.by_id:
                found[alias[1]] = self.by_id[alias[1]]
        out: list[tuple[Identity, str | None]] = []
        for identity_id in sorted(found):
            identity = found[identity_id]
            alias_ids = sorted(
                (entry[0], local_id)
                for local_id in wanted
                if (entry := self.aliases.get(local_id)) is not None and entry[1] == identity_id
            )
            out.append((identity, alias_ids[0][1] if alias_ids else None))
        return out


_BATCH: Final = 500


def _candidates(
    session: Session, wanted: list[str], index: LocalIdIndex | None
) -> list[tuple[Identity, str | None]]:
    """The identities carrying ``wanted`` directly or as an alias, by id, each with the first
    of ``wanted`` that is one of its aliases (by alias row; None when it has none of them)."""
    if index is not None:
        known = index.candidates(wanted)
        if known is not None:
            return known
    aliased = select(IdentityAlias.identity_id).where(col(IdentityAlias.local_id).in_(wanted))
    rows = session.exec(
        select(Identity)
        .where(sa.or_(col(Identity.local_id).in_(wanted), col(Identity.id).in_(aliased)))
        .order_by(col(Identity.id))
    ).all()
    out: list[tuple[Identity, str | None]] = []
    for identity in rows:
        if identity.local_id is not None and identity.local_id in wanted:
            out.append((identity, None))  # the alias is never read for a direct match
            continue
        alias = session.exec(
            select(IdentityAlias.local_id)
            .where(IdentityAlias.identity_id == identity.id, col(IdentityAlias.local_id).in_(wanted))
            .order_by(col(IdentityAlias.id))
        ).first()
        out.append((identity, alias))
    return out


def _by_local_ids(
    session: Session, local_ids: Sequence[str], index: LocalIdIndex | None = None
) -> dict[int, tuple[Identity, str, MatchSource]]:
    """Identities (merges followed) that carry these local ids, directly or as an alias: one
    query (none with ``index``); the alias row is read only for an identity found through one."""
    found: dict[int, tuple[Identity, str, MatchSource]] = {}
    if not local_ids:
        return found
    wanted = list(local_ids)
    for identity, alias in _candidates(session, wanted, index):
        kept = _kept(session, identity)
        if kept is None or kept.id is None:
            continue
        if identity.local_id is not None and identity.local_id in wanted:
            source = MatchSource.LOCAL_ID if kept.id == identity.id else MatchSource.ALIAS
            found.setdefault(kept.id, (kept, identity.local_id, source))
            continue
        found.setdefault(kept.id, (kept, alias or wanted[0], MatchSource.ALIAS))
    return found


def _by_ins(session: Session, ins: str) -> Identity | None:
    if len(ins) != 15:
        return None
    rows = session.exec(
        select(Identity).where(Identity.ins_matricule == ins[:13], Identity.ins_key == ins[13:])
    ).all()
    kept = {k.id: k for k in (_kept(session, r) for r in rows) if k is not None}
    return next(iter(kept.values())) if len(kept) == 1 else None


def ins_of(identity: Identity) -> str | None:
    if identity.ins_matricule and identity.ins_key:
        return identity.ins_matricule + identity.ins_key
    return None


def match_identity(session: Session, report: LabReport, *, index: LocalIdIndex | None = None) -> Match:
    """The identity a report belongs to: matched by hand, else by its local ids (and the
    identities' aliases), else by its INS (see the module docstring). ``index``: the local ids
    of a batch of reports, read beforehand (the same answer, without a query per report)."""
    local_ids = [str(x) for x in (report.patient_local_ids or []) if str(x).strip()]
    shown_local = local_ids[0] if local_ids else None
    ins = (report.patient_ins or "").strip()
    by_ins = _by_ins(session, ins) if ins else None

    if report.match_source == MatchSource.MANUAL and report.identity_id is not None:
        manual = _kept(session, session.get(Identity, report.identity_id))
        if manual is not None:
            return Match(
                manual, shown_local, source=MatchSource.MANUAL, mismatch=_ins_mismatch(manual, ins, by_ins)
            )

    by_local = _by_local_ids(session, local_ids, index)
    if len(by_local) > 1:
        ids = ", ".join(f"n°{i}" for i in sorted(by_local))
        return Match(
            None,
            shown_local,
            f"Patient non rapproché : les identifiants locaux du compte rendu désignent plusieurs "
            f"identités ({ids}). Vérifier les numéros patient (identitovigilance).",
        )
    if by_local:
        identity, local_id, source = next(iter(by_local.values()))
        return Match(identity, local_id, source=source, mismatch=_ins_mismatch(identity, ins, by_ins))
    if by_ins is not None:
        return Match(by_ins, by_ins.local_id or shown_local, source=MatchSource.INS)
    what = []
    if local_ids:
        what.append("le numéro local " + ", ".join(local_ids))
    if ins:
        what.append("l'INS du compte rendu")
    detail = " ni ".join(what) if what else "aucun identifiant"
    return Match(None, shown_local, f"Patient non rapproché : aucune identité ne porte {detail}.")


def _ins_mismatch(identity: Identity, ins: str, by_ins: Identity | None) -> tuple[str, ...]:
    if not ins:
        return ()
    if by_ins is not None and by_ins.id != identity.id:
        return (f"INS (celui de l'identité n°{by_ins.id})",)
    own = ins_of(identity)
    if own is not None and own != ins:
        return ("INS (différent de celui de l'identité)",)
    return ()


# ---------------------------------------------------------------------------------------------
# The identity cross-check (IDENTITY_MISMATCH)

_SEPARATORS = re.compile(r"[-'\s]+")


def fold_name(text: str | None) -> str:
    """A name as compared across systems: accents and case dropped, the typographic apostrophe
    and hyphens read as spaces (the INSi normalisation, lenient on what labs print)."""
    if not text:
        return ""
    text = text.replace("’", "'").replace("Œ", "OE").replace("œ", "oe").replace("Æ", "AE").replace("æ", "ae")
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return " ".join(_SEPARATORS.sub(" ", plain).split())


def _name_words(*texts: str | None) -> set[str]:
    return {w for t in texts for w in fold_name(t).split()}


def _date_parts(value: Any) -> tuple[int, int, int] | None:
    m = re.fullmatch(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", str(value or "").strip())
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _french_parts(parts: tuple[int, int, int], known: int) -> str:
    """``JJ/MM/AAAA`` as read at the desk; ``MM/AAAA`` or ``AAAA`` when the day or month is unknown."""
    year, month, day = parts
    return (f"{year:04d}", f"{month:02d}/{year:04d}", f"{day:02d}/{month:02d}/{year:04d}")[known - 1]


def trait_differences(traits: dict[str, Any], identity: Identity) -> list[str]:
    """The traits a report gives that disagree with the identity's (French field names with both
    values); traits the report does not give are not compared."""
    out: list[str] = []
    names = [traits.get("birth_name"), traits.get("used_name")]
    given = [fold_name(n) for n in names if fold_name(n)]
    if given:
        known = {fold_name(identity.birth_name), fold_name(identity.used_name)} - {""}
        if not any(n in known for n in given):
            shown = " / ".join(str(n) for n in names if n)
            out.append(f"nom ({shown} ≠ {identity.birth_name})")
    first = traits.get("first_name") or next(iter(traits.get("first_names") or []), None)
    wanted = _name_words(first)
    if wanted:
        known_first = _name_words(identity.first_names, identity.first_name, identity.used_first_name)
        if not wanted <= known_first:
            out.append(f"prénom ({first} absent de « {identity.first_names} »)")
    parts = _date_parts(traits.get("birth_date"))
    if parts is not None:
        mine = (identity.birth_date.year, identity.birth_date.month, identity.birth_date.day)
        size = 3
        if identity.birth_date_uncertain:
            size = 1 if (mine[1], mine[2]) == (12, 31) else 2  # month unknown / day unknown
        if parts[:size] != mine[:size]:
            out.append(f"date de naissance ({_french_parts(parts, 3)} ≠ {_french_parts(mine, size)})")
    sex = str(traits.get("sex") or "").strip().upper()
    if sex in ("M", "F") and sex != identity.sex:
        out.append(f"sexe ({sex} ≠ {identity.sex})")
    return out


def mismatch_reason(match: Match, report: LabReport) -> Reason | None:
    if match.identity is None:
        return None
    fields = list(match.mismatch) + trait_differences(dict(report.patient_traits or {}), match.identity)
    if not fields:
        return None
    how = "rapprochée à la main" if match.source == MatchSource.MANUAL else f"numéro {match.local_id or '?'}"
    return Reason(
        IDENTITY_MISMATCH,
        None,
        f"Le patient du compte rendu ne correspond pas à l'identité n°{match.identity.id} ({how}) : "
        + ", ".join(fields)
        + ". Vérifier le rapprochement (identitovigilance).",
    )


# ---------------------------------------------------------------------------------------------
# Status and flags (INS_NOT_QUALIFIED, IDENTITY_FLAGGED)


def identity_reasons(identity: Identity) -> list[Reason]:
    reasons: list[Reason] = []
    flags = [
        f for f, on in ((Flag.DOUTEUSE, identity.flag_douteuse), (Flag.FICTIVE, identity.flag_fictive)) if on
    ]
    if flags:
        labels = " et ".join(f.label for f in flags)
        reasons.append(
            Reason(
                IDENTITY_FLAGGED,
                None,
                f"Identité n°{identity.id} marquée {labels} : aucun envoi tant que la cellule "
                "d'identitovigilance n'a pas levé l'attribut (EXI SI 09).",
            )
        )
    status = Status(identity.status)
    if status is not Status.QUAL:
        reasons.append(
            Reason(
                INS_NOT_QUALIFIED,
                None,
                f"Identité n°{identity.id} au statut {status.value} : seule une identité qualifiée (QUAL) "
                "peut transmettre l'INS à Mon Espace Santé (EXI SI 08).",
            )
        )
    if DmpFeeding(identity.dmp_feeding or DmpFeeding.NOT_ASKED) is DmpFeeding.OPPOSED:
        reasons.append(
            Reason(
                PATIENT_OPPOSED,
                None,
                f"Le patient (identité n°{identity.id}) s'est opposé à l'alimentation de son DMP : "
                "aucun compte rendu ne lui est envoyé tant que l'opposition est enregistrée.",
            )
        )
    return reasons

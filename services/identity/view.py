"""``identity show``: one identity as the JSON of docs/cli.md (plus extra keys)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, func, select

from services.identity.documents import document_types
from services.identity.records import flag_list, identity_flags, identity_traits, ins_value
from services.identity.status import ins_usable
from services.storage.models import (
    CaptureChannel,
    DmpFeeding,
    Identity,
    IdentityAlias,
    IdentityProof,
    InsHistory,
    InsiCall,
    InsSource,
    Status,
)

__all__ = ["identity_view"]


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def identity_view(session: Session, *, identity: Identity) -> dict[str, Any]:
    """The ``identity show`` JSON of ``docs/cli.md`` (plus extra keys), JSON-ready.

    ``ins`` is present once retrieved and not invalidated; ``usable`` only when QUAL and not
    douteuse/fictive (EXI SI 08, EXI ID 29); an invalidated INS stays in ``ins_history``.
    """
    flags = identity_flags(identity)
    ins = ins_value(identity)
    ins_json: dict[str, Any] | None = None
    if ins is not None:
        ins_json = {**ins, "usable": ins_usable(identity.status, flags)}
    labels = {d.code: d.label for d in document_types(session)}
    proofs = session.exec(
        select(IdentityProof)
        .where(IdentityProof.identity_id == identity.id)
        .order_by(col(IdentityProof.checked_at), col(IdentityProof.id))
    ).all()
    history = session.exec(
        select(InsHistory).where(InsHistory.identity_id == identity.id).order_by(col(InsHistory.id))
    ).all()
    insi_calls = session.exec(
        select(func.count()).select_from(InsiCall).where(InsiCall.identity_id == identity.id)
    ).one()
    return {
        "id": identity.id,
        "local_id": identity.local_id,
        "version": identity.version,
        "status": Status(identity.status).value,
        "flags": flag_list(flags),
        "traits": identity_traits(identity).as_dict(),
        "ins": ins_json,
        "proofs": [
            {
                "id": p.id,
                "document_type": p.document_type,
                "label": labels.get(p.document_type, p.document_type),
                "expires": _iso(p.expires),
                "checked_by": p.checked_by,
                "checked_at": _iso(p.checked_at),
            }
            for p in proofs
        ],
        "insi_calls": int(insi_calls),
        "feeding": DmpFeeding(identity.dmp_feeding or DmpFeeding.NOT_ASKED).value,
        "used_name": identity.used_name,
        "used_first_name": identity.used_first_name,
        "capture_channel": CaptureChannel(identity.capture_channel).value,
        "ins_checked_at": _iso(identity.ins_checked_at),
        "ins_history": [
            {
                "matricule": h.matricule,
                "key": h.key,
                "oid": h.oid,
                "valid_from": _iso(h.valid_from),
                "valid_to": _iso(h.valid_to),
                "source": InsSource(h.source).value,
                "recorded_at": _iso(h.recorded_at),
                "insi_call_id": h.insi_call_id,
                "key_valid": h.key_valid,
            }
            for h in history
        ],
        "created_at": _iso(identity.created_at),
        "created_by": identity.created_by,
        "updated_at": _iso(identity.updated_at),
        "merged_into": identity.merged_into,
        "aliases": list(
            session.exec(
                select(IdentityAlias.local_id)
                .where(IdentityAlias.identity_id == identity.id)
                .order_by(col(IdentityAlias.id))
            ).all()
        ),
    }

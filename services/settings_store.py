"""Prefixed rows of the ``setting`` table (``insi.*``, ``cda.*``…): read them, change them audited."""

from __future__ import annotations

from collections.abc import Mapping

from sqlmodel import Session, col, select

from services.audit.log import CONFIG_CHANGED, append_event
from services.errors import BadRequest
from services.storage.models import Setting
from services.users import Actor, Right, require


def read_settings(session: Session, prefix: str) -> dict[str, str]:
    """The ``<prefix>*`` rows by name (without the prefix)."""
    rows = session.exec(select(Setting).where(col(Setting.key).startswith(prefix))).all()
    return {row.key[len(prefix) :]: row.value for row in rows}


def store_settings(
    session: Session,
    *,
    actor: Actor,
    prefix: str,
    allowed: tuple[str, ...],
    values: Mapping[str, str | None],
    label: str,
) -> dict[str, str]:
    """Store ``<prefix><name>`` settings (Right.CONFIG); ``None`` or an empty text removes one.

    One ``config.changed`` audit event lists what changed. Returns the stored settings.
    """
    require(actor, Right.CONFIG)
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise BadRequest(
            f"Réglage {label} inconnu : {', '.join(unknown)} (réglages possibles : {', '.join(allowed)}).",
            code=f"{prefix.rstrip('.')}_setting_unknown",
        )
    changed: dict[str, str | None] = {}
    for name, raw in values.items():
        text = raw.strip() if isinstance(raw, str) else ""
        key = prefix + name
        row = session.get(Setting, key)
        if not text:
            if row is not None:
                session.delete(row)
                changed[name] = None
            continue
        if row is None:
            session.add(Setting(key=key, value=text))
        elif row.value == text:
            continue
        else:
            row.value = text
            session.add(row)
        changed[name] = text
    session.flush()
    if changed:
        append_event(
            session,
            actor=actor.login,
            kind=CONFIG_CHANGED,
            details={"setting": prefix.rstrip("."), "changes": changed},
        )
    return read_settings(session, prefix)

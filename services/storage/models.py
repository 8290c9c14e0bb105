"""SQLModel schemas and tables (the table names are the contract of ``docs/architecture.md``).

Layout: ``XBase`` (shared fields) → ``X`` (``table=True``), plus ``XPublic`` (what readers get
back) where something reads one (``UserPublic``: ``add_user``; ``IdentityPublic``).

Conventions:
- every timestamp is timezone-aware UTC (``UTCDateTime`` stores UTC on every engine and gives
  back aware datetimes, also on SQLite which has no time zone);
- enums are stored as plain strings (``VARCHAR``, no native PostgreSQL enum types), so adding a
  member never needs a migration of a database type;
- ``identity.version`` is SQLAlchemy's ``version_id_col``: an UPDATE of a stale row raises
  ``StaleDataError``, which ``Database.transaction`` turns into ``ConcurrentUpdate``;
- ``identity.birth_name`` compares byte-wise (collation ``C`` on PostgreSQL, ``BINARY`` on
  SQLite) so that a prefix search is a plain index range: use ``birth_name_prefix_filter``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import JSON, Field, SQLModel

from services.roles import Role as Role

# ---------------------------------------------------------------------------------------------
# Column types and helpers


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (microsecond precision)."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every engine (naive datetimes are refused)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use timezone-aware UTC datetimes (models.utcnow())")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _enum_type(enum_cls: type[StrEnum], length: int = 16) -> sa.Enum:
    """A non-native enum stored as VARCHAR holding the member's value."""
    return sa.Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def _birth_name_type() -> sa.types.TypeEngine[str]:
    return sa.String(100).with_variant(sa.String(100, collation="C"), "postgresql")


# ---------------------------------------------------------------------------------------------
# Enums


class Status(StrEnum):
    """Identity status (RNIV EXI SI 07)."""

    PROV = "PROV"
    RECUP = "RECUP"
    VALI = "VALI"
    QUAL = "QUAL"


class DmpFeeding(StrEnum):
    """The patient's answer about feeding their DMP / Mon Espace Santé (``identity opposition``):
    managed locally, as the DMP keeps none. ``opposed`` keeps every report of the patient from it."""

    OPPOSED = "opposed"
    NOT_OPPOSED = "not_opposed"
    NOT_ASKED = "not_asked"


class CaptureChannel(StrEnum):
    MANUAL = "manual"
    CARTE_VITALE = "carte_vitale"
    INSI = "insi"
    DATAMATRIX = "datamatrix"
    APCV = "apcv"


class InsSource(StrEnum):
    """Origin of an ``ins_history`` row."""

    ACTIVE = "active"
    HISTO = "histo"
    INVALIDATED = "invalidated"


# ---------------------------------------------------------------------------------------------
# identity

BIRTH_NAME_MAX = 100


class IdentityBase(SQLModel):
    local_id: str | None = Field(default=None, max_length=64)
    birth_name: str = Field(max_length=BIRTH_NAME_MAX)
    first_names: str = Field(max_length=200, description="birth first names, space separated")
    first_name: str | None = Field(default=None, max_length=100)
    sex: str = Field(max_length=1)
    birth_date: date
    birth_date_uncertain: bool = False
    birthplace: str | None = Field(default=None, max_length=5)
    used_name: str | None = Field(default=None, max_length=100)
    used_first_name: str | None = Field(default=None, max_length=100)


# A Column object (not a Field) so that the mapper can use it as version_id_col.
_identity_version_col = sa.Column("version", sa.Integer, nullable=False, default=1)


class Identity(IdentityBase, table=True):
    __tablename__ = "identity"
    __table_args__ = (
        sa.Index("ix_identity_birth_name_birth_date", "birth_name", "birth_date"),
        sa.Index("ix_identity_birth_date_birth_name", "birth_date", "birth_name"),
        sa.Index("ix_identity_local_id", "local_id"),
        # « IPP-00… » typed at the desk: LIKE 'p%' index-backed on PostgreSQL whatever the collation
        # (text_pattern_ops); on SQLite a byte-wise range on the plain index (migration 0008).
        sa.Index("ix_identity_local_id_prefix", "local_id", postgresql_ops={"local_id": "text_pattern_ops"}),
        sa.Index("ix_identity_ins_matricule", "ins_matricule"),
        sa.Index("ix_identity_merged_into", "merged_into"),
    )
    __mapper_args__ = {"version_id_col": _identity_version_col}

    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(default=1, sa_column=_identity_version_col)
    birth_name: str = Field(max_length=BIRTH_NAME_MAX, sa_type=_birth_name_type())
    status: Status = Field(default=Status.PROV, sa_type=_enum_type(Status))
    flag_douteuse: bool = False
    flag_fictive: bool = False
    flag_homonyme: bool = False
    capture_channel: CaptureChannel = Field(default=CaptureChannel.MANUAL, sa_type=_enum_type(CaptureChannel))
    ins_matricule: str | None = Field(default=None, max_length=13)
    ins_key: str | None = Field(default=None, max_length=2)
    ins_oid: str | None = Field(default=None, max_length=64)
    ins_checked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A merged duplicate (migration 0004) is never deleted: it stays as a tombstone pointing at
    # the identity kept, and disappears from searches.
    merged_into: int | None = Field(default=None, foreign_key="identity.id", ondelete="RESTRICT")
    # The patient's opposition to feeding the DMP (migration 0009).
    dmp_feeding: DmpFeeding = Field(
        default=DmpFeeding.NOT_ASKED,
        sa_type=_enum_type(DmpFeeding),
        sa_column_kwargs={"server_default": DmpFeeding.NOT_ASKED.value},
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(
        default_factory=utcnow, sa_type=UTCDateTime, sa_column_kwargs={"onupdate": utcnow}
    )


class IdentityPublic(IdentityBase):
    id: int
    version: int
    status: Status
    flag_douteuse: bool
    flag_fictive: bool
    flag_homonyme: bool
    capture_channel: CaptureChannel
    ins_matricule: str | None
    ins_key: str | None
    ins_oid: str | None
    ins_checked_at: datetime | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime


def birth_name_prefix_filter(prefix: str) -> ColumnElement[bool]:
    """An index-backed ``birth_name`` starts-with filter (byte-wise, exact, any engine).

    ``LIKE 'X%'`` is not index-backed on SQLite (case-insensitive LIKE) and depends on the
    collation on PostgreSQL; a half-open range on the byte-wise-collated column always is.
    Combine with ``Identity.birth_date == d``: the (birth_date, birth_name) index serves both.
    """
    col = Identity.__table__.c.birth_name  # type: ignore[attr-defined]
    if not prefix:
        return sa.true()
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return sa.and_(col >= prefix, col < upper)


# ---------------------------------------------------------------------------------------------
# identity_alias


class IdentityAlias(SQLModel, table=True):
    """Another local id (lab system patient number) of an identity, e.g. the local id of a duplicate
    merged into it (migration 0004): results that arrive later with it match that identity."""

    __tablename__ = "identity_alias"

    id: int | None = Field(default=None, primary_key=True)
    identity_id: int = Field(foreign_key="identity.id", index=True, ondelete="CASCADE")
    local_id: str = Field(max_length=64, unique=True)
    source: str = Field(default="merge", max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str | None = Field(default=None, max_length=64)


# ---------------------------------------------------------------------------------------------
# ins_history


class InsHistoryBase(SQLModel):
    identity_id: int = Field(foreign_key="identity.id", index=True, ondelete="CASCADE")
    matricule: str = Field(max_length=13)
    key: str = Field(max_length=2)
    oid: str = Field(max_length=64)
    valid_from: date | None = None
    valid_to: date | None = None
    source: InsSource = Field(default=InsSource.ACTIVE, sa_type=_enum_type(InsSource))
    insi_call_id: int | None = Field(default=None, foreign_key="insi_call.id", ondelete="SET NULL")
    # False for an INSHISTO entry whose key is absent or does not check (migration 0005, CNDA
    # TEST_2.08): kept as received, never used to match anything.
    key_valid: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})


class InsHistory(InsHistoryBase, table=True):
    __tablename__ = "ins_history"
    # Who holds a matricule (one INS, one identity; migration 0005): looked up on every attachment.
    __table_args__ = (sa.Index("ix_ins_history_matricule", "matricule"),)

    id: int | None = Field(default=None, primary_key=True)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# ---------------------------------------------------------------------------------------------
# ins_claim


class InsClaim(SQLModel, table=True):
    """One INS belongs to one identity (issue #13, migration 0005): a row per matricule an identity
    holds — its active INS and the valid keys of its INSi history (INSHISTO). The primary key on
    the matricule is the database's guarantee: two desks racing to attach the same INS to two
    identities cannot both commit (the second gets ``duplicate_of``), on SQLite and PostgreSQL.

    Databases that already hold two identities with the same INS keep them: migration 0005 gives
    the claim to the first holder (lowest id) and none to the others, which stay visible as an
    anomaly (``identity duplicates``, the supervisor's log) until merged; no new one can be made.
    A claim goes with the INS: released when the INS is invalidated, moved by a merge.
    """

    __tablename__ = "ins_claim"

    matricule: str = Field(primary_key=True, max_length=13)
    identity_id: int = Field(foreign_key="identity.id", index=True, ondelete="CASCADE")
    source: InsSource = Field(default=InsSource.ACTIVE, sa_type=_enum_type(InsSource))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# ---------------------------------------------------------------------------------------------
# identity_proof


class IdentityProofBase(SQLModel):
    identity_id: int = Field(foreign_key="identity.id", index=True, ondelete="CASCADE")
    document_type: str = Field(max_length=40)
    expires: date | None = None
    checked_by: str = Field(max_length=64)


class IdentityProof(IdentityProofBase, table=True):
    __tablename__ = "identity_proof"

    id: int | None = Field(default=None, primary_key=True)
    checked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Optional scan of the document (sensitive; migration 0003): purged by
    # ``services.supervision.retention`` at most 5 years after the patient's last visit.
    scan: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    scan_purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# ---------------------------------------------------------------------------------------------
# insi_call


class InsiCallBase(SQLModel):
    identity_id: int | None = Field(default=None, foreign_key="identity.id", index=True, ondelete="CASCADE")
    user_login: str | None = Field(default=None, max_length=64)
    operation: str = Field(max_length=40)
    traits_sent: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    cr: str | None = Field(default=None, max_length=8)
    ins_returned: str | None = Field(default=None, max_length=15)
    auth_mode: str | None = Field(default=None, max_length=40)
    duration_ms: int | None = None
    automatic: bool = False
    request_xml: str | None = Field(default=None, sa_type=sa.Text)
    response_xml: str | None = Field(default=None, sa_type=sa.Text)
    error_code: str | None = Field(default=None, max_length=64)


class InsiCall(InsiCallBase, table=True):
    __tablename__ = "insi_call"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# ---------------------------------------------------------------------------------------------
# app_user


class UserBase(SQLModel):
    login: str = Field(max_length=64)
    role: Role = Field(sa_type=_enum_type(Role))
    active: bool = True


class AppUser(UserBase, table=True):
    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    login: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UserPublic(UserBase):
    id: int
    created_at: datetime


# ---------------------------------------------------------------------------------------------
# audit_event / audit_head


class AuditEventBase(SQLModel):
    at: datetime = Field(sa_type=UTCDateTime)
    actor: str | None = Field(default=None, max_length=64)
    kind: str = Field(max_length=40)
    # Deliberately no foreign key: audit rows outlive purged identities and are never touched.
    identity_id: int | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditEvent(AuditEventBase, table=True):
    """One audit event; ``id`` is assigned from ``audit_head`` (contiguous), never autoincremented."""

    __tablename__ = "audit_event"
    __table_args__ = (
        sa.Index("ix_audit_event_identity_id", "identity_id"),
        sa.Index("ix_audit_event_at", "at"),
        sa.Index("ix_audit_event_kind", "kind"),
        # Supervisor review (issue #7, migration 0003): per-agent / per-kind pages in id order.
        sa.Index("ix_audit_event_actor_id", "actor", "id"),
        sa.Index("ix_audit_event_kind_id", "kind", "id"),
    )

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})


class AuditHead(SQLModel, table=True):
    """A single row (id=1) holding the last event: locked by every append (serialises writers)."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_id: int = 0
    last_hash: str = Field(max_length=64)


# ---------------------------------------------------------------------------------------------
# setting


class Setting(SQLModel, table=True):
    __tablename__ = "setting"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_type=sa.Text)


INSTANCE_UUID_KEY = "instance_uuid"


def new_instance_uuid() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------------
# Dashboard counters (issue #17, migration 0010): kept by ``services.storage.tally``


class IdentityTally(SQLModel, table=True):
    """Identities per (creator, capture channel, status), now (``created_by`` "" when unknown)."""

    __tablename__ = "identity_tally"

    created_by: str = Field(primary_key=True, max_length=64)
    capture_channel: str = Field(primary_key=True, max_length=32)
    status: str = Field(primary_key=True, max_length=8)
    n: int = Field(default=0, sa_type=sa.BigInteger)


class DayTally(SQLModel, table=True):
    """A counter per Europe/Paris day (``YYYY-MM-DD``), metric and key (see ``storage.tally``)."""

    __tablename__ = "day_tally"
    __table_args__ = (sa.Index("ix_day_tally_metric_day", "metric", "day"),)

    day: str = Field(primary_key=True, max_length=10)
    metric: str = Field(primary_key=True, max_length=16)
    key: str = Field(primary_key=True, max_length=64)
    n: int = Field(default=0, sa_type=sa.BigInteger)

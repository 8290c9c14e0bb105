"""Storage: SQLModel tables (``models``), the ``Database`` (``db``), the audit anchor file (``anchor``)
and Alembic migrations."""

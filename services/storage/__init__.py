"""Storage: SQLModel tables (``models``), the ``Database`` (``db``) and Alembic migrations."""

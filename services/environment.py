"""Whether this installation is a test (or demo) installation or a production one (issue #13).

``insi.environment`` in the ``setting`` table (``insdesk config set insi.environment=test``):
``production`` unless declared ``test``. The INS of the test OIDs are accepted only in a test
installation (the identity rule: :mod:`services.identity.ins_environment`). The desk's status bar
names a test installation.
"""

from __future__ import annotations

from typing import Final

from sqlmodel import Session

from services.errors import BadRequest
from services.storage.models import Setting

__all__ = [
    "ENVIRONMENTS",
    "ENVIRONMENT_KEY",
    "ENV_PRODUCTION",
    "ENV_TEST",
    "check_environment_value",
    "installation_environment",
]

ENVIRONMENT_KEY: Final = "insi.environment"
ENV_TEST: Final = "test"
ENV_PRODUCTION: Final = "production"
ENVIRONMENTS: Final = (ENV_TEST, ENV_PRODUCTION)


def check_environment_value(value: str) -> str:
    """``test`` or ``production`` (BadRequest otherwise)."""
    text = (value or "").strip().lower()
    if text not in ENVIRONMENTS:
        raise BadRequest(
            f"insi.environment vaut « test » (installation de test ou de démonstration) ou « production », "
            f"pas « {value} ».",
            code="insi_config",
        )
    return text


def installation_environment(session: Session) -> str:
    """``test`` when declared so (``insi.environment``), else ``production``."""
    row = session.get(Setting, ENVIRONMENT_KEY)
    return ENV_TEST if row is not None and row.value.strip().lower() == ENV_TEST else ENV_PRODUCTION

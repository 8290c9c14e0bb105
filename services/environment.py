"""Whether this installation is a test (or demo) installation or a production one (issue #13).

``insi.environment`` in the ``setting`` table (``insdesk config set insi.environment=test``):
``production`` unless declared ``test``. The INS of the test OIDs (``1.2.250.1.213.1.4.10`` test
NIR, ``.11`` demo NIR: ins-rules.md) are accepted only in a test installation; elsewhere they are
refused with a clear message and nothing is attached (cli.md additions, "Test identities"). The
desk's status bar names a test installation.
"""

from __future__ import annotations

from typing import Final

from sqlmodel import Session

from services.errors import BadRequest, NegativeAnswer
from services.identity.matricule import OID_INS_NIR_DEMO, OID_INS_NIR_TEST, oid_label
from services.storage.models import Setting

__all__ = [
    "ENVIRONMENTS",
    "ENVIRONMENT_KEY",
    "ENV_PRODUCTION",
    "ENV_TEST",
    "TEST_OIDS",
    "TestInsRefused",
    "check_environment_value",
    "check_oid_allowed",
    "installation_environment",
]

ENVIRONMENT_KEY: Final = "insi.environment"
ENV_TEST: Final = "test"
ENV_PRODUCTION: Final = "production"
ENVIRONMENTS: Final = (ENV_TEST, ENV_PRODUCTION)
TEST_OIDS: Final = frozenset({OID_INS_NIR_TEST, OID_INS_NIR_DEMO})


class TestInsRefused(NegativeAnswer):
    """An INS of a test OID in a production installation: nothing attached (exit 1)."""

    __test__ = False  # not a pytest test class
    default_code = "ins_test_oid"
    title = "INS de test refusé"


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


def check_oid_allowed(session: Session, oid: str) -> None:
    """Refuse (:class:`TestInsRefused`) an INS of a test OID outside a test installation."""
    if oid.strip() in TEST_OIDS and installation_environment(session) != ENV_TEST:
        raise TestInsRefused(
            f"INS refusé : son OID est celui d'un {oid_label(oid)} ({oid.strip()}), accepté seulement "
            "dans une installation de test (insi.environment=test). Rien n'a été rattaché : vérifiez "
            "l'adresse du service INSi configurée (un service de test répond-il en production ?).",
            code="ins_test_oid",
        )

"""Which INS an installation accepts: the test OIDs only in a test installation (issue #13).

The INS of the test OIDs (``1.2.250.1.213.1.4.10`` test NIR, ``.11`` demo NIR: docs/cli.md,
"Test identities") are accepted only where ``insi.environment`` declares a test installation
(:mod:`services.environment`); elsewhere they are refused with a clear message and nothing is
attached.
"""

from __future__ import annotations

from typing import Final

from sqlmodel import Session

from services.environment import ENV_TEST, installation_environment
from services.errors import NegativeAnswer
from services.identity.matricule import OID_INS_NIR_DEMO, OID_INS_NIR_TEST, oid_label

__all__ = ["TEST_OIDS", "TestInsRefused", "check_oid_allowed"]

TEST_OIDS: Final = frozenset({OID_INS_NIR_TEST, OID_INS_NIR_DEMO})


class TestInsRefused(NegativeAnswer):
    """An INS of a test OID in a production installation: nothing attached (exit 1)."""

    __test__ = False  # not a pytest test class
    default_code = "ins_test_oid"
    title = "INS de test refusé"


def check_oid_allowed(session: Session, oid: str) -> None:
    """Refuse (:class:`TestInsRefused`) an INS of a test OID outside a test installation."""
    if oid.strip() in TEST_OIDS and installation_environment(session) != ENV_TEST:
        raise TestInsRefused(
            f"INS refusé : son OID est celui d'un {oid_label(oid)} ({oid.strip()}), accepté seulement "
            "dans une installation de test (insi.environment=test). Rien n'a été rattaché : vérifiez "
            "l'adresse du service INSi configurée (un service de test répond-il en production ?).",
            code="ins_test_oid",
        )

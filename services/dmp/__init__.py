"""Sending CR-BIO documents to the DMP / Mon Espace Santé (IHE XDS.b, ANS DMP profile).

``DmpSender`` (``sender.py``) fits the outbox's ``ReportSender`` protocol; ``DmpConfig``
(``config.py``) holds its settings; errors in ``errors.py``. The local DMP it is tested against
is ``services.dmp_sim`` (no shared code).
"""

from services.dmp.config import DmpConfig, dmp_config_from_env
from services.dmp.errors import DmpConfigError, DmpRefused, DmpSecurityRefused, DmpUnavailable, RegistryError
from services.dmp.exchange import DmpExchange
from services.dmp.sender import DmpReceipt, DmpSender

__all__ = [
    "DmpConfig",
    "DmpConfigError",
    "DmpExchange",
    "DmpReceipt",
    "DmpRefused",
    "DmpSecurityRefused",
    "DmpSender",
    "DmpUnavailable",
    "RegistryError",
    "dmp_config_from_env",
]

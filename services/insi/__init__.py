"""Client of the INSi teleservice (recherche de l'INS), written from the WSDL, the XSDs and the
public samples only (kept in ``services/insi/xsd/``).

* :mod:`services.insi.config`: endpoint, IDAM, mutual TLS, timeouts, retries;
* :mod:`services.insi.envelope`: SOAP 1.2 requests built with lxml;
* :mod:`services.insi.exchange`: the answer's value objects and the exchange as it happened;
* :mod:`services.insi.parse`: hardened, namespace-robust parsing of answers and faults;
* :mod:`services.insi.client`: transport, TLS, retries, typed errors;
* :mod:`services.insi.strategy`: the certified search strategy (CNDA 2.07).

No engine nor client is created at import time.
"""

from services.insi.client import InsiClient
from services.insi.config import PROD_ENDPOINT, QUALIF_ENDPOINT, InsiConfig, RetryPolicy
from services.insi.envelope import TraitsQuery, VitaleQuery
from services.insi.errors import InsiError, InsiFault, InsiProtocolError, InsiTlsError, InsiUnavailable
from services.insi.exchange import InsHistoryEntry, InsiAnswer, InsiExchange, InsiIdentity
from services.insi.parse import parse_response
from services.insi.strategy import (
    Attempt,
    SearchOutcome,
    certified_search,
    certified_search_for_traits,
)

__all__ = [
    "PROD_ENDPOINT",
    "QUALIF_ENDPOINT",
    "Attempt",
    "InsHistoryEntry",
    "InsiAnswer",
    "InsiClient",
    "InsiConfig",
    "InsiError",
    "InsiExchange",
    "InsiFault",
    "InsiIdentity",
    "InsiProtocolError",
    "InsiTlsError",
    "InsiUnavailable",
    "RetryPolicy",
    "SearchOutcome",
    "TraitsQuery",
    "VitaleQuery",
    "certified_search",
    "certified_search_for_traits",
    "parse_response",
]

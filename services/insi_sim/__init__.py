"""INSi simulator: the INSi teleservice (SOAP 1.2, mutual TLS) on loopback, for tests and the demo.

Written from the protocol only (WSDL, XSDs, public samples in ``reference/``); it shares no code
with the INSi client in ``services/insi``. Format of the personas file and fault modes:
``docs/insi-simulator.md``. Run it alone with ``python -m services.insi_sim --port 8765``.
"""

from services.insi_sim.personas import (
    DEFAULT_PERSONAS_PATH,
    FAULT_MODES,
    Persona,
    PersonaBook,
    load_personas,
    nir_key,
    parse_personas,
)
from services.insi_sim.server import FAULT_HEADER, STYLE_HEADER, InsiSimulator, RecordedRequest

__all__ = [
    "DEFAULT_PERSONAS_PATH",
    "FAULT_HEADER",
    "FAULT_MODES",
    "STYLE_HEADER",
    "InsiSimulator",
    "Persona",
    "PersonaBook",
    "RecordedRequest",
    "load_personas",
    "nir_key",
    "parse_personas",
]

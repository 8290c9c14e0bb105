"""A local DMP (IHE XDS.b repository + registry, ANS DMP rules) for tests, the benchmark and the demo.

Written from the public IGs only; shares no code with the sender (``services/dmp``).
"""

from services.dmp_sim.registry import DmpPatient, Entry, Patients, load_patients
from services.dmp_sim.server import FAULT_MODES, DmpSimulator, RecordedRequest

__all__ = [
    "FAULT_MODES",
    "DmpPatient",
    "DmpSimulator",
    "Entry",
    "Patients",
    "RecordedRequest",
    "load_patients",
]

"""The Learnosity Data API emulator: ``/sessions/scores`` over a living workload.

The product's embedded default source (``learnosity-connector emulator``), and the
service tests and benchmarks run against. See ``service.Emulator`` for in-process use.
"""

from connector.emulator.faults import FaultConfig
from connector.emulator.service import (
    DEMO_CONSUMER_KEY,
    DEMO_CONSUMER_SECRET,
    Emulator,
    EmulatorConfig,
)
from connector.emulator.workload import WorkloadConfig

__all__ = [
    "DEMO_CONSUMER_KEY",
    "DEMO_CONSUMER_SECRET",
    "Emulator",
    "EmulatorConfig",
    "FaultConfig",
    "WorkloadConfig",
]

"""Registers every fixture module under tests/fixtures/ as a pytest plugin.

Each component the tests need (Kafka broker, schema registry, emulator) has its own
fixture module there; adding a module is enough to make its fixtures available.
"""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if not path.name.startswith("_")
)

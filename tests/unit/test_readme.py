"""The README's settings table and the Settings model never drift apart."""

import re
from pathlib import Path

from connector.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_and_every_documented_one_exists() -> None:
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)`", text, flags=re.MULTILINE))
    documented |= set(re.findall(r"^\| `[A-Z_]+`, `([A-Z_]+)` \|", text, flags=re.MULTILINE))
    known = {name.upper() for name in Settings.model_fields} - {"LIBRDKAFKA"}
    assert known - documented == set(), "settings missing from README"
    assert documented - known - {"CONNECTOR_SECRETS_DIR"} == set(), "README names unknown settings"

"""Signs Data API requests with Learnosity's official SDK (the only module importing it).

The SDK builds the ``security`` packet, stamps it with the current minute, adds its
telemetry to ``request.meta.sdk`` and signs ``$02$`` + HMAC-SHA256 over the packet; we
only send what it built. A fresh stamp per request, since a stale one is refused (41004).
"""

from __future__ import annotations

from typing import Any

from learnosity_sdk._version import __version__ as sdk_version
from learnosity_sdk.exceptions import ValidationException
from learnosity_sdk.request import DataApi, Init
from pydantic import SecretStr

from connector.errors import ConfigError

_action_deriver = DataApi()


def signed_form(
    consumer_key: str,
    consumer_secret: SecretStr,
    domain: str,
    request: dict[str, Any],
    action: str = "get",
) -> dict[str, str]:
    """The three form fields (``security``, ``request``, ``action``), freshly signed."""
    security = {"consumer_key": consumer_key, "domain": domain}
    try:
        init = Init("data", security, consumer_secret.get_secret_value(), request, action)
    except ValidationException as exc:
        # The SDK's messages name fields, never values; still, keep only our own words.
        raise ConfigError(
            [f"the Learnosity SDK refused the request: {type(exc).__name__}"]
        ) from None
    form = init.generate()
    assert isinstance(form, dict)  # the "data" service always generates a dict of fields
    return {str(k): str(v) for k, v in form.items()}


def sdk_headers(consumer_key: str, endpoint_url: str, action: str = "get") -> dict[str, str]:
    """The routing headers the SDK's own transport sends (``X-Learnosity-*``)."""
    return {
        "X-Learnosity-Consumer": consumer_key,
        "X-Learnosity-Action": _action_deriver._derive_action(endpoint_url, action),
        "X-Learnosity-SDK": f"Python:{sdk_version.lstrip('v')}",
    }

"""A throwaway certificate authority and a broker certificate for the SASL_SSL listener.

Made with openssl at first start, so no key material lives in the repository. The broker
certificate names both `localhost` and `127.0.0.1`, so clients keep hostname verification
on (librdkafka's default) and still connect by IP.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dev.errors import StackError
from dev.procs import require_tool

# Long enough for any local session; the CA is remade whenever the broker's data is.
VALID_DAYS = "30"


@dataclass(frozen=True)
class BrokerTls:
    ca_file: Path  # PEM; what clients pass as ssl.ca.location
    keystore: Path  # PKCS12 with the broker key and its chain
    keystore_password: str


def make_broker_tls(directory: Path) -> BrokerTls:
    openssl = require_tool("openssl", "install openssl (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
    key, csr, pem = directory / "broker.key", directory / "broker.csr", directory / "broker.pem"
    extensions = directory / "broker.ext"
    keystore = directory / "broker.p12"
    password = secrets.token_urlsafe(18)
    extensions.write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    # EC keys: generated in milliseconds, where RSA would add a visible pause to every start.
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_pem, "-days", VALID_DAYS,
         "-subj", "/CN=learnosity-connector local dev CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
         "-CAcreateserial", "-out", pem, "-days", VALID_DAYS, "-extfile", extensions],
        [openssl, "pkcs12", "-export", "-in", pem, "-inkey", key, "-certfile", ca_pem,
         "-name", "broker", "-out", keystore, "-passout", f"pass:{password}"],
    ]  # fmt: skip
    for step in steps:
        result = subprocess.run(
            [str(arg) for arg in step], capture_output=True, text=True, check=False, timeout=60
        )
        if result.returncode != 0:
            raise StackError(f"openssl {step[1]} failed: {result.stderr.strip()}")
    return BrokerTls(ca_file=ca_pem, keystore=keystore, keystore_password=password)

"""Entry point of ``learnosity-connector``: argument parsing and error reporting only.

Each subcommand lives in its own module exposing ``configure(parser)`` and
``run(args) -> int``; this module imports it only when that command is chosen, so
``--help`` stays fast and a command never pays for another's libraries.

Every failure ends with one line on stderr and a non-zero exit: ``config error: ...``
per configuration problem (exit 2), else ``error: ...`` (exit 1), with secrets and URL
credentials redacted. The traceback is printed only with ``LOG_LEVEL=DEBUG``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Protocol, cast

from connector import __version__
from connector.errors import ConfigError, ConnectorError, ShutdownRequested, one_line
from connector.observability.logs import redact

#: subcommand → (module implementing it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("connector.commands.run", "run the connector until SIGTERM/SIGINT"),
    "fetch": (
        "connector.commands.fetch",
        "read-only: page through /sessions/scores and print records as JSON lines",
    ),
    "emulator": (
        "connector.emulator.cli",
        "serve the Learnosity Data API emulator (the embedded default source)",
    ),
    "tail": ("connector.commands.tail", "print the output topic's events, decoded, as JSON lines"),
    "status": ("connector.commands.status", "print the stored cursor and state summary"),
    "check": (
        "connector.commands.check",
        "check the configuration, Learnosity, Kafka and the schema registry; one line each",
    ),
    "reset": ("connector.commands.reset", "move the stored cursor (--to earliest|latest|TIME)"),
}


class CommandModule(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> CommandModule:
    return cast(CommandModule, importlib.import_module(COMMANDS[name][0]))


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that reads settings shares."""
    parser.add_argument(
        "--config", metavar="FILE", help="YAML file of settings (env vars override it)"
    )
    parser.add_argument(
        "--secrets-dir",
        metavar="DIR",
        help="directory of secret files named after settings (as Kubernetes mounts them)",
    )


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="learnosity-connector",
        description="Stream Learnosity learner session scores into Kafka, exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (_module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the chosen command's module is imported
            _load(name).configure(sub)
    return parser


def _debugging() -> bool:
    """LOG_LEVEL=DEBUG, as configured, or as set when the settings did not load."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return True
    return os.environ.get("LOG_LEVEL", "").strip().upper() == "DEBUG"


def _behind(exc: BaseException) -> BaseException | None:
    if exc.__cause__ is not None:
        return exc.__cause__
    return None if exc.__suppress_context__ else exc.__context__


def describe(exc: BaseException) -> str:
    """One line: the error's message, and the low-level cause behind it when the message
    does not already say it (``Name or service not known`` behind a connect error)."""
    message = str(exc) if isinstance(exc, ConnectorError) else f"{type(exc).__name__}: {exc}"
    cause = _behind(exc)
    while cause is not None and _behind(cause) is not None:
        cause = _behind(cause)
    if cause is not None and not isinstance(cause, ConnectorError):
        detail = str(cause).strip()
        if detail and detail not in message and type(cause).__module__ != "cimpl":
            message = f"{message} ({detail})"
    return redact(one_line(message))


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(args_list).parse_args(args_list)
    try:
        return _load(args.command).run(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {redact(one_line(problem))}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ShutdownRequested):
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends with one line, whatever raised it
        if _debugging():
            print(redact(traceback.format_exc()).rstrip(), file=sys.stderr)
        print(f"error: {describe(exc)}", file=sys.stderr, flush=True)
        return 1

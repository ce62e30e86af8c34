"""Entry point of ``learnosity-connector``: argument parsing and error reporting only.

Each subcommand lives in its own module exposing ``configure(parser)`` and
``run(args) -> int``; this module imports it only when that command is chosen, so
``--help`` stays fast and a command never pays for another's libraries.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from connector import __version__
from connector.errors import ConfigError, FatalError

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


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(args_list).parse_args(args_list)
    try:
        return _load(args.command).run(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    except FatalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

"""The verb table of `python -m loom_compute` and the command-line dispatch over it.

Each verb is a function from parsed arguments to a summary mapping (emitted as the `done`
event). Every verb accepts `--config FILE` (the resolved run config the CLI wrote); verbs
that cannot work without one declare it required.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from loom_compute.errors import UsageError
from loom_compute.protocol import run_verb

VerbResult = Mapping[str, Any] | None


@dataclass(frozen=True)
class Verb:
    name: str
    help: str
    run: Callable[[argparse.Namespace], VerbResult]
    add_arguments: Callable[[argparse.ArgumentParser], None] = field(default=lambda parser: None)
    config_required: bool = False


class _RaisingParser(argparse.ArgumentParser):
    """Reports bad arguments as a UsageError (an `error` event, exit 2) instead of printing."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", usage=self.format_usage().strip())


def verb_parser(verb: Verb, prog: str) -> argparse.ArgumentParser:
    parser = _RaisingParser(prog=f"{prog} {verb.name}", description=verb.help)
    parser.add_argument(
        "--config",
        metavar="FILE",
        required=verb.config_required,
        help="the resolved run config (JSON) written by the loom CLI" + ("" if verb.config_required else " (optional)"),
    )
    verb.add_arguments(parser)
    return parser


def usage_text(verbs: Mapping[str, Verb], prog: str) -> str:
    width = max((len(name) for name in verbs), default=0)
    lines = [
        f"usage: {prog} <verb> [--config FILE] [verb arguments]",
        "",
        "Loom's compute worker. It reports to the loom CLI with JSON Lines events on stdout",
        "(progress, metric, log, done, error; rank 0 only) and logs for people on stderr.",
        f"`{prog} <verb> --help` describes a verb.",
        "",
        "verbs:",
        *(f"  {name.ljust(width)}  {verb.help}" for name, verb in verbs.items()),
    ]
    return "\n".join(lines) + "\n"


def _fail(error: UsageError) -> Callable[[], VerbResult]:
    def raise_it() -> VerbResult:
        raise error

    return raise_it


def dispatch(argv: Sequence[str], verbs: Mapping[str, Verb], prog: str = "python -m loom_compute") -> NoReturn:
    """Parses `<verb> [args]` and runs the verb under `run_verb`; never returns."""
    argv = list(argv)
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(usage_text(verbs, prog))
        sys.exit(0)
    names = ", ".join(verbs)
    if not argv:
        sys.stderr.write(usage_text(verbs, prog))
        run_verb(_fail(UsageError(f"no verb given; verbs: {names}", verbs=list(verbs))))
    name, rest = argv[0], argv[1:]
    verb = verbs.get(name)
    if verb is None:
        run_verb(_fail(UsageError(f"unknown verb {name!r}; verbs: {names}", verbs=list(verbs))))
    parser = verb_parser(verb, prog)
    try:
        args = parser.parse_args(rest)  # --help prints and exits 0 here, before any event
    except UsageError as exc:
        run_verb(_fail(exc))
    run_verb(lambda: verb.run(args))

"""Logging: the library logs through the standard ``logging`` module, the CLI renders it.

Every module gets its logger from ``get_logger("coordinator.<module>")``: a structlog
logger bound to a standard library logger of that name, with processors of its own, so an
application embedding the daemon sees our records under the ``coordinator`` logger and
configures them as it configures the rest (levels, handlers, format). Nothing here touches
structlog's global configuration or writes to stdout. The CLI (``configure_logging``) adds
one handler to the ``coordinator`` logger: JSON lines on stderr when not on a terminal,
readable console output on one.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

ROOT_LOGGER = "coordinator"

# what every record carries before it reaches a handler; the CLI's formatter renders it,
# any other handler sees the event dict as the record's message
_PROCESSORS: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
]


def get_logger(name: str) -> Any:
    """A structlog logger writing to the standard library logger ``name``."""
    return structlog.wrap_logger(logging.getLogger(name), processors=_PROCESSORS,
                                 wrapper_class=structlog.stdlib.BoundLogger)


class _CliHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the one handler the CLI installs, so configuring twice replaces it."""


def configure_logging(log_format: str = "auto", level: int = logging.INFO) -> None:
    """For the CLI: render the ``coordinator`` logger's records on stderr in the chosen
    format (auto: console on a terminal, JSON lines otherwise), at ``level`` and above."""
    use_console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    handler = _CliHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(processors=[
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.format_exc_info,
        renderer,
    ]))
    logger = logging.getLogger(ROOT_LOGGER)
    for old in [h for h in logger.handlers if isinstance(h, _CliHandler)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the CLI's output is this handler's alone

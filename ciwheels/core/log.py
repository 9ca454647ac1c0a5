"""One output interface for the whole library. Stages never print: they log to the
`ciwheels` logger (info for what they do, warning for what the user should look at) and
report the progress of long work through a `Progress` callable. The CLI decides how both look
(`cli/app.py`: plain lines on stderr, a bar on terminals); a program that imports ciwheels sees
nothing unless it configures logging."""

from __future__ import annotations

import logging
from typing import Protocol

logger = logging.getLogger("ciwheels")
logger.addHandler(logging.NullHandler())


def get_logger(stage: str) -> logging.Logger:
    """The logger of one stage, e.g. get_logger("build") -> "ciwheels.build"."""
    return logger.getChild(stage)


class Progress(Protocol):
    """Called after each unit of long work: `done` of `total` finished, the last one `item`
    with `status` ("uploaded", "ok", "failed", ...) and an optional `detail`."""

    def __call__(self, done: int, total: int, status: str, item: str, detail: str = "") -> None: ...


def no_progress(done: int, total: int, status: str, item: str, detail: str = "") -> None:
    """The default Progress of library calls: report nothing."""

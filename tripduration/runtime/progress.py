"""How a step reports progress: a callback taking a message and a percentage (tasks forward it to luigid)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int], None]


def no_progress(_message: str, _percent: int) -> None:
    return None

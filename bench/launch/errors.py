"""The launcher layer's error and result types."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError


class LauncherError(ConfigError):
    """A launcher configuration or submission problem (names the ``launcher.*`` key when there is one)."""


@dataclass
class LaunchResult:
    """What a launcher did: final states per cell id (when it waited), the scheduler job ids, a message."""

    states: dict[str, str] = field(default_factory=dict)
    waited: bool = True
    job_ids: list[str] = field(default_factory=list)
    message: str = ""

"""The launcher registry: ``@register_launcher(name, options, summary)`` and :func:`resolve`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from ..config import to_container
from ..errors import did_you_mean
from ..grid import Cell
from .errors import LauncherError, LaunchResult
from .options import Option, _check


@dataclass
class Launcher:
    """A launcher: ``resolve(cfg)`` validates ``launcher.*`` into options; ``run(cells, root, options)``
    runs (or submits) the cells. Calling the launcher does both."""

    name: str
    run: Callable[[list[Cell], Path, dict], LaunchResult]
    options: dict[str, Option]
    summary: str
    resolve_fn: Callable[[dict], dict] | None = None

    def resolve(self, launcher_cfg: DictConfig | dict | None) -> dict:
        given = to_container(launcher_cfg) if isinstance(launcher_cfg, DictConfig) else dict(launcher_cfg or {})
        given.pop("name", None)
        if self.resolve_fn is not None:
            return self.resolve_fn(given)
        return _check(self.name, given, self.options)

    def describe(self, opts: dict) -> str:
        shown = {k: v for k, v in opts.items() if v not in (None, [], {})}
        return f"launcher {self.name}" + (": " + ", ".join(f"{k}={v}" for k, v in shown.items()) if shown else "")

    def __call__(self, cells: list[Cell], root: Path, launcher_cfg: DictConfig | dict | None) -> LaunchResult:
        return self.run(cells, Path(root), self.resolve(launcher_cfg))


LAUNCHERS: dict[str, Launcher] = {}


def register_launcher(name: str, options: dict[str, Option], summary: str, resolve: Callable[[dict], dict] | None = None):
    def deco(fn):
        LAUNCHERS[name] = Launcher(name, fn, options, summary, resolve)
        return fn

    return deco


def resolve(launcher_cfg: DictConfig | dict | None) -> tuple[Launcher, dict]:
    """The launcher named by ``launcher.name`` and its validated options (raises :class:`LauncherError`)."""
    cfg = to_container(launcher_cfg) if isinstance(launcher_cfg, DictConfig) else dict(launcher_cfg or {})
    name = cfg.get("name", "inline")
    if name not in LAUNCHERS:
        raise LauncherError(f"launcher.name={name!r} is unknown{did_you_mean(name, LAUNCHERS)}", key="launcher.name",
                            value=name, allowed=sorted(LAUNCHERS))
    launcher = LAUNCHERS[name]
    return launcher, launcher.resolve(cfg)

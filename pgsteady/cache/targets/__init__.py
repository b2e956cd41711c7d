"""Proxy configurations generated from a rules file: one module per target.

A target is a module in this package with ``NAME`` (what ``--target`` takes),
``DESCRIPTION`` and ``compile(rules, options) -> str``. Targets read the rules
model (``pgsteady.cache.rules``) and the one evaluator's helpers
(``pgsteady.cache.evaluate``), never the TOML: to add a target, add a module
here; nothing else changes. The model already restricts names, patterns and
values to small character sets; a target still quotes what it writes and
passes free text (owners, reasons) through ``comment()``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from types import ModuleType

from ...errors import ConfigError, did_you_mean
from ...security.settings import PURGE_FROM
from ..rules import Rules

_PATH = re.compile(r"^/[A-Za-z0-9/._-]{1,200}$")


@dataclass(frozen=True)
class Options:
    """What the rules file leaves to the place the configuration is used."""

    listen: str | None = None          # overrides [site] listen
    origin: str | None = None          # overrides [site] origin (http://host:port)
    cache_dir: str = "/var/cache/nginx/pgsteady"
    purge_from: tuple[str, ...] = PURGE_FROM   # addresses allowed to purge
    purge_module: bool = True          # nginx: emit proxy_cache_purge (libnginx-mod-http-cache-purge)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _PATH.match(self.cache_dir):
            raise ConfigError(f"cache dir {self.cache_dir!r} must be an absolute path of letters, digits, / . _ -")
        if self.listen is not None and not re.match(r"^([0-9.]+:|\[[0-9a-fA-F:]+\]:)?\d{1,5}$", self.listen):
            raise ConfigError(f"listen {self.listen!r} must be a port or address:port")
        if self.origin is not None and not re.match(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$", self.origin):
            raise ConfigError(f"origin {self.origin!r} must be http://host[:port]")
        for ip in self.purge_from:
            if not re.match(r"^[0-9a-fA-F.:/]{2,43}$", ip):
                raise ConfigError(f"purge address {ip!r} must be an IP address or CIDR range")


def comment(text: str, width: int = 300) -> str:
    """Free text made safe for a one-line comment: no line breaks or control characters."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def pcre_literal(text: str) -> str:
    """``text`` as a PCRE literal: every character that is not a letter or digit escaped."""
    return "".join(c if c.isalnum() else "\\" + c for c in text)


def targets() -> dict[str, ModuleType]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "compile"):
            found[mod.NAME] = mod
    return found


def compile(rules: Rules, target: str, options: Options | None = None) -> str:
    known = targets()
    if target not in known:
        raise ConfigError(f"unknown target {target!r}; {did_you_mean(target, known)}")
    missing = rules.undefined_bypasses()
    if missing:  # a proxy without that bypass would cache what the rule says it must not
        rule, name = missing[0]
        raise ConfigError(f"rule {rule!r} names bypass {name!r}, which no [bypass.{name}] defines; "
                          "define it or remove it (pgsteady cache check lists every finding)")
    return known[target].compile(rules, options or Options())

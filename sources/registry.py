"""Find a source class by name: built-ins first, then the ``journeys.sources`` entry points.

A package registers its own source in its ``pyproject.toml``::

    [project.entry-points."journeys.sources"]
    kiosk-csv = "kiosk_source:KioskCsvSource"

>>> from sources.registry import load_source
>>> source = load_source("hl7", {"name": "hl7-siu", "timezone": "America/New_York"})
>>> source.name, type(source).__name__
('hl7-siu', 'HL7Source')
>>> load_source("nope")
Traceback (most recent call last):
...
LookupError: no source named 'nope' (known: fhir, hl7)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sources.base import Source

ENTRY_POINT_GROUP = "journeys.sources"

BUILTINS: dict[str, str] = {
    "hl7": "sources.hl7.source:HL7Source",
    "fhir": "sources.fhir.source:FHIRSource",
}


def _import(target: str) -> type[Source]:
    module_name, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(value, type) and issubclass(value, Source)):
        raise TypeError(f"{target} is not a sources.base.Source subclass")
    return value


def available_sources() -> dict[str, str]:
    """Every known source name and the ``module:Class`` it loads (built-ins win a clash)."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **BUILTINS}


def source_class(name: str) -> type[Source]:
    known = available_sources()
    if name not in known:
        raise LookupError(f"no source named {name!r} (known: {', '.join(sorted(known))})")
    return _import(known[name])


def load_config(config: str | Path | BaseModel | Mapping[str, Any] | None) -> BaseModel | Mapping[str, Any] | None:
    """A YAML file path becomes its mapping; anything else is passed through."""
    if isinstance(config, (str, Path)):
        import yaml

        loaded = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{config}: a source configuration is a YAML mapping")
        return loaded
    return config


def load_source(name: str, config: str | Path | BaseModel | Mapping[str, Any] | None = None) -> Source:
    """An instance of the source ``name`` with ``config`` (a mapping, model, YAML path or None)."""
    return source_class(name)(load_config(config))

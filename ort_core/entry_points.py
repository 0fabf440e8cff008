"""Entry points of one group, read straight from the installed distributions' metadata.

This does what ``importlib.metadata.entry_points(group=...)`` does for the directories on
``sys.path`` (``*.dist-info`` and ``*.egg-info``, the first of a name winning), without its
imports: email, zipfile, csv and pathlib cost about 11 ms here on every cold start, to read a
few small text files. Naming distributions reads only theirs.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from typing import NamedTuple


class EntryPoint(NamedTuple):
    name: str
    value: str  # "module" or "module:attribute.path"
    distribution: str
    version: str

    def load(self) -> object:
        module_name, _, attribute = self.value.partition(":")
        target: object = importlib.import_module(module_name.strip())
        for part in filter(None, attribute.strip().split(".")):
            target = getattr(target, part)
        return target


def normalise(name: str) -> str:
    """PEP 503's normal form, so ``ort_python``, ``ORT.Python`` and ``ort-python`` match."""
    return re.sub(r"[-_.]+", "-", name).lower()


def entry_points(group: str, distributions: list[str] | None = None) -> list[EntryPoint]:
    """The group's entry points, from every distribution or only the named ones.

    Raises LookupError naming a requested distribution that is not installed.
    """
    wanted = None if distributions is None else {normalise(name) for name in distributions}
    found: dict[str, list[EntryPoint]] = {}
    for key, metadata_dir in _metadata_dirs():
        if key in found or (wanted is not None and key not in wanted):
            continue
        found[key] = list(_read_group(metadata_dir, group))
    if wanted is not None:
        missing = [name for name in distributions or [] if normalise(name) not in found]
        if missing:
            raise LookupError(missing[0])
        return [ep for name in distributions or [] for ep in found[normalise(name)]]
    return [ep for eps in found.values() for ep in eps]


# The cold start reads two groups (``ort.workers``, then ``ort``): list and parse once.
_listings: dict[tuple[str, ...], list[tuple[str, str]]] = {}
_sections: dict[str, dict[str, list[tuple[str, str]]]] = {}


def _metadata_dirs() -> list[tuple[str, str]]:
    """(normalised project name, metadata directory) in sys.path order."""
    key = tuple(sys.path)
    if key not in _listings:
        found = []
        for entry in sys.path:
            try:
                names = os.listdir(entry or ".")
            except OSError:
                continue
            for name in names:
                if name.endswith((".dist-info", ".egg-info")):
                    project = name.rsplit(".", 1)[0].split("-", 1)[0]
                    found.append((normalise(project), os.path.join(entry or ".", name)))
        _listings[key] = found
    return _listings[key]


def _entry_point_sections(metadata_dir: str) -> dict[str, list[tuple[str, str]]]:
    if metadata_dir not in _sections:
        sections: dict[str, list[tuple[str, str]]] = {}
        try:
            with open(os.path.join(metadata_dir, "entry_points.txt"), encoding="utf-8") as file:
                lines = file.read().splitlines()
        except OSError:
            lines = []
        current: list[tuple[str, str]] = []
        for line in lines:
            line = line.strip()
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1].strip(), [])
            elif "=" in line and not line.startswith(("#", ";")):
                name, _, value = line.partition("=")
                current.append((name.strip(), value.strip()))
        _sections[metadata_dir] = sections
    return _sections[metadata_dir]


def _read_group(metadata_dir: str, group: str) -> Iterator[EntryPoint]:
    points = _entry_point_sections(metadata_dir).get(group, [])
    if points:
        distribution, version = _name_and_version(metadata_dir)
        for name, value in points:
            yield EntryPoint(name, value, distribution, version)


def _name_and_version(metadata_dir: str) -> tuple[str, str]:
    fields = {}
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(metadata_dir, filename), encoding="utf-8") as file:
                for line in file:
                    if not line.strip():
                        break
                    key, _, value = line.partition(":")
                    fields.setdefault(key.strip(), value.strip())
            break
        except OSError:
            continue
    return fields.get("Name", os.path.basename(metadata_dir)), fields.get("Version", "?")

"""Entry points of one group, read straight from the installed distributions' metadata.

This does what ``importlib.metadata.entry_points(group=...)`` does for the directories on
``sys.path`` (``*.dist-info`` and ``*.egg-info``, the first of a name winning), without its
imports: email, zipfile, csv and pathlib cost about 11 ms here on every cold start, to read a
few small text files. Naming distributions reads only theirs.

When ``ORT_PLUGIN_MANIFEST`` names a readable manifest (``ort-plugins.json``, which
``ort layer build`` writes at a layer's root), the distributions and entry points it lists are
all there is: ``sys.path`` is not scanned at all. Anything else (unset, empty, missing,
malformed) falls back to the scan.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections import namedtuple

TYPE_CHECKING = False  # the worker starts after this module: no typing, no re before it
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import NamedTuple

    class _Fields(NamedTuple):
        name: str
        value: str  # "module" or "module:attribute.path"
        distribution: str
        version: str

else:
    _Fields = namedtuple("EntryPoint", "name value distribution version")


class EntryPoint(_Fields):
    __slots__ = ()

    def load(self) -> object:
        module_name, _, attribute = self.value.partition(":")
        target: object = importlib.import_module(module_name.strip())
        for part in filter(None, attribute.strip().split(".")):
            target = getattr(target, part)
        return target


def normalise(name: str) -> str:
    """PEP 503's normal form, so ``ort_python``, ``ORT.Python`` and ``ort-python`` match:
    each run of ``-``, ``_`` and ``.`` becomes one ``-`` (without ``re``: 5 ms to import)."""
    name = name.replace("_", "-").replace(".", "-")
    while "--" in name:
        name = name.replace("--", "-")
    return name.lower()


def entry_points(group: str, distributions: list[str] | None = None) -> list[EntryPoint]:
    """The group's entry points, from every distribution or only the named ones.

    Raises LookupError naming a requested distribution that is not installed.
    """
    wanted = None if distributions is None else {normalise(name) for name in distributions}
    found: dict[str, list[EntryPoint]] = {}
    manifest = _manifest(os.environ.get("ORT_PLUGIN_MANIFEST"))
    if manifest is not None:
        for key, (distribution, version, groups) in manifest.items():
            if wanted is None or key in wanted:
                found[key] = [
                    EntryPoint(name, value, distribution, version)
                    for name, value in groups.get(group, ())
                ]
    else:
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


# The cold start reads three groups (``ort.workers``, ``ort.worker_env``, ``ort``): list and
# parse once.
_listings: dict[tuple[str, ...], list[tuple[str, str]]] = {}
_sections: dict[str, dict[str, list[tuple[str, str]]]] = {}
# normalised name -> (distribution, version, {group: [(name, value)]}), by manifest path
Manifest = dict[str, tuple[str, str, dict[str, list[tuple[str, str]]]]]
_manifests: dict[str, Manifest | None] = {}


def _manifest(path: str | None) -> Manifest | None:
    """The manifest at ``path``, or None when there is none to use (then ORT scans)."""
    if not path:
        return None
    if path not in _manifests:
        try:
            with open(path, encoding="utf-8") as file:
                document = _load_json(file.read())
            _manifests[path] = {
                normalise(entry["name"]): (
                    entry["name"],
                    entry["version"],
                    {
                        group: [(name, value) for name, value in points.items()]
                        for group, points in entry["entry_points"].items()
                    },
                )
                for entry in document["distributions"]
            }
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            _manifests[path] = None
    return _manifests[path]


class _Decoding:
    """What CPython's C JSON scanner reads off ``json.JSONDecoder``: its defaults."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity


def _load_json(text: str) -> object:
    """``json.loads`` without importing json, which costs about 2 ms before the worker is
    started (the loop imports it later anyway): the C scanner json.decoder itself calls."""
    try:
        from _json import make_scanner
    except ImportError:  # not CPython
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip())
    try:
        value, end = make_scanner(_Decoding())(text, start)
    except StopIteration:  # what the scanner raises where no value starts
        raise ValueError("no JSON document") from None
    if text[end:].strip():
        raise ValueError("extra data after the JSON document")
    return value


def manifest_entry(metadata_dir: str, groups: tuple[str, ...]) -> dict[str, object]:
    """One distribution's record in a manifest, read as the scan reads it (``ort layer build``
    writes the manifest with this, so both ways find the very same entry points)."""
    distribution, version = _name_and_version(metadata_dir)
    sections = _entry_point_sections(metadata_dir)
    return {
        "name": distribution,
        "version": version,
        "entry_points": {group: dict(sections[group]) for group in groups if sections.get(group)},
    }


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

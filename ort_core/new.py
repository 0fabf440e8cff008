"""``ort new``: a plugin distribution or a function skeleton, from ``ort_core/templates/``.

Templates are plain files ending in ``.tmpl``; ``{{name}}``-style fields are replaced in
their text and ``__module__`` in their paths. Each template comes with tests that use ORT's
testing kit, so what ``ort new`` writes passes its own tests from the start.
"""

from __future__ import annotations

import os
import re

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
# language -> (plugin distribution, handler file, handler string)
FUNCTION_LANGUAGES = {
    "python": ("ort-python", "handler.py", "handler.handler"),
    "node": ("ort-node", "index.mjs", "index.handler"),
    "deno": ("ort-deno", "handler.ts", "handler.handler"),
}


class TemplateError(Exception):
    """What ``ort new`` cannot do; the message says why."""


def plugin_fields(name: str) -> dict[str, str]:
    """The names of a plugin called ``name``: ``auth-gate`` gives the distribution
    ``ort-auth-gate``, the module ``ort_auth_gate`` and the entry point ``auth_gate``."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", name):
        raise TemplateError(f"{name!r} is not a plugin name: use letters, digits, '-' and '_'")
    short = re.sub(r"[-_.]+", "-", name).lower().removeprefix("ort-")
    if not short:
        raise TemplateError(f"{name!r} is not a plugin name: it needs more than 'ort-'")
    distribution = f"ort-{short}"
    return {
        "name": short,
        "distribution": distribution,
        "module": distribution.replace("-", "_"),
        "entry": short.replace("-", "_"),
    }


def function_fields(name: str, language: str) -> dict[str, str]:
    if language not in FUNCTION_LANGUAGES:
        raise TemplateError(
            f"no function template for {language!r}: use {', '.join(FUNCTION_LANGUAGES)}"
        )
    plugin, handler_file, handler = FUNCTION_LANGUAGES[language]
    return {
        "name": name,
        "language": language,
        "plugin": plugin,
        "handler_file": handler_file,
        "handler": handler,
    }


def generate(template: str, output: str, fields: dict[str, str]) -> list[str]:
    """Write ``templates/<template>`` into ``output`` (new, or an empty directory); return
    the files written, relative to ``output``."""
    source = os.path.join(TEMPLATES, template)
    if not os.path.isdir(source):
        raise TemplateError(f"no template {template!r}")
    if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
        raise TemplateError(f"{output} exists and is not an empty directory")
    written = []
    for directory, _, names in sorted(os.walk(source)):
        for filename in sorted(names):
            if not filename.endswith(".tmpl"):
                continue
            path = os.path.join(directory, filename)
            relative = os.path.relpath(path, source).removesuffix(".tmpl")
            relative = relative.replace("__module__", fields.get("module", "__module__"))
            with open(path, encoding="utf-8") as file:
                text = _fill(file.read(), fields)
            target = os.path.join(output, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as file:
                file.write(text)
            written.append(relative)
    return written


def _fill(text: str, fields: dict[str, str]) -> str:
    def field(match: re.Match[str]) -> str:
        return fields[match.group(1)]

    return re.sub(r"\{\{(\w+)\}\}", field, text)

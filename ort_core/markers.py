"""``hookspec`` and ``hookimpl``: the markers of pluggy's ``HookspecMarker("ort")`` and
``HookimplMarker("ort")``, without importing pluggy.

Importing pluggy costs about 19 ms of a cold start here (its typing and inspect imports),
which is most of the margin between ORT and AWS's own runtime client. These markers set the
very attributes pluggy's would (``ort_spec``, ``ort_impl``, with pluggy's option names), so
pluggy reads them wherever it is used, and plugins marked with pluggy's own markers work too.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own constant would import typing (3-7 ms)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    F = TypeVar("F")


def hookspec(function: F | None = None, *, firstresult: bool = False) -> Any:
    """Declares a hook (``ort_core/hookspecs.py`` only); ``firstresult`` as pluggy's."""

    def mark(function: F) -> F:
        function.ort_spec = {  # type: ignore[attr-defined]
            "firstresult": firstresult,
            "historic": False,
            "warn_on_impl": None,
            "warn_on_impl_args": None,
        }
        return function

    return mark if function is None else mark(function)


def hookimpl(
    function: F | None = None,
    *,
    hookwrapper: bool = False,
    optionalhook: bool = False,
    tryfirst: bool = False,
    trylast: bool = False,
    specname: str | None = None,
    wrapper: bool = False,
) -> Any:
    """Marks a function as a hook implementation: ``@hookimpl`` or ``@hookimpl(tryfirst=True)``,
    with the options of pluggy's ``HookimplMarker`` (docs/hooks.md)."""

    def mark(function: F) -> F:
        function.ort_impl = {  # type: ignore[attr-defined]
            "wrapper": wrapper,
            "hookwrapper": hookwrapper,
            "optionalhook": optionalhook,
            "tryfirst": tryfirst,
            "trylast": trylast,
            "specname": specname,
        }
        return function

    return mark if function is None else mark(function)

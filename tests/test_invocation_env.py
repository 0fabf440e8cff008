"""Per-invocation environment variables (``ort_core/invocation_env.py``): every reader sees
each invocation's value, and setting a new one every time leaks nothing."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from conftest import bootstrap_on_its_own_peer

from ort_core.invocation_env import InvocationVariable

NAME = "ORT_TEST_INVOCATION_VARIABLE"
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p


def seen(name: str = NAME) -> tuple[str | None, str | None, str]:
    """The value as os.environ, C's getenv and a child process see it."""
    c_value = libc.getenv(name.encode())
    child = subprocess.run(
        ["sh", "-c", f'echo "${{{name}-unset}}"'], capture_output=True, text=True, check=True
    )
    return (
        os.environ.get(name),
        c_value.decode() if c_value is not None else None,
        child.stdout.rstrip("\n"),
    )


@pytest.fixture
def variable() -> Iterator[InvocationVariable]:
    made = InvocationVariable(NAME)
    yield made
    made.set(None)


@pytest.mark.parametrize("owned", [False, True])
def test_each_value_reaches_os_environ_getenv_and_child_processes(variable, owned):
    if owned:
        variable.own(capacity=16)
    for value in ("first", "a value longer than the sixteen bytes first given", "é ü"):
        variable.set(value)
        assert seen() == (value, value, value)
    variable.set(None)
    assert seen() == (None, None, "unset")
    variable.set("again")
    assert seen() == ("again", "again", "again")
    assert variable.owned is owned


def test_owning_keeps_the_value_set_before(variable):
    variable.set("set before")
    variable.own()
    assert variable.owned
    assert seen() == ("set before", "set before", "set before")


def test_the_next_invocation_wins_over_code_that_set_the_variable_itself(variable):
    variable.own()
    variable.set("ours")
    os.environ[NAME] = "the handler's own"
    assert seen() == ("the handler's own",) * 3
    variable.set("the next invocation's")
    assert seen() == ("the next invocation's",) * 3


def test_a_null_byte_is_refused_as_os_environ_refuses_it(variable):
    variable.own()
    with pytest.raises(ValueError, match="null"):
        variable.set("a\0b")


LEAK = """
import os, sys
from ort_core.invocation_env import InvocationVariable

def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

variable = InvocationVariable("TRACEPARENT")
if sys.argv[1] == "owned":
    variable.own()
before = rss_mb()
for i in range(200_000):  # a new trace context per invocation, set then removed
    variable.set(f"00-{i:032x}-{i:016x}-01")
    variable.set(None)
print(rss_mb() - before)
"""


def test_a_new_value_per_invocation_leaks_nothing_once_owned():
    def growth_mb(mode: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", LEAK, mode], capture_output=True, text=True, check=True
        )
        return float(done.stdout)

    # os.environ (setenv): glibc keeps every value, about 110 bytes each
    assert growth_mb("os.environ") > 15
    assert growth_mb("owned") < 2


HANDLER = """
import os, subprocess

def handler(event, context):
    child = subprocess.run(["sh", "-c", 'echo "${_X_AMZN_TRACE_ID-unset}"'],
                           capture_output=True, text=True)
    return {"environ": os.environ.get("_X_AMZN_TRACE_ID"), "child": child.stdout.strip(),
            "ctypes": "ctypes" in __import__("sys").modules}
"""


@pytest.mark.parametrize("mode", ["in-process", "subprocess"])
def test_the_x_ray_trace_id_follows_each_invocation_after_the_first(tmp_path, mode):
    """The loop (in-process) and the Python worker own the variable after the first answer:
    off the cold start (ctypes is not imported for the first), right for every one after."""
    (tmp_path / "app.py").write_text(textwrap.dedent(HANDLER))
    traces = [f"Root=1-5759e988-bd862e3fe1be46a99427279{n};Sampled=1" for n in range(3)]
    answers = []
    with bootstrap_on_its_own_peer(tmp_path, ORT_PYTHON_MODE=mode) as peer:
        for trace in [traces[0], traces[1], None, traces[2]]:
            headers = {"Lambda-Runtime-Trace-Id": trace} if trace else {}
            result = peer.invoke({}, headers, timeout=30)
            assert result.kind == "response", result.body
            answers.append(json.loads(result.body))
    assert [(a["environ"], a["child"]) for a in answers] == [
        (traces[0], traces[0]),
        (traces[1], traces[1]),
        (None, "unset"),
        (traces[2], traces[2]),
    ]
    assert [a["ctypes"] for a in answers] == [False, True, True, True]

"""The op table shared by the spawner and its client (aiorun.runtime.ops)."""

import ast
import inspect

import pytest

from aiorun.runtime import api
from aiorun.runtime.ops import Op
from aiorun.runtime.spawner import HANDLERS, RequestError, Spawner


def test_every_op_has_a_handler():
    assert set(HANDLERS) == set(Op)


def test_client_sends_only_table_ops():
    """Every ``_request(...)`` in the client names an ``Op`` member (no string literals)."""
    tree = ast.parse(inspect.getsource(api))
    sent = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "_request"):
            first = node.args[0]
            assert (isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name)
                    and first.value.id == "Op"), ast.unparse(node)
            sent.append(Op[first.attr])
    assert sent and set(sent) <= set(HANDLERS)


def test_unknown_op_is_refused():
    with pytest.raises(RequestError) as ei:
        Spawner.handle(None, {"op": "frobnicate", "rid": 1})  # type: ignore[arg-type]
    assert ei.value.type == "InvalidArgument" and "frobnicate" in ei.value.message


def test_wire_names_are_stable():
    """The values are the protocol: a spawner left running by an older daemon must still
    understand a newer client."""
    assert {o.value for o in Op} == {
        "hello", "create", "start", "kill", "delete", "state", "list", "exec_create",
        "exec_start", "stdin", "close_stdin", "resize", "pause", "update", "stats",
        "shutdown"}


def test_spawner_import_stays_lean():
    """The spawner starts on every daemon start (and `run`'s latency budget): its modules
    must not pull in anyio or typing (python -S, as Runtime starts it)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import msgpack

    import aiorun
    path = [str(Path(aiorun.__file__).resolve().parents[1]),
            str(Path(msgpack.__file__).resolve().parents[1])]
    code = ("import sys, aiorun.runtime.spawner, aiorun.runtime.ops; "
            "print(sorted(m for m in ('anyio', 'typing', 'asyncio', 'trio') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", code], check=True, text=True,
                         capture_output=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(path)}).stdout
    assert out.strip() == "[]"

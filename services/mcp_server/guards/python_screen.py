"""AST screen for execute_python: refuses code that could reach the OS before it ever runs.

It is the first of two layers, a filter that fails early with a clear reason; the boundary is the second, the
sandbox (bubblewrap, rlimits, unprivileged user, empty env, timeout), which must hold even with this screen off.
Imports are checked against an allowlist because many stdlib modules re-export `os` or `sys` (`typing.sys`,
`random._os`) or hand out objects by a runtime name (`operator.attrgetter`, `string.Formatter.get_field`,
`typing.get_type_hints`, which evaluates strings). Private attributes and those re-exported names are refused.
"""

from __future__ import annotations

import ast
from pathlib import PurePosixPath

from fastmcp.exceptions import ToolError

MAX_CODE_CHARS = 100_000

ALLOWED_MODULES = frozenset({
    "abc", "array", "base64", "binascii", "bisect", "calendar", "cmath", "collections", "colorsys", "copy",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools", "graphlib",
    "hashlib", "heapq", "hmac", "html", "itertools", "json", "math", "numbers", "operator", "pprint", "random",
    "re", "statistics", "string", "struct", "textwrap", "time", "unicodedata", "zlib",
})

# Builtins that hand out modules, frames, arbitrary attributes or code objects.
FORBIDDEN_NAMES = frozenset({
    "__import__", "eval", "exec", "compile", "getattr", "setattr", "delattr", "globals", "locals", "vars",
    "breakpoint", "input", "help", "memoryview", "__builtins__", "__loader__", "__spec__",
})

# Public attribute names through which allowed modules re-export dangerous ones.
FORBIDDEN_ATTRIBUTES = frozenset({
    "os", "sys", "subprocess", "builtins", "modules", "system", "popen", "fork", "forkpty", "spawn", "execv",
    "execve", "kill", "killpg", "setsid", "socket", "shutil", "importlib", "ctypes", "posix", "pty",
    "multiprocessing", "threading", "signal", "io", "open", "f_globals", "f_locals", "f_back", "gi_frame",
    "cr_frame", "tb_frame", "co_code", "mro", "get_field", "attrgetter", "methodcaller", "inspect", "f_builtins",
    "f_code", "gi_code", "types", "typing", "copyreg", "bltns", "weakref", "gc", "codecs",
}) | FORBIDDEN_NAMES  # `enum.bltns.exec` would otherwise reach a builtin by attribute

ALLOWED_DUNDER_NAMES = frozenset({"__name__", "__doc__"})


def screen_python(code: str) -> None:
    """Raise ToolError naming the first construct the sandbox does not allow."""
    if len(code) > MAX_CODE_CHARS:
        raise ToolError(f"code is {len(code)} characters; the limit is {MAX_CODE_CHARS}")
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError as exc:
        raise ToolError(f"syntax error at line {exc.lineno}: {exc.msg}") from exc
    opened = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call) and _is_name(node.func, "open")}
    for node in ast.walk(tree):
        _check_node(node, opened)


def _check_node(node: ast.AST, opened: set[int]) -> None:
    where = f"line {getattr(node, 'lineno', '?')}"
    if isinstance(node, ast.Import):
        for alias in node.names:
            _check_module(alias.name, where)
    elif isinstance(node, ast.ImportFrom):
        if node.level or not node.module:
            raise ToolError(f"{where}: relative imports are not allowed in execute_python")
        _check_module(node.module, where)
        for alias in node.names:
            if alias.name != "*":
                _check_attribute(alias.name, where)
    elif isinstance(node, ast.Attribute):
        _check_attribute(node.attr, where)
    elif isinstance(node, ast.MatchClass):
        for attr in node.kwd_attrs:
            _check_attribute(attr, where)
    elif isinstance(node, ast.Name):
        _check_name(node, opened, where)
    elif isinstance(node, ast.Call) and _is_name(node.func, "open"):
        _check_open(node, where)


def _check_module(name: str, where: str) -> None:
    top = name.split(".")[0]
    if top not in ALLOWED_MODULES or "." in name:
        raise ToolError(
            f"{where}: import of {name!r} is not allowed in execute_python "
            f"(allowed modules: {', '.join(sorted(ALLOWED_MODULES))})"
        )


def _check_attribute(attr: str, where: str) -> None:
    if attr.startswith("_"):
        raise ToolError(f"{where}: access to the private attribute {attr!r} is not allowed in execute_python")
    if attr in FORBIDDEN_ATTRIBUTES:
        raise ToolError(f"{where}: access to the attribute {attr!r} is not allowed in execute_python")


def _check_name(node: ast.Name, opened: set[int], where: str) -> None:
    name = node.id
    if name in FORBIDDEN_NAMES:
        raise ToolError(f"{where}: {name!r} is not allowed in execute_python")
    if name.startswith("__") and name not in ALLOWED_DUNDER_NAMES:
        raise ToolError(f"{where}: the dunder name {name!r} is not allowed in execute_python")
    if name == "open" and id(node) not in opened:
        raise ToolError(f"{where}: 'open' may only be called directly, with a literal relative path")


def _check_open(node: ast.Call, where: str) -> None:
    target = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "file"), None)
    if not isinstance(target, ast.Constant) or not isinstance(target.value, str):
        raise ToolError(f"{where}: open() needs a literal file name (files live in the run's temporary folder)")
    path = PurePosixPath(target.value)
    if path.is_absolute() or ".." in path.parts or not target.value:
        raise ToolError(f"{where}: open({target.value!r}) is refused: only relative paths inside the run's folder")
    if any(k.arg == "opener" for k in node.keywords) or len(node.args) > 6:
        raise ToolError(f"{where}: open() with a custom opener is not allowed")


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name

"""The emit stage's invariants, checked on every compile: the generated source parses, and in the
classes planned from the spec (the model and its blocks) every `self.<attribute>` that forward()
reads is set in __init__, and every name it reads is a parameter, assigned before (and not freed
since), or a module-level name of the file."""

from __future__ import annotations

import ast
import builtins

from ..errors import InternalError

REGISTERS = ("register_buffer", "register_parameter", "add_module", "register_module")


def lint(source: str, classes: set[str]) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise InternalError(
            "emit", f"the generated file does not parse: {err.msg} (line {err.lineno})"
        ) from None
    module_names = set(dir(builtins)) | _module_names(tree)
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef) and cls.name in classes:
            methods = {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef)}
            if "forward" in methods:
                attributes = _self_attributes(methods.get("__init__")) | set(methods)
                _lint_forward(cls.name, methods["forward"], attributes, module_names)


def _module_names(tree: ast.Module) -> set[str]:
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out |= {(a.asname or a.name).partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ClassDef | ast.FunctionDef):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return out


def _self_attributes(init: ast.FunctionDef | None) -> set[str]:
    """`self.x = ...` and `self.register_buffer("x", ...)` (or register_parameter, add_module)."""
    out = set()
    for node in ast.walk(init) if init is not None else ():
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_self(node.value):
            out.add(node.attr)
        elif (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_self(node.func.value)
        ):
            first = node.args[0] if node.args else None
            if (
                node.func.attr in REGISTERS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                out.add(first.value)
    return out


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _lint_forward(cls: str, forward: ast.FunctionDef, attributes: set[str], module_names: set[str]) -> None:
    args = forward.args
    defined = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a}
    for statement in forward.body:  # straight-line code: one pass in order
        nodes = list(ast.walk(statement))
        bound = {  # names a comprehension or lambda binds inside the statement
            n.id
            for c in nodes
            if isinstance(c, ast.comprehension)
            for n in ast.walk(c.target)
            if isinstance(n, ast.Name)
        } | {a.arg for f in nodes if isinstance(f, ast.Lambda) for a in f.args.args}
        for node in nodes:
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                if _is_self(node.value) and node.attr not in attributes:
                    raise InternalError(
                        "emit", f"{cls}.forward reads self.{node.attr}, which __init__ never sets"
                    )
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                if node.id not in defined | bound | module_names:
                    raise InternalError(
                        "emit", f"{cls}.forward reads '{node.id}' before assigning it (line {node.lineno})"
                    )
        for node in nodes:
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Del):
                defined.discard(node.id)

"""Calls to CDK methods that do not exist: a conservative static check of a connector's components' code
(`removed_api_problem`, one of the reasons `in_process_blocker` gives).
"""
from __future__ import annotations

import ast
import collections.abc
import importlib
import inspect
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

from packaging.version import Version

from .tree import class_names
from .versions import components_written_for


def removed_api_problem(resolved: dict, module_name: str, files_dir: str | Path, manifest: dict,
                        runner: str) -> str | None:
    """Why a used custom component cannot work on the runner's CDK although it imports, or None: its code calls a
    method on an object whose type the CDK's own annotations give (``self.parent_stream_configs[0].stream`` is an
    ``AbstractStream`` on CDK 7, a ``DeclarativeStream`` with ``stream_slices``/``read_records`` on CDK 4), and
    neither that class nor any CDK subclass of it has the method.

    Sound rather than complete: only expressions typed through ``self``'s annotations (dataclass fields of the CDK
    base classes, attribute and item access, ``for`` loops, comprehensions, conditional expressions, names bound
    once) are judged; anything else (call results, parameters, names bound twice, attributes the component assigns
    itself, classes with ``__getattr__``) is unknown and passes. Slack's components call ``read_records()`` on an
    ``HttpStream`` they build themselves, which is fine on CDK 7 and is not flagged.
    """
    used = {k: v for k, v in resolved.items() if k != "definitions"}
    top = module_name.split(".")[0]
    problems: list[str] = []
    names = sorted(n for n in class_names(used) if n.split(".")[0] == top)
    for class_name in names:
        owner, _, attr = class_name.rpartition(".")
        cls = getattr(sys.modules.get(owner), attr, None)
        if isinstance(cls, type):
            call = next(iter(_RemovedCalls(cls, top).found()), None)
            if call:
                problems.append(f"component {class_name} calls {call}, which CDK {Version(runner).major} does not have")
    if not problems:
        return None
    written = components_written_for(files_dir, manifest)
    more = f"; {len(problems)} of {len(names)} components do so" if len(problems) > 1 else ""
    return problems[0] + (f" (its components were written for CDK {written}{more})" if written else
                          f" ({more[2:]})" if more else "")


_ANNOTATIONS: dict[type, dict[str, Any]] = {}
_TYPE_CHECKING_NAMES: dict[str, dict[str, Any]] = {}


def _type_checking_names(module) -> dict[str, Any]:
    """Names a module imports only under ``if TYPE_CHECKING:`` (the CDK annotates ``ParentStreamConfig.stream`` as
    the string ``"AbstractStream"`` imported that way), imported for real so annotations can be resolved."""
    name = getattr(module, "__name__", "")
    if name in _TYPE_CHECKING_NAMES:
        return _TYPE_CHECKING_NAMES[name]
    found: dict[str, Any] = {}
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        tree = ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        test = getattr(node, "test", None)
        if not isinstance(node, ast.If) or not (
                (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
                or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")):
            continue
        for statement in node.body:
            if isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
                for alias in statement.names:
                    try:
                        found[alias.asname or alias.name] = getattr(importlib.import_module(statement.module),
                                                                    alias.name)
                    except Exception:  # noqa: BLE001 - an annotation we cannot resolve is simply unknown
                        pass
    _TYPE_CHECKING_NAMES[name] = found
    return found


def _annotations(cls: type) -> dict[str, Any]:
    """Every annotated attribute of ``cls`` and its bases, resolved (unresolvable ones left out)."""
    if cls in _ANNOTATIONS:
        return _ANNOTATIONS[cls]
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        module = sys.modules.get(klass.__module__)
        namespace = {**_type_checking_names(module), **vars(module)} if module else {}
        for attr, value in vars(klass).get("__annotations__", {}).items():
            if isinstance(value, str):
                try:
                    value = eval(value, namespace)  # noqa: S307 - an annotation string of an imported module
                except Exception:  # noqa: BLE001
                    hints.pop(attr, None)
                    continue
            hints[attr] = value
    _ANNOTATIONS[cls] = hints
    return hints


def _strip_optional(t: Any) -> Any:
    if typing.get_origin(t) is typing.Union:
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return args[0] if len(args) == 1 else None
    return t


def _item_type(t: Any, *, mapping_value: bool) -> Any:
    """The element type of a sequence annotation (``List[X]`` -> X), or the value type of a mapping one."""
    t = _strip_optional(t)
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping) and len(args) == 2:
        return args[1] if mapping_value else args[0]
    if origin in (list, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence,
                  collections.abc.Iterable, collections.abc.Iterator, collections.abc.Collection) and len(args) == 1:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def _cdk_class(t: Any) -> type | None:
    t = _strip_optional(t)
    return t if isinstance(t, type) and t.__module__.split(".")[0] == "airbyte_cdk" else None


def _cdk_subclasses(cls: type):
    for sub in cls.__subclasses__():
        if sub.__module__.split(".")[0] == "airbyte_cdk":
            yield sub
            yield from _cdk_subclasses(sub)


def _lacks(cls: type, attr: str) -> bool:
    """True when neither ``cls`` nor a CDK subclass of it has ``attr`` (as a class attribute or a field)."""
    for klass in (cls, *_cdk_subclasses(cls)):
        if hasattr(klass, attr) or attr in _annotations(klass) or hasattr(klass, "__getattr__"):
            return False
    return True


class _RemovedCalls:
    """Walks the methods a component class defines in its own package (not the CDK's) and yields
    'AbstractStream.stream_slices()' for each call `removed_api_problem` can prove impossible."""

    def __init__(self, cls: type, top: str):
        self.cls = cls
        self.top = top
        self.own = [klass for klass in cls.__mro__ if klass.__module__.split(".")[0] == top]
        # attributes the component defines (methods, properties) or assigns itself: their annotation does not count
        self.overridden: set[str] = {name for klass in self.own for name in vars(klass)}

    def found(self):
        functions = []
        for klass in self.own:
            for value in vars(klass).values():
                function = getattr(value, "__func__", value)
                if not inspect.isfunction(function):
                    continue
                try:
                    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
                except (OSError, TypeError, SyntaxError):
                    continue
                if tree.body and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
                    functions.append(tree.body[0])
        for function in functions:
            for node in ast.walk(function):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                        and isinstance(node.value, ast.Name) and node.value.id == "self":
                    self.overridden.add(node.attr)
        for function in functions:
            yield from self._function(function)

    def _function(self, function):
        first = function.args.posonlyargs + function.args.args
        if not first or first[0].arg != "self":
            return
        stores: dict[str, int] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                stores[node.id] = stores.get(node.id, 0) + 1
        self._stores = stores
        found: list[str] = []
        env = {"self": self.cls}
        for statement in function.body:
            self._visit(statement, env, found)
        yield from found

    def _bind(self, target, t, env) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = t if self._stores.get(target.id) == 1 else None
        else:  # tuple targets and the like: every name in it is unknown from here on
            for node in ast.walk(target):
                if isinstance(node, ast.Name):
                    env[node.id] = None

    def _visit(self, node, env, found: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return  # another scope, with its own parameters: not judged
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = dict(env)
            for generator in node.generators:
                self._visit(generator.iter, inner, found)
                self._bind(generator.target, _item_type(self._type(generator.iter, inner), mapping_value=False),
                           inner)
                for condition in generator.ifs:
                    self._visit(condition, inner, found)
            for part in ((node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,)):
                self._visit(part, inner, found)
            return
        if isinstance(node, ast.Assign):
            self._visit(node.value, env, found)
            t = self._type(node.value, env)
            for target in node.targets:
                self._bind(target, t if len(node.targets) == 1 else None, env)
            return
        if isinstance(node, (ast.For, ast.AsyncFor)):
            self._visit(node.iter, env, found)
            self._bind(node.target, _item_type(self._type(node.iter, env), mapping_value=False), env)
            for statement in node.body + node.orelse:
                self._visit(statement, env, found)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            cls = _cdk_class(self._type(node.func.value, env))
            if cls is not None and _lacks(cls, node.func.attr):
                found.append(f"{cls.__name__}.{node.func.attr}()")
        for child in ast.iter_child_nodes(node):
            self._visit(child, env, found)

    def _type(self, node, env) -> Any:
        """The annotated type of an expression, or None when it cannot be known without running the code."""
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.Attribute):
            base = _strip_optional(self._type(node.value, env))
            if not isinstance(base, type):
                return None
            if base is self.cls and node.attr in self.overridden:
                return None
            if base is not self.cls and _cdk_class(base) is None:
                return None
            return _annotations(base).get(node.attr)
        if isinstance(node, ast.Subscript):
            mapping = self._type(node.value, env)
            if isinstance(node.slice, ast.Slice):
                return mapping if _item_type(mapping, mapping_value=False) is not None else None
            return _item_type(mapping, mapping_value=True)
        if isinstance(node, ast.IfExp):
            body, orelse = self._type(node.body, env), self._type(node.orelse, env)
            return body if body is not None and body == orelse else None
        if isinstance(node, ast.DictComp):
            inner = dict(env)
            for generator in node.generators:
                self._bind(generator.target, _item_type(self._type(generator.iter, inner), mapping_value=False),
                           inner)
            value = self._type(node.value, inner)
            return typing.Dict[Any, value] if value is not None else None
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
            inner = dict(env)
            for generator in node.generators:
                self._bind(generator.target, _item_type(self._type(generator.iter, inner), mapping_value=False),
                           inner)
            element = self._type(node.elt, inner)
            return typing.List[element] if element is not None else None
        return None

"""Reading and patching a RAW manifest dict (``$ref``s unresolved) the way the CDK will read it: references,
the effective key of a node, the components and class names it uses, its static stream names, and the deep merge of
an override (`apply_override`; the override-file conventions are in the package docstring). Stdlib only.
"""
from __future__ import annotations

import copy
from typing import Any, Callable


def ref_target(root: dict, ref: str) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("#/")


def effective_key(root: dict, node: Any, key: str, depth: int = 0) -> Any:
    """`key` of a raw manifest node as the CDK will see it after (shallow) ``$ref`` resolution."""
    if depth > 20:
        return None
    if is_ref(node):
        return effective_key(root, ref_target(root, node), key, depth + 1)
    if not isinstance(node, dict):
        return None
    if key in node:
        return node[key]
    if key == "name" and isinstance(node.get("$parameters"), dict) and "name" in node["$parameters"]:
        return node["$parameters"]["name"]
    if "$ref" in node:
        return effective_key(root, node["$ref"], key, depth + 1)
    return None


def _collect(node: Any, key: str, keep: Callable[[Any], bool]) -> set[str]:
    """Every value of ``key`` anywhere in ``node`` (dicts and lists, recursively) that ``keep`` accepts."""
    found: set[str] = set()
    if isinstance(node, dict):
        value = node.get(key)
        if keep(value):
            found.add(value)
        for child in node.values():
            found |= _collect(child, key, keep)
    elif isinstance(node, list):
        for child in node:
            found |= _collect(child, key, keep)
    return found


def component_types(node: Any) -> set[str]:
    """Every component ``type`` in a manifest. Component types are CamelCase; JSON-schema types (``object``,
    ``string`` ...) in inline schemas are lower case, so they are not mistaken for components."""
    return _collect(node, "type", lambda value: isinstance(value, str) and value[:1].isupper())


def class_names(node: Any) -> set[str]:
    """Every ``class_name`` in a manifest (its custom components)."""
    return _collect(node, "class_name", lambda value: isinstance(value, str))


def static_stream_names(manifest: dict) -> list[str]:
    """The names of a raw manifest's top-level ``streams``, in order (templated names left out; dynamic streams
    have no name before they are resolved against the API)."""
    names = []
    for stream in manifest.get("streams") or []:
        name = effective_key(manifest, stream, "name")
        if isinstance(name, str) and name and "{{" not in name:
            names.append(name)
    return names


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for key, value in override.items():
            if value is None:
                out.pop(key, None)  # explicit null deletes
            elif key in out:
                out[key] = _merge(out[key], value)
            else:
                out[key] = _strip_nulls(value)
        return out
    return _strip_nulls(override)  # lists and scalars replace


def _strip_nulls(value: Any) -> Any:
    """A deep copy of a newly added sub-tree; its null-valued keys are dropped (nothing there to delete)."""
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    return copy.deepcopy(value)


def apply_override(manifest: dict, override: dict) -> dict:
    """Deep-merge ``override`` into the RAW ``manifest`` and return a new dict (inputs are not mutated).

    * dict into dict: merged key by key, recursively;
    * lists and scalars: the override's value replaces the manifest's (lists are never concatenated);
    * an explicit ``null`` value deletes the key (no-op if absent);
    * a key the manifest lacks is added (null-valued keys inside that new sub-tree are dropped).

    Apply it before ``$ref`` resolution: after resolution the ``definitions`` are dead copies. Remember that a
    ``$ref`` merge in the CDK is shallow: a key set next to a ``$ref`` replaces the referenced key wholesale.
    """
    if not isinstance(manifest, dict) or not isinstance(override, dict):
        raise TypeError("apply_override expects two dicts")
    return _merge(manifest, override)

"""A sweep's jobs resolved without resolving the same part twice.

Resolving a job's config (identity.benchmark_config: each top-level part walked by OmegaConf,
each interpolation resolved) was the largest part of checking it: 1.7 ms a job here, 1.1 ms
of it the workload's declaration. A sweep's jobs mostly differ in a value or two
(batch_size=1,2,4): a top-level part (model, workload, ...) that neither holds nor refers to
a key those values set (directly, or through the keys it refers to, as they are written)
resolves alike for every job of its group selection, and is resolved once and copied for
the others. What an interpolation refers to is read with OmegaConf's own grammar; a
resolver whose answer may depend on more than its arguments (any but those named here; a
cached one such as ${now:} among them: each config keeps its own answer) leaves its part
resolved job by job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hydra.core.override_parser.types import Override
from omegaconf import AnyNode, DictConfig, Node, OmegaConf, grammar_parser
from omegaconf.grammar_visitor import GrammarVisitor

from sweeper.config.compose import JobComposer, Selection
from sweeper.config.plain import at_path

ResolvePart = Callable[[str, DictConfig], Any]  # (top-level key, its node) -> plain value

# Resolvers whose answer depends only on their arguments (oc.env: on this process's
# environment too, the same for every job). oc.select's first argument names a key.
_PURE = frozenset({"oc.env", "sweeper.first_set", "sweeper.python"})
_SELECT = "oc.select"
_NESTED = "\x00"  # a nested interpolation's place, while references are read
_UNKNOWN = object()


def resolve_part(key: str, node: DictConfig) -> Any:
    """A top-level part resolved by OmegaConf, as identity.benchmark_config reads it."""
    return OmegaConf.to_container(node, resolve=True)


class ResolvedParts:
    """The parts of a sweep's configs resolved so far, by group selection, part, and the
    value overrides that part depends on."""

    def __init__(self, composer: JobComposer) -> None:
        self._composer = composer
        self._depends: dict[tuple[Selection, str], frozenset[str] | None] = {}
        self._resolved: dict[tuple[object, ...], Any] = {}

    def alike(self, key: str, overrides: list[str]) -> tuple[object, ...] | None:
        """What a job's top-level part `key` resolves from: the same for two jobs whose part
        resolves alike (its group selection, and the value overrides the part depends on);
        None where that is not known (its resolve is then OmegaConf's, job by job)."""
        return self._alike(key, self._composer.plain_values(overrides))

    def for_job(self, overrides: list[str]) -> ResolvePart:
        """How a job's parts are resolved (identity.benchmark_config's `resolve`)."""
        split = self._composer.plain_values(overrides)  # once for all its parts

        def resolve(key: str, node: DictConfig) -> Any:
            alike = self._alike(key, split)
            if alike is None:
                return resolve_part(key, node)
            found = self._resolved.get(alike, _UNKNOWN)
            if found is _UNKNOWN:
                found = self._resolved[alike] = resolve_part(key, node)
            return _copied(found)

        return resolve

    def _alike(
        self, key: str, split: tuple[Selection, list[Override]] | None
    ) -> tuple[object, ...] | None:
        if split is None:
            return None
        selection, values = split
        paths = self._depends_on(selection, key)
        if paths is None:
            return None
        lines = tuple(
            str(o.input_line) for o in values if any(_related(o.key_or_group, p) for p in paths)
        )
        return selection, key, lines

    def _depends_on(self, selection: Selection, key: str) -> frozenset[str] | None:
        """The key paths a part's resolved value may depend on: the part, and every key its
        interpolations refer to, through theirs in turn; None where that is not known."""
        if (selection, key) not in self._depends:
            self._depends[(selection, key)] = _closure(self._composer.written(selection), key)
        return self._depends[(selection, key)]


def _closure(written: dict[str, Any], key: str) -> frozenset[str] | None:
    paths, pending = {key}, [key]
    while pending:
        # A key not there refers on to nothing (a value override cannot add it).
        for text in _interpolations(at_path(written, pending.pop())):
            found = references(text)
            if found is None:
                return None
            pending += sorted(found - paths)
            paths |= found
    return frozenset(paths)


def references(text: str) -> set[str] | None:
    """The key paths an interpolated value refers to (for oc.select, the key it selects, up
    to a nested interpolation in it); None where that is not known: a relative or indexed
    key, or a resolver not known to depend on its arguments alone."""
    found: set[str] = set()
    known = True

    def node(key: str, memo: set[int] | None) -> Node:
        nonlocal known
        path = key.split(_NESTED)[0].rstrip(".")
        # Hydra's node differs job by job (and is not among the keys read here).
        if not path or path.startswith(".") or "[" in path or path.split(".")[0] == "hydra":
            known = False
        found.add(path)
        return AnyNode(_NESTED)

    def resolver(name: str, args: tuple[Any, ...], args_str: tuple[str, ...]) -> Node:
        nonlocal known
        if name == _SELECT and args:
            node(str(args[0]), None)
        elif name not in _PURE:
            known = False
        return AnyNode(_NESTED)

    visitor = GrammarVisitor(
        node_interpolation_callback=node, resolver_interpolation_callback=resolver, memo=None
    )
    visitor.visit(grammar_parser.parse(text))
    return found if known else None


def _related(key: str, path: str) -> bool:
    """Whether setting `key` may change the value at `path` (the same, inside, or above)."""
    return key == path or key.startswith(path + ".") or path.startswith(key + ".")


def _interpolations(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node] if "${" in node else []
    items = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    return [text for item in items for text in _interpolations(item)]


def _copied(value: Any) -> Any:
    """A resolved part's own copy for each job (plain dicts, lists and values)."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value

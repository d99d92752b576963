"""A digest of the code a function or class runs: its source and, transitively, the project code it reaches.

Read from the source files, not from the running objects, as gokart hashes a task's definition: each module of
the project packages is parsed once, and every top-level definition in it (function, class, constant, the
statements that decorate or patch a name) is a node whose text is its syntax tree without docstrings, comments
or layout (``ast.dump``), and whose edges are the names its code uses, annotations included (they name the
classes whose methods it calls on what it receives), resolved the way Python resolves them in that module: a
module-level name, an import (followed to the definition it names, through re-exports), or an attribute of an
imported project module (``predictions.production_version``). Names that resolve outside the project packages
(the standard library, scikit-learn, luigi), builtins and local variables end the walk, as do the modules the
caller leaves out and the definitions it says are digested on their own.

The digest of a root is the sha256 of every node it reaches with its text's digest, so an edit to the body of
any function, class or constant it reaches gives a new digest, and an edit anywhere else does not; a comment,
a docstring or a reformatting changes nothing. Cycles (two functions calling each other, a class naming
itself) end where a node was already seen. Each module is parsed and each node hashed once per process.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: a definition: (module, top-level name)
Node = tuple[str, str]
_BUILTINS = frozenset(dir(builtins))


def _never(obj: object) -> bool:
    return False


@dataclass
class _Module:
    """One parsed source file: the top-level statements that bind (or patch) each name, and its imports."""

    name: str
    package: str
    statements: dict[str, list[ast.stmt]] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name -> (module, attribute)


class CodeDigest:
    """Digests of the code reached from functions and classes, inside ``packages`` minus ``excluded`` modules.

    ``packages`` and ``excluded`` are dotted prefixes (``tripduration``, ``tripduration.io``). ``boundary``
    names the definitions digested on their own, whose code the walk does not enter (for a task: the other
    tasks it requires, whose own fingerprints already say what they ran); a class always enters its bases.
    One instance caches the parsed modules, the nodes' own digests and edges, and each root's digest: create
    it once per process (the code does not change while it runs).
    """

    def __init__(
        self, packages: Iterable[str], excluded: Iterable[str] = (), boundary: Callable[[object], bool] = _never
    ) -> None:
        self.packages, self.excluded, self.boundary = tuple(packages), tuple(excluded), boundary
        self._modules: dict[str, _Module | None] = {}
        self._nodes: dict[Node, tuple[str, frozenset[Node]]] = {}
        self._stops: dict[Node, bool] = {}
        self._digests: dict[frozenset[Node], str] = {}
        self._files: dict[str, Path | None] = {}

    def digest(self, *objs: object) -> str:
        """The sha256 (hex) of the code of ``objs`` and of every project definition they reach."""
        roots = self.roots(objs)
        if not roots:  # no source to read (made at run time, or in an excluded module): the names stand for it
            return hashlib.sha256(" ".join(f"{_qualified_name(o)}:no-source" for o in objs).encode()).hexdigest()
        cached = self._digests.get(roots)
        if cached is None:
            lines = sorted(f"{module}:{name}:{self._node((module, name))[0]}" for module, name in self.reached(*objs))
            cached = self._digests[roots] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        return cached

    def reached(self, *objs: object) -> set[Node]:
        """The definitions the digest of ``objs`` covers: their own (a class's bases too), and every one
        reachable from them."""
        roots = self.roots(objs)
        seen, todo = set(roots), list(roots)
        while todo:
            for edge in self._node(todo.pop())[1]:
                if edge not in seen and not self._stop(edge):
                    seen.add(edge)
                    todo.append(edge)
        return seen

    def roots(self, objs: Iterable[object]) -> frozenset[Node]:
        """The nodes defining ``objs`` and, for classes, their bases inside the packages."""
        found: set[Node | None] = set()
        for obj in objs:
            found.add(self.root_of(obj))
            if isinstance(obj, type):
                found.update(self.root_of(c) for c in inspect.getmro(obj)[1:] if self.in_scope(c.__module__))
        return frozenset(n for n in found if n is not None)

    def root_of(self, obj: object) -> Node | None:
        """The node that defines ``obj`` (a module-level function or class, or a method of one); None for an
        object without readable source, or defined in an excluded module."""
        if inspect.isfunction(obj) or inspect.ismethod(obj):
            obj = inspect.unwrap(obj)
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(qualname, str) or "<locals>" in qualname:
            return None
        if _under(module, self.excluded) or module == "builtins":
            return None
        parsed = self._module(module)
        top = qualname.split(".", 1)[0]
        return (module, top) if parsed is not None and top in parsed.statements else None

    def _stop(self, node: Node) -> bool:
        stop = self._stops.get(node)
        if stop is None:
            module, name = node
            value = getattr(sys.modules.get(module), name, None)
            stop = self._stops[node] = value is not None and bool(self.boundary(value))
        return stop

    def in_scope(self, module: str) -> bool:
        return _under(module, self.packages) and not _under(module, self.excluded)

    # ------------------------------------------------------------------ nodes
    def _node(self, node: Node) -> tuple[str, frozenset[Node]]:
        cached = self._nodes.get(node)
        if cached is None:
            module, name = node
            parsed = self._module(module)
            statements = parsed.statements.get(name, []) if parsed else []
            text = "\n".join(ast.dump(s) for s in statements)
            edges = frozenset(e for s in statements for e in self._edges(parsed, s)) if parsed else frozenset()
            cached = self._nodes[node] = (hashlib.sha256(text.encode()).hexdigest(), edges - {node})
        return cached

    def _edges(self, module: _Module, statement: ast.stmt) -> Iterator[Node]:
        for chain in _name_chains(statement):
            yield from self._resolve(module, chain)

    def _resolve(self, module: _Module, chain: list[str]) -> Iterator[Node]:
        """The node(s) a dotted use ``a.b.c`` in ``module`` refers to (none if outside the project)."""
        head, rest = chain[0], chain[1:]
        if head in module.imports:
            target, attribute = module.imports[head]
            if attribute is None:  # a module: its attribute names the definition
                yield from self._in_module(target, rest)
            else:
                yield from self._in_module(target, [attribute, *rest])
        if head in module.statements:
            yield (module.name, head)

    def _in_module(self, name: str, chain: list[str]) -> Iterator[Node]:
        """``chain[0]`` looked up in module ``name`` (a submodule, an import there, or its own definition)."""
        if not chain or not self.in_scope(name):
            return
        submodule = f"{name}.{chain[0]}"
        if self.in_scope(submodule) and self._file(submodule) is not None:
            yield from self._in_module(submodule, chain[1:])
            return
        parsed = self._module(name)
        if parsed is not None:
            yield from self._resolve(parsed, chain)

    def _module(self, name: str) -> _Module | None:
        if name not in self._modules:
            path = self._file(name)
            self._modules[name] = None if path is None else _parse(name, path)
        return self._modules[name]

    def _file(self, module: str) -> Path | None:
        """The source file of ``module`` (imported, beside its package's, or on the import path), or None."""
        if module not in self._files:
            self._files[module] = _find(module, self._file)
        return self._files[module]


# ---------------------------------------------------------------------- parsing
def _parse(name: str, path: Path) -> _Module | None:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    tree.body = _strip_docstrings(tree.body)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    module = _Module(name, package)
    for statement in _top_level(tree.body):
        _index(module, statement)
    return module


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The module's statements, with the bodies of top-level ``if``/``try``/``with`` blocks spliced in."""
    for statement in body:
        if isinstance(statement, ast.If | ast.With):
            yield from _top_level(statement.body)
            yield from _top_level(getattr(statement, "orelse", []))
        elif isinstance(statement, ast.Try):
            for block in (statement.body, *(h.body for h in statement.handlers), statement.orelse, statement.finalbody):
                yield from _top_level(block)
        else:
            yield statement


def _index(module: _Module, statement: ast.stmt) -> None:
    if isinstance(statement, ast.Import):
        for alias in statement.names:
            if alias.asname:
                module.imports[alias.asname] = (alias.name, None)
            else:
                top = alias.name.split(".", 1)[0]
                module.imports[top] = (top, None)
        return
    if isinstance(statement, ast.ImportFrom):
        source = _absolute(module.package, statement.module, statement.level)
        for alias in statement.names:
            if alias.name != "*":
                module.imports[alias.asname or alias.name] = (source, alias.name)
        return
    for name in _bound_names(statement, module):
        module.statements.setdefault(name, []).append(statement)


def _bound_names(statement: ast.stmt, module: _Module) -> set[str]:
    """The top-level names a statement defines, or patches (``X.attr = ...``, ``X.handler(...)(...)``)."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {statement.name}
    if isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return {name for target in targets for name in _target_names(target)}
    # anything else (a call that registers or patches): it belongs to the module-level names it uses
    return {chain[0] for chain in _name_chains(statement) if chain[0] in module.statements}


def _target_names(target: ast.expr) -> Iterator[str]:
    """``a`` of ``a = ``, ``a, b = ``, ``a.x = ``, ``a[k] = ``."""
    if isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _target_names(element)
    elif isinstance(target, ast.Starred | ast.Attribute | ast.Subscript):
        yield from _target_names(target.value)
    elif isinstance(target, ast.Name):
        yield target.id


def _absolute(package: str, name: str | None, level: int) -> str:
    if not level:
        return name or ""
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{base}.{name}" if name else base


def _strip_docstrings(body: list[ast.stmt]) -> list[ast.stmt]:
    """``body`` without its docstring, and the functions and classes in it without theirs."""
    for statement in body:
        for name in ("body", "orelse", "finalbody"):
            block = getattr(statement, name, None)
            if isinstance(block, list):
                setattr(statement, name, _strip_docstrings(block))
        for handler in getattr(statement, "handlers", []):
            handler.body = _strip_docstrings(handler.body)
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return body[1:] or [ast.Pass()]
    return body


def _name_chains(tree: ast.AST) -> Iterator[list[str]]:
    """Every ``a`` or ``a.b.c`` the code uses (annotations too: they name the classes of the objects a function
    receives, whose methods it calls), builtins aside."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Attribute | ast.Name):
            chain = _chain(node)
            if chain is not None:
                if chain[0] not in _BUILTINS:
                    yield chain
                continue
        todo.extend(ast.iter_child_nodes(node))


def _chain(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


def _find(module: str, find: Callable[[str], Path | None]) -> Path | None:
    loaded = sys.modules.get(module)
    if loaded is not None:
        path = getattr(loaded, "__file__", None)
        return Path(path) if path and path.endswith(".py") else None
    parent, _, last = module.rpartition(".")
    if parent:  # not imported (only named in a TYPE_CHECKING import, or not a module): look beside the package
        folder = find(parent)
        if folder is None or folder.name != "__init__.py":
            return None
        candidates = (folder.parent / f"{last}.py", folder.parent / last / "__init__.py")
        return next((c for c in candidates if c.is_file()), None)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def _qualified_name(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"

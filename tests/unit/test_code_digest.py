"""tripduration.runtime.code_digest on a small package written for each test: what an edit changes, and what not."""

from __future__ import annotations

import importlib
import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tripduration.runtime.code_digest import CodeDigest

_COUNTER = itertools.count()

FILES = {
    "__init__.py": "from .core import helper as exported_helper\n",
    "consts.py": "LIMIT = 10\n",
    "other.py": """
        def twice(x):
            return 2 * x


        class Registry:
            def put(self):
                return "put"
    """,
    "core.py": '''
        """The core."""

        from __future__ import annotations

        import functools
        import json

        from PKG import other
        from .consts import LIMIT

        SCALE = 3


        def helper(x):
            """Scale x."""
            return x * SCALE


        def unrelated(x):
            return x - 1


        def ping(n):
            return pong(n - 1) if n else 0


        def pong(n):
            return ping(n)


        def uses_partial():
            return functools.partial(helper, 2)


        def uses_module_attribute(x):
            return other.twice(x)


        def uses_constant():
            return LIMIT


        def annotated(registry: other.Registry) -> None:
            registry.put()


        class Base:
            def base_method(self):
                return helper(1)


        class Child(Base):
            def run(self):
                return json.dumps(self.base_method())
    ''',
    "user.py": """
        from PKG import exported_helper


        def use():
            return exported_helper(1)
    """,
}


class Package:
    """A package on ``sys.path`` whose files a test edits; :meth:`digests` reads them again (a new process)."""

    def __init__(self, root: Path) -> None:
        self.name = f"cdpkg{next(_COUNTER)}"
        self.folder = root / self.name
        self.folder.mkdir()
        for file, text in FILES.items():
            (self.folder / file).write_text(textwrap.dedent(text).replace("PKG", self.name))
        sys.path.insert(0, str(root))
        self.core = importlib.import_module(f"{self.name}.core")
        self.other = importlib.import_module(f"{self.name}.other")
        self.user = importlib.import_module(f"{self.name}.user")

    def edit(self, file: str, old: str, new: str) -> None:
        path = self.folder / file
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new))

    def digester(self, **kwargs: object) -> CodeDigest:
        return CodeDigest(packages=(self.name,), **kwargs)  # type: ignore[arg-type]

    def digests(self, **kwargs: object) -> dict[str, str]:
        """Every definition's digest, read from the files as they are now."""
        code = self.digester(**kwargs)
        named: dict[str, Callable[..., object] | type] = {
            "helper": self.core.helper,
            "unrelated": self.core.unrelated,
            "ping": self.core.ping,
            "uses_partial": self.core.uses_partial,
            "uses_module_attribute": self.core.uses_module_attribute,
            "uses_constant": self.core.uses_constant,
            "annotated": self.core.annotated,
            "Child": self.core.Child,
            "run": self.core.Child.run,
            "use": self.user.use,
        }
        return {name: code.digest(obj) for name, obj in named.items()}

    def remove(self) -> None:
        sys.path.remove(str(self.folder.parent))
        for module in [m for m in sys.modules if m == self.name or m.startswith(f"{self.name}.")]:
            del sys.modules[module]


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Package]:
    made = Package(tmp_path)
    yield made
    made.remove()


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_an_edited_body_changes_what_reaches_it_and_nothing_else(package):
    before = package.digests()
    package.edit("core.py", "return x * SCALE", "return x * SCALE + 1")
    # helper itself, through a partial, a base class's method (for the class and for its own method), a
    # re-export in the package's __init__
    assert changed(before, package.digests()) == {"helper", "uses_partial", "Child", "run", "use"}


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("core.py", "SCALE = 3", "SCALE = 4", {"helper", "uses_partial", "Child", "run", "use"}),
        ("consts.py", "LIMIT = 10", "LIMIT = 11", {"uses_constant"}),
        ("other.py", "return 2 * x", "return 3 * x", {"uses_module_attribute"}),
        ("other.py", 'return "put"', 'return "put!"', {"annotated"}),
        ("core.py", "return ping(n)", "return ping(n) + 0", {"ping"}),
        ("core.py", "return x - 1", "return x - 2", {"unrelated"}),
    ],
    ids=["constant", "imported-constant", "module-attribute", "annotated-class", "cycle", "unrelated"],
)
def test_edits_reach_through_constants_modules_annotations_and_cycles(package, file, old, new, expected):
    before = package.digests()
    package.edit(file, old, new)
    assert changed(before, package.digests()) == expected


def test_comments_docstrings_and_layout_change_nothing(package):
    before = package.digests()
    package.edit("core.py", '"""Scale x."""', '"""Scale x by SCALE (a new docstring)."""\n    # and a comment')
    package.edit("core.py", "return x * SCALE", "return (\n        x\n        * SCALE  # reformatted\n    )")
    package.edit("core.py", '"""The core."""', '"""The core, documented again."""')
    assert package.digests() == before


def test_code_outside_the_packages_is_not_read(package):
    code = package.digester()
    reached = code.reached(package.core.Child)
    assert {module for module, _ in reached} == {f"{package.name}.core"}  # json, builtins: not followed
    assert {name for _, name in reached} == {"Child", "Base", "helper", "SCALE"}


def test_excluded_modules_and_boundaries_are_not_entered_but_bases_are(package):
    before = package.digests(excluded=(f"{package.name}.other",))
    package.edit("other.py", "return 2 * x", "return 3 * x")
    assert package.digests(excluded=(f"{package.name}.other",)) == before

    code = package.digester(boundary=lambda obj: obj is package.core.helper or obj is package.core.Base)
    assert {name for _, name in code.reached(package.core.uses_partial)} == {"uses_partial"}
    # a class runs its bases' code, whatever the boundary says
    assert {name for _, name in code.reached(package.core.Child)} == {"Child", "Base"}


def test_objects_without_source_get_a_stable_digest(package):
    made = type("Made", (), {})
    code = package.digester()
    assert code.digest(made) == package.digester().digest(made)
    assert code.digest(len) == package.digester().digest(len)
    assert code.reached(made) == set()


def test_a_file_that_no_longer_parses_does_not_break_the_digest(package):
    package.edit("other.py", "def twice(x):", "def twice(x):\n    return (")
    assert package.digests()["uses_module_attribute"]  # the walk ends there instead of raising

"""The documentation against the code: config keys, exit codes, rejection reasons, README size, links.

README.md and docs/ drifted from the code before (the rejection reasons lacked ``invalid_value``, the test
count was stale). These tests read the Markdown tables and compare them with what the code defines, so a
key, an exit code or a reason added to the code without its row (or a row left behind) fails here, naming it.
"""

from __future__ import annotations

import configparser
import importlib
import inspect
import re
from pathlib import Path

import luigi
import pytest

import pipeline  # noqa: F401 - registers every task and config class, as the command line does
import tasks.cli.errors
import tasks.ops.runner
from tasks.ops.config_check import sections
from tripduration.data.rules import DISPATCH_REASONS, OUTCOME_REASONS, REASONS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
OPERATIONS = DOCS / "operations.md"
CONFIG_MODULES = ("tasks.settings",)
README_MAX_LINES = 200
# the command line's own exit codes (tasks/cli/errors.py): the codes of the commands that are not luigi jobs
CLI_CODES = ("COMMAND_FAILED", "BAD_ARGUMENTS")


# --------------------------------------------------------------------------- reading Markdown
def section_text(path: Path, heading: str) -> str:
    """The text under ``## heading`` up to the next heading of the same or a higher level."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == f"## {heading}"), None)
    assert start is not None, f"{path.relative_to(ROOT)} has no '## {heading}' section"
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^#{1,2} ", lines[i])), len(lines))
    return "\n".join(lines[start + 1 : end])


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in ``text`` as rows of cells; the header row first, the separator dropped."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def unquote(cell: str) -> str:
    return cell.replace("`", "").strip()


# --------------------------------------------------------------------------- (a) configuration keys
def config_classes() -> set[type[luigi.Config]]:
    """The luigi.Config classes the pipeline defines: every section the check knows and every one in the config
    modules."""
    classes: set[type[luigi.Config]] = set(sections())
    for name in CONFIG_MODULES:
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, luigi.Config) and obj.__module__ == name:
                classes.add(obj)
    return classes


def code_keys() -> set[tuple[str, str]]:
    return {(cls.get_task_family(), key) for cls in config_classes() for key, _ in cls.get_params()}


def documented_rows() -> dict[tuple[str, str], list[str]]:
    """(section, key) -> the row's cells, from the keys table of docs/configuration.md."""
    text = section_text(CONFIGURATION, "Keys of the pipeline's config classes")
    rows: dict[tuple[str, str], list[str]] = {}
    for table in tables(text):
        assert [unquote(c) for c in table[0][:4]] == ["section", "key", "default", "allowed"], table[0]
        for row in table[1:]:
            section = re.fullmatch(r"\[(\w+)\]", unquote(row[0]))
            assert section, f"docs/configuration.md: {row[0]!r} is not a [section]"
            rows[(section.group(1), unquote(row[1]))] = row
    return rows


def documented_keys() -> set[tuple[str, str]]:
    return set(documented_rows())


def test_every_config_key_of_the_code_is_documented_and_every_documented_key_exists():
    code, docs = code_keys(), documented_keys()
    assert code, "found no config class: the walk over the code is broken"
    undocumented = sorted(code - docs)
    assert not undocumented, f"keys read by the code without a row in docs/configuration.md: {undocumented}"
    unknown = sorted(docs - code)
    assert not unknown, f"docs/configuration.md documents keys the code does not define: {unknown}"


def test_the_allowed_column_says_what_each_key_s_check_allows():
    rows = documented_rows()
    wrong = [
        f"[{cls.get_task_family()}] {key}: {unquote(rows[(cls.get_task_family(), key)][3])!r} "
        f"does not say {unquote(param.check.allowed)!r}"
        for cls in sections()
        for key, param in cls.get_params()
        if (cls.get_task_family(), key) in rows
        and unquote(param.check.allowed) not in unquote(rows[(cls.get_task_family(), key)][3])
    ]
    assert not wrong, f"docs/configuration.md's allowed column disagrees with tasks/settings.py: {wrong}"


# --------------------------------------------------------------------------- (b) exit codes
def retcodes() -> dict[str, int]:
    """``[retcode]`` of the project's luigi.cfg (read directly, so a test override file cannot hide it)."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "luigi.cfg", encoding="utf-8")
    return {key: int(value) for key, value in parser["retcode"].items()}


def expected_exit_codes() -> set[int]:
    own = {getattr(tasks.cli.errors, name) for name in CLI_CODES}
    return {0, *own, *retcodes().values(), tasks.ops.runner.SCHEDULER_UNREACHABLE, tasks.ops.runner.SCHEDULER_LOST}


def exit_code_tables(path: Path) -> list[list[list[str]]]:
    """Tables whose first header cell is ``code`` or ``exit code``."""
    return [t for t in tables(path.read_text(encoding="utf-8")) if unquote(t[0][0]).lower() in ("code", "exit code")]


@pytest.mark.parametrize("path", [README, OPERATIONS, CONFIGURATION], ids=lambda p: p.name)
def test_every_exit_code_table_lists_exactly_the_codes_of_the_code(path):
    found = exit_code_tables(path)
    if path != README:
        assert found, f"{path.relative_to(ROOT)} has no exit-code table"
    for table in found:
        codes = [int(unquote(row[0])) for row in table[1:]]
        assert len(codes) == len(set(codes)), f"{path.name}: a code has two rows: {codes}"
        missing = sorted(expected_exit_codes() - set(codes))
        assert not missing, f"{path.name}: exit codes of the code without a row: {missing}"
        unknown = sorted(set(codes) - expected_exit_codes())
        assert not unknown, f"{path.name}: documented exit codes the code does not have: {unknown}"


def test_the_configuration_exit_code_table_names_where_each_code_is_defined():
    (table,) = exit_code_tables(CONFIGURATION)
    named = {unquote(row[2]): int(unquote(row[0])) for row in table[1:]}
    for key, code in retcodes().items():
        assert named.get(f"[retcode] {key}") == code, f"[retcode] {key} = {code} is not the row of code {code}"
    for name in ("SCHEDULER_UNREACHABLE", "SCHEDULER_LOST"):
        code = getattr(tasks.ops.runner, name)
        assert named.get(f"tasks/ops/runner.py {name}") == code, f"tasks.ops.runner.{name} = {code} is not its row"
    for name in CLI_CODES:
        code = getattr(tasks.cli.errors, name)
        where = [w for w, c in named.items() if w.startswith(f"tasks/cli/errors.py {name}")]
        assert where and named[where[0]] == code, f"tasks.cli.errors.{name} = {code} is not its row"


# --------------------------------------------------------------------------- (c) rejection reasons
def test_the_rejection_reasons_table_equals_the_rules_in_order_and_kind():
    (table,) = tables(section_text(CONFIGURATION, "Rejection reasons"))
    rows = [(unquote(row[0]), unquote(row[1])) for row in table[1:]]
    assert [reason for reason, _ in rows] == list(REASONS)
    kinds = {**dict.fromkeys(DISPATCH_REASONS, "dispatch-time"), **dict.fromkeys(OUTCOME_REASONS, "outcome")}
    wrong = [(reason, kind) for reason, kind in rows if kinds[reason] != kind]
    assert not wrong, f"docs/configuration.md gives the wrong kind to {wrong}"


# --------------------------------------------------------------------------- (d) README
def test_readme_is_a_short_front_door_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    too_long = f"README.md has {lines} lines; keep it to {README_MAX_LINES}, move the rest to docs/"
    assert lines <= README_MAX_LINES, too_long
    for command in ("make run", "make test"):
        assert f"\n{command}\n" in text, f"README.md does not show `{command}` on its own line"


# --------------------------------------------------------------------------- (e) links
def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
    return {slug(h) for h in headings}


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


DOC_FILES = [README, *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(path):
    broken = []
    for link in relative_links(path):
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{link} (no file {file})")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{link} (no heading #{anchor} in {file.name})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"

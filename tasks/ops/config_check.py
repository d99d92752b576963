"""Configuration checked for real: the words ``tasks/settings.py`` declares its keys with, and the check itself.

A value luigi would parse happily but that breaks the job later (``max_distance_miles = nan`` silently switching
a rule off, inverted duration bounds, an unknown retrain rule, a misspelt ``work_dri`` silently ignored) must
stop the job at once, with one line naming the section, the key, the value and what is allowed.

Each key is declared with its check on the same line (:class:`Real`, :class:`Whole`, :class:`Flag`,
:class:`Text`, :class:`Names`, each taking a :class:`Check`); a :class:`Section` refuses, when it is defined, a
key declared without one. Numbers are refused unless finite, whatever their check. The same check
(:func:`problems`: unknown keys of each section with the closest known key, every value as luigi would read it
from ``--section-key`` flags and the config files, the relations between keys, ``[resources] cores``) runs:

- in ``pipeline.py``, before the work-directory lock (:func:`check_configuration`; exit 2, one line);
- when luigi's own command line imports ``pipeline`` (``luigi --module pipeline TrainingPipeline ...``), with
  that command line's flags (:func:`check_when_luigi_imports`; exit 2, one line, before luigi builds a task);
- whenever a section is instantiated (:meth:`Section.get_param_values`), so that no other path (``luigi.build``
  in a script, a task instantiated by hand, explicit arguments) hands a task a bad value: the first section a
  task reads, when luigi checks what is complete, raises :class:`ConfigurationError` before anything runs.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import luigi
import luigi.configuration
from luigi.cmdline_parser import CmdlineParser


class ConfigurationError(ValueError):
    """A configuration value the pipeline cannot work with; the message is one line naming it."""


# --------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class Check:
    """What a key allows: ``allowed`` (the "allowed" column of docs/configuration.md) and ``problem(value)``,
    which says what is wrong with a parsed value (None: nothing)."""

    allowed: str
    problem: Callable[[Any], str | None]

    def __call__(self, value: Any) -> str | None:
        return self.problem(value)


def _bounds(low: float, high: float | None, strict: bool, allowed: str) -> Check:
    def problem(value: Any) -> str | None:
        if value <= low if strict else value < low:
            return f"must be {'>' if strict else '>='} {low:g}"
        if high is not None and value > high:
            return f"must be <= {high:g}"
        return None

    return Check(allowed, problem)


def at_least(low: float) -> Check:
    """``low`` or more."""
    return _bounds(low, None, False, f">= {low:g}")


def between(low: float, high: float) -> Check:
    """From ``low`` to ``high``, both included."""
    return _bounds(low, high, False, f"{low:g}..{high:g}")


def above(low: float, most: float | None = None) -> Check:
    """More than ``low`` (and at most ``most``)."""
    return _bounds(low, most, True, f"> {low:g}" + (f", <= {most:g}" if most is not None else ""))


non_empty = Check("not empty", lambda value: None if str(value).strip() else "must not be empty")
any_text = Check("any text", lambda value: None)
true_or_false = Check("`true` / `false`", lambda value: None if isinstance(value, bool) else "must be true or false")


# --------------------------------------------------------------------------- declarations
class Setting:
    """A key of a :class:`Section`: a luigi parameter that carries the :class:`Check` of its values."""

    #: what a value must be read as, in the message when it cannot be
    kind: ClassVar[str] = "text"

    def __init__(self, default: Any, check: Check, description: str = "", **kwargs: Any) -> None:
        super().__init__(default=default, description=description or None, **kwargs)  # type: ignore[call-arg]
        self.check = check

    def problem(self, value: Any) -> str | None:
        """What is wrong with a parsed value (None: nothing)."""
        return self.check(value)


class _Number(Setting):
    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return "must be a finite number"  # NaN and infinities are no setting, whatever the key
        return self.check(value)


class Real(_Number, luigi.FloatParameter):
    """A finite number: ``Real(1.0, at_least(0), "what it does")``."""

    kind = "a number"


class Whole(_Number, luigi.IntParameter):
    """A whole number: ``Whole(4, between(0, 100), "what it does")``."""

    kind = "a whole number"

    def problem(self, value: Any) -> str | None:
        return super().problem(value) or (None if isinstance(value, int) else "must be a whole number")


class Flag(Setting, luigi.BoolParameter):
    """``true`` or ``false`` (anything else is refused, not read as false): ``Flag(False, "what it does")``."""

    kind = "true or false"

    def __init__(self, default: bool, description: str = "") -> None:
        super().__init__(default, true_or_false, description, parsing=luigi.BoolParameter.EXPLICIT_PARSING)


class Text(Setting, luigi.Parameter):
    """Text: ``Text("models", non_empty, "what it does")``."""


class Names(Setting, luigi.ListParameter):
    """A JSON list: ``Names(("a", "b"), known_names, "what it does")``."""

    kind = 'a JSON list (["a", "b"])'


class Section(luigi.Config):
    """A ``luigi.Config`` read from the ``[section]`` named by :attr:`section`, not from its class name; each of
    its keys a :class:`Setting`, checked whenever the section is instantiated."""

    section: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unchecked = unchecked_keys(cls)
        if unchecked:
            raise TypeError(f"{cls.__name__}: {unchecked}")

    @classmethod
    def get_task_family(cls) -> str:
        return cls.section or cls.__name__

    @classmethod
    def relations(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """(key, what is wrong) for each relation between this section's keys that does not hold; ``values`` holds
        the keys whose own check passed. Override it beside the keys it relates."""
        return iter(())

    @classmethod
    def get_param_values(cls, params: Any, args: Any, kwargs: Any) -> Any:
        checked_once()  # every section and flag: the first section a job reads stops a bad configuration
        values = super().get_param_values(params, args, kwargs)
        given = dict(values)  # explicit arguments (ValidationConfig(max_distance_miles=...)) are checked too
        found = [(key, why) for key, why in ((key, param.problem(given[key])) for key, param in params) if why]
        found += cls.relations({key: value for key, value in given.items() if key not in dict(found)})
        if found:
            named = ", ".join(f"{key} = {given[key]!r}: {why}" for key, why in found)
            raise ConfigurationError(f"configuration: {cls.__name__}({named})")
        return values


def unchecked_keys(cls: type[luigi.Config]) -> str | None:
    """Why ``cls`` cannot be a section (a key declared without its check), or None."""
    own = vars(cls).items()  # at class creation luigi's get_params() cannot run yet; inherited keys were checked
    plain = [name for name, value in own if isinstance(value, luigi.Parameter) and not isinstance(value, Setting)]
    if not plain:
        return None
    return (
        f"declare {', '.join(plain)} with its check, e.g. `{plain[0]} = Real(1.0, at_least(0), 'what it does')` "
        "(Real, Whole, Flag, Text, Names of tasks/ops/config_check.py; see tasks/settings.py)"
    )


# --------------------------------------------------------------------------- the check
def sections() -> list[type[Section]]:
    """Every section class defined (``tasks/settings.py`` and any other subclass of :class:`Section`)."""
    found: list[type[Section]] = []
    todo = list(Section.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    if not found:
        raise RuntimeError("no configuration section is defined: import tasks.settings before checking")
    return sorted(found, key=lambda c: c.get_task_family())


def unknown_keys(cls: type[Section]) -> Iterator[str]:
    """A line per key of the section's config that the section does not declare, with the closest known key."""
    config, section = luigi.configuration.get_config(), cls.get_task_family()
    if not config.has_section(section):
        return
    known = [name for name, _ in cls.get_params()]
    inherited = set(config.defaults())  # [DEFAULT] keys show up in every section
    for option in config.options(section):
        key = option.replace("-", "_")  # luigi reads `work-dir` as work_dir
        if key not in known and option not in inherited:
            closest = difflib.get_close_matches(key, known, n=1, cutoff=0)[0]
            yield f"[{section}] {option}: unknown key, did you mean {closest}? ([{section}] has {', '.join(known)})"


def _raw(section: str, key: str) -> tuple[str, Any] | None:
    """(where it comes from, raw value) as luigi takes it: a ``--section-key`` flag, then the config files."""
    parser = CmdlineParser.get_instance()
    if parser is not None:
        flag = getattr(parser.known_args, f"{section}_{key}", None)
        if flag:  # luigi ignores an empty flag too
            return f" (--{section}-{key})".replace("_", "-"), flag
    config = luigi.configuration.get_config()
    if config.has_option(section, key):
        return "", config.get(section, key)
    return None


def read(cls: type[Section], key: str, param: Setting) -> tuple[str, Any, str | None]:
    """(value as shown, parsed value, what is wrong with it or None) of one key."""
    section = cls.get_task_family()
    try:
        raw = _raw(section, key)
    except Exception as exc:  # e.g. ${VAR} interpolation of an unset variable
        return "?", None, f"cannot be read ({exc})"
    if raw is None:
        return f"{param._default!r} (default)", param.normalize(param._default), None  # type: ignore[attr-defined]
    where, text = raw
    shown = f"{text}{where}"
    try:
        value = param.normalize(param.parse(text))  # type: ignore[attr-defined]
    except Exception as exc:
        return shown, None, f"cannot be read as {param.kind} ({exc})"
    return shown, value, param.problem(value)


def section_problems(cls: type[Section]) -> Iterator[str]:
    """A line per unknown key, bad value and broken relation of one section."""
    section = cls.get_task_family()
    yield from unknown_keys(cls)
    shown: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key, param in cls.get_params():
        shown[key], value, problem = read(cls, key, param)
        if problem:
            yield f"[{section}] {key} = {shown[key]}: {problem}"
        else:
            values[key] = value
    for key, why in cls.relations(values):
        yield f"[{section}] {key} = {shown[key]}: {why}"


def problems() -> list[str]:
    """One line per configuration value the pipeline cannot work with (empty when all are fine)."""
    lines = [line for cls in sections() for line in section_problems(cls)]
    config = luigi.configuration.get_config()
    cores = config.get("resources", "cores") if config.has_option("resources", "cores") else None
    if cores is not None and not (cores.strip().isdigit() and int(cores) >= 1):
        lines.append(f"[resources] cores = {cores}: must be a whole number >= 1 (CPUs the tasks may use)")
    return lines


def one_line(found: list[str]) -> str:
    more = f" (and {len(found) - 1} more: {'; '.join(found[1:])})" if len(found) > 1 else ""
    return f"configuration: {found[0]}{more}"


def check_configuration() -> None:
    """Raise :class:`ConfigurationError` naming the first bad value (and how many more there are)."""
    found = problems()
    if found:
        raise ConfigurationError(one_line(found))


_passed: list[object] = []  # [the state of the configuration that passed last] (see checked_once)


_SECTION_NAMES: dict[int, list[str]] = {}  # number of Section classes -> their section names (+ "resources")


def _section_names() -> list[str]:
    classes = sections()
    names = _SECTION_NAMES.get(len(classes))
    if names is None:
        names = _SECTION_NAMES[len(classes)] = [*(cls.get_task_family() for cls in classes), "resources"]
    return names


def _state() -> object | None:
    """What :func:`problems` depends on: the config's owned sections, as written, and luigi's command line
    (None when a value reads an environment variable: then the check always runs). Cheap: sections are
    instantiated hundreds of times per run, each time this is compared with the state that passed last."""
    config, parser = luigi.configuration.get_config(), CmdlineParser.get_instance()
    stored = getattr(config, "_sections", None)  # RawConfigParser's own store: as written, no interpolation
    if not isinstance(stored, dict):
        stored = {name: dict(config.items(name, raw=True)) for name in config.sections()}
    written = [(name, stored[name]) for name in _section_names() if name in stored]
    text = repr(written) + repr(getattr(config, "_defaults", None))
    if "$" in text:
        return None
    flags = sorted(vars(parser.known_args).items(), key=lambda kv: kv[0]) if parser is not None else None
    return (id(config), text, repr(flags))


def checked_once() -> None:
    """:func:`check_configuration`, skipped while the configuration is what last passed (sections are
    instantiated thousands of times per run: each instantiation checks that nothing changed)."""
    state = _state()
    if state is not None and _passed == [state]:
        return
    check_configuration()
    _passed[:] = [state]


# --------------------------------------------------------------------------- luigi's command line
def luigi_command_line() -> list[str] | None:
    """The arguments luigi's command line is parsing when it imports a module (``--module``), else None.

    ``luigi --module pipeline ...`` imports the module from within :class:`CmdlineParser`'s constructor, before
    its flags are in effect; its arguments are the only way to see them before luigi builds a task.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is CmdlineParser.__init__.__code__:
            args = frame.f_locals.get("cmdline_args")
            return list(sys.argv[1:] if args is None else args)
        frame = frame.f_back  # type: ignore[assignment]
    return None


def check_when_luigi_imports(program: str) -> None:
    """When luigi's command line is importing the caller, check the configuration with that command line's flags:
    a bad value prints one line and exits 2 before luigi builds, locks or runs anything."""
    args = luigi_command_line()
    if args is None or {"--help", "--help-all"} & set(args):
        return
    quiet = io.StringIO()
    try:
        with (
            contextlib.redirect_stdout(quiet),
            contextlib.redirect_stderr(quiet),
            CmdlineParser.global_instance(args, allow_override=True),
        ):
            found = problems()
    except SystemExit:  # luigi's own usage error (no task, unknown flag): luigi reports it right after this
        return
    except Exception:  # e.g. the root task is in a module still being imported: the files now, the flags later
        found = problems()
    if found:
        print(f"{program}: error: {one_line(found)}", file=sys.stderr)
        raise SystemExit(2)

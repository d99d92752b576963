"""The command line's own exit codes and its refusal (luigi's codes 10-40 and 45/46 are tasks/ops/runner.py's).

docs/operations.md lists every code in its exit-code table; tests/test_docs.py checks the table against
these constants and luigi.cfg's ``[retcode]``.
"""

from __future__ import annotations

# a registry, service or MLflow command failed on something other than its arguments: a damaged or tampered
# version, no production model to serve, a port already in use, an unreachable tracking server, a version
# that failed to export. One line names it.
COMMAND_FAILED = 1
# bad arguments, a bad luigi.cfg value or a missing optional extra: refused before anything was read or written
BAD_ARGUMENTS = 2


class UsageError(Exception):
    """A refusal before anything runs (bad configuration, option or months): one line, exit 2."""

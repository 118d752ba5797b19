"""Prints the fuzz suite's counts (file type x command x outcome) at the end of the pytest run,
so they appear in the CI log whether the fuzz tests pass or fail."""

from __future__ import annotations

#: Summary objects of the fuzz runs of this session, in order
SUMMARIES: list = []


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for summary in SUMMARIES:
        terminalreporter.write_sep("-", f"edgekit fuzz suite, seed {summary.seed}")
        terminalreporter.write_line(summary.table())
        if summary.failures:
            terminalreporter.write_line(f"  {len(summary.failures)} failures; see the test's report")

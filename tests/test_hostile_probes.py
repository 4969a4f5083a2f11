"""Issue 27's promise, held by every command-line tool against tests/hostile_probes.py's table of bad
inputs: exit code 2, one `error:` line naming what is at fault, no traceback, nothing lost."""
import pytest

from tests.hostile_probes import broken_report, run_probes, table
from tests.probe_table import PROBES


@pytest.mark.slow
def test_every_tool_keeps_its_promise_against_every_hostile_probe():
    outcomes = run_probes(PROBES)
    broken = [o for o in outcomes if not o.kept]
    assert not broken, (f"{len(broken)} of {len(outcomes)} probes broke the promise:\n{table(broken)}\n\n"
                        f"{broken_report(outcomes)}")

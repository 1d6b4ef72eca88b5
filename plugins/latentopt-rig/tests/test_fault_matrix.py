"""The fault matrix: one short session per fault kind against the simulator; every image's response
is recorded once (equal to the mean of the trials the rig delivered) or re-queued, nothing crashes,
nothing is lost. The table is printed (``pytest -s``) and written to ``fault_matrix.md`` in tmp."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentopt_rig.drill import Audit, run_drill
from latentopt_rig.simulator import FAULT_KINDS, SimEvent

ROWS: list[tuple[str, int, int, Audit]] = []

CASES = [(kind, "xdream", "mat73") for kind in FAULT_KINDS] + [
    ("missing", "native", "csv"), ("corrupt", "native", "npz"), ("slow", "native", "h5"), ("nan", "xdream", "mat5")]


@pytest.mark.parametrize(("kind", "protocol", "fmt"), CASES)
def test_fault_is_survived_and_nothing_is_lost(kind: str, protocol: str, fmt: str, tmp_path: Path) -> None:
    audit, crashes, events = run_drill(kind, tmp_path, protocol=protocol, fmt=fmt, fault_blocks="1,2")
    injected = sum(kind in e.faults for e in events)
    ROWS.append((f"{kind} ({protocol}, {fmt})", injected, crashes, audit))
    assert injected == 2  # blocks 1 and 2 (for restart: the blocks the fresh simulator answered)
    assert crashes == 0
    assert audit.images == 30 and audit.duplicated == 0
    assert audit.lost == 0 and audit.recorded + audit.not_shown == audit.images
    assert audit.files_archived == audit.files_written  # every raw file, incl. damaged ones, archived
    if kind in ("missing", "nan"):
        assert audit.requeued > 0
    if kind in ("truncated", "corrupt"):
        assert audit.requeued == 2 * 10  # both whole blocks shown again
    if kind == "unknown":
        assert audit.unknown_logged == 2 * 3
    if kind == "restart":
        assert _restarted(events)


def _restarted(events: list[SimEvent]) -> bool:
    """After a simulated crash the fresh simulator still answered blocks 1 and 2, once each."""
    labels = [e.label for e in events]
    return labels.count("001") == 1 and labels.count("002") == 1


def test_not_shown_nan_policy_lists_every_nan(tmp_path: Path) -> None:
    audit, crashes, _ = run_drill("missing", tmp_path, fault_blocks="all", not_shown="nan")
    ROWS.append(("missing, not_shown=nan", 3, crashes, audit))
    assert crashes == 0 and audit.lost == 0 and audit.requeued == 0
    assert audit.not_shown == 3 * 2 and audit.recorded == 30 - 6


def test_zz_print_fault_matrix(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Summarise the matrix (runs last in this module)."""
    assert len(ROWS) >= 8
    lines = ["| fault | injected | crashes | responses lost | recorded | re-queued | NaN by policy | unknown ids |",
             "|---|---|---|---|---|---|---|---|"]
    for name, injected, crashes, a in ROWS:
        lines.append(f"| {name} | {injected} | {crashes} | {a.lost} | {a.recorded}/{a.images} | {a.requeued} | "
                     f"{a.not_shown} | {a.unknown_logged} |")
    table = "\n".join(lines)
    (tmp_path_factory.mktemp("matrix") / "fault_matrix.md").write_text(table + "\n")
    print("\n" + table)
    assert sum(r[2] for r in ROWS) == 0 and sum(r[3].lost for r in ROWS) == 0

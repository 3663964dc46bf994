"""The convergence soak at CI size (~200 ServiceTrade records, about 4-8 minutes on a loaded
2-core machine).

Real ingest, a private Redis, two real Celery worker processes, every webhook delivered 1-3x and
shuffled, ServiceTrade 5 % 503, Spectrum 10 % faults and 5 % ghost writes, one worker SIGKILLed
and restarted, the ingest SIGKILLed holding an unanswered delivery, voids after the first pass,
then the changes phase (``bench/changes.py``: invoices edited and approved again -> rebill (one
rebill's worker SIGKILLed mid-import), split invoices voided, jobs re-coded, completed, canceled,
PO lines deleted in Spectrum, the salesperson, technician and service line that fail by design
fixed at their source)
with Spectrum faulting every call for 3.5x the retry budget meanwhile, then sweep + catch-up +
re-enqueuer until nothing changes. The verdict compares with a fault-free reference run that applies the same changes in
order, and checks every invoice's Spectrum documents against what ServiceTrade says is owed. The
full size is ``python -m bench.chaos --records 2000 --changes --restart-redis --restart-db``
(docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import ChaosConfig, default_outage_s, run_chaos

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

CI_MAX_RETRIES = 7


# measured: 4-6 minutes on the 2-core machine (the outage alone is 80 s); the deadlines
# only turn a hang into a failure
@pytest.mark.timeout(1800)
def test_convergence_soak_changes_and_an_outage_converge_to_the_reference_run(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    report = run_chaos(
        ChaosConfig(
            records=200,
            timeout_s=1500,
            changes=True,
            # 7 retries: a 23 s retry budget, so the outage (3.5 x the budget, as the full run's
            # 150 s is to its 43 s) takes 80 s of CI time instead of 150 s
            max_retries=CI_MAX_RETRIES,
            outage_s=default_outage_s(CI_MAX_RETRIES),
            kill_ingest_at=0.25,
            kill_rebill=True,
        ),
        workdir=tmp_path,
        log=lines.append,
    )
    print(report.text())
    assert report.ok, report.text() + "\n" + "\n".join(lines[-30:])
    # the audit compares against a reference run: make sure both had something to compare
    assert report.world["records"] >= 200
    assert report.ledger.get("customer/done", 0) == report.world["company"]
    assert report.ledger.get("invoice_void/done", 0) >= 1
    assert report.ledger.get("timecard_entry/done", 0) >= 20
    # and that the faults really fired; without them this test would prove nothing
    # the planned SIGKILL, and the one of the worker holding a rebill mid-import
    assert report.faults["rebill worker kills"] == 1 and report.rebill_killed is not None
    assert report.faults["worker kills"] == 2
    # the ingest SIGKILLed holding a stored, queued, unanswered delivery: ServiceTrade retried
    assert report.faults["ingest kills"] == 1
    assert report.webhooks["duplicates"] > 0
    ghosts = sum(
        n for k, n in report.faults.items() if k.startswith("spectrum") and k.endswith(":ghost")
    )
    spectrum_errors = sum(
        n for k, n in report.faults.items() if k.startswith("spectrum") and k.endswith(":error")
    )
    st_errors = sum(
        n for k, n in report.faults.items() if k.startswith("servicetrade") and k.endswith(":error")
    )
    assert ghosts > 0 and spectrum_errors > 0 and st_errors > 0
    # the changes phase ran and its changes took effect (not merely "nothing differs")
    assert report.changes["rebill"] >= 1 and report.changes["split_void"] >= 1
    assert report.changes_landed["rebill"] >= 1, report.text()
    assert report.changes_landed["split_void"] == report.changes["split_void"], report.text()
    # PO lines deleted in Spectrum took their job items with them (closed_lines = "remove")
    assert report.changes["po_line_deleted"] >= 1
    assert report.changes_landed["po_line_deleted"] == report.changes["po_line_deleted"]
    # the records failed by design were fixed at their source (a user's webhook, a configuration
    # file the workers reloaded) and healed, identically in both runs
    for kind in ("fix_salesperson", "fix_technician", "fix_service_line"):
        assert report.changes[kind] == 1 and report.changes_landed[kind] == 1, report.text()
    assert report.invoices_balanced >= 15
    # the outage was longer than the whole retry budget (the issue: >= 30 min vs ~8.5 min)
    assert report.outage["ratio"] >= 3.0

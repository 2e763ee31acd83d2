"""The one reuse decision (spark_nb._reuse_rule.decide): what the newest earlier attempt at a call means for it, as a
table, with no server and no journal file. The pipeline and the batch runner both act on it (their end-to-end
tests: test_journal, test_pipeline, test_batch)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from spark_nb._journal_rows import Entry, JobState
from spark_nb._reuse_rule import Decision, Verdict, decide

HERE = socket.gethostname()


def entry(state: JobState, *, task_id: str | None = "t-1", alive: bool = False, **fields: Any) -> Entry:
    """An attempt in state; alive: its process is this one (else it ran on a machine that is not this one)."""
    return Entry(attempt="a", fingerprint="f", model="m", backend="cloud", base_url=None, inputs=[], state=state,
                 task_id=task_id, pid=os.getpid(), host=HERE if alive else "another-machine", attempted_at=1.0,
                 updated_at=1.0, **fields)


S = JobState
TABLE = [  # (attempt, verdict with reuse=True; with resubmit_uncertain=True)
    pytest.param(None, Verdict.NEW, Verdict.NEW, id="none"),
    pytest.param(entry(S.COMPLETED), Verdict.REUSE, Verdict.REUSE, id="completed"),
    pytest.param(entry(S.SUBMITTED), Verdict.ATTACH, Verdict.ATTACH, id="submitted"),
    pytest.param(entry(S.FAILED, retryable=True), Verdict.NEW, Verdict.NEW, id="failed-at-the-service"),
    pytest.param(entry(S.FAILED, code="003016002"), Verdict.REFUSED, Verdict.REFUSED, id="refused-for-its-inputs"),
    pytest.param(entry(S.RESERVED, task_id=None, alive=True), Verdict.WAIT, Verdict.WAIT, id="reserved-alive"),
    pytest.param(entry(S.SUBMITTING, task_id=None, alive=True), Verdict.WAIT, Verdict.WAIT, id="sending-alive"),
    pytest.param(entry(S.RESERVED, task_id=None), Verdict.NEW, Verdict.NEW, id="reserved-process-gone"),
    pytest.param(entry(S.SUBMITTING, task_id=None), Verdict.MAY_EXIST, Verdict.RESEND, id="sending-process-gone"),
    pytest.param(entry(S.UNCERTAIN, task_id=None), Verdict.MAY_EXIST, Verdict.RESEND, id="answer-lost"),
    pytest.param(entry(S.COMPLETED, task_id=None, damaged=("task_id b'\\x00' is not text",)), Verdict.MAY_EXIST,
                 Verdict.RESEND, id="completed-id-unreadable"),
    pytest.param(entry(S.SUBMITTED, task_id=None), Verdict.MAY_EXIST, Verdict.RESEND, id="submitted-without-id"),
    pytest.param(entry(S.UNCERTAIN, damaged=("state 'exploded' is not a state",)), Verdict.MAY_EXIST,
                 Verdict.RESEND, id="state-unreadable"),
]


@pytest.mark.parametrize("earlier,verdict,resent", TABLE)
def test_the_decision_table(earlier: Entry | None, verdict: Verdict, resent: Verdict) -> None:
    """Each kind of earlier attempt gets its verdict; resubmit_uncertain changes only those that may have made a
    task; the decision names the attempt it rests on."""
    decision = decide(earlier)
    assert decision == Decision(verdict, earlier) and decision.entry is earlier
    assert decide(earlier, resubmit_uncertain=True).verdict == resent
    assert decision.creates == (verdict == Verdict.NEW)


@pytest.mark.parametrize("earlier", [p.values[0] for p in TABLE])
def test_reuse_false_is_a_new_take_whatever_came_before(earlier: Entry | None) -> None:
    """reuse=False (generate(reuse=False), --no-reuse) creates a task of its own, even over a lost create."""
    decision = decide(earlier, reuse=False, resubmit_uncertain=True)
    assert decision.verdict == Verdict.NEW and decision.creates and decision.entry is None

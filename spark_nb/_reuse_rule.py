"""What an earlier identical call means for this one: the one decision, a pure function of the journal's newest
attempt for the call's fingerprint and the call's options, taken by the pipeline (_pipeline, _reuse.follow) and
the batch runner (batch/_runner) alike.

- none (or reuse=False), or one the service itself failed (a retry may work), or a reservation whose process is
  gone (nothing was sent): a new task;
- completed: its video; submitted: wait for its task;
- being prepared or sent by a process that is alive: wait for that process;
- refused for its inputs: the same failure, not sent again;
- anything else may have made a task (a create's answer lost, a process gone while sending, a row whose state
  or task id cannot be read): refused, so nothing is paid twice, unless resubmit_uncertain asks to send again.
"""

from __future__ import annotations

import dataclasses

from ._enums import Word
from ._journal_rows import Entry, JobState


class Verdict(Word):
    """What to do with a call, given the newest earlier attempt at it."""

    NEW = "new"  # create a task: no earlier attempt answers this call
    REUSE = "reuse"  # a completed task answers it: its video (fetched again if it is gone)
    ATTACH = "attach"  # a task made for it is not finished: wait for that task
    WAIT = "wait"  # another live process is preparing or sending this very create: wait for it, then decide again
    REFUSED = "refused"  # the service refused these inputs: the same failure, without sending them again
    MAY_EXIST = "may_exist"  # a task may exist that nobody knows the id of: not sent again (never pay twice)
    RESEND = "resend"  # a task may exist, and resubmit_uncertain asks to send again: a new task (may pay twice)


@dataclasses.dataclass(frozen=True)
class Decision:
    """The verdict on a call and the earlier attempt it rests on (None: there is none, or it was not looked at)."""

    verdict: Verdict
    entry: Entry | None = None

    @property
    def creates(self) -> bool:
        """True when the call creates a task of its own (NEW, RESEND)."""
        return self.verdict in (Verdict.NEW, Verdict.RESEND)


def decide(entry: Entry | None, *, reuse: bool = True, resubmit_uncertain: bool = False) -> Decision:
    """The decision for a call whose newest earlier attempt is entry (the journal's, by insertion order).

    reuse=False: a new take whatever came before. resubmit_uncertain: an attempt that may have made a task is sent
    again (RESEND) instead of refused (MAY_EXIST).
    """
    if entry is None or not reuse:
        return Decision(Verdict.NEW)
    state = entry.state
    if state == JobState.FAILED:
        return Decision(Verdict.NEW if entry.retryable else Verdict.REFUSED, entry)
    if state == JobState.COMPLETED and entry.task_id:
        return Decision(Verdict.REUSE, entry)
    if state == JobState.SUBMITTED and entry.task_id:
        return Decision(Verdict.ATTACH, entry)
    if state in (JobState.RESERVED, JobState.SUBMITTING) and entry.creator_alive:
        return Decision(Verdict.WAIT, entry)
    if state == JobState.RESERVED:  # its process is gone before it sent anything
        return Decision(Verdict.NEW, entry)
    return Decision(Verdict.RESEND if resubmit_uncertain else Verdict.MAY_EXIST, entry)


__all__ = ["Decision", "Verdict", "decide"]

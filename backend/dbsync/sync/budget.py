"""The sync's time budget: it stops itself, rolls back and says so, rather than be killed.

A budget (`--max-seconds`, SYNC_MAX_SECONDS; in the Lambda, its remaining time less a margin)
becomes one Deadline where the command starts, and is checked before each phase, between tables,
inside every COPY (the pipe between the two servers checks it at each chunk) and, through
statement_timeout, inside the long statements of the target's own (an index rebuild, a
foreign-key validation) and the source's. Before the copy finishes it keeps back what the
phases after it need: a share of the copy's own time for the foreign keys and sequences, and half
a second for the COMMIT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dbsync.errors import DbSyncError

# What the phases after the copy need, as a share of the copy's time (re-adding the foreign keys
# took about 18% of the copy's time on the benchmark database; the rest is small), plus a floor.
AFTER_COPY_SHARE = 0.3
AFTER_COPY_FLOOR = 0.5
COMMIT_RESERVE = 0.5
# The stated rate a dry run estimates with: below what was measured here (70–80 MB/s on 2 cores,
# both servers local), for a Lambda's fraction of a vCPU and a network in between.
ESTIMATE_MB_PER_S = 50.0


class BudgetExceeded(DbSyncError):
    """The sync stopped itself at its time budget; the target was rolled back."""


@dataclass(frozen=True)
class Deadline:
    """The one moment (a time.perf_counter() value) a command must be done by, fixed once where
    the command starts (the CLI, the Lambda handler, the Fargate task): every run under it — an
    incremental sync's fallback to a full one included — works to the same moment."""

    at: float
    seconds: float  # the budget it was made from, for messages

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.perf_counter() + seconds, seconds)


class Budget:
    def __init__(self, deadline: Deadline | None):
        self.deadline = deadline
        self.seconds = None if deadline is None else deadline.seconds

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline.at - time.perf_counter()

    def left_after(self, reserve: float) -> float | None:
        """Seconds left once `reserve` is kept back; None without a budget."""
        left = self.remaining()
        return None if left is None else left - reserve

    def statement_timeout_ms(self, reserve: float) -> int | None:
        """A statement_timeout that ends any statement before the budget (less `reserve`) runs out."""
        left = self.left_after(reserve)
        return None if left is None else max(1, int(left * 1000))

    def stop_at(self, reserve: float) -> float | None:
        """The perf_counter() time a COPY must not run past."""
        return None if self.deadline is None else self.deadline.at - reserve


def after_copy_reserve(copy_seconds: float) -> float:
    return AFTER_COPY_FLOOR + AFTER_COPY_SHARE * copy_seconds + COMMIT_RESERVE


def estimate(total_bytes: int, budget: Budget) -> dict:
    """A dry run's estimate of the copy and what follows it, at the stated rate, against what is
    left of the deadline (the planning so far has used some of it)."""
    copy_s = total_bytes / (ESTIMATE_MB_PER_S * 2**20)
    seconds = round(copy_s + after_copy_reserve(copy_s), 1)
    left = budget.remaining()
    return {"bytes": total_bytes, "rate_mb_s": ESTIMATE_MB_PER_S, "seconds": seconds,
            "budget_seconds": budget.seconds, "seconds_left": None if left is None else round(max(left, 0.0), 1),
            "fits": left is None or seconds <= left}


def seconds_text(seconds: float) -> str:
    """1.3, 0.5, 14400: tenths at most."""
    return f"{seconds:.1f}".rstrip("0").rstrip(".")


def exceeded_message(budget_seconds: float, doing: str, progress: str) -> str:
    return (f"the sync stopped itself within its time budget of {seconds_text(budget_seconds)} s"
            f" while {doing} ({progress});"
            " it rolled back, so the target is unchanged: give it a larger budget (--max-seconds /"
            " SYNC_MAX_SECONDS), sync fewer tables (--table), or use the Fargate runner (docs/scale.md)")

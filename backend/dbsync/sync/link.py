"""What the incremental code (record, delta, ranges) needs of a run, and all it may touch: the two
sessions and the moment a COPY must stop by. Typed and small, so that code can be tested with two
connections and a deadline, without a whole run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Link:
    source: Any  # prod's session (psycopg2 connection), in the run's snapshot, read only
    target: Any  # staging's session, in the run's one transaction
    # The time.perf_counter() a COPY must not run past (the deadline less what must follow); None:
    # no budget. A function: what must follow shrinks as the copy advances.
    copy_deadline: Callable[[], float | None] = lambda: None

"""The shapes of what the engine and the sync return: plain JSON-ready dicts, typed.

The CLI prints them as JSON, the API and the Lambda return them; the keys are part of the
interface (see docs/sequences.md and docs/sync.md).
"""

from __future__ import annotations

from typing import Literal, NotRequired, get_args

from typing_extensions import TypedDict

# unverifiable: an integer key nothing feeds, reported and left alone (dbsync.sequences.plan)
Action = Literal["reset", "unchanged", "default_restored", "sequence_created", "unverifiable", "error"]
ACTIONS: tuple[Action, ...] = get_args(Action)
# trigger: a BEFORE INSERT trigger calls nextval(); none: nothing feeds it (unverifiable)
FeedKind = Literal["serial", "identity", "default", "trigger", "created", "none"]


class SequenceResult(TypedDict):
    """One sequence-fed column (or unverifiable key): what its next INSERT would have got and gets now."""

    schema: str
    table: str
    column: str
    sequence: str | None  # schema-qualified, quoted as PostgreSQL quotes it; None when unverifiable
    kind: FeedKind
    previous: int | None  # None: the next INSERT would have failed
    value: int | None  # None when action is error
    action: Action
    error: str | None
    error_code: NotRequired[str]  # the SQLSTATE behind `error` (55P03: a lock timeout, worth a retry)
    note: NotRequired[str]  # why the rule differs for this column (no data floor)


class SequenceProblem(TypedDict, total=False):
    """A column check-sequences flags; the engine's fields where it planned the column."""

    schema: str
    table: str
    column: str
    sequence: str
    kind: FeedKind
    previous: int | None
    value: int | None
    action: Action
    error: str | None
    note: str
    grant: str  # check-sequences: the GRANT that fixes a role's missing USAGE on the sequence
    problem: str


class UnverifiableKey(TypedDict):
    """An integer primary key nothing feeds, which check-sequences lists without failing."""

    schema: str
    table: str
    column: str
    note: str


class SequenceCheck(TypedDict):
    """check-sequences' answer: ok is False exactly when problems is not empty."""

    ok: bool
    problems: list[SequenceProblem]
    unverifiable: list[UnverifiableKey]  # always [] with a source: prod decides


class SchemaChange(TypedDict):
    """One DDL change the sync made on the target so its sequences, defaults and identity match
    the source's; every change to the target's schema the sync makes is one of these."""

    object: str
    action: Literal["identity_mode_set", "sequence_altered", "identity_restored", "identity_dropped",
                    "sequence_created", "sequence_dropped", "sequence_owner_set", "sequence_granted",
                    "owned_by_set", "default_restored", "default_replaced", "default_dropped", "not_null_set",
                    "schema_created"]
    detail: str | None


class TableCopied(TypedDict):
    table: str
    rows: int
    bytes: int
    seconds: float
    format: Literal["binary", "text"]
    mode: Literal["full", "delta", "unchanged"]  # how it reached the target (an incremental sync decides)
    reason: NotRequired[str]  # why an incremental sync copied it in full
    rows_copied: NotRequired[int]  # an incremental sync: the rows it inserted or updated
    rows_deleted: NotRequired[int]
    digest_seconds: NotRequired[float]  # the time finding what differs
    found: NotRequired[str]  # how: "by digest", or "since the last sync" (recorded on staging)
    key_ranges: NotRequired[int]  # ranges of the key both sides summarised (dbsync.sync.ranges)
    key_ranges_compared: NotRequired[int]  # those whose summaries differed, compared key by key
    key_ranges_exact: NotRequired[bool]  # 64-key ranges whose summaries are the key sets (dbsync.sync.keysets)


class TablePlanned(TypedDict):
    """A table as a dry run reports it."""

    table: str
    columns: int
    format: Literal["binary", "text"]


class TableValidated(TypedDict):
    table: str
    source_rows: int
    target_rows: int
    ok: bool


class Validation(TypedDict):
    ok: bool
    tables: list[TableValidated]


class SetAside(TypedDict):
    triggers: int
    foreign_keys: int
    indexes: int


class MaskingReport(TypedDict):
    rules: str | None  # the rules file, or None: nothing masked
    masked_columns: list[str]
    empty_tables: list[str]  # `rows: none`
    uncovered: list[str]  # personal-data columns no rule covers (a refusal when rules are in effect)


class SchemaDrift(TypedDict):
    """Where staging's schema and prod's differ, and what the sync did about it (docs/sync.md)."""

    policy: Literal["tolerate", "refuse"]
    prod_only_tables: list[str]  # not copied (the ProdOnlyObjects metric counts these and the columns)
    prod_only_columns: list[str]  # schema.table.column, not copied
    staging_only_tables: list[str]  # written only as their own foreign keys declare
    staging_only_columns: list[str]  # their values kept on every row whose key survives
    excluded: list[str]  # --exclude-table / the rules' exclude:, treated as staging's own
    columns_reset: list[str]  # staging-only columns of tables without a primary key: a full copy resets them
    orphans: dict[str, dict[str, int]]  # staging-only table → rows deleted / nulled / defaulted


class SyncReport(TypedDict):
    ok: bool
    dry_run: bool
    source: str  # where, never a password
    target: str
    tables: list[TableCopied] | list[TablePlanned]
    validation: Validation
    schema_changes: list[SchemaChange]
    sequences_reset: list[SequenceResult]
    timings: dict[str, float]  # seconds per phase, and total
    masking: NotRequired[MaskingReport]
    set_aside: NotRequired[SetAside]  # a real run
    source_positions: NotRequired[dict[str, int | None]]  # a dry run
    estimate: NotRequired[dict]  # a dry run: bytes, rate_mb_s, seconds, budget_seconds, seconds_left, fits
    fallback: NotRequired[str]  # an incremental sync that ran again in full: why
    warnings: NotRequired[list[str]]  # what went wrong without failing the sync (the record not written)
    verify: NotRequired[dict]  # sync --verify: {tables, rows, key_ranges} compared, all equal
    schema_drift: NotRequired[SchemaDrift]  # where the two schemas differ (dbsync.sync.drift)

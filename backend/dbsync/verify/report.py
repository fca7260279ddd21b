"""What `verify` found: one finding per problem, the whole as JSON, one line per finding for a terminal."""

from __future__ import annotations

from typing import Literal, NotRequired

from typing_extensions import TypedDict

FindingKind = Literal["difference", "personal_data", "gate", "dangling_reference", "not_valid", "sequence",
                      "record"]


class Finding(TypedDict):
    kind: FindingKind
    table: str | None
    detail: str  # one line: what is wrong; keys, never values
    column: NotRequired[str]
    keys: NotRequired[list[str]]  # a few keys of the rows concerned
    written_by: NotRequired[Literal["prod", "staging", "unexplained"]]  # a difference: who wrote it since


class VerifyReport(TypedDict):
    ok: bool  # no finding
    strict: bool  # every difference a finding, not only the unexplained ones
    source: str
    target: str
    rules: str | None  # None: no rules (the opt-out), personal-data checks skipped
    tables: list[dict]  # per synced table: rows, key ranges, differences by who wrote them
    findings: list[Finding]
    notes: list[str]  # what was not checked and why, what prod wrote since: not findings
    timings: dict[str, float]


def personal_data_leaks(report: VerifyReport) -> int:
    return sum(1 for f in report["findings"] if f["kind"] == "personal_data")


def line(finding: Finding) -> str:
    where = ".".join(filter(None, (finding["table"], finding.get("column")))) or "staging"
    keys = finding.get("keys")
    return f"{finding['kind']}: {where}: {finding['detail']}" + (f" (keys: {'; '.join(keys)})" if keys else "")


def lines(report: VerifyReport) -> list[str]:
    """The report for a terminal: one line per finding, the notes, and a last line that sums up."""
    out = [line(f) for f in report["findings"]]
    out += [f"note: {n}" for n in report["notes"]]
    rows = sum(t["source_rows"] for t in report["tables"])
    verdict = "clean" if report["ok"] else f"{len(report['findings'])} finding(s)"
    out.append(f"verify: {len(report['tables'])} table(s), {rows} prod row(s) compared, {report['source']} against"
               f" {report['target']} in {report['timings'].get('total', 0):.1f}s: {verdict}")
    return out

"""docs/cli.md held to the code: its table of exit codes is the one dbsync.errors defines."""

from __future__ import annotations

import re
import signal

from dbsync import errors
from tests.support.paths import ROOT


def documented_codes() -> set[int]:
    text = (ROOT / "docs" / "cli.md").read_text()
    return {int(code) for code in re.findall(r"^\| (\d+) \|", text, flags=re.MULTILINE)}


def test_the_exit_code_table_is_the_codes_the_code_uses():
    defined = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert documented_codes() == defined
    assert {errors.EXIT_SIGINT, errors.EXIT_SIGTERM} == {128 + signal.SIGINT, 128 + signal.SIGTERM}


def test_every_documented_kind_is_an_error_class():
    from dbsync.masking.key import MaskingKeyError
    from dbsync.masking.rules import RulesError
    from dbsync.settings import SettingsError
    from dbsync.sync.budget import BudgetExceeded
    from dbsync.sync.delta import DeltaConflict

    classes = [errors.DbSyncError, errors.LockNotAvailable, errors.ConnectionFailed, errors.Interrupted,
               BudgetExceeded, DeltaConflict, RulesError, SettingsError, MaskingKeyError]
    kinds = {c.__new__(c).kind for c in classes}
    text = (ROOT / "docs" / "cli.md").read_text()
    assert set(re.findall(r"`([a-z_]+)`", text.split("`kind` names")[1].split("`sqlstate`")[0])) == kinds

"""dbsync.settings without a database: when a failed connection is tried again (a rotated
secret, never an unchanged one), the sync's two databases from SOURCE_*/TARGET_*
variables and their one-line refusals, and describe_validation_error, which writes those lines."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator, model_validator

from dbsync.errors import DbSyncError
from dbsync.settings import (
    SettingsError,
    SourceDatabaseSettings,
    TargetDatabaseSettings,
    describe_validation_error,
)
from tests.support.env import SYNC_SETTINGS

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-sync/target-AbCdEf"

# Only what each test sets: none of the sync's variables from outside (tests/dbsync/conftest.py).
pytestmark = pytest.mark.usefixtures("no_sync_env")


# -- the sync's databases from the environment -------------------------------------------------------

def test_a_url(monkeypatch):
    monkeypatch.setenv("SOURCE_DATABASE_URL", " postgresql://sync:hunter2-pw@prod.internal:5432/books ")
    source = SourceDatabaseSettings.load().required()
    assert source.dsn() == "postgresql://sync:hunter2-pw@prod.internal:5432/books"
    assert source.describe() == "sync@prod.internal:5432/books"
    assert "hunter2" not in repr(source)


def test_a_secret_with_host_port_and_name_from_its_own_prefix_only(monkeypatch):
    for name, value in (("TARGET_DB_SECRET_ARN", ARN), ("TARGET_DB_HOST", "staging.internal"),
                        ("TARGET_DB_PORT", "5433"), ("TARGET_DB_NAME", "staging"), ("SOURCE_DB_HOST", "prod")):
        monkeypatch.setenv(name, value)
    target = TargetDatabaseSettings.load()
    assert (target.db_secret_arn, target.db_host, target.db_port, target.db_name, target.database_url) == (
        ARN, "staging.internal", 5433, "staging", None)
    assert target.describe() == f"secret {ARN} (staging.internal/staging)"


def test_blank_values_count_as_unset(monkeypatch):
    monkeypatch.setenv("TARGET_DATABASE_URL", "postgresql://u@staging/books")
    monkeypatch.setenv("TARGET_DB_SECRET_ARN", "   ")
    monkeypatch.setenv("TARGET_DB_PORT", "")
    target = TargetDatabaseSettings.load()
    assert (target.db_secret_arn, target.db_port) == (None, None)
    assert target.dsn() == "postgresql://u@staging/books"


@pytest.mark.parametrize("env, message", [
    ({"TARGET_DATABASE_URL": "postgresql://u:hunter2-pw@staging/books", "TARGET_DB_SECRET_ARN": ARN},
     "both TARGET_DATABASE_URL and TARGET_DB_SECRET_ARN are set; set only one"),
    ({"TARGET_DB_SECRET_ARN": ARN, "TARGET_DB_PORT": "54x32"},
     "TARGET_DB_PORT: Input should be a valid integer, unable to parse string as an integer"),
])
def test_a_bad_setting_is_one_line_naming_the_variable(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        TargetDatabaseSettings.load()
    assert str(caught.value) == message
    assert "hunter2" not in str(caught.value) and "54x32" not in str(caught.value)
    assert caught.value.__suppress_context__


@pytest.mark.parametrize("cls, message", [
    (SourceDatabaseSettings, "no source database configured: set SOURCE_DATABASE_URL or SOURCE_DB_SECRET_ARN"),
    (TargetDatabaseSettings, "no target database configured: set TARGET_DATABASE_URL or TARGET_DB_SECRET_ARN"),
])
def test_no_database_configured(monkeypatch, cls, message):
    monkeypatch.setenv("TARGET_DB_HOST" if cls is SourceDatabaseSettings else "SOURCE_DB_HOST", "elsewhere")
    settings = cls.load()  # loading is fine: the API and the CLI may not need both
    assert settings.describe() == f"(no {cls.what} configured)"
    with pytest.raises(DbSyncError) as caught:
        settings.required()
    assert str(caught.value) == message


def test_the_variables_of_each_side():
    assert SourceDatabaseSettings.variables() == ["SOURCE_DATABASE_URL", "SOURCE_DB_SECRET_ARN", "SOURCE_DB_HOST",
                                                  "SOURCE_DB_PORT", "SOURCE_DB_NAME"]
    assert set(TargetDatabaseSettings.variables()) <= set(SYNC_SETTINGS)


# -- describe_validation_error -----------------------------------------------------------------------

class Sample(BaseModel):
    db_port: int | None = None
    lock_timeout: str | None = None
    mode: str | None = None

    @field_validator("lock_timeout")
    @classmethod
    def _duration(cls, value):
        if value is not None and not value.endswith("s"):
            raise ValueError(f"LOCK_TIMEOUT={value!r} is not a duration such as 10s")
        return value

    @field_validator("mode")
    @classmethod
    def _mode(cls, value):
        if value == "bad":
            raise ValueError("the mode must be\n   a  word")
        return value

    @model_validator(mode="after")
    def _not_both(self):
        if self.db_port == 1 and self.mode == "prod":
            raise ValueError("port 1 in prod")
        return self


def error(**values) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Sample(**values)
    return caught.value


def test_a_type_error_names_the_upper_cased_variable_and_hides_the_value():
    text = describe_validation_error(error(db_port="hunter2-pw"))
    assert text == "DB_PORT: Input should be a valid integer, unable to parse string as an integer"
    assert "hunter2" not in text


def test_the_prefix_is_part_of_the_variable():
    assert describe_validation_error(error(db_port="x"), "target_").startswith("TARGET_DB_PORT: ")


def test_a_value_error_drops_pydantics_prefix_and_is_not_named_twice():
    assert describe_validation_error(error(lock_timeout="soon")) == "LOCK_TIMEOUT='soon' is not a duration such as 10s"


def test_a_value_error_not_starting_with_the_name_gets_it_in_front_on_one_line():
    assert describe_validation_error(error(mode="bad")) == "MODE: the mode must be a word"


def test_a_model_level_error_has_no_variable_in_front():
    assert describe_validation_error(error(db_port=1, mode="prod")) == "port 1 in prod"


def test_several_errors_are_joined_on_one_line():
    text = describe_validation_error(error(db_port="abc", lock_timeout="soon", mode="bad"))
    assert text == ("DB_PORT: Input should be a valid integer, unable to parse string as an integer; "
                    "LOCK_TIMEOUT='soon' is not a duration such as 10s; MODE: the mode must be a word")


# -- a rotated secret ------------------------------------------------------------------------------

@pytest.mark.parametrize(("rotated", "attempts"), [(False, 1), (True, 2)])
def test_a_failed_connection_is_tried_again_only_with_a_changed_secret(monkeypatch, rotated, attempts):
    import dbsync.settings as settings_module
    from dbsync.errors import ConnectionFailed

    fetched = iter(["postgresql://u:old@h/d", "postgresql://u:new@h/d" if rotated else "postgresql://u:old@h/d"])
    tried: list[str] = []

    def connect(dsn, **_kw):
        tried.append(dsn)
        if dsn.endswith(":old@h/d"):
            raise ConnectionFailed("cannot connect to the target database (u@h/d): refused")
        return "a connection"

    monkeypatch.setattr(settings_module, "database_url_from_secret", lambda *a, **kw: next(fetched))
    monkeypatch.setattr(settings_module, "connect", connect)
    monkeypatch.setenv("TARGET_DB_SECRET_ARN", ARN)
    target = TargetDatabaseSettings.load()
    if rotated:
        assert target.connect() == "a connection"
    else:
        with pytest.raises(ConnectionFailed):
            target.connect()
    assert len(tried) == attempts


# -- LOCK_TIMEOUT without pydantic ---------------------------------------------------------------------

@pytest.mark.parametrize("env", [{}, {"LOCK_TIMEOUT": ""}, {"LOCK_TIMEOUT": "   "}, {"LOCK_TIMEOUT": " 500ms\n"},
                                 {"LOCK_TIMEOUT": "0"}, {"LOCK_TIMEOUT": "2min"}, {"lock_timeout": "3s"},
                                 {"LOCK_TIMEOUT": "soon"}, {"LOCK_TIMEOUT": "10 parsecs"}])
def test_the_light_lock_timeout_reads_as_shared_settings_does(monkeypatch, env):
    """dbsync.environment.lock_timeout() (reset-sequences' and check-sequences' reader, no
    pydantic) gives what SharedSettings.load() gives: the same value, or the same one-line SettingsError."""
    from dbsync.environment import lock_timeout
    from dbsync.settings import SharedSettings

    monkeypatch.delenv("LOCK_TIMEOUT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def outcome(read):
        try:
            return read()
        except SettingsError as exc:
            return f"SettingsError: {exc}"

    light = outcome(lock_timeout)
    assert light == outcome(lambda: SharedSettings.load().lock_timeout)
    if "soon" in str(env):
        assert light == "SettingsError: LOCK_TIMEOUT='soon' is not a duration such as 10s, 500ms or 2min"


def test_the_sequence_commands_start_without_pydantic(tmp_path):
    """`db-sync reset-sequences` / `check-sequences` read only LOCK_TIMEOUT (and DATABASE_URL without
    --dsn): with --dsn, pydantic's import (most of a short run's start-up) is never paid; a bad
    LOCK_TIMEOUT is still one line and exit 2."""
    import os
    import subprocess
    import sys

    probe = ("import sys\nfrom dbsync.cli import main\ncode = main(sys.argv[1:])\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_settings')))\n"
             "sys.exit(code)\n")
    env = {**os.environ, "LOCK_TIMEOUT": "soon"}
    for command in ("reset-sequences", "check-sequences"):
        run = subprocess.run([sys.executable, "-c", probe, command, "--dsn", "postgresql:///nowhere"],
                             capture_output=True, text=True, env=env, cwd=tmp_path,
                             check=False)
        assert (run.returncode, run.stdout, run.stderr) == (
            2, "[]\n", "db-sync: error: LOCK_TIMEOUT='soon' is not a duration such as 10s, 500ms or 2min\n")

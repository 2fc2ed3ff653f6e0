from __future__ import annotations

import pytest

from app.settings import Settings, SettingsError


def test_defaults() -> None:
    assert Settings.from_env({}) == Settings("127.0.0.1", 8000, "info", None, 1)


def test_environment_is_read() -> None:
    environ = {"HOST": "0.0.0.0", "PORT": "9001", "LOG_LEVEL": "DEBUG", "GATEWAY_CONFIG": "/etc/g.yaml", "WORKERS": "2"}
    assert Settings.from_env(environ) == Settings("0.0.0.0", 9001, "debug", "/etc/g.yaml", 2)


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORT", "http"), ("PORT", "0"), ("PORT", "70000"), ("LOG_LEVEL", "loud"), ("WORKERS", "0"), ("WORKERS", "many")],
)
def test_bad_values_are_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize("raw", ["²", "\uff18\uff10"])  # superscript two; fullwidth "80"
def test_unicode_digits_are_refused_with_the_message(raw: str) -> None:
    with pytest.raises(SettingsError, match="PORT must be"):
        Settings.from_env({"PORT": raw})
    with pytest.raises(SettingsError, match="WORKERS must be"):
        Settings.from_env({"WORKERS": raw})

"""``JOURNEYS_SITE_TIME_ZONES``: each site's IANA time zone, checked when settings load.

The report reads a site's times in its zone; a zone that does not exist stops the
start with the setting's name, not a traceback when the report is drawn.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import SettingsError, load_settings


def test_zones_from_the_environment_and_from_a_settings_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JOURNEYS_SITE_TIME_ZONES", "nyc-midtown=America/New_York, chi-loop = America/Chicago")
    assert load_settings().site_time_zones == {"nyc-midtown": "America/New_York", "chi-loop": "America/Chicago"}
    monkeypatch.delenv("JOURNEYS_SITE_TIME_ZONES")
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("site_time_zones:\n  sea-harbor: America/Los_Angeles\n")
    monkeypatch.setenv("JOURNEYS_SETTINGS_FILE", str(settings_file))
    assert load_settings().site_time_zones == {"sea-harbor": "America/Los_Angeles"}
    monkeypatch.delenv("JOURNEYS_SETTINGS_FILE")
    assert load_settings().site_time_zones == {}  # every site reads in UTC


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nyc=America/NewYork", "JOURNEYS_SITE_TIME_ZONES: site nyc: 'America/NewYork' is not an IANA time zone"),
        ("nyc", "JOURNEYS_SITE_TIME_ZONES: expected SITE=ZONE[,SITE=ZONE...], got 'nyc'"),
        ("nyc=../../etc/passwd", "JOURNEYS_SITE_TIME_ZONES: site nyc: '../../etc/passwd' is not an IANA time zone"),
    ],
)
def test_a_bad_zone_is_refused_with_the_settings_name(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("JOURNEYS_SITE_TIME_ZONES", value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value).startswith(message)

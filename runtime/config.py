"""Typed configuration, read from the environment (prefix ``JOURNEYS_``) and a settings file.

Every broker, topic and sink setting is configurable; the defaults run the local
pipeline. A settings file (YAML) named by ``JOURNEYS_SETTINGS_FILE`` is read first,
environment variables override it. Bad values stop the start with the setting's name:

>>> from runtime.config import load_settings
>>> load_settings(mode="prod").mode
Traceback (most recent call last):
...
runtime.config.SettingsError: JOURNEYS_PSEUDONYM_KEY: required when JOURNEYS_MODE=prod (a secret of at least 32 characters)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from schemas.events import DEFAULT_DEADLETTER_TOPIC, DEFAULT_TOPICS, Family

Mode = Literal["dev", "prod"]
StoreKind = Literal["memory", "rocksdb"]
LogFormat = Literal["json", "console"]

DEV_PSEUDONYM_KEY = "dev-only-pseudonym-key-never-use-in-production"
ENV_PREFIX = "JOURNEYS_"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it as an environment variable."""


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by JOURNEYS_SETTINGS_FILE (keys are field names)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get(f"{ENV_PREFIX}SETTINGS_FILE")
        self._data: dict[str, Any] = {}
        if path:
            try:
                loaded = yaml.safe_load(Path(path).read_text()) or {}
            except OSError as error:
                raise SettingsError(f"{ENV_PREFIX}SETTINGS_FILE: cannot read {path}: {error}") from error
            if not isinstance(loaded, dict):
                raise SettingsError(f"{ENV_PREFIX}SETTINGS_FILE: {path} must hold a mapping of setting names")
            self._data = loaded

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    """All settings of the pipeline; the environment variable is ``JOURNEYS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    mode: Mode = "dev"
    log_format: LogFormat = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # -- Kafka ---------------------------------------------------------------------
    bootstrap: str = "127.0.0.1:9092"
    topic_scheduling: str = DEFAULT_TOPICS["scheduling"]
    topic_checkin: str = DEFAULT_TOPICS["checkin"]
    topic_waits: str = DEFAULT_TOPICS["waits"]
    topic_telehealth: str = DEFAULT_TOPICS["telehealth"]
    topic_deadletter: str = DEFAULT_DEADLETTER_TOPIC
    topic_output: str = "journey.out"
    topic_patient_updates: str = "journey.patient-updates"
    topic_raw_hl7: str = Field(
        default="journey.raw.hl7", description="every HL7 v2 message `journeys hl7 listen` acknowledged, as received "
        "(audit, replay); PHI, like the input topics")
    topic_raw_fhir: str = Field(
        default="journey.raw.fhir", description="every FHIR request body `journeys fhir serve` acknowledged, as received")
    gateway_timeout_s: float = Field(
        default=10.0, gt=0, description="how long `hl7 listen` / `fhir serve` wait for Kafka to acknowledge a "
        "message before answering AR / 503 (the sender retries)")
    partitions: int = Field(default=4, ge=1, description="partitions of every topic the pipeline creates")
    replication_factor: int = Field(default=1, ge=1)
    session_timeout_s: float = Field(default=10.0, gt=0)
    commit_interval_s: float = Field(
        default=2.8, gt=0, description="how often input offsets are committed; a restart re-reads at most this much"
    )
    consumer_group: str = "journeys"
    producer_max_batch_size: int = Field(
        default=16384, ge=1, description="bytes per producer batch (changelogs included); 1 = one record per batch"
    )

    # -- stream processing ------------------------------------------------------------
    app_id: str = "journeys"
    store: StoreKind = "memory"
    data_dir: Path = Path(".journeys")
    batch_size: int = Field(default=2000, ge=1)
    batch_seconds: float = Field(default=0.5, gt=0)
    allowed_lateness_min: float = Field(default=15.0, ge=0)
    no_show_grace_min: float = Field(default=30.0, ge=0)
    late_cancel_window_h: float = Field(default=24.0, ge=0)
    journey_close_after_h: float = Field(default=24.0, gt=0, description="after scheduled_start, event time")
    journey_retention_days: float = Field(
        default=2.0, gt=0, description="closed journeys stay in the hot state this long (event time), then the "
        "archive keeps them, compressed, until a late fact brings one back")
    too_late_after_days: float = Field(
        default=400.0, gt=0, description="a fact older than the watermark by more than this is refused as too_late "
        "(a dead letter, counted); the default covers a year's backfill")
    max_future_skew_min: float = Field(
        default=60.0, ge=0, description="an event dated more than this after the pipeline received it is refused "
        "as future_timestamp (one bad clock must not pull event time forward)")
    idempotent_producer: bool = Field(
        default=False, description="the worker's producer writes each message once across broker retries "
        "(Apache Kafka; tansu has no idempotent producer)")
    wrong_key: Literal["reroute", "deadletter"] = Field(
        default="reroute", description="an event read off its appointment's partition (keyed with something else "
        "than appointment_id): sent on to its appointment's partition, or dead-lettered as wrong_key")
    max_message_kb: int = Field(
        default=1024, ge=1, description="an input message larger than this is refused as message_too_large (its "
        "first bytes, size and sha256 go to the dead-letter topic)")
    watermark_idle_s: float = Field(
        default=30.0, gt=0, description="an input partition quiet this long (processing time) stops holding the "
        "watermark back until it carries a record again")
    friction_rules_file: Path | None = None
    pseudonym_key: SecretStr | None = None
    attributes_allowlist: tuple[str, ...] = ()
    web_port: int = Field(default=6066, ge=1, le=65535, description="worker HTTP: /healthz /readyz /metrics")

    # -- ClickHouse --------------------------------------------------------------------
    clickhouse_dsn: str = ""
    clickhouse_database: str = "journeys"
    clickhouse_database_engine: str = Field(
        default="", description="engine of the database migrations create, e.g. Replicated(...) on a cluster"
    )
    sink_batch_rows: int = Field(default=20000, ge=1)
    sink_batch_seconds: float = Field(default=1.0, gt=0)
    sink_max_retry_s: float = Field(default=30.0, gt=0)
    writer_port: int = Field(default=6067, ge=1, le=65535, description="writer HTTP: /healthz /readyz /metrics")

    # -- sites -----------------------------------------------------------------------
    # NoDecode: the environment gives "site=Zone,site=Zone", not JSON (see _site_zone_pairs).
    site_time_zones: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="site_id -> IANA time zone, e.g. "
        "nyc-midtown=America/New_York,chi-loop=America/Chicago: the report reads each site's times in its "
        "own zone (a site not listed reads in UTC)")

    @field_validator("bootstrap")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        for address in value.split(","):
            host, _, port = address.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected HOST:PORT[,HOST:PORT...], got {value!r}")
        return value

    @field_validator("attributes_allowlist", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value

    @field_validator("site_time_zones", mode="before")
    @classmethod
    def _site_zone_pairs(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for item in (part.strip() for part in value.split(",")):
            site, equals, zone = item.partition("=")
            if item and (not equals or not site.strip() or not zone.strip()):
                raise ValueError(f"expected SITE=ZONE[,SITE=ZONE...], got {item!r}")
            if item:
                pairs[site.strip()] = zone.strip()
        return pairs

    @field_validator("site_time_zones")
    @classmethod
    def _site_zones(cls, value: dict[str, str]) -> dict[str, str]:
        for site, zone in value.items():
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"site {site}: {zone!r} is not an IANA time zone (such as America/New_York)"
                ) from None
        return value

    @model_validator(mode="after")
    def _prod_requires_secrets(self) -> Settings:
        if self.mode == "prod":
            key = self.pseudonym_key.get_secret_value() if self.pseudonym_key else ""
            if len(key) < 32:
                raise ValueError("pseudonym_key: required when JOURNEYS_MODE=prod (a secret of at least 32 characters)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlFileSource(settings_cls), file_secret_settings

    # -- derived ---------------------------------------------------------------------

    @property
    def topics(self) -> dict[Family, str]:
        return {
            "scheduling": self.topic_scheduling,
            "checkin": self.topic_checkin,
            "waits": self.topic_waits,
            "telehealth": self.topic_telehealth,
        }

    @property
    def input_topics(self) -> tuple[str, ...]:
        return tuple(self.topics.values())

    @property
    def all_topics(self) -> tuple[str, ...]:
        return (*self.input_topics, self.topic_deadletter, self.topic_output, self.topic_patient_updates)

    @property
    def pseudonym_secret(self) -> bytes:
        return (self.pseudonym_key.get_secret_value() if self.pseudonym_key else DEV_PSEUDONYM_KEY).encode()

    @property
    def dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb:///{(self.data_dir / 'clickhouse').resolve()}"


def _setting_name(loc: tuple[int | str, ...]) -> str:
    return f"{ENV_PREFIX}{str(loc[0]).upper()}" if loc else f"{ENV_PREFIX}SETTINGS"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one :class:`SettingsError`."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        messages = []
        for item in error.errors(include_url=False):
            message = item["msg"].removeprefix("Value error, ")
            if message.startswith("pseudonym_key:"):
                messages.append(f"{ENV_PREFIX}PSEUDONYM_KEY:{message.removeprefix('pseudonym_key:')}")
            else:
                messages.append(f"{_setting_name(item['loc'])}: {message}")
        raise SettingsError("; ".join(messages)) from None

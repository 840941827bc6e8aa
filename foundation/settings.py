"""One settings object for every camcount process, built from env vars and an optional YAML file.

Precedence (highest first): explicit keyword arguments, environment variables
(``CAMCOUNT_<SECTION>__<FIELD>``, plus the conventional ``KAFKA_BOOTSTRAP_SERVERS``,
``CLICKHOUSE_URL`` and ``REDIS_URL``), the YAML file named by ``CAMCOUNT_CONFIG``, defaults.

A service address left unset (``None``) means "the local stack started by ``camcount stack up``";
an address that is set means an external service, which the stack launcher never starts or stops.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from foundation.paths import HomeLayout
from foundation.resilience import ResilienceSettings
from foundation.topics import CATALOGUE

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


class _Section(BaseModel):
    """A settings section: a misspelled key is an error naming it, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str | None = None
    frames_topic: str = "frames"
    detections_topic: str = "detections"
    crossings_topic: str = "crossings"
    window_counts_topic: str = "window-counts"
    dead_letter_topic: str = "frames-dlq"
    shadow_topic: str = "shadow-pairs"
    zone_occupancy_topic: str = "zone-occupancy"
    records_dead_letter_topic: str = "records-dlq"
    model_health_topic: str = "model-health"
    bad_records: Literal["dead-letter", "stop"] = Field(
        "dead-letter", description="what the ClickHouse sink does with a record it cannot decode: set it aside on "
        "records_dead_letter_topic and go on, or stop there (Kafka Connect's errors.tolerance=none); the counting "
        "app always sets such detections records aside")
    partitions: int = Field(8, ge=1, description="partition count for topics the stack creates")
    session_timeout_ms: int = Field(6000, ge=1000)
    client_config: dict[str, str] = Field(
        default_factory=dict, description="extra librdkafka settings passed to every client"
    )


class ClickHouseSettings(_Section):
    url: str | None = None
    database: str = "camcount"
    connect_timeout_s: float = Field(5.0, gt=0, description="TCP connect timeout of every ClickHouse client")
    query_timeout_s: float = Field(30.0, gt=0, description="send/receive timeout of a query or insert (the driver's "
                                   "default, 300 s, would stall the sink for minutes on a hung server)")
    sink_group_id: str = Field("camcount-sink-clickhouse", min_length=1,
                               description="consumer group of the ClickHouse sink (in `camcount count` or `camcount "
                                           "sink`); every sink process of one deployment shares it")


class RedisSettings(_Section):
    url: str | None = None
    key_prefix: str = Field("camcount", min_length=1, description="first part of every key camcount writes")


class StackSettings(_Section):
    kafka_port: int = 19092
    clickhouse_tcp_port: int = 19000
    clickhouse_http_port: int = 18123
    clickhouse_interserver_port: int = 19009
    redis_port: int = 16379


class ModelSettings(_Section):
    registry: str | None = Field(
        None, description="directory or s3://BUCKET[/PREFIX] (endpoint, credentials: AWS_* env); default <home>/models")
    reference: str = Field("yolov4-tiny@production", description="NAME@VERSION_OR_ALIAS")
    providers: list[str] | None = Field(
        None, description="ONNX Runtime providers in priority order; default: best available"
    )
    confidence_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="override the production model's manifest threshold in workers")
    nms_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="override the production model's manifest NMS IoU in workers")
    fallbacks: list[str] = Field(
        ["@previous"], description="models that serve, in order, while the reference cannot (it will not load, or "
        "its inference breaker is open): NAME@VERSION_OR_ALIAS, or @ALIAS for the reference's own model name")
    load_timeout_s: float = Field(120.0, gt=0, description="a model that has not loaded and warmed up by then counts "
                                  "as failed (MODEL_002 load-timeout); the next in the chain serves")
    load_retry_s: float = Field(60.0, gt=0, description="first retry delay of a production version that failed to "
                                "load; doubles per failure up to 15 minutes")
    require_gpu: bool = Field(False, description="refuse to serve a model on CPU (RES_002 gpu-unavailable) instead of "
                              "falling back to the CPU provider when no GPU provider can run it")


class InferenceSettings(_Section):
    group_id: str = "camcount-infer"
    group_instance_id: str | None = Field(
        None, description="static membership (group.instance.id), e.g. the Kubernetes pod name"
    )
    transactional: bool = Field(False, description="exactly-once via Kafka transactions")
    max_batch: int = Field(8, ge=1)
    max_delay_ms: int = Field(20, ge=0, description="idle poll: how long an idle worker waits for a frame before it "
                              "commits, checks for a model swap and for stop; frames are never held to fill a batch")
    decode_threads: int = Field(2, ge=1)
    max_frame_pixels: int = Field(3840 * 2160, ge=1)
    max_frame_bytes: int = Field(8 * 1024 * 1024, ge=1)
    max_frame_age_ms: int = Field(0, ge=0, description="skip (don't infer) frames older than this; 0: never")
    prefetch_kbytes: int = Field(16384, ge=1024, description="librdkafka's per-worker prefetch buffer bound")
    metrics_port: int = Field(9400, ge=0, description="0 disables the HTTP endpoint")
    model_poll_s: float = Field(5.0, gt=0, description="how often workers check the production alias for a new version")


class ApiSettings(_Section):
    host: str = Field("127.0.0.1", description="address `camcount api` listens on")
    port: int = Field(8080, ge=1, le=65535, description="port `camcount api` listens on")
    max_batch: int = Field(8, ge=1, description="largest micro-batch the API's dynamic batcher runs")
    max_delay_ms: int = Field(5, ge=0, description="how long the batcher waits for more requests before running")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest request body accepted")
    cache_ttl_s: int = Field(60, ge=0, description="result cache entry lifetime; 0 disables the cache")
    cache_max_entries: int = Field(10000, ge=1, description="bound on cached results (oldest evicted first)")
    allow_url_images: bool = Field(False, description="let inference requests name an image URL to fetch")
    url_fetch_timeout_s: float = Field(5.0, gt=0, description="time limit of fetching one image URL")
    max_queued_images: int = Field(512, ge=1, description="images that may wait for one model at once; more are "
                                   "refused with 503 RES_003 model-queue-full and Retry-After")
    request_timeout_s: float = Field(30.0, gt=0, description="an inference request not answered by then (queue "
                                     "wait included) gets 504 INF_004")
    max_images_per_request: int = Field(64, ge=1, description="most images one batch-inference request may hold")
    max_image_pixels: int = Field(3840 * 2160, ge=1, description="largest image (width x height) accepted, read "
                                  "from the JPEG or PNG header before decoding")
    max_loaded_models: int = Field(4, ge=1, description="model versions kept loaded at once (least recently used "
                                   "idle one unloaded first)")
    preload: list[str] = Field(default_factory=list, description="model references loaded at start besides "
                               "model.reference (which is always loaded; readiness waits for it)")
    model_resolve_ttl_s: float = Field(1.0, ge=0, description="how long an alias's resolution is reused before the "
                                       "registry is read again (0: every request)")
    intra_op_threads: int | None = Field(None, ge=1, description="ONNX Runtime threads per model (default: "
                                         "physical cores)")
    auth_failure_limit: int = Field(20, ge=1, description="failed authentications one client address may make "
                                    "per auth_failure_window_s before it gets 429")
    auth_failure_window_s: float = Field(60.0, gt=0, description="window of auth_failure_limit")
    request_log_buffer: int = Field(10000, ge=1, description="request-log rows held for ClickHouse; beyond that "
                                    "rows are dropped and counted")
    request_log_flush_s: float = Field(1.0, gt=0, description="how often buffered request-log rows are written")
    keys_file: str | None = Field(None, description="JSON file of API keys as stored (hashes, roles; no secrets), "
                                  "read again when it changes; the bootstrap admin key comes from "
                                  "CAMCOUNT_API_ADMIN_KEY")
    key_refresh_s: float = Field(2.0, gt=0, description="how often each API replica reloads the API keys from "
                                 "ClickHouse: a revoked key is refused everywhere within this time (plus one query)")


class CountingSettings(_Section):
    app_id: str = "camcount-count"
    cameras: str = Field("config/cameras.yaml", description="camera config YAML (lines, zones, classes)")
    window_seconds: int = Field(60, ge=1)
    web_port: int = Field(6066, ge=1)
    silent_camera_end_s: float = Field(
        120.0, ge=0,
        description="a camera whose last counted record is older than this (wall clock) and was no end-of-stream "
                    "marker gets one from the counting app (its ingest died without a word): crossings waiting for "
                    "their stay are counted and its zones empty; 0: never")


class MonitorSettings(_Section):
    """`camcount monitor`: drift of each camera and model version's outputs against a reference, and the scheduled
    accuracy evaluation of the production version on labelled clips (docs/observability.md#model-monitoring)."""

    window_s: int = Field(300, ge=10, description="drift window length (tumbling, aligned to the epoch)")
    reference: Literal["pinned", "same-hour-last-week"] = Field(
        "pinned", description="what a window is compared with: a pinned period (reference_start/reference_end, "
        "else each camera and version's first reference_s of frames), or the camera's same clock hour one week "
        "earlier")
    reference_start: datetime | None = Field(None, description="start of an explicitly pinned reference period "
                                             "(UTC; every camera's frames in it, whatever version inferred them)")
    reference_end: datetime | None = Field(None, description="end of the explicitly pinned reference period (UTC)")
    reference_s: int = Field(3600, ge=60, description="length of the automatic pinned reference: the first "
                             "seconds of frames of each camera and model version")
    measures: list[Literal["psi", "jensen_shannon", "wasserstein"]] = Field(
        ["psi", "jensen_shannon", "wasserstein"], min_length=1, description="distance measures computed per signal")
    psi_threshold: float = Field(0.1, gt=0, description="population stability index above which a signal drifts")
    js_threshold: float = Field(0.1, gt=0, le=1, description="Jensen-Shannon distance (base 2) threshold")
    wasserstein_threshold: float = Field(0.1, gt=0, description="Wasserstein distance over the reference's "
                                         "standard deviation threshold")
    min_measures: int = Field(2, ge=1, description="a signal drifts when at least this many measures exceed "
                              "their thresholds")
    persistence_windows: int = Field(3, ge=1, description="consecutive drifted windows that make drift persist "
                                     "(one model-health event), and quiet ones that end it")
    min_frames: int = Field(100, ge=1, description="frames a window and its reference need to be judged")
    lateness_s: float = Field(60.0, ge=0, description="how long after a window ends it is evaluated (frames reach "
                              "ClickHouse through the sink after capture)")
    backfill_s: int = Field(3600, ge=0, description="at start, windows this far back are evaluated if they were not")
    poll_s: float = Field(30.0, gt=0, description="how often the monitor looks for windows to evaluate")
    model_problem_min_cameras: int = Field(2, ge=1, description="judged cameras a model version needs before "
                                           "drift on all of them is called a model problem")
    model_problem_share: float = Field(1.0, gt=0, le=1, description="share of a version's judged cameras that "
                                       "must drift in one window for a model problem")
    metrics_port: int = Field(9402, ge=0, description="`camcount monitor`'s /metrics; 0 disables the endpoint")
    accuracy_interval_s: float = Field(86400.0, ge=0, description="how often the production version is evaluated "
                                       "on the labelled clips (and at once when it changes); 0: never")
    accuracy_truth: list[str] = Field(default_factory=list, description="ground-truth JSON files or folders of "
                                      "them; default: the shipped benchmarks/ground_truth")
    accuracy_data_dir: str | None = Field(None, description="folder holding the footage the truth files name "
                                          "(default <home>/data)")

    @model_validator(mode="after")
    def _consistent(self) -> "MonitorSettings":
        if (self.reference_start is None) != (self.reference_end is None):
            raise ValueError("set both reference_start and reference_end, or neither")
        if self.reference_start is not None and self.reference_end <= self.reference_start:
            raise ValueError("reference_end must be after reference_start")
        if self.min_measures > len(self.measures):
            raise ValueError(f"min_measures ({self.min_measures}) exceeds the {len(self.measures)} measures")
        return self


class Settings(BaseSettings):
    """Everything a camcount process needs to know; see the module docstring for precedence."""

    model_config = SettingsConfigDict(
        env_prefix="CAMCOUNT_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(Path(".camcount"), description="state directory: stack data, models, footage")
    log_level: LogLevel = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    counting: CountingSettings = Field(default_factory=CountingSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_path = os.environ.get("CAMCOUNT_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, _ConventionalEnvSource(settings_cls), env_settings]
        if yaml_path:
            if not Path(yaml_path).is_file():
                raise FileNotFoundError(f"CAMCOUNT_CONFIG points at {yaml_path!r}, which is not a file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)

    # Resolved addresses: explicit setting, else the local stack's.
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap_servers or f"127.0.0.1:{self.stack.kafka_port}"

    def clickhouse_url(self) -> str:
        local = f"clickhouse://127.0.0.1:{self.stack.clickhouse_tcp_port}/{self.clickhouse.database}"
        return self.clickhouse.url or local

    def redis_url(self) -> str:
        return self.redis.url or f"redis://127.0.0.1:{self.stack.redis_port}/0"

    def model_registry(self) -> str:
        return self.model.registry or str(self.layout().models)

    def layout(self) -> HomeLayout:
        """Where this process keeps its files under ``home``."""
        return HomeLayout(self.home)

    def namespaced(self, suffix: str, partitions: int | None = None) -> "Settings":
        """A copy whose topics, consumer groups, Faust app id, ClickHouse database and Redis keys carry ``suffix``.

        Benchmarks and tests use it to run beside (and never see) each other's data on one stack.
        """
        kafka = self.kafka
        database = f"{self.clickhouse.database}_{suffix}"
        clickhouse_update: dict[str, str] = {"database": database,
                                             "sink_group_id": f"{self.clickhouse.sink_group_id}-{suffix}"}
        if self.clickhouse.url is not None:
            clickhouse_update["url"] = urlunsplit(urlsplit(self.clickhouse.url)._replace(path=f"/{database}"))
        return self.model_copy(update={
            "kafka": kafka.model_copy(update={
                **{stream.setting: f"{stream.topic(kafka)}-{suffix}" for stream in CATALOGUE},
                "partitions": partitions or kafka.partitions,
            }),
            "clickhouse": self.clickhouse.model_copy(update=clickhouse_update),
            "redis": self.redis.model_copy(update={"key_prefix": f"{self.redis.key_prefix}-{suffix}"}),
            "inference": self.inference.model_copy(update={"group_id": f"{self.inference.group_id}-{suffix}"}),
            "counting": self.counting.model_copy(update={"app_id": f"{self.counting.app_id}-{suffix}"}),
        })


class _ConventionalEnvSource(PydanticBaseSettingsSource):
    """Reads the unprefixed env var names operators already use for these services."""

    _NAMES = {
        "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
        "CLICKHOUSE_URL": ("clickhouse", "url"),
        "REDIS_URL": ("redis", "url"),
    }

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, dict[str, str]] = {}
        for env_name, (section, key) in self._NAMES.items():
            if os.environ.get(env_name):
                values.setdefault(section, {})[key] = os.environ[env_name]
        return values


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


def validation_problems(exc: ValidationError) -> str:
    """One line naming each invalid field of a pydantic error, e.g. ``kafka.partitons: unknown key``."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown key (misspelled?)")
        else:
            value = error.get("input")
            got = f" (got {value!r})" if isinstance(value, str | int | float) and len(repr(value)) <= 60 else ""
            problems.append(f"{where}: {error['msg']}{got}")
    return "; ".join(problems)

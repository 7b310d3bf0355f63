"""driftloop's one settings object, read from the environment and an optional TOML file.

Only this package reads the environment. Components get the part they need
(`settings.kafka`, `settings.stack`, ...) as an explicit argument.

Sources, strongest first: keyword arguments, environment variables
(`DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS=host:9092`), the TOML file named by
`DRIFTLOOP_CONFIG` or `--config` (sections `[kafka]`, `[stack]`, ...), defaults.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from driftloop.collector.topics import TOPICS, Topics

Port = Annotated[int, Field(ge=1, le=65535)]
# The choices of the drift and curation packages, spelt out here so that reading the settings
# imports neither (tests/test_settings.py checks they match drift's and curation's registries).
DriftMethod = Literal["auto", "evidently", "ks", "wasserstein", "psi", "jensenshannon", "chisquare",
                      "chisquare_evidently", "z"]
DetectorName = Literal["adwin", "page_hinkley", "ddm", "cusum"]
CalibrationName = Literal["auto", "isotonic", "sigmoid", "none"]
StrategyName = Literal["random", "least_confidence", "margin", "entropy", "k_center", "cluster_margin",
                       "drift_targeted", "badge", "hybrid"]
# retrain.TrainingParams' fields, spelt out for the same reason (tests/test_settings.py checks them).
TrainingParamName = Literal["epochs", "batch_size", "learning_rate", "weight_decay", "seed", "validation_share",
                            "patience"]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class KafkaSettings(_Part):
    """Where the event bus is. Empty `bootstrap_servers` means the local stack's broker."""

    bootstrap_servers: str = ""
    topic_prefix: str = Field(default="driftloop.", pattern=r"^[A-Za-z0-9._-]*$")
    partitions: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: {
            "predictions": 4,
            "feedback": 4,
            "shadow": 2,
            "drift-events": 1,
            "dlq": 1,
        }
    )

    @field_validator("partitions")
    @classmethod
    def _known_topics(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - set(TOPICS)
        if unknown:
            raise ValueError(f"unknown topics {sorted(unknown)}; valid topics are {list(TOPICS)}")
        return value

    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    def topic(self, name: str) -> str:
        """The full topic name of one of the project's topics, prefix included."""
        return self.topics().name(name)


class StackSettings(_Part):
    """The local stack: which parts `driftloop stack up` starts, where, and on which ports."""

    state_dir: Path = Path(".driftloop/stack")
    cache_dir: Path = Path.home() / ".cache" / "driftloop"
    kafka_port: Port = 19092
    kafka_controller_port: Port = 19093
    prometheus_port: Port = 19090
    alertmanager_port: Port = 19094
    label_studio_port: Port = 19095
    start_kafka: bool = True
    start_prometheus: bool = True
    start_alertmanager: bool = True
    start_label_studio: bool = True
    kafka_heap: str = Field(default="1g", pattern=r"^\d+[mg]$")

    @field_validator("state_dir", "cache_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()


class PrometheusSettings(_Part):
    """Prometheus to query. Empty `url` means the local stack's."""

    url: str = ""
    scrape_interval_s: Annotated[float, Field(gt=0)] = 5.0
    # host:port of metrics endpoints to scrape, beyond the ones services register at run time.
    scrape_targets: list[str] = Field(default_factory=list)
    # The `environment` label the local Prometheus puts on every series it scrapes (the dashboards'
    # Environment variable); on your own Prometheus, set it in your scrape configs.
    environment: str = Field(default="local", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    # When set, the local stack loads the shipped alert rules with every `for:` longer than this cut to it
    # (the demo's fast profile, tests); the shipped files are not changed.
    rule_for_max_s: Annotated[float, Field(ge=0)] | None = None


class AlertmanagerSettings(_Part):
    """Alertmanager, and the webhook it calls (the retrain trigger)."""

    url: str = ""
    webhook_url: str = "http://127.0.0.1:18080/v1/alerts"
    group_wait_s: Annotated[float, Field(gt=0)] = 30.0
    group_interval_s: Annotated[float, Field(gt=0)] = 300.0
    # A firing group is sent again after this: longer than a retrain-plus-shadow cycle (retrain.label_deadline_s
    # plus training plus gate.deadline_hours), so a repeat never meets a running episode. 4 days.
    repeat_interval_s: Annotated[float, Field(gt=0)] = 4 * 86400.0
    # An alert joining a model's firing retrain group is sent no sooner than this (None: retrain.cooldown_s).
    retrain_group_interval_s: Annotated[float, Field(gt=0)] | None = None


class GrafanaSettings(_Part):
    """The team's Grafana, for `driftloop dashboards publish` (none runs in the local stack)."""

    url: str = ""
    token: SecretStr | None = None
    folder: str = Field(default="driftloop", pattern=r"^[A-Za-z0-9_-]{1,40}$")


class LabelStudioSettings(_Part):
    """Label Studio for labelling batches (`driftloop curate push | sync`), and its webhook into the API.

    Empty `url` means the local stack's Label Studio (its admin token is made by `stack up`); a
    team's own server needs `url` and `token` (an access token of a user who may create projects).
    `enabled = false` turns Label Studio off: batches are then exported and imported as files.
    Label Studio calls the ingestion API at `webhook_url` (empty: the API's own address) with the
    header `X-Driftloop-Webhook-Secret: <webhook_secret>` (empty: a secret the local stack makes).
    """

    enabled: bool = True
    url: str = Field(default="", pattern=r"^(https?://.+)?$")
    token: SecretStr | None = None
    webhook_url: str = Field(default="", pattern=r"^(https?://.+)?$")
    webhook_secret: SecretStr | None = Field(default=None, min_length=16)
    project_title: str = Field(default="driftloop: {model}", min_length=1, pattern=r"\{model\}")
    timeout_s: Annotated[float, Field(gt=0)] = 60.0
    username: str = Field(default="admin@driftloop.local", min_length=3)  # the local stack's admin


class RaySettings(_Part):
    """Ray for training. Empty `address` starts a local Ray (or joins RAY_ADDRESS when that is set).

    `storage_path` is where runs keep checkpoints (default `<data_dir>/ray`); on a cluster of
    several nodes it must be storage every node shares. A retrain that has not finished after
    `train_timeout_s` is aborted with an error; `max_failures` worker-group failures are retried
    (from the last checkpoint) before the run fails. `placement_strategy` is Ray's for the workers
    (`STRICT_SPREAD`: one worker per node).
    """

    address: str = ""
    num_workers: Annotated[int, Field(ge=1)] = 2
    use_gpu: bool = False
    num_cpus: Annotated[int, Field(ge=1)] | None = None
    storage_path: Path | None = None
    max_failures: Annotated[int, Field(ge=0)] = 0
    train_timeout_s: Annotated[float, Field(gt=0)] = 1800.0
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    # How often Ray Train's controller takes the workers' reports (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S,
    # which wins when set): each epoch's report waits for it, and Ray's default is 2 s.
    report_poll_s: Annotated[float, Field(gt=0)] = 0.2
    # The retrain service joins (or starts) Ray as it starts, not at its first training: the first
    # retrain does not wait for Ray to come up.
    connect_at_start: bool = False

    @field_validator("storage_path")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser().resolve()


class RegistrySettings(_Part):
    """The model registry: a SQLite database (WAL) and a content-addressed artifact folder.

    Empty `dir` means `<data_dir>/registry`; on several machines, a volume they share.
    """

    dir: Path | None = None

    @field_validator("dir")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser().resolve()


class CollectorSettings(_Part):
    """The consumer that writes the store (`driftloop collector run`), and what ingestion accepts (API too)."""

    group_id: str = Field(default="driftloop-store-writer", min_length=1)
    batch_events: Annotated[int, Field(ge=1)] = 50_000
    batch_seconds: Annotated[float, Field(gt=0)] = 1.0
    poll_records: Annotated[int, Field(ge=1)] = 10_000
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: any free port
    compact_files: Annotated[int, Field(ge=2)] = 32  # a store folder with more files has its committed ones merged
    # What an event may hold beyond the schema (the API answers 422, the collector dead-letters):
    max_features: Annotated[int, Field(ge=1, le=10_000)] = 1000
    model_names: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list)  # empty: any
    model_name_pattern: str | None = None  # a regular expression a model name must match whole
    max_event_age_hours: Annotated[float, Field(gt=0)] = 24 * 365.0  # before the clock it is judged by
    max_event_ahead_hours: Annotated[float, Field(ge=0)] = 24.0  # after it

    @field_validator("model_name_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"not a regular expression: {error}") from None
        return pattern


class ApiSettings(_Part):
    """The ingestion HTTP API (`driftloop api run`)."""

    host: str = "127.0.0.1"
    port: Port = 18000
    api_key: SecretStr | None = Field(default=None, min_length=16)
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    body_timeout_s: Annotated[float, Field(gt=0)] = 10.0  # a body not all there by then: 408
    ack_timeout_s: Annotated[float, Field(gt=0)] = 10.0  # Kafka's acknowledgement not there by then: 503
    public_metrics: bool = False  # with a key: /metrics open anyway (for a Prometheus that cannot send it)
    public_docs: bool = False  # with a key: /docs and /openapi.json open anyway


class DriftSettings(_Part):
    """The drift monitor (`driftloop drift run`): window, cadence, methods, detectors."""

    window_minutes: Annotated[float, Field(gt=0)] = 60.0
    interval_s: Annotated[float, Field(gt=0)] = 60.0
    min_rows: Annotated[int, Field(ge=1)] = 50
    method: DriftMethod = "auto"
    drift_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    correction: Literal["bonferroni", "bh"] | None = None
    multivariate: bool = True
    detectors: list[DetectorName] = Field(default_factory=lambda: ["adwin", "ddm"])
    reference_sample_rows: Annotated[int, Field(ge=100)] = 10_000
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    # How long one send of a drift event waits for Kafka before the outbox retries it later.
    publish_timeout_s: Annotated[float, Field(gt=0)] = 10.0


class MetricsSettings(_Part):
    """Where every driftloop service serves /metrics: 127.0.0.1, or 0.0.0.0 for a Prometheus on another host."""

    host: str = Field(default="127.0.0.1", min_length=1)


class EstimationSettings(_Part):
    """Performance estimation without labels in the drift monitor (docs/estimation.md).

    Fitted by `driftloop drift profile` when the reference has labels and probabilities."""

    enabled: bool = True
    calibration: CalibrationName = "auto"
    min_rows: Annotated[int, Field(ge=1)] = 50
    sigmas: Annotated[float, Field(gt=0)] = 3.0
    # None: the reference chunks' accuracy minus `sigmas` standard deviations (NannyML's lower threshold)
    accuracy_floor: Annotated[float, Field(gt=0, lt=1)] | None = None


class QualitySettings(_Part):
    """Data-quality checks of every monitored window against the reference profile (docs/estimation.md)."""

    enabled: bool = True
    max_missing_increase: Annotated[float, Field(ge=0, lt=1)] = 0.1
    max_out_of_range: Annotated[float, Field(ge=0, lt=1)] = 0.05
    range_quantiles: tuple[Annotated[float, Field(ge=0, lt=0.5)], Annotated[float, Field(gt=0.5, le=1)]] = (0.0, 1.0)
    max_unseen: Annotated[float, Field(ge=0, lt=1)] = 0.05
    max_type_mismatch: Annotated[float, Field(ge=0, lt=1)] = 0.0
    alpha: Annotated[float, Field(gt=0, lt=1)] = 1e-3


class CurationSettings(_Part):
    """Active learning (`driftloop curate`): defaults for selecting batches and building snapshots."""

    strategy: StrategyName = "hybrid"  # robust at a cold start after a drift (docs/curation.md)
    budget: Annotated[int, Field(ge=1)] = 100
    window_hours: Annotated[float, Field(gt=0)] = 24.0
    balanced: bool = False
    deduplicated: bool = False
    snapshot_balance: Literal["none", "undersample"] = "none"
    seed: int = 0  # of the random strategies and of snapshot class balancing


class RetrainSettings(_Part):
    """The retrain service (`driftloop retrain serve`) and its episodes: triggers, policy, what to train.

    It serves Alertmanager's webhook at `alertmanager.webhook_url`. A model trains with the spec
    `specs[model]` (default `default_spec`), with `training` overriding the spec's training
    parameters and `features[model]` its feature list. An episode opened by an alert selects
    `budget` inputs for labelling with `strategy` (default: curation.strategy) from the last
    `selection_window_minutes` (default: drift.window_minutes), and from no earlier than the
    alert's `startsAt`; it first waits, at most `selection_wait_s`, until that window holds
    `selection_pool_factor` x `budget` unlabelled inputs to choose from. It then waits until
    `min_new_labels` labels arrived or `label_deadline_s` passed, snapshots the last
    `snapshot_window_hours` of labelled data (plus `reference_files[model]`, the original
    training data), trains on Ray and registers a challenger.
    """

    default_spec: str = Field(default="mlp", min_length=1)
    specs: dict[str, str] = Field(default_factory=dict)
    training: dict[TrainingParamName, float] = Field(default_factory=dict)
    features: dict[str, list[str]] = Field(default_factory=dict)
    reference_files: dict[str, Path] = Field(default_factory=dict)
    cooldown_s: Annotated[float, Field(ge=0)] = 3600.0
    min_new_labels: Annotated[int, Field(ge=0)] = 100
    label_deadline_s: Annotated[float, Field(ge=0)] = 6 * 3600.0
    selection_window_minutes: Annotated[float, Field(gt=0)] | None = None
    selection_pool_factor: Annotated[float, Field(ge=0)] = 3.0
    selection_wait_s: Annotated[float, Field(ge=0)] = 600.0
    snapshot_window_hours: Annotated[float, Field(gt=0)] = 168.0
    strategy: StrategyName | None = None
    budget: Annotated[int, Field(ge=1)] | None = None
    schedule_interval_s: Annotated[float, Field(gt=0)] | None = None
    schedule_models: list[str] = Field(default_factory=list)
    quality_floor: Annotated[float, Field(gt=0, le=1)] | None = None
    quality_labels: Annotated[int, Field(ge=1)] = 200
    quality_interval_s: Annotated[float, Field(gt=0)] = 300.0
    quality_models: list[str] = Field(default_factory=list)
    lease_s: Annotated[float, Field(gt=0)] = 60.0
    poll_s: Annotated[float, Field(gt=0)] = 5.0
    max_step_attempts: Annotated[int, Field(ge=1)] = 2

    @field_validator("training")
    @classmethod
    def _whole_numbers(cls, value: dict[str, float]) -> dict[str, float]:
        for name in ("epochs", "batch_size", "seed", "patience"):
            if name in value and value[name] != int(value[name]):
                raise ValueError(f"training.{name} must be a whole number, got {value[name]}")
        return value

    @field_validator("reference_files")
    @classmethod
    def _absolute_files(cls, value: dict[str, Path]) -> dict[str, Path]:
        return {model: path.expanduser().resolve() for model, path in value.items()}


class ServeSettings(_Part):
    """The model server (`driftloop serve --model M`).

    Predictions are logged through an EventLogger whose buffer holds `log_buffer_events`
    unacknowledged events; beyond that (Kafka away) logs are dropped and counted, never the
    prediction. The server polls the registry every `reload_interval_s` for a new champion.
    """

    host: str = "127.0.0.1"
    port: Port = 18081
    reload_interval_s: Annotated[float, Field(gt=0)] = 1.0
    log_buffer_events: Annotated[int, Field(ge=1)] = 100_000
    torch_threads: Annotated[int, Field(ge=1)] = 1


class ShadowSettings(_Part):
    """The shadow scorer (`driftloop shadow run --model M`).

    Its consumer group is `driftloop-shadow-<model>` unless `group_id` says otherwise; a group
    with no committed offsets starts at `start_from`.
    """

    group_id: str = ""
    poll_records: Annotated[int, Field(ge=1)] = 10_000
    refresh_s: Annotated[float, Field(gt=0)] = 2.0
    start_from: Literal["earliest", "latest"] = "latest"
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    torch_threads: Annotated[int, Field(ge=1)] = 1


class GateSettings(_Part):
    """The promotion gate (`driftloop gate run --model M`, and the retrain episode's gate step).

    A challenger is promoted when the always-valid test shows it more than `margin` more accurate
    than the champion at level `alpha`, on at least `min_pairs` labelled pairs, and no guardrail
    fails; it is rejected when that is not shown within `max_pairs` pairs or `deadline_hours`.
    After a promotion, the watch compares the new champion with the previous one for up to
    `watch_pairs` pairs or `watch_hours`, and rolls back when it is shown worse by the margin.
    """

    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    margin: Annotated[float, Field(ge=0, lt=0.5)] = 0.0
    min_pairs: Annotated[int, Field(ge=1)] = 100
    max_pairs: Annotated[int, Field(ge=1)] = 10_000
    deadline_hours: Annotated[float, Field(gt=0)] = 72.0
    latency_p99_factor: Annotated[float, Field(ge=1)] = 1.5
    max_recall_drop: Annotated[float, Field(ge=0, le=1)] = 0.05
    min_class_pairs: Annotated[int, Field(ge=1)] = 30
    futility: bool = True
    watch_pairs: Annotated[int, Field(ge=1)] = 2_000
    watch_hours: Annotated[float, Field(gt=0)] = 24.0
    check_interval_s: Annotated[float, Field(gt=0)] = 30.0
    latency_rows: Annotated[int, Field(ge=1)] = 200
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0

    @model_validator(mode="after")
    def _pairs_in_order(self) -> GateSettings:
        for name in ("max_pairs", "watch_pairs"):
            if getattr(self, name) < self.min_pairs:
                raise ValueError(f"gate.{name} ({getattr(self, name)}) must be at least gate.min_pairs "
                                 f"({self.min_pairs})")
        return self


DriftKind = Literal["rotate", "noise", "shift"]


class DemoSettings(_Part):
    """`driftloop demo`: the simulated world, its users and annotator, and how the run is paced.

    Each run lives in its own folder `<dir>/runs/<time>/` (settings, stack state, data, logs,
    figures), kept after the run. Traffic: scikit-learn's digits (8x8 images, 64 features) with
    pixel noise `noise`, at `rate` requests per second; at `drift_onset_s` the world drifts
    (`rotate`: the images turn by `rotation_degrees`; `shift`: they move one pixel right; `noise`:
    heavy pixel noise). Users label `label_share` of the answers after `label_delay_s`; a simulated
    annotator answers each labelling batch of `label_budget` inputs after `annotator_delay_s`;
    `withhold_labels` stops every label after the onset. The run ends `after_promotion_s` after a
    promotion, when the retrain episode ends without one or is rolled back, or after `duration_s`. `--fast` shortens the
    windows, waits and alert `for:` durations (see docs/demo.md).
    """

    dir: Path = Path(".driftloop/demo")
    model: str = Field(default="digits", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    seed: int = 0
    rate: Annotated[float, Field(gt=0, le=500)] = 20.0
    duration_s: Annotated[float, Field(gt=0)] | None = None  # None: the profile's cap (fast 600 s, default 900 s)
    drift_kind: DriftKind = "rotate"
    drift_onset_s: Annotated[float, Field(gt=0)] | None = None  # None: the profile's (fast 20 s, default 60 s)
    rotation_degrees: Annotated[float, Field(ge=-180, le=180)] = 35.0
    noise: Annotated[float, Field(ge=0)] = 0.5
    label_budget: Annotated[int, Field(ge=1)] = 150
    label_share: Annotated[float, Field(ge=0, le=1)] = 0.75
    label_delay_s: Annotated[float, Field(ge=0)] = 5.0
    annotator_delay_s: Annotated[float, Field(ge=0)] = 10.0
    strategy: StrategyName = "drift_targeted"
    withhold_labels: bool = False
    after_promotion_s: Annotated[float, Field(ge=0)] = 30.0

    @field_validator("dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()


class Settings(BaseSettings):
    """Everything driftloop can be told. See docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    data_dir: Path = Path(".driftloop/data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Feedback counts as the label of a prediction only when it came within this many hours of it;
    # the monitor's accuracy, curation's pool and the training snapshots all read labels so.
    label_horizon_hours: Annotated[float, Field(gt=0)] = 168.0
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    alertmanager: AlertmanagerSettings = Field(default_factory=AlertmanagerSettings)
    grafana: GrafanaSettings = Field(default_factory=GrafanaSettings)
    label_studio: LabelStudioSettings = Field(default_factory=LabelStudioSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    collector: CollectorSettings = Field(default_factory=CollectorSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    estimation: EstimationSettings = Field(default_factory=EstimationSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    curation: CurationSettings = Field(default_factory=CurationSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    demo: DemoSettings = Field(default_factory=DemoSettings)

    # Set only while load_settings() builds an instance: the TOML file to read beneath the environment.
    _config_file: ClassVar[Path | None] = None

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._config_file))
        return tuple(sources)

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def label_horizon(self) -> timedelta:
        return timedelta(hours=self.label_horizon_hours)

    def kafka_bootstrap(self) -> str:
        """The brokers to talk to: the configured ones, or the local stack's."""
        return self.kafka.bootstrap_servers or f"127.0.0.1:{self.stack.kafka_port}"

    def prometheus_url(self) -> str:
        return self.prometheus.url or f"http://127.0.0.1:{self.stack.prometheus_port}"

    def alertmanager_url(self) -> str:
        return self.alertmanager.url or f"http://127.0.0.1:{self.stack.alertmanager_port}"

    def label_studio_url(self) -> str:
        """Label Studio's address: the configured one, or the local stack's."""
        return (self.label_studio.url or f"http://127.0.0.1:{self.stack.label_studio_port}").rstrip("/")

    def label_studio_webhook_url(self) -> str:
        """Where Label Studio sends its webhooks: the configured address, or the ingestion API's own route."""
        host = "127.0.0.1" if self.api.host in ("0.0.0.0", "::") else self.api.host
        return self.label_studio.webhook_url or f"http://{host}:{self.api.port}/v1/label-studio/webhook"  # WEBHOOK_PATH


class SettingsError(ValueError):
    """Settings failed validation; the message names each bad setting and its variable."""


def load_settings(config_file: Path | None = None, **overrides) -> Settings:
    """Read and validate the settings, turning pydantic's report into one line per bad setting."""
    if config_file is None and os.environ.get("DRIFTLOOP_CONFIG"):
        config_file = Path(os.environ["DRIFTLOOP_CONFIG"])
    if config_file is not None and not config_file.is_file():
        raise SettingsError(f"config file {config_file} does not exist")
    Settings._config_file = config_file
    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"config file {config_file} is not valid TOML: {error}") from None
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            dotted = ".".join(str(part) for part in problem["loc"])
            variable = "DRIFTLOOP_" + "__".join(str(p) for p in problem["loc"]).upper()
            lines.append(f"setting {dotted} ({variable}): {problem['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(lines)) from None
    finally:
        Settings._config_file = None

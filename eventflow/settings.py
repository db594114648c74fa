"""One typed settings object; the only place that reads the environment (prefix `EVENTFLOW_`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by every service and client, read from `EVENTFLOW_*` variables.

    Built once at the edge (the CLI, a script) and passed explicitly, so nothing else reads the
    environment and a test can hand each component its own settings.
    """

    model_config = SettingsConfigDict(env_prefix="EVENTFLOW_", extra="forbid", frozen=True)

    home: Path = Field(
        default=Path(".eventflow"),
        description="Folder of the embedded state (SQLite file) and the dev control socket.",
    )
    max_metadata_bytes: int = Field(
        default=64 * 1024, gt=0, description="Largest serialized dataset metadata accepted."
    )
    concurrency: int = Field(default=4, gt=0, description="Task runs one worker executes at once.")
    heartbeat_interval_ms: int = Field(
        default=2000, gt=0, description="How often a worker reports a running task."
    )
    heartbeat_timeout_ms: int = Field(
        default=20000,
        ge=0,
        description="Silence after which a running task counts as lost and is retried (Kafka "
        "mode; embedded workers live in the coordinator's process); 0 turns detection off.",
    )
    task_log_max_bytes: int = Field(
        default=64 * 1024,
        gt=0,
        description="Bytes of log lines kept per task attempt (what its body logs through "
        "`ctx.log` and, run in a thread, prints); later lines are dropped and the log ends "
        "with a line saying how many.",
    )
    default_timeout_s: float = Field(
        default=3600.0, gt=0, description="Task timeout when a task declares none."
    )
    source: str = Field(default="eventflow", description="CloudEvents `source` of our events.")
    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers (host:port,...); unset: embedded mode."
    )
    topic_prefix: str = Field(
        default="", description="Prefix of every topic, consumer group and transactional id."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How clients reach the brokers: in the clear, over TLS, and with or without "
        "SASL authentication.",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism, with a `SASL_*` protocol; unset: no SASL."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle for TLS.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate (mTLS).")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Client key (mTLS).")
    kafka_session_timeout_ms: int = Field(
        default=10000,
        gt=0,
        description="Consumer-group session timeout: how soon a dead "
        "coordinator or worker's partitions move to the others.",
    )
    kafka_replication_factor: int = Field(
        default=1, gt=0, description="Replication factor `eventflow topics apply` creates with."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics on this port at /metrics; unset: no metrics.",
    )
    metrics_address: str = Field(
        default="127.0.0.1", description="Address the metrics port listens on (0.0.0.0: all)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="WARNING", description="Python logging level of services."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="How services write their log lines to stderr: `text` (`LEVEL logger "
        "[run id]: message`) or `json`, one object per line with time, level, logger, message "
        "and, when known, run id, pipeline, task, partition, trace and span id.",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="The event loop of `dev`, `coordinator`, `worker` and `server`: uvloop's, "
        "or the standard library's.",
    )
    otel: bool | None = Field(
        default=None,
        description="Record OpenTelemetry spans (publish, decide, task) and export them with "
        "OTLP as the standard `OTEL_EXPORTER_OTLP_*` variables say; unset: on when "
        "`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or "
        "`OTEL_TRACES_EXPORTER` (other than `none`) is set. Needs `eventflow[otel]`.",
    )
    signing_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Shared secret (32+ characters) with which eventflow's Kafka services sign "
        "their events and verify each other's; required by `eventflow coordinator` and "
        "`eventflow worker`. Outside publishers, who only announce datasets, do not need it.",
    )
    state_cache: int = Field(
        default=10_000,
        ge=0,
        description="Embedded mode: idle partition states kept in memory; the others stay in "
        "the SQLite file and are read back when an event names them.",
    )
    event_log_retention_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="Embedded mode: events older than this leave the SQLite event log (state, "
        "run outcomes and dataset freshness stay).",
    )
    history_url: str | None = Field(
        default=None,
        description="Where the history store lives, as an SQLAlchemy URL: "
        "`sqlite+aiosqlite:///path/history.db` or `postgresql+asyncpg://user@host/db`; unset: "
        "`history.db` in `home`.",
    )
    history_process: bool = Field(
        default=False,
        description="Embedded mode: project the event log into the history store in a child "
        "process, on another core, instead of in the decision loop's; `eventflow dev` turns it "
        "on unless set.",
    )
    history_retention_days: float = Field(
        default=0,
        ge=0,
        description="History older than this many days is pruned (the newest version of each "
        "dataset partition stays); 0 keeps it forever.",
    )

    api_host: str = Field(
        default="127.0.0.1",
        description="Address the HTTP API listens on (`eventflow server`, `eventflow dev`); "
        "0.0.0.0 serves every interface.",
    )
    api_port: int = Field(
        default=8787, ge=0, le=65535, description="Port of the HTTP API; 0 picks a free one."
    )
    api_token: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="Bearer token the HTTP API requires (16+ characters); unset: `eventflow dev` "
        "makes one and writes it to `HOME/api.json`, `eventflow server` refuses to start.",
    )
    api_open_reads: bool = Field(
        default=False,
        description="Serve the API's read-only endpoints without the token (mutating ones "
        "always need it).",
    )
    api_url: str | None = Field(
        default=None,
        description="Where the operator's commands find the API (e.g. http://10.0.0.5:8787); "
        "unset: the `eventflow dev` running in `home`.",
    )

    ui_url: str | None = Field(
        default=None,
        description="Where people open the web UI (e.g. https://eventflow.example.com), for "
        "the links alerts carry; unset: alerts carry no link.",
    )

    openlineage_url: str | None = Field(
        default=None,
        description="Where eventflow sends OpenLineage RunEvents of its task runs: an HTTP "
        "endpoint (a Marquez base URL; events go to `/api/v1/lineage`), `file:///PATH` (one "
        "event per line) or `console`; unset: none are sent. Needs `eventflow[openlineage]`.",
    )
    openlineage_namespace: str = Field(
        default="eventflow",
        min_length=1,
        description="OpenLineage namespace of eventflow's jobs and datasets.",
    )
    openlineage_api_key: SecretStr | None = Field(
        default=None,
        description="Bearer token sent to an HTTP `openlineage_url`.",
    )
    dbt: Path | None = Field(
        default=None,
        description="The dbt executable `eventflow.dbt` runs (dbt may live in a venv of its "
        "own); unset: `dbt` beside the Python running eventflow, else on the PATH.",
    )

    def environment(self, name: str) -> str | None:
        """The environment variable `name`: what an alert rule's `${NAME}` reads, so that its
        secrets stay out of code (and, like every other setting, are read here)."""
        return os.environ.get(name)

    @property
    def api_file(self) -> Path:
        """Where a running `eventflow dev` writes its API's address and token (mode 0600)."""
        return self.home / "api.json"

    @property
    def database(self) -> Path:
        """The SQLite file of the embedded runtime, inside `home`."""
        return self.home / "eventflow.db"

    @property
    def history(self) -> str:
        """The history store's URL: `history_url`, or an SQLite file inside `home`."""
        if self.history_url:
            return self.history_url
        return f"sqlite+aiosqlite:///{self.home / 'history.db'}"

    @property
    def control_socket(self) -> Path:
        """The Unix socket a dev instance serves publishers and `eventflow` commands on."""
        return self.home / "dev.sock"

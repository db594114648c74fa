"""One typed settings object; the only place that reads the environment (prefix `EVENTFLOW_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by every service and client; pass it explicitly."""

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
        default=0,
        ge=0,
        description="Silence after which a running task counts as lost; 0 turns detection off "
        "(the embedded runtime runs workers in-process, so they cannot be lost alone).",
    )
    default_timeout_s: float = Field(
        default=3600.0, gt=0, description="Task timeout when a task declares none."
    )
    source: str = Field(default="eventflow", description="CloudEvents `source` of our events.")
    log_level: str = Field(default="WARNING", description="Python logging level of services.")

    @property
    def database(self) -> Path:
        return self.home / "eventflow.db"

    @property
    def control_socket(self) -> Path:
        return self.home / "dev.sock"

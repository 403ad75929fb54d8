"""Settings from the environment (``SUHO_*``), one home for every knob.

Everything a user may want to change without editing code lives here, read by
pydantic-settings so that ``SUHO_DATABASE_URL=... suho demo`` just works.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DATABASE_NAME = "suho_analytics"
"""The ClickHouse database that holds the eight training tables."""


class Settings(BaseSettings):
    """Runtime configuration; each field maps to ``SUHO_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="SUHO_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".suho"),
        description="Local state: the embedded ClickHouse data, spool files, object store.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the store. Unset means the shared local store under "
            "<data_dir>/clickhouse (clickhouse+local:///<path>/suho_analytics): a background "
            "server that the first process starts and every process uses. "
            "clickhouse+chdb:///<path>/<db> opens a store in process (one process only)."
        ),
    )
    server_idle_seconds: float = Field(
        default=300.0,
        ge=0.5,
        description="The shared local store's server stops after this long with no client "
        "process, connection or query (the next client starts it again).",
    )

    checkpoint_inline_max_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=0,
        description="Checkpoints up to this size go base64 into the table; larger ones "
        "go to the object store (the seed's 100 MB).",
    )
    object_store_url: str | None = Field(
        default=None,
        description="Where large checkpoints go: s3://bucket/prefix, file:///dir, or unset "
        "for <data_dir>/objects.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for MinIO/SeaweedFS (unset: AWS)."
    )
    server_password: SecretStr | None = Field(
        default=None,
        description="Password of `suho db serve`'s user default, and of loopback server URLs "
        "that name none (wins over the password file).",
    )
    server_password_file: Path | None = Field(
        default=None,
        description="Password file of the local server that loopback URLs without a password "
        "use (unset: the one `suho db serve` generates under the embedded store's path).",
    )
    checkpoint_key: SecretStr | None = Field(
        default=None,
        description="HMAC key that signs checkpoints whose loading can run code (pickle, "
        "joblib, SB3 zip); unset: <data_dir>/checkpoint.key, made 0600 on first use.",
    )

    optuna_storage: str | None = Field(
        default=None,
        description="Optuna storage URL every tuning study uses unless its config names one: "
        "postgresql+psycopg://... or mysql://... (RDB), redis://... (journal on Redis). "
        "Unset: a journal file per run under <data_dir>/optuna (this machine only).",
    )

    @property
    def embedded_path(self) -> Path:
        return (self.data_dir / "clickhouse").resolve()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"clickhouse+local:///{self.embedded_path}/{DATABASE_NAME}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

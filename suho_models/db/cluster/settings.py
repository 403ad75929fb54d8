"""The cluster switch: ``SUHO_CLICKHOUSE_*`` settings and the errors of cluster mode."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_SUFFIX = "_local"
"""Name suffix of the per-node tables under a Distributed table in sharded mode."""

Topology = Literal["replicated", "sharded", "both"]
DdlMode = Literal["on_cluster", "per_node"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class ClusterError(RuntimeError):
    """A statement or a cluster state that cluster mode cannot handle safely."""


class NodesDisagreeError(ClusterError):
    """Per-node DDL: the nodes are at revisions that cannot move to the target together."""


class ClusterSettings(BaseSettings):
    """``SUHO_CLICKHOUSE_*``: the cluster switch and how the schema is laid out on it."""

    model_config = SettingsConfigDict(env_prefix="SUHO_CLICKHOUSE_", extra="ignore")

    cluster: str | None = Field(
        default=None,
        description="Cluster name from the servers' <remote_servers>. Unset: single node.",
    )
    topology: Topology = Field(
        default="sharded",
        description="replicated (Replicated* engines), sharded (<table>_local + Distributed) "
        "or both (Replicated* local tables under Distributed).",
    )
    ddl: DdlMode = Field(
        default="on_cluster",
        description="on_cluster: ON CLUSTER on every statement; per_node: each revision "
        "runs on every node in turn (no DDL queue needed).",
    )
    nodes: str | None = Field(
        default=None,
        description="per_node: comma-separated URLs of every node; unset: read from "
        "system.clusters on the node SUHO_DATABASE_URL names.",
    )
    sharding_key: str = Field(
        default="cityHash64(run_id)",
        description="Distributed sharding key; must keep every row of a run on one shard.",
    )
    replica_path: str = Field(
        default="/clickhouse/tables/{shard}/{database}/{table}",
        description="Keeper path of Replicated tables ({shard}, {database}, {table} macros).",
    )
    replica_name: str = Field(default="{replica}", description="Replica name of Replicated tables.")
    dedup_window: int = Field(
        default=1000,
        ge=1,
        description="non_replicated_deduplication_window of sharded, non-replicated tables.",
    )
    foreground_insert: bool = Field(
        default=True,
        description="distributed_foreground_insert: a batch is acknowledged once on its shard.",
    )

    @field_validator("cluster")
    @classmethod
    def _cluster_name(cls, value: str | None) -> str | None:
        if value is not None and not _IDENTIFIER.match(value):
            raise ValueError(
                f"SUHO_CLICKHOUSE_CLUSTER: expected a cluster name (letters, digits, _ -), "
                f"got {value!r}"
            )
        return value or None

    @property
    def enabled(self) -> bool:
        return self.cluster is not None

    @property
    def sharded(self) -> bool:
        return self.enabled and self.topology in ("sharded", "both")

    @property
    def replicated(self) -> bool:
        return self.enabled and self.topology in ("replicated", "both")

    @property
    def on_cluster(self) -> bool:
        return self.enabled and self.ddl == "on_cluster"

    def node_url_list(self) -> list[str] | None:
        if not self.nodes:
            return None
        return [u.strip() for u in self.nodes.split(",") if u.strip()]


def cluster_settings() -> ClusterSettings:
    """Read the environment now (not cached: tests and tools switch modes)."""
    return ClusterSettings()

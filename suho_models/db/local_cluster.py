"""A ClickHouse cluster of real engines on this machine: one ``LocalServer`` per node.

For tests and benchmarks of cluster mode. Each node is a chDB server started as
``suho db serve`` starts one, plus the part of ``config.xml`` a cluster node needs:

* ``<remote_servers>``: cluster ``suho`` with every node's host and native port,
  as ``shards`` x ``replicas`` (``internal_replication`` false: without a working
  replication engine, a Distributed table writes to every replica itself);
* ``<macros>``: ``{shard}`` and ``{replica}`` of that node;
* ``<background_distributed_schedule_pool_size>``: 0 in chDB by default, and then
  asynchronous Distributed inserts are never sent;
* optionally ``<zookeeper>`` as the in-process ``testkeeper``, so Replicated tables
  can be CREATEd (chDB's clickhouse-local never becomes an active replica, see
  ``shared/notes/cluster-on-chdb.md``).

A node costs about 1 s to start and 320 MB. ``ON CLUSTER`` does not work on these
nodes (no DDL worker in clickhouse-local): cluster mode uses per-node DDL here.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.sax.saxutils import escape

from suho_models.db.server import LocalServer, free_port

CLUSTER_NAME = "suho"


def node_config(
    cluster: str,
    shards: list[list[tuple[str, int]]],
    shard: int,
    replica: str,
    *,
    testkeeper: bool = False,
    password: str = "",
) -> str:
    """The ``<clickhouse>`` elements of one node: the cluster, its macros, the pools.

    Every node requires a password, so Distributed queries between nodes carry it."""
    login = f"<user>default</user><password>{escape(password)}</password>" if password else ""
    layout = "".join(
        "<shard><internal_replication>false</internal_replication>"
        + "".join(
            f"<replica><host>{escape(host)}</host><port>{port}</port>{login}</replica>"
            for host, port in replicas
        )
        + "</shard>"
        for replicas in shards
    )
    keeper = (
        "<zookeeper><implementation>testkeeper</implementation></zookeeper>" if testkeeper else ""
    )
    return (
        f"<remote_servers><{cluster}>{layout}</{cluster}></remote_servers>\n"
        f"<macros><shard>{shard}</shard><replica>{escape(replica)}</replica></macros>\n"
        "<background_distributed_schedule_pool_size>4</background_distributed_schedule_pool_size>\n"
        f"{keeper}"
    )


class LocalCluster:
    """``shards`` x ``replicas`` nodes under ``base``; ``nodes[i]`` is a ``LocalServer``."""

    def __init__(
        self,
        base: Path,
        shards: int = 2,
        replicas: int = 1,
        *,
        cluster: str = CLUSTER_NAME,
        testkeeper: bool = False,
    ) -> None:
        self.cluster = cluster
        # One password for all nodes: clients and the nodes themselves use it everywhere.
        self.password = secrets.token_urlsafe(24)
        ports = [[free_port() for _ in range(replicas)] for _ in range(shards)]
        layout = [[("127.0.0.1", port) for port in shard] for shard in ports]
        self.nodes: list[LocalServer] = []
        for s, shard_ports in enumerate(ports, start=1):
            for r, port in enumerate(shard_ports, start=1):
                self.nodes.append(
                    LocalServer(
                        Path(base) / f"node-s{s}r{r}",
                        tcp_port=port,
                        password=self.password,
                        extra_config=node_config(
                            cluster,
                            layout,
                            s,
                            f"r{r}",
                            testkeeper=testkeeper,
                            password=self.password,
                        ),
                    )
                )

    def start(self) -> LocalCluster:
        """Start every node at once (each waits for its own /ping)."""
        errors: list[BaseException] = []

        def start(node: LocalServer) -> None:
            try:
                node.start()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,)) for n in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            self.stop()
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stop every node (each: KILL QUERY on client queries, then its serving query)."""
        for node in self.nodes:
            node.stop()

    def url(self, database: str = "suho_analytics", node: int = 0) -> str:
        """The URL clients use: node ``node`` (the Distributed tables live on every node)."""
        return self.nodes[node].native_url(database)

    def node_urls(self, database: str = "suho_analytics") -> list[str]:
        return [n.native_url(database) for n in self.nodes]

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def local_cluster(base: Path, shards: int = 2, replicas: int = 1) -> Iterator[LocalCluster]:
    with LocalCluster(base, shards, replicas) as cluster:
        yield cluster

"""Reads behind the web UI (``suho ui``): a paged, sorted run listing with its total,
and curves downsampled inside ClickHouse before they leave it.

Why these live here and not in the web layer: they are ClickHouse queries (FINAL,
PREWHERE on the key, ``largestTriangleThreeBuckets``), and the UI holds no SQL.

- :meth:`RunBrowser.page` sends two statements at once, on two connections: the
  page and ``count()`` of the same filters. Each is a FINAL read; since revision
  0010 the runs tables are ordered by creation, so FINAL merges only the parts that
  overlap (the runs still changing) and reads the rest as it is: at a million runs
  that is what keeps a page near the cost of a plain read (``bench/results/scale.md``;
  a candidates-then-confirm read without FINAL lost to it: ``scale_candidates.md``).
  The page reads only the listed columns, never ``config_json`` or
  ``features_used``, so a page is one top-N sort.
- :meth:`CurveReader.curve` downsamples each series with LTTB
  (``largestTriangleThreeBucketsIf(n)(x, y, isFinite(y))``): the shape survives,
  peaks included, at ``n`` points per series. A curve with at most ``n`` points
  in the range comes back whole. A range (``x_from``/``x_to``) is the zoom: the
  same ``n`` points, over the visible part only.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.expression import ClauseList

from repositories.errors import InvalidInputError, as_uuid
from repositories.kinds import PROFILES, CurveSpec, RunKind, curve_owner, profile_of
from repositories.runs import RunRepository
from suho_models.db import Database
from suho_models.enums import DeploymentStatus, RunStatus

MAX_PAGE_SIZE = 500
MAX_OFFSET = 2**63 - 1
"""ClickHouse reads OFFSET as a 64-bit integer: beyond it the query fails."""
TIME_RANGE = (
    dt.datetime(1900, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2299, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
)
"""What ``DateTime64(3)`` holds: a filter outside it is an input error, not a query error."""
MAX_POINTS = 10_000
DEFAULT_POINTS = 1_500

_COUNTS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="suho-ui-count")
"""Where a page's ``count()`` runs while the page itself is read."""


class _Parametric(ColumnElement[Any]):
    """A parametric aggregate, ``name(p1, ...)(arg1, ...)``, which SQLAlchemy's
    ``func`` cannot write. Parameters are integers, rendered literally."""

    inherit_cache = False

    def __init__(self, name: str, params: Sequence[int], *args: Any) -> None:
        self.name = name
        self.parameters = tuple(int(p) for p in params)  # not `params`: a ClauseElement method
        self.clauses = ClauseList(*args)
        self.type = sa.types.NullType()

    def get_children(self, **kw: Any) -> Any:
        return (self.clauses,)


@compiles(_Parametric)
def _compile_parametric(element: _Parametric, compiler: Any, **kw: Any) -> str:
    params = ", ".join(str(p) for p in element.parameters)
    return f"{element.name}({params})({compiler.process(element.clauses, **kw)})"


def lttb(points: int, x: Any, y: Any) -> ColumnElement[Any]:
    """``largestTriangleThreeBuckets(points)(x, y)`` over the finite values of ``y``
    (NULL and NaN left out: they have no place on a chart)."""
    return _Parametric("largestTriangleThreeBucketsIf", [points], x, y, sa.func.isFinite(y))


# --------------------------------------------------------------------------- runs
COMMON_LIST_COLUMNS = (
    "run_id",
    "run_name",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "duration_seconds",
    "heartbeat_at",
    "git_commit_hash",
    "error_message",
)

DEFAULT_VIEWS: dict[RunKind, dict[str, Any]] = {
    # The seed's "Compare Model Performance" and "Best RL Agents": completed runs,
    # best first (ties by run_id, as the repositories' FINAL variants order them).
    kind: {"status": "completed", "sort": p.ranking_metric, "descending": True}
    for kind, p in PROFILES.items()
}

SEED_COLUMNS: dict[RunKind, tuple[str, ...]] = {
    kind: p.seed_columns for kind, p in PROFILES.items()
}


@dataclass
class RunPage:
    rows: list[dict[str, Any]]
    total: int
    sort: str
    descending: bool
    limit: int
    offset: int
    filters: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)
    """With ``details``: each listed run's ``config_json``, by run_id (one read)."""
    stages: dict[str, list[str]] = field(default_factory=dict)
    """With ``details``: the production/staging stages each listed run's checkpoints hold."""


class RunBrowser:
    """Listing of one kind of run for the UI: filter, sort by any column, page."""

    def __init__(self, db: Database, kind: RunKind | str) -> None:
        profile = profile_of(kind)
        self.kind = profile.kind
        self.runs: RunRepository[Any] = profile.runs(db)
        self.checkpoints = profile.checkpoints(db)
        self.type_column = profile.type_column
        self.tag_columns = tuple(c for c in profile.describing_columns if c != self.type_column)

    @property
    def metric_columns(self) -> list[str]:
        """Numeric result columns (``final_*``, ``total_*``): sortable and filterable."""
        return [c.name for c in self.runs.table.columns if c.name.startswith(("final_", "total_"))]

    @property
    def list_columns(self) -> list[str]:
        return [*COMMON_LIST_COLUMNS[:2], self.type_column, *COMMON_LIST_COLUMNS[2:]] + [
            m for m in self.metric_columns
        ]

    @property
    def choosable(self) -> list[str]:
        """Columns a listing may show: the listed ones and the tags (``describing``)."""
        return [*self.list_columns, *(t for t in self.tag_columns if t not in self.list_columns)]

    @property
    def sortable(self) -> list[str]:
        return [c for c in self.list_columns if c not in ("git_commit_hash", "error_message")]

    def page(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        name: str | None = None,
        created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None,
        metric_ranges: Mapping[str, tuple[float | None, float | None]] | None = None,
        sort: str | None = None,
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
        search: str | None = None,
        columns: Sequence[str] = (),
        details: bool = False,
    ) -> RunPage:
        """One page of runs matching every filter, and how many match in all.

        ``name`` matches a case-insensitive substring of the run name (taken
        literally: ``%`` and ``_`` are not wildcards); ``metric_ranges`` maps a
        metric column to inclusive (low, high) bounds, either one None.
        ``search`` is the same substring match over the name, the type, the tags
        and the config (parameter values); ``columns`` adds tag columns to the
        rows; ``details`` also reads the listed runs' configs and deployment
        stages (the deployed checkpoints beside the page, the configs by run_id
        after it: two reads whatever the page size, never one per row).
        """
        c = self.runs.table.c
        sort = sort or "created_at"
        if sort not in self.sortable:
            raise InvalidInputError(
                f"sort: unknown column {sort!r} (one of {', '.join(self.sortable)})"
            )
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidInputError(f"limit: expected 1 to {MAX_PAGE_SIZE} (got {limit!r})")
        if not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
            raise InvalidInputError(f"offset: expected 0 to {MAX_OFFSET} (got {offset!r:.40})")
        for label, when in (("created_from", created_from), ("created_to", created_to)):
            aware = when if when is None or when.tzinfo else when.replace(tzinfo=dt.UTC)
            if aware is not None and not TIME_RANGE[0] <= aware <= TIME_RANGE[1]:
                raise InvalidInputError(
                    f"{label}: expected a time from {TIME_RANGE[0]:%Y-%m-%d} to "
                    f"{TIME_RANGE[1]:%Y-%m-%d} (got {when!r})"
                )
        for metric, bounds in (metric_ranges or {}).items():
            if any(b is not None and not math.isfinite(b) for b in bounds):
                raise InvalidInputError(f"{metric}: range bounds must be finite (got {bounds!r})")
        where: list[ColumnElement[bool]] = []
        filters: dict[str, Any] = {}
        if status:
            try:
                where.append(c.status == RunStatus(status).value)
            except ValueError:
                raise InvalidInputError(
                    f"status: expected one of {', '.join(RunStatus)} (got {status!r})"
                ) from None
            filters["status"] = status
        if type:
            where.append(c[self.type_column] == str(type))
            filters["type"] = type
        if name:
            where.append(sa.func.positionCaseInsensitiveUTF8(c.run_name, str(name)) > 0)
            filters["name"] = name
        if search:
            texts = [c.run_name, c[self.type_column], *(c[t] for t in self.tag_columns)]
            where.append(
                sa.or_(
                    *(
                        sa.func.positionCaseInsensitiveUTF8(sa.func.toString(t), str(search)) > 0
                        for t in [*texts, c.config_json]
                    )
                )
            )
            filters["search"] = search
        if unknown := [n for n in columns if n not in self.choosable]:
            raise InvalidInputError(
                f"columns: unknown {', '.join(map(repr, unknown))} "
                f"(one of {', '.join(self.choosable)})"
            )
        if created_from is not None:
            where.append(c.created_at >= created_from)
            filters["created_from"] = created_from
        if created_to is not None:
            where.append(c.created_at <= created_to)
            filters["created_to"] = created_to
        for metric, (low, high) in (metric_ranges or {}).items():
            if metric not in self.metric_columns:
                raise InvalidInputError(
                    f"metric: unknown metric column {metric!r} "
                    f"(one of {', '.join(self.metric_columns)})"
                )
            if low is not None:
                where.append(c[metric] >= float(low))
            if high is not None:
                where.append(c[metric] <= float(high))
            filters[metric] = (low, high)
        column = c[sort]
        # One FINAL read at the listed width, with its count() on a second connection
        # meanwhile: measured against ranking narrow rows first and reading the page's
        # runs by key (50 random run_ids touch nearly every granule, so that read costs
        # a second full pass) and against a count() OVER () window (which buffers
        # every matching row before the top-N).
        read = [*self.list_columns, *(n for n in columns if n not in self.list_columns)]
        query = self.runs.read(*where, columns=[c[n] for n in read])
        total = _COUNTS.submit(query.count)
        # deployed checkpoints are few (a stage holds one per model): all of them,
        # read beside the page rather than after it
        stages = _COUNTS.submit(self._stages) if details else None
        rows = (
            query.order_by(column.desc() if descending else column.asc(), c.run_id)
            .limit(limit)
            .offset(offset)
            .rows()
        )
        listed = [_plain_row(r) for r in rows]
        page = RunPage(listed, 0, sort, descending, limit, offset, filters)
        if stages is not None:
            ids = [r["run_id"] for r in listed]
            page.configs = self._configs(ids) if ids else {}
            held = stages.result()
            page.stages = {str(i): held[str(i)] for i in ids if str(i) in held}
        page.total = total.result()
        return page

    def _configs(self, ids: Sequence[uuid.UUID]) -> dict[str, str]:
        c = self.runs.table.c
        rows = self.runs.read(c.run_id.in_(ids), columns=[c.run_id, c.config_json]).rows()
        return {str(r["run_id"]): str(r["config_json"] or "") for r in rows}

    def _stages(self) -> dict[str, list[str]]:
        """Every run of the kind with a checkpoint in production or staging."""
        c = self.checkpoints.table.c
        held = [DeploymentStatus.PRODUCTION.value, DeploymentStatus.STAGING.value]
        rows = self.checkpoints.read(
            c.deployment_status.in_(held),
            columns=[c.run_id, c.deployment_status],
        ).rows()
        out: dict[str, list[str]] = {}
        for r in rows:
            stage = getattr(r["deployment_status"], "value", r["deployment_status"])
            stages = out.setdefault(str(r["run_id"]), [])
            if stage not in stages:
                stages.append(str(stage))
        return {k: sorted(v, key=held.index) for k, v in out.items()}

    def running(self, limit: int = 100) -> list[dict[str, Any]]:
        """Runs now ``running``, newest first (the Live page)."""
        return self.page(status="running", sort="created_at", limit=limit).rows


def _plain_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if hasattr(value, "value") and not isinstance(value, int | float | str):
            value = value.value
        out[key] = value
    return out


# --------------------------------------------------------------------------- curves
CURVES: dict[str, tuple[RunKind, str, tuple[str, ...]]] = {
    # name: (kind, x column, series), from the kinds' profiles
    c.name: (kind, c.x, c.series)
    for kind, p in PROFILES.items()
    for c in p.curves
}


@dataclass
class SeriesPoint:
    """One row of a run's series, not downsampled: its x, when it was recorded, and
    the values asked for by column."""

    x: int
    recorded_at: dt.datetime | None
    values: dict[str, float | None]


@dataclass
class Curve:
    run_id: uuid.UUID
    name: str
    x: str
    points_in_range: int
    """Rows in the range before downsampling."""
    x_min: float | None
    x_max: float | None
    series: dict[str, list[list[float]]]
    """Per series, ``[xs, ys]`` (already downsampled)."""

    @property
    def points_returned(self) -> dict[str, int]:
        return {name: len(xy[0]) for name, xy in self.series.items()}


class CurveReader:
    """Downsampled curves of runs of either kind."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._series = {kind: p.series(db) for kind, p in PROFILES.items()}

    def points(
        self,
        run_id: uuid.UUID | str,
        spec: CurveSpec,
        *,
        columns: Sequence[str] | None = None,
        after: int | None = None,
    ) -> list[SeriesPoint]:
        """Every row of curve ``spec`` of a run in x order (``columns``: the values to
        read, default the curve's series; ``after``: only rows with x past it)."""
        repo = self._series[curve_owner(spec.name)[0].kind]
        c = repo.table.c
        names = tuple(columns) if columns is not None else spec.series
        if unknown := [n for n in names if n not in c]:
            raise InvalidInputError(f"columns: unknown {', '.join(unknown)} for {spec.name}")
        x = c[spec.x]
        where: list[ColumnElement[bool]] = [c.run_id == as_uuid(run_id, "run_id")]
        if spec.episode_ends_only:
            where.append(c.is_episode_end == 1)
        if after is not None:
            where.append(x > int(after))
        rows = (
            repo.read(*where, columns=[x, c.recorded_at, *(c[n] for n in names)]).order_by(x).rows()
        )
        return [
            SeriesPoint(
                int(r[spec.x]),
                _utc(r["recorded_at"]),
                {n: None if r[n] is None else float(r[n]) for n in names},
            )
            for r in rows
        ]

    def curve(
        self,
        run_id: uuid.UUID | str,
        name: str = "metrics",
        *,
        points: int = DEFAULT_POINTS,
        x_from: float | None = None,
        x_to: float | None = None,
        series: Sequence[str] | None = None,
    ) -> Curve:
        """A run's curve ``name`` (``metrics`` for supervised runs, ``steps`` or
        ``episodes`` for agents), each series LTTB-downsampled to ``points``."""
        owner, spec = curve_owner(name)
        if not isinstance(points, int) or not 3 <= points <= MAX_POINTS:
            raise InvalidInputError(f"points: expected 3 to {MAX_POINTS} (got {points!r})")
        for label, bound in (("x_from", x_from), ("x_to", x_to)):
            if bound is not None and not math.isfinite(bound):
                raise InvalidInputError(f"{label}: expected a finite number (got {bound!r})")
        if x_from is not None and x_to is not None and x_from > x_to:
            raise InvalidInputError(f"x_from: {x_from} is after x_to {x_to}")
        x_name, known = spec.x, spec.series
        chosen = tuple(series) if series else known
        if unknown := [s for s in chosen if s not in known]:
            raise InvalidInputError(
                f"series: unknown {', '.join(unknown)} for curve {name} (one of {', '.join(known)})"
            )
        repo = self._series[owner.kind]
        key = as_uuid(run_id, "run_id")
        c = repo.table.c
        x = c[x_name]
        where: list[ColumnElement[bool]] = [c.run_id == key]
        if spec.episode_ends_only:
            where.append(c.is_episode_end == 1)
        if x_from is not None:
            where.append(x >= x_from)
        if x_to is not None:
            where.append(x <= x_to)
        columns = [
            sa.func.count().label("n"),
            sa.func.minOrNull(x).label("x_min"),
            sa.func.maxOrNull(x).label("x_max"),
            *(lttb(points, x, c[s]).label(s) for s in chosen),
        ]
        row = repo.read(*where, columns=columns).rows()[0]
        return Curve(
            key,
            name,
            x_name,
            int(row["n"]),
            None if row["x_min"] is None else float(row["x_min"]),
            None if row["x_max"] is None else float(row["x_max"]),
            {s: _unzip(row[s]) for s in chosen},
        )


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """As the records read it: a naive time is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _unzip(pairs: Any) -> list[list[float]]:
    xs, ys = [], []
    for px, py in pairs or ():
        xs.append(float(px))
        ys.append(float(py))
    return [xs, ys]


# --------------------------------------------------------------------------- parameters
def flat_parameters(config_json: str) -> dict[str, Any]:
    """A run's config as ``{"a.b": value}`` (nested objects flattened), for diffs."""
    try:
        data = json.loads(config_json or "{}")
    except json.JSONDecodeError:
        return {"config_json": config_json}
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k in sorted(value):
                walk(f"{prefix}.{k}" if prefix else str(k), value[k])
        else:
            out[prefix] = value

    walk("", data)
    return out


def parameter_diff(configs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{"name", "values": {run: value}, "differs"}`` over the union of the keys
    of each run's flat parameters; a key a run lacks shows as None."""
    names = sorted({k for params in configs.values() for k in params})
    rows = []
    for name in names:
        values = {run: params.get(name) for run, params in configs.items()}
        rendered = {json.dumps(v, sort_keys=True, default=str) for v in values.values()}
        rows.append({"name": name, "values": values, "differs": len(rendered) > 1})
    return rows


__all__ = [
    "CURVES",
    "DEFAULT_POINTS",
    "DEFAULT_VIEWS",
    "MAX_PAGE_SIZE",
    "MAX_POINTS",
    "SEED_COLUMNS",
    "Curve",
    "CurveReader",
    "RunBrowser",
    "RunPage",
    "SeriesPoint",
    "flat_parameters",
    "lttb",
    "parameter_diff",
]

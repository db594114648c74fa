"""The history store's reads: runs, attempts, versions and freshness, lineage, checks, dead
letters, events and task logs, each returning the models of `history.models`."""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, case, func, or_, select, tuple_, union_all
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import StorageError
from . import schema as t
from .models import (
    CheckOutcome,
    Consumer,
    DatasetVersionRecord,
    DeadLetterRecord,
    EventRecord,
    Freshness,
    FreshnessViolation,
    GridCell,
    GridRow,
    InputNow,
    LatestVersion,
    Lineage,
    LogLine,
    Page,
    PipelineRun,
    PipelineSummary,
    Provenance,
    RunDetail,
    TaskAttempt,
    VersionRef,
)

T = TypeVar("T")

#: The most rows one query returns.
MAX_LIMIT = 1000


#: Keys per `IN` list: well under the bound parameters both backends take in one statement.
CHUNK = 500


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


def _chunks(items: Sequence[T], size: int = CHUNK) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _cursor(run: PipelineRun) -> str:
    return _cursor_at(run.started_at, run.run_id)


def _cursor_at(at: datetime, key: str) -> str:
    raw = f"{at.astimezone(UTC).isoformat()}\x00{key}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _uncursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("\x00", 1)
        return datetime.fromisoformat(at), run_id
    except ValueError:
        raise ValueError(f"not a cursor of this query: {cursor!r}") from None


def _never_ran(status: str) -> str:
    if status == "skipped":
        return "never ran: an input it waits for was not emitted"
    return "never ran: a task upstream failed or a blocking check rejected its input"


#: The execution option that marks a write transaction.
WRITE = "eventflow_write"

Write = TypeVar("Write", bound=Callable[..., Coroutine[Any, Any, Any]])


def whole(write: Write) -> Write:
    """A write that runs to its end though its caller is cancelled (a service stopping), which
    waits for it. Cut off while the driver's thread runs a statement, the transaction stayed
    open on a connection the pool had given up: on SQLite it kept the file's write lock, and
    every later writer waited out the busy timeout and failed with "database is locked"."""

    @functools.wraps(write)
    async def run(*args: Any, **kwargs: Any) -> Any:
        task = asyncio.ensure_future(write(*args, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Cancelled again while waiting: the write still ends; its outcome is not wanted.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            await asyncio.wait([task])
            raise

    return run  # type: ignore[return-value]


class Queries:
    """Reads over the history tables; `HistoryStore` supplies the connection."""

    @property
    def engine(self) -> AsyncEngine:
        raise NotImplementedError

    def _writing(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction (on SQLite one that takes the write lock as it begins)."""
        return self.engine.execution_options(**{WRITE: True}).begin()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read the history store: {e}") from e

    # -- runs ------------------------------------------------------------------------------------
    async def runs(
        self,
        *,
        pipeline: str | None = None,
        partition: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        cursor: str | None = None,
        backfill: str | None = None,
    ) -> Page[PipelineRun]:
        """Pipeline runs, newest started first, filtered; `since` <= started < `until`. Page by
        `cursor` (the previous page's `next_cursor`: stable while runs are added) or `offset`.
        `backfill`: the finished runs of that backfill (their reason names it)."""
        r = t.pipeline_runs
        where: list[Any] = []
        if backfill is not None:
            where.append(r.c.reason.contains(f"backfill {backfill} by ", autoescape=True))
        if pipeline is not None:
            where.append(r.c.pipeline == pipeline)
        if partition is not None:
            where.append(r.c.partition == partition)
        if status is not None:
            where.append(r.c.status == status)
        if since is not None:
            where.append(r.c.started_at >= since)
        if until is not None:
            where.append(r.c.started_at < until)
        page = where[:]
        if cursor is not None:
            at, run_id = _uncursor(cursor)
            page.append(or_(r.c.started_at < at, and_(r.c.started_at == at, r.c.run_id < run_id)))
        n = _limit(limit)
        sql = (
            select(r)
            .where(*page)
            .order_by(r.c.started_at.desc(), r.c.run_id.desc())
            .limit(n + 1)
            .offset(offset if cursor is None else 0)
        )
        async with self._read() as conn:
            total = await conn.scalar(select(func.count()).select_from(r).where(*where))
            found = [PipelineRun(**row) for row in (await conn.execute(sql)).mappings()]
        more = len(found) > n
        items = found[:n]
        return Page(items=items, total=total or 0, next_cursor=_cursor(items[-1]) if more else None)

    async def run(self, run_id: str) -> RunDetail | None:
        """One pipeline run with its task attempts, in the order they were requested."""
        a = t.task_attempts
        async with self._read() as conn:
            found = (
                (
                    await conn.execute(
                        select(t.pipeline_runs).where(t.pipeline_runs.c.run_id == run_id)
                    )
                )
                .mappings()
                .first()
            )
            if found is None:
                return None
            attempts = await self._attempts(
                conn,
                select(a)
                .where(a.c.pipeline_run_id == run_id)
                .order_by(a.c.requested_at, a.c.task, a.c.attempt),
            )
        return RunDetail(run=PipelineRun(**found), attempts=attempts)

    async def attempts(
        self, pipeline: str, task: str, *, partition: str | None = None, limit: int = 100
    ) -> list[TaskAttempt]:
        """Attempts of a task, newest requested first."""
        a = t.task_attempts
        where = [a.c.pipeline == pipeline, a.c.task == task]
        if partition is not None:
            where.append(a.c.partition == partition)
        sql = (
            select(a)
            .where(*where)
            .order_by(a.c.requested_at.desc(), a.c.attempt.desc())
            .limit(_limit(limit))
        )
        async with self._read() as conn:
            return await self._attempts(conn, sql)

    async def attempt(self, run_id: str) -> TaskAttempt | None:
        """One task attempt by its run id."""
        async with self._read() as conn:
            found = await self._attempts(
                conn, select(t.task_attempts).where(t.task_attempts.c.run_id == run_id)
            )
        return found[0] if found else None

    async def attempts_by_id(self, run_ids: Sequence[str]) -> list[TaskAttempt]:
        """The attempts of these run ids that the store knows, in no particular order."""
        a = t.task_attempts
        found: list[TaskAttempt] = []
        async with self._read() as conn:
            for chunk in _chunks(sorted(set(run_ids))):
                found += await self._attempts(conn, select(a).where(a.c.run_id.in_(chunk)))
        return found

    async def latest_attempts(self, *, partition: str | None = None) -> list[TaskAttempt]:
        """The last attempt of each task (in `partition`, if given), in one query: what a graph
        of every task colours its tasks by."""
        a = t.task_attempts
        at = func.coalesce(a.c.requested_at, a.c.started_at, a.c.ended_at)
        rank = (
            func.row_number()
            .over(
                partition_by=(a.c.pipeline, a.c.task),
                order_by=(at.desc(), a.c.attempt.desc(), a.c.run_id.desc()),
            )
            .label("rank")
        )
        ranked = select(a, rank)
        if partition is not None:
            ranked = ranked.where(a.c.partition == partition)
        inner = ranked.subquery()
        sql = select(*(inner.c[c.name] for c in a.columns)).where(inner.c.rank == 1)
        async with self._read() as conn:
            return await self._attempts(conn, sql.order_by(inner.c.pipeline, inner.c.task))

    async def grid(
        self, pipeline: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[GridRow]:
        """A pipeline's partitions, newest activity (task request or run start) first, each with
        its tasks' last attempts; a task the partition's last run skipped without an attempt
        of its own there shows that outcome. Three queries a page, whatever its size."""
        a, r = t.task_attempts, t.pipeline_runs
        when = func.coalesce(a.c.requested_at, a.c.started_at, a.c.ended_at)
        activity = union_all(
            select(a.c.partition, when.label("at")).where(a.c.pipeline == pipeline),
            select(r.c.partition, r.c.started_at.label("at")).where(r.c.pipeline == pipeline),
        ).subquery()
        per = (
            select(activity.c.partition, func.max(activity.c.at).label("last"))
            .group_by(activity.c.partition)
            .subquery()
        )
        where: list[Any] = [per.c.last.is_not(None)]
        if cursor is not None:
            at, key = _uncursor(cursor)
            where.append(or_(per.c.last < at, and_(per.c.last == at, per.c.partition < key)))
        n = _limit(limit)
        page = (
            select(per.c.partition, per.c.last)
            .where(*where)
            .order_by(per.c.last.desc(), per.c.partition.desc())
            .limit(n + 1)
        )
        async with self._read() as conn:
            total = await conn.scalar(select(func.count()).select_from(per))
            rows = [(row.partition, row.last) for row in await conn.execute(page)]
            keys = [key for key, _ in rows[:n]]
            ranked = (
                select(
                    a,
                    func.row_number()
                    .over(
                        partition_by=(a.c.partition, a.c.task),
                        order_by=(when.desc(), a.c.attempt.desc(), a.c.run_id.desc()),
                    )
                    .label("n"),
                    func.count().over(partition_by=(a.c.partition, a.c.task)).label("total"),
                )
                .where(a.c.pipeline == pipeline, a.c.partition.in_(keys))
                .subquery()
            )
            last_attempts = (await conn.execute(select(ranked).where(ranked.c.n == 1))).mappings()
            attempts = [
                (TaskAttempt(**{k: v for k, v in row.items() if k not in ("n", "total")}), row)
                for row in last_attempts
            ]
            runs = (
                select(
                    r.c.run_id,
                    r.c.partition,
                    r.c.started_at,
                    r.c.tasks,
                    func.row_number()
                    .over(
                        partition_by=r.c.partition,
                        order_by=(r.c.started_at.desc(), r.c.run_id.desc()),
                    )
                    .label("n"),
                )
                .where(r.c.pipeline == pipeline, r.c.partition.in_(keys))
                .subquery()
            )
            last_runs = {
                row.partition: row for row in await conn.execute(select(runs).where(runs.c.n == 1))
            }
        cells: dict[str, dict[str, GridCell]] = {key: {} for key in keys}
        for attempt, row in attempts:
            cells[attempt.partition][attempt.task] = GridCell(
                task=attempt.task,
                status=attempt.status,
                attempt=attempt.attempt,
                attempts=row["total"],
                run_id=attempt.run_id,
                pipeline_run_id=attempt.pipeline_run_id,
                at=attempt.ended_at or attempt.started_at or attempt.requested_at,
                detail=attempt.error or attempt.skipped,
            )
        for key, run in last_runs.items():
            for outcome in run.tasks:
                if outcome.get("status") not in ("skipped", "upstream_failed"):
                    continue
                known = cells[key].get(outcome["task"])
                if known is not None and (
                    known.pipeline_run_id == run.run_id
                    or (known.at is not None and known.at > run.started_at)
                ):
                    continue
                cells[key][outcome["task"]] = GridCell(
                    task=outcome["task"],
                    status=outcome["status"],
                    attempt=0,
                    attempts=known.attempts if known is not None else 0,
                    pipeline_run_id=run.run_id,
                    at=run.started_at,
                    detail=_never_ran(outcome["status"]),
                )
        shown = rows[:n]
        return Page(
            items=[
                GridRow(partition=key, last_activity=last, cells=cells[key]) for key, last in shown
            ],
            total=total or 0,
            next_cursor=_cursor_at(shown[-1][1], shown[-1][0]) if len(rows) > n else None,
        )

    async def pipeline_summaries(self) -> list[PipelineSummary]:
        """Every pipeline with runs in the history: its runs counted, and its newest run."""
        r = t.pipeline_runs
        counts = select(
            r.c.pipeline,
            func.count().label("runs"),
            func.sum(case((r.c.status == "running", 1), else_=0)).label("running"),
            func.sum(case((r.c.status == "failed", 1), else_=0)).label("failed"),
        ).group_by(r.c.pipeline)
        ranked = select(
            r,
            func.row_number()
            .over(partition_by=r.c.pipeline, order_by=(r.c.started_at.desc(), r.c.run_id.desc()))
            .label("n"),
        ).subquery()
        async with self._read() as conn:
            found = list(await conn.execute(counts.order_by(r.c.pipeline)))
            newest = {
                row["pipeline"]: PipelineRun(**{k: v for k, v in row.items() if k != "n"})
                for row in (await conn.execute(select(ranked).where(ranked.c.n == 1))).mappings()
            }
        return [
            PipelineSummary(
                pipeline=row.pipeline,
                runs=row.runs,
                running=row.running or 0,
                failed=row.failed or 0,
                last=newest.get(row.pipeline),
            )
            for row in found
        ]

    @staticmethod
    async def _attempts(conn: AsyncConnection, sql: Select[Any]) -> list[TaskAttempt]:
        return [TaskAttempt(**row) for row in (await conn.execute(sql)).mappings()]

    # -- datasets --------------------------------------------------------------------------------
    async def versions(
        self, dataset: str, *, partition: str | None = None, limit: int = 100
    ) -> list[DatasetVersionRecord]:
        """Versions of a dataset (of one partition), newest first."""
        v = t.dataset_versions
        where = [v.c.dataset == dataset]
        if partition is not None:
            where.append(v.c.partition == partition)
        sql = select(v).where(*where).order_by(v.c.version.desc()).limit(_limit(limit))
        async with self._read() as conn:
            return [DatasetVersionRecord(**row) for row in (await conn.execute(sql)).mappings()]

    async def freshness(
        self, dataset: str | None = None, *, now: datetime | None = None
    ) -> list[Freshness]:
        """The newest version of each partition (of `dataset`, or of all), with its age."""
        v = t.dataset_versions
        newest = select(v.c.dataset, v.c.partition, func.max(v.c.version).label("version"))
        if dataset is not None:
            newest = newest.where(v.c.dataset == dataset)
        latest = newest.group_by(v.c.dataset, v.c.partition).subquery()
        sql = (
            select(v)
            .join(
                latest,
                and_(
                    v.c.dataset == latest.c.dataset,
                    v.c.partition == latest.c.partition,
                    v.c.version == latest.c.version,
                ),
            )
            .order_by(v.c.dataset, v.c.partition)
        )
        at = now or datetime.now(UTC)
        async with self._read() as conn:
            return [
                Freshness(**row, age_s=(at - row["time"]).total_seconds())
                for row in (await conn.execute(sql)).mappings()
            ]

    async def violations(
        self,
        *,
        kind: str | None = None,
        name: str | None = None,
        partition: str | None = None,
        open_only: bool = True,
        limit: int = 100,
    ) -> list[FreshnessViolation]:
        """Freshness violations, the latest due first: open ones only (what is late now, and
        since when) unless `open_only` is False; of one `kind` (`dataset`, `task`), one dataset
        or task, one partition."""
        f = t.freshness
        where: list[Any] = [f.c.violated_at.is_not(None)]
        if open_only:
            where.append(f.c.recovered_at.is_(None))
        if kind is not None:
            where.append(f.c.kind == kind)
        if name is not None:
            where.append(f.c.name == name)
        if partition is not None:
            where.append(f.c.partition == partition)
        sql = (
            select(f)
            .where(*where)
            .order_by(f.c.expected_by.desc(), f.c.name, f.c.partition)
            .limit(_limit(limit))
        )
        async with self._read() as conn:
            rows = (await conn.execute(sql)).mappings().all()
        return [FreshnessViolation(**{k: v for k, v in r.items() if k != "key"}) for r in rows]

    async def latest_versions(
        self, *, partition: str | None = None, now: datetime | None = None
    ) -> list[LatestVersion]:
        """The newest version of each dataset with one (by announcement time over its
        partitions, or the newest of `partition`), and how many partitions it has: one query."""
        v = t.dataset_versions
        newest = (
            select(v.c.dataset, v.c.partition, func.max(v.c.version).label("version"))
            .group_by(v.c.dataset, v.c.partition)
            .subquery()
        )
        first = [] if partition is None else [case((v.c.partition == partition, 0), else_=1)]
        ranked = (
            select(
                v,
                func.count().over(partition_by=v.c.dataset).label("partitions"),
                func.row_number()
                .over(
                    partition_by=v.c.dataset,
                    order_by=(*first, v.c.time.desc(), v.c.version.desc(), v.c.partition.desc()),
                )
                .label("rank"),
            )
            .join(
                newest,
                and_(
                    v.c.dataset == newest.c.dataset,
                    v.c.partition == newest.c.partition,
                    v.c.version == newest.c.version,
                ),
            )
            .subquery()
        )
        where = [ranked.c.rank == 1]
        if partition is not None:
            where.append(ranked.c.partition == partition)
        sql = (
            select(*(ranked.c[c.name] for c in v.columns), ranked.c.partitions)
            .where(*where)
            .order_by(ranked.c.dataset)
        )
        at = now or datetime.now(UTC)
        async with self._read() as conn:
            return [
                LatestVersion(**row, age_s=(at - row["time"]).total_seconds())
                for row in (await conn.execute(sql)).mappings()
            ]

    async def partitions(self, *, dataset: str | None = None, limit: int = 100) -> list[str]:
        """Partition keys with a version (of `dataset`, or of any), the most recently announced
        first; the empty key of unpartitioned datasets is left out."""
        v = t.dataset_versions
        where = [v.c.partition != ""]
        if dataset is not None:
            where.append(v.c.dataset == dataset)
        last = func.max(v.c.time)
        sql = (
            select(v.c.partition)
            .where(*where)
            .group_by(v.c.partition)
            .order_by(last.desc(), v.c.partition.desc())
            .limit(_limit(limit))
        )
        async with self._read() as conn:
            return list((await conn.scalars(sql)).all())

    async def provenance(self, versions: Sequence[DatasetVersionRecord]) -> list[Provenance]:
        """For each version (in the order given): its producer, each input version it was made
        from beside the newest version of that input partition now, and the newest outcome of
        each check on it. Three queries whatever the number of versions."""
        producers = {
            p.run_id: p
            for p in await self.attempts_by_id([v.producer for v in versions if v.producer])
        }
        wanted = sorted({(i.dataset, i.partition) for p in producers.values() for i in p.inputs})
        v, c = t.dataset_versions, t.checks
        now: dict[tuple[str, str], tuple[int, datetime]] = {}
        outcomes: dict[tuple[str, str, int], dict[str, CheckOutcome]] = {}
        refs = sorted({(x.dataset, x.partition, x.version) for x in versions})
        async with self._read() as conn:
            for pairs in _chunks(wanted):
                key = tuple_(v.c.dataset, v.c.partition)
                newest = (
                    select(v.c.dataset, v.c.partition, func.max(v.c.version).label("version"))
                    .where(key.in_(pairs))
                    .group_by(v.c.dataset, v.c.partition)
                    .subquery()
                )
                sql = select(v.c.dataset, v.c.partition, v.c.version, v.c.time).join(
                    newest,
                    and_(
                        v.c.dataset == newest.c.dataset,
                        v.c.partition == newest.c.partition,
                        v.c.version == newest.c.version,
                    ),
                )
                for row in await conn.execute(sql):
                    now[(row.dataset, row.partition)] = (row.version, row.time)
            for chunk in _chunks(refs):
                sql = select(c).where(tuple_(c.c.dataset, c.c.partition, c.c.version).in_(chunk))
                for check in (await conn.execute(sql.order_by(c.c.time, c.c.run_id))).mappings():
                    outcome = CheckOutcome(**check)
                    kept = outcomes.setdefault(
                        (outcome.dataset, outcome.partition, outcome.version), {}
                    )
                    kept[outcome.check] = outcome  # later rows are newer
        found: list[Provenance] = []
        for x in versions:
            producer = producers.get(x.producer) if x.producer else None
            inputs: list[InputNow] = []
            for i in producer.inputs if producer else ():
                # an input the store no longer holds (pruned) counts as the newest there is
                latest, latest_time = now.get((i.dataset, i.partition), (i.version, x.time))
                inputs.append(InputNow(**i.model_dump(), newest=latest, newest_time=latest_time))
            checks = outcomes.get((x.dataset, x.partition, x.version), {})
            found.append(
                Provenance(
                    version=VersionRef(dataset=x.dataset, partition=x.partition, version=x.version),
                    producer=producer,
                    inputs=inputs,
                    checks=sorted(checks.values(), key=lambda o: o.check),
                )
            )
        return found

    async def lineage(
        self, dataset: str, partition: str, version: int, *, depth: int = 3
    ) -> Lineage | None:
        """Where a version came from and where it went, `depth` steps each way; None if the
        store has never seen it."""
        async with self._read() as conn:
            root = await self._version(
                conn, VersionRef(dataset=dataset, partition=partition, version=version)
            )
            if root is None:
                return None
            return await self._lineage(conn, root, depth, up=True, down=True)

    async def _version(self, conn: AsyncConnection, ref: VersionRef) -> DatasetVersionRecord | None:
        v = t.dataset_versions
        sql = select(v).where(
            v.c.dataset == ref.dataset, v.c.partition == ref.partition, v.c.version == ref.version
        )
        row = (await conn.execute(sql)).mappings().first()
        return DatasetVersionRecord(**row) if row is not None else None

    async def _lineage(
        self, conn: AsyncConnection, ref: VersionRef, depth: int, *, up: bool, down: bool
    ) -> Lineage:
        known = ref if isinstance(ref, DatasetVersionRecord) else await self._version(conn, ref)
        producer = None
        if known is not None and known.producer is not None:
            found = await self._attempts(
                conn, select(t.task_attempts).where(t.task_attempts.c.run_id == known.producer)
            )
            producer = found[0] if found else None
        node = Lineage(
            dataset=ref.dataset,
            partition=ref.partition,
            version=ref.version,
            time=known.time if known else None,
            metadata=known.metadata if known else {},
            producer=producer,
        )
        if depth <= 0:
            return node
        upstream: list[Lineage] = []
        if up and producer is not None:
            for source in producer.inputs:
                upstream.append(await self._lineage(conn, source, depth - 1, up=True, down=False))
        downstream: list[Consumer] = []
        if down:
            for attempt in await self._consumers(conn, ref):
                outputs = [
                    await self._lineage(conn, out, depth - 1, up=False, down=True)
                    for out in await self._produced(conn, attempt.run_id)
                ]
                downstream.append(Consumer(attempt=attempt, outputs=outputs))
        return node.model_copy(update={"upstream": upstream, "downstream": downstream})

    async def _consumers(self, conn: AsyncConnection, ref: VersionRef) -> list[TaskAttempt]:
        a, i = t.task_attempts, t.attempt_inputs
        sql = (
            select(a)
            .join(i, i.c.run_id == a.c.run_id)
            .where(
                i.c.dataset == ref.dataset,
                i.c.partition == ref.partition,
                i.c.version == ref.version,
            )
            .order_by(a.c.requested_at, a.c.run_id)
        )
        return await self._attempts(conn, sql)

    async def _produced(self, conn: AsyncConnection, run_id: str) -> list[DatasetVersionRecord]:
        v = t.dataset_versions
        sql = select(v).where(v.c.producer == run_id).order_by(v.c.dataset, v.c.partition)
        return [DatasetVersionRecord(**row) for row in (await conn.execute(sql)).mappings()]

    # -- checks, dead letters, events, logs ------------------------------------------------------
    async def checks(
        self,
        *,
        dataset: str | None = None,
        partition: str | None = None,
        passed: bool | None = None,
        limit: int = 100,
    ) -> list[CheckOutcome]:
        """Check outcomes, newest first."""
        c = t.checks
        where: list[Any] = []
        if dataset is not None:
            where.append(c.c.dataset == dataset)
        if partition is not None:
            where.append(c.c.partition == partition)
        if passed is not None:
            where.append(c.c.passed == passed)
        sql = select(c).where(*where).order_by(c.c.time.desc(), c.c.run_id).limit(_limit(limit))
        async with self._read() as conn:
            return [CheckOutcome(**row) for row in (await conn.execute(sql)).mappings()]

    async def dead_letters(
        self, *, since: datetime | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        """Dead letters, newest first."""
        d = t.dead_letters
        where = [d.c.time >= since] if since is not None else []
        sql = select(d).where(*where).order_by(d.c.time.desc(), d.c.id).limit(_limit(limit))
        async with self._read() as conn:
            return [DeadLetterRecord(**row) for row in (await conn.execute(sql)).mappings()]

    async def events(
        self,
        *,
        types: Sequence[str] = (),
        dataset: str | None = None,
        pipeline: str | None = None,
        after_seq: int | None = None,
        after_id: str | None = None,
        before_seq: int | None = None,
        since: datetime | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[EventRecord]:
        """Events in the order the store received them (or the reverse), filtered: a live feed
        passes the last `seq` it saw as `after_seq` (or the last event id as `after_id`); a
        page of older ones, the first `seq` it shows as `before_seq`."""
        e = t.events
        where: list[Any] = []
        if types:
            where.append(e.c.type.in_(list(types)))
        if dataset is not None:
            where.append(e.c.dataset == dataset)
        if pipeline is not None:
            where.append(e.c.pipeline == pipeline)
        if after_seq is not None:
            where.append(e.c.seq > after_seq)
        if after_id is not None:
            where.append(e.c.seq > select(e.c.seq).where(e.c.id == after_id).scalar_subquery())
        if before_seq is not None:
            where.append(e.c.seq < before_seq)
        if since is not None:
            where.append(e.c.time >= since)
        order = e.c.seq.desc() if newest_first else e.c.seq
        sql = select(e).where(*where).order_by(order).limit(_limit(limit))
        async with self._read() as conn:
            return [EventRecord(**row) for row in (await conn.execute(sql)).mappings()]

    async def logs(self, run_id: str) -> list[LogLine]:
        """The log lines of one task attempt, in the order they were logged."""
        g = t.task_logs
        sql = select(g).where(g.c.run_id == run_id).order_by(g.c.seq, g.c.line)
        async with self._read() as conn:
            return [LogLine(**row) for row in (await conn.execute(sql)).mappings()]

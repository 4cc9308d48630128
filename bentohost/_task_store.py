"""The durable task store: one SQLite file in WAL mode, shared by every worker.

Each worker process opens one connection and uses it from one thread
(``_task_runner`` hands it every call), so "database is locked" (BentoML #5525) can
only come from another process: the store waits for it (``busy_timeout``), keeps
every transaction to a statement or two, takes the write lock first in the few
that write twice (``BEGIN IMMEDIATE``, so a reader never has to upgrade), and
retries what still fails a bounded number of times.

Rows (``bh_tasks``) hold the small columns first and the two blobs last, so that a
status poll never reads through a large input or result:

* ``pending``: queued, no owner; any worker of the service with a free slot claims
  the oldest (``claim``);
* ``in_progress``: its ``owner`` (one token per worker process, ``bh_task_owners``)
  runs it;
* ``completed`` / ``failed``: the response is stored (status < 400 or not);
* ``canceled``: by ``cancel``; a result that arrives later is dropped.

A task whose owner died mid-run is marked ``failed`` with a 500 by ``recover``:
re-running it could crash every worker in turn on the same input, and a task may
have side effects; ``retry`` re-runs it on request. Its owner counts as dead when
its process is gone (same host: pid and start time) or, on another host, when it
has not beaten for ``LEASE_S``. Finished rows are deleted ``ttl`` seconds after they
finished (read as absent from then on).
"""

from __future__ import annotations

import enum
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple, TypeVar

__all__ = ["TaskStatus", "TaskRow", "StoredResult", "TaskStore", "Owner", "this_process", "LEASE_S"]

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
RETRIES = 8
LEASE_S = 60.0
SWEEP_BATCH = 500

CRASHED_BODY = b'{"error":"The worker running this task exited before it finished; retry it to run it again"}'


class TaskStatus(str, enum.Enum):
    """BentoML's ``ResultStatus`` values."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


FINISHED = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED)


class TaskRow(NamedTuple):
    task_id: str
    name: str
    status: TaskStatus
    created_at: float
    executed_at: float | None
    completed_at: float | None


class StoredResult(NamedTuple):
    status: int
    content_type: str
    body: bytes
    headers: str | None


class Owner(NamedTuple):
    token: str
    host: str
    pid: int
    started: str  # the process's start time (/proc/<pid>/stat field 22), "" if unknown


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bh_tasks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id TEXT NOT NULL UNIQUE,
        service TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        owner TEXT,
        created_at REAL NOT NULL,
        executed_at REAL,
        completed_at REAL,
        result_status INTEGER,
        result_ctype TEXT,
        result_headers TEXT,
        input BLOB NOT NULL,
        result_body BLOB
    )""",
    "CREATE INDEX IF NOT EXISTS bh_tasks_queue ON bh_tasks (service, status, seq)",
    "CREATE INDEX IF NOT EXISTS bh_tasks_owner ON bh_tasks (owner, status)",
    "CREATE INDEX IF NOT EXISTS bh_tasks_done ON bh_tasks (completed_at) WHERE completed_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS bh_task_owners (
        token TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started TEXT NOT NULL,
        beat REAL NOT NULL
    )""",
)

_ROW = "task_id, name, status, created_at, executed_at, completed_at"


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat, or None when the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("latin-1")
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2 :].split()
    if not rest or rest[0] in ("Z", "X"):
        return None
    return rest[19] if len(rest) > 19 else ""


def _host() -> str:
    """This machine and PID namespace: pids are comparable only within one (containers
    sharing a host name and a store see each other's owners as remote, judged by beat)."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    return f"{socket.gethostname()}/{ns}"


def this_process(token: str) -> Owner:
    return Owner(token, _host(), os.getpid(), _start_time(os.getpid()) or "")


def _alive(host: str, pid: int, started: str, beat: float, now: float, me: Owner) -> bool:
    if host != me.host:
        return beat > now - LEASE_S
    if pid == me.pid:
        return started == me.started
    current = _start_time(pid)
    if current is None:
        return False
    if started and current != started:
        return False  # the pid was reused
    if not started and not os.path.exists(f"/proc/{pid}"):
        return False
    return True


def _transient(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _row(r: tuple) -> TaskRow:
    return TaskRow(r[0], r[1], TaskStatus(r[2]), r[3], r[4], r[5])


class TaskStore:
    """One process's connection to the store. Not thread-safe: one thread calls it."""

    def __init__(self, path: str, ttl: float) -> None:
        self.path = path
        self.ttl = float(ttl)
        self._conn: sqlite3.Connection | None = None

    # -- connection

    def open(self) -> None:
        parent = os.path.dirname(self.path)
        if parent:
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise RuntimeError(f"cannot create the task store's directory {parent}: {exc}") from None
        try:
            self._setup()
        except sqlite3.Error as exc:
            self.close()
            raise RuntimeError(
                f"cannot open the task store {self.path}: {exc} (set BENTOHOST_TASK_STORE or tasks.store)"
            ) from None

    def _setup(self) -> None:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        self._conn = conn
        self._retry(lambda: conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}"))
        mode = self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
        if mode is None or str(mode[0]).lower() != "wal":
            raise RuntimeError(f"task store {self.path}: cannot use WAL mode (journal_mode is {mode and mode[0]!r})")
        # WAL + NORMAL: a commit survives a crash of the process; only a power loss can
        # lose the last ones (never corrupting the file)
        conn.execute("PRAGMA synchronous=NORMAL")

        def create() -> None:
            with self._write():
                for stmt in _SCHEMA:
                    conn.execute(stmt)

        self._retry(create)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the task store is not open")
        return self._conn

    def _retry(self, fn: Callable[[], T]) -> T:
        """``fn()``, again after a short pause while another process holds the lock."""
        for attempt in range(RETRIES):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _transient(exc) or attempt == RETRIES - 1:
                    raise
                time.sleep(min(0.5, 0.01 * (2**attempt)))
        raise AssertionError("unreachable")

    class _Txn:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type: object, *_: object) -> None:
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                    return
                except BaseException:
                    self.conn.execute("ROLLBACK")  # the retry starts a new transaction
                    raise
            self.conn.execute("ROLLBACK")

    def _write(self) -> TaskStore._Txn:
        return TaskStore._Txn(self.conn)

    def _fresh(self, now: float) -> float:
        """Finished rows older than this are expired."""
        return now - self.ttl

    # -- owners

    def register(self, me: Owner) -> None:
        self._retry(
            lambda: self.conn.execute(
                "INSERT OR REPLACE INTO bh_task_owners (token, host, pid, started, beat) VALUES (?, ?, ?, ?, ?)",
                (me.token, me.host, me.pid, me.started, time.time()),
            )
        )

    def beat(self, me: Owner) -> None:
        self._retry(lambda: self.conn.execute("UPDATE bh_task_owners SET beat = ? WHERE token = ?", (time.time(), me.token)))

    def unregister(self, me: Owner) -> None:
        self._retry(lambda: self.conn.execute("DELETE FROM bh_task_owners WHERE token = ?", (me.token,)))

    def recover(self, me: Owner) -> int:
        """Fail the running tasks of dead owners and forget those owners; how many failed."""
        now = time.time()
        owners = self._retry(lambda: self.conn.execute("SELECT token, host, pid, started, beat FROM bh_task_owners").fetchall())
        dead = [o[0] for o in owners if o[0] != me.token and not _alive(o[1], o[2], o[3], o[4], now, me)]
        # Rows of owners that left no owner row (an older store, a row removed by hand)
        orphans = self._retry(
            lambda: self.conn.execute(
                "SELECT DISTINCT owner FROM bh_tasks WHERE status = ? AND owner IS NOT NULL "
                "AND owner NOT IN (SELECT token FROM bh_task_owners)",
                (TaskStatus.IN_PROGRESS.value,),
            ).fetchall()
        )
        dead.extend(o[0] for o in orphans)
        failed = 0
        for token in dead:
            failed += self._retry(lambda token=token: self._fail_owner(token, now))
        return failed

    def _fail_owner(self, token: str, now: float) -> int:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE bh_tasks SET status = ?, completed_at = ?, result_status = 500, "
                "result_ctype = 'application/json', result_headers = NULL, result_body = ? "
                "WHERE owner = ? AND status = ?",
                (TaskStatus.FAILED.value, now, CRASHED_BODY, token, TaskStatus.IN_PROGRESS.value),
            )
            conn.execute("DELETE FROM bh_task_owners WHERE token = ?", (token,))
            return cur.rowcount

    # -- tasks

    def insert(self, task_id: str, service: str, name: str, blob: bytes, owner: str | None) -> TaskStatus:
        """A new task, running at once under ``owner`` when given, else pending."""
        now = time.time()
        status = TaskStatus.IN_PROGRESS if owner is not None else TaskStatus.PENDING
        self._retry(
            lambda: self.conn.execute(
                "INSERT INTO bh_tasks (task_id, service, name, status, owner, created_at, executed_at, input) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, service, name, status.value, owner, now, now if owner else None, blob),
            )
        )
        return status

    def _find(self, conn: sqlite3.Connection, columns: str, service: str, task_id: str) -> tuple | None:
        """The row's TaskRow columns then ``columns``, unless it is unknown or expired."""
        return conn.execute(
            f"SELECT {_ROW}{', ' + columns if columns else ''} FROM bh_tasks "
            "WHERE task_id = ? AND service = ? AND (completed_at IS NULL OR completed_at >= ?)",
            (task_id, service, self._fresh(time.time())),
        ).fetchone()

    def get_row(self, service: str, task_id: str) -> TaskRow | None:
        r = self._retry(lambda: self._find(self.conn, "", service, task_id))
        return _row(r) if r is not None else None

    def get_result(self, service: str, task_id: str) -> tuple[TaskRow, StoredResult | None] | None:
        columns = "result_status, result_ctype, result_headers, result_body"
        r = self._retry(lambda: self._find(self.conn, columns, service, task_id))
        if r is None:
            return None
        row = _row(r)
        if r[6] is None:
            return row, None
        return row, StoredResult(int(r[6]), r[7] or "application/octet-stream", bytes(r[9] or b""), r[8])

    def get_input(self, service: str, task_id: str) -> tuple[TaskRow, bytes] | None:
        r = self._retry(lambda: self._find(self.conn, "input", service, task_id))
        return (_row(r), bytes(r[6])) if r is not None else None

    def claim(self, service: str, owner: str, limit: int) -> list[tuple[str, str, bytes]]:
        """Take up to ``limit`` of the oldest pending tasks: ``(task_id, name, input)``."""
        if limit <= 0:
            return []
        # a read first: an idle poll takes no write lock
        if self._retry(
            lambda: self.conn.execute(
                "SELECT 1 FROM bh_tasks WHERE service = ? AND status = ? LIMIT 1", (service, TaskStatus.PENDING.value)
            ).fetchone()
        ) is None:
            return []

        def run() -> list[tuple[str, str, bytes]]:
            now = time.time()
            with self._write() as conn:
                rows = conn.execute(
                    "SELECT seq, task_id, name, input FROM bh_tasks WHERE service = ? AND status = ? ORDER BY seq LIMIT ?",
                    (service, TaskStatus.PENDING.value, int(limit)),
                ).fetchall()
                if rows:
                    marks = ",".join("?" * len(rows))
                    conn.execute(
                        f"UPDATE bh_tasks SET status = ?, owner = ?, executed_at = ? WHERE seq IN ({marks})",
                        (TaskStatus.IN_PROGRESS.value, owner, now, *(r[0] for r in rows)),
                    )
                return [(r[1], r[2], bytes(r[3])) for r in rows]

        return self._retry(run)

    def finish(self, task_id: str, owner: str, result: StoredResult) -> bool:
        """Store a run's response; False when the task is no longer this owner's to finish
        (canceled meanwhile, or failed by a recovery that thought the owner dead)."""
        status = TaskStatus.COMPLETED if result.status < 400 else TaskStatus.FAILED
        cur = self._retry(
            lambda: self.conn.execute(
                "UPDATE bh_tasks SET status = ?, completed_at = ?, result_status = ?, result_ctype = ?, "
                "result_headers = ?, result_body = ? WHERE task_id = ? AND owner = ? AND status = ?",
                (
                    status.value, time.time(), result.status, result.content_type, result.headers,
                    result.body, task_id, owner, TaskStatus.IN_PROGRESS.value,
                ),
            )
        )  # fmt: skip
        return cur.rowcount == 1

    def cancel(self, service: str, task_id: str) -> tuple[TaskRow, bool, str | None] | None:
        """Cancel a pending or running task: ``(row after, whether this call canceled it,
        the owner that was running it)``; None when unknown."""

        def run() -> tuple[TaskRow, bool, str | None] | None:
            now = time.time()
            with self._write() as conn:
                r = self._find(conn, "owner", service, task_id)
                if r is None:
                    return None
                row = _row(r)
                if row.status in FINISHED:
                    return row, False, None
                executed = row.executed_at if row.executed_at is not None else now
                conn.execute(
                    "UPDATE bh_tasks SET status = ?, completed_at = ?, executed_at = ? WHERE task_id = ?",
                    (TaskStatus.CANCELED.value, now, executed, task_id),
                )
                after = row._replace(status=TaskStatus.CANCELED, completed_at=now, executed_at=executed)
                return after, True, r[6] if row.status is TaskStatus.IN_PROGRESS else None

        return self._retry(run)

    def canceled_among(self, task_ids: Iterable[str]) -> list[str]:
        """Which of these (running here) were canceled by a request to another worker."""
        ids = list(task_ids)[:SWEEP_BATCH]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._retry(
            lambda: self.conn.execute(
                f"SELECT task_id FROM bh_tasks WHERE task_id IN ({marks}) AND status = ?",
                (*ids, TaskStatus.CANCELED.value),
            ).fetchall()
        )
        return [r[0] for r in rows]

    def sweep(self) -> int:
        """Delete up to ``SWEEP_BATCH`` expired rows; how many went."""
        cutoff = self._fresh(time.time())
        cur = self._retry(
            lambda: self.conn.execute(
                "DELETE FROM bh_tasks WHERE seq IN (SELECT seq FROM bh_tasks "
                "WHERE completed_at IS NOT NULL AND completed_at < ? LIMIT ?)",
                (cutoff, SWEEP_BATCH),
            )
        )
        return cur.rowcount

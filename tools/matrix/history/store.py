"""The history store: one interface, two backends (an SQLite file, the default; PostgreSQL by URL, through
psycopg 3), the same tables (schema.py) and the same SQL (written with `?` parameters; PostgreSQL's `%s`
are put in by the backend).

Every failure of the store is a StoreError: one line naming the store and what to do. A run is
appended in one transaction: a process killed mid-append leaves the store as it was. Appends are
serialised (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-level advisory lock), so two `report`s
appending at once both land whole, one after the other.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

from tools.matrix.errors import UserError
from tools.matrix.history import schema
from tools.matrix.records import KEY_FIELDS, Record, RunInfo

SQLITE_CACHE_KIB = 64 * 1024  # a run's 100,000 results touch that much of the tables and indexes
DEFAULT_TIMEOUT_S = 30.0  # how long an append waits for another process's append
_ADVISORY_LOCK = 0x746D6878  # PostgreSQL: "tmhx", the lock every append takes
_URL = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")  # a URL's password is never printed


class StoreError(UserError):
    """The history store could not be read or appended (the report itself is written regardless)."""


def is_url(location: str) -> bool:
    return bool(_URL.match(location))


def shown_location(location: str) -> str:
    return _PASSWORD.sub(r"\1***@", location)


class Store:
    """A history store. Use `open_store`; close it (or use it as a context manager) when done."""

    param = "?"
    serial = "INTEGER PRIMARY KEY"
    clustered = " WITHOUT ROWID"
    what = "sqlite"

    def __init__(self, location: str, conn: Any, timeout_s: float):
        self.location, self.conn, self.timeout_s = location, conn, timeout_s

    # -- what differs between the backends -------------------------------------------------------
    def _begin_write(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")  # waits up to timeout_s for another writer
        self.conn.execute(f"PRAGMA cache_size = {-SQLITE_CACHE_KIB}")

    def _tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}

    def _insert_results(self, rows: list[tuple[Any, ...]]) -> None:
        names = (*schema.RESULT_NAMES, "run_seq", "test_id")
        self.conn.executemany(f"INSERT INTO results ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", rows)

    def _problem(self, e: Exception) -> str:
        """One line on a backend error: what it means for this store and what to do."""
        text = str(e)
        if isinstance(e, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
            return f"not a readable history database (sqlite: {text}); move it away and the next `report` starts a new history there"
        if "locked" in text or "busy" in text:
            return f"locked by another process for more than {self.timeout_s:g} s (sqlite: {text}); run the command again when that process is done"
        if "readonly" in text or "unable to open" in text:
            return f"cannot be written (sqlite: {text}); give --history a location you can write, or --history none"
        if "full" in text:
            return f"the disk or the database is full (sqlite: {text}); free space, or `history prune --keep N`"
        return f"sqlite: {text}"

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def _safe(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        return values

    # -- the same for both ---------------------------------------------------------------------------
    def sql(self, text: str) -> str:
        return text if self.param == "?" else text.replace("?", self.param)

    def query(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.guard():
            return list(self.conn.execute(self.sql(text), tuple(params)).fetchall())

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Any backend error inside becomes one StoreError line naming this store."""
        try:
            yield
        except StoreError:
            raise
        except self._errors() as e:
            raise StoreError(f"history {shown_location(self.location)}: {self._problem(e)}") from None

    def has_history(self) -> bool:
        """The store holds a history this version reads (False: a new, empty store; StoreError: not ours)."""
        with self.guard():
            if not self._tables():
                return False
        self.check_readable()
        return True

    def check_readable(self) -> None:
        """Refuse a store this version cannot read (a newer schema, not a history at all)."""
        with self.guard():
            tables = self._tables()
            if "meta" not in tables:
                raise StoreError(f"history {shown_location(self.location)}: not a torch-matrix history"
                                 + (f" (it holds tables {', '.join(sorted(tables))} but no `meta`)" if tables else " (it is empty)"))  # fmt: skip
            self._version()

    def _version(self) -> int:
        rows = self.conn.execute(self.sql("SELECT value FROM meta WHERE name = ?"), ("schema_version",)).fetchall()
        version = int(rows[0][0]) if rows and str(rows[0][0]).isdigit() else -1
        if version > schema.SCHEMA_VERSION:
            raise StoreError(f"history {shown_location(self.location)}: written by a newer torch-matrix (schema version {version}; this one "
                             f"reads up to {schema.SCHEMA_VERSION}); upgrade torch-matrix, or give --history another store")  # fmt: skip
        if version < 1:
            raise StoreError(f"history {shown_location(self.location)}: not a torch-matrix history (no schema version in `meta`)")
        return version

    def _prepare(self) -> None:
        """In the write transaction: create the tables, or migrate an older store forward."""
        tables = self._tables()
        if not tables:
            for statement in schema.create_statements(self.serial, self.clustered):
                self.conn.execute(statement)
            self.conn.execute(self.sql("INSERT INTO meta (name, value) VALUES (?, ?)"), ("schema_version", str(schema.SCHEMA_VERSION)))
            return
        if "meta" not in tables:
            self.check_readable()  # raises: not ours
        version = self._version()
        for step in range(version, schema.SCHEMA_VERSION):
            for statement in schema.MIGRATIONS[step]:
                self.conn.execute(statement)
        if version < schema.SCHEMA_VERSION:
            self.conn.execute(self.sql("UPDATE meta SET value = ? WHERE name = ?"), (str(schema.SCHEMA_VERSION), "schema_version"))
        for table in ("runs", "results"):  # fields added to Record / RunInfo since the store was made
            for statement in schema.missing_columns(table, self._columns(table)):
                self.conn.execute(statement)

    def _test_ids(self, keys: set[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
        cols = ", ".join(KEY_FIELDS)
        ids = {tuple(row[1:]): row[0] for row in self.conn.execute(f"SELECT id, {cols} FROM tests")}
        new = [k for k in keys if k not in ids]
        if new:
            self._insert_tests(new)
            ids = {tuple(row[1:]): row[0] for row in self.conn.execute(f"SELECT id, {cols} FROM tests")}
        return ids

    def _insert_tests(self, keys: list[tuple[str, ...]]) -> None:
        insert = f"INSERT INTO tests ({', '.join(KEY_FIELDS)}) VALUES ({', '.join('?' * len(KEY_FIELDS))}) ON CONFLICT DO NOTHING"
        self.conn.executemany(insert, keys)

    def append(self, run: RunInfo, records: Sequence[Record]) -> int:
        """Store `run` and its fresh records (those stamped with its run_id: a record carried over from an
        earlier run is not stored again) in one transaction; the number of records stored."""
        fresh = [r for r in records if r.run_id == run.run_id]
        with self.guard():
            self._begin_write()
            try:
                self._prepare()
                names = ", ".join(schema.RUN_NAMES)
                row = self._safe(schema.run_row(run))
                seq = self.conn.execute(self.sql(f"INSERT INTO runs ({names}) VALUES ({', '.join('?' * len(row))}) RETURNING seq"), row).fetchone()[0]
                keys = [self._safe(r.key) for r in fresh]
                ids = self._test_ids(set(keys))
                rows = [self._safe(schema.result_row(r)) + (seq, ids[k]) for r, k in zip(fresh, keys)]
                rows.sort(key=itemgetter(-1))  # in primary key order: each page of the table is visited once
                self._insert_results(rows)
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._after_append()
        return len(fresh)

    def _after_append(self) -> None:
        pass  # SQLite's planner needs no statistics for these queries (they walk primary keys)

    def _rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except self._errors():
            pass  # the transaction is gone with the error (or the connection): nothing was committed

    def prune(self, keep: int) -> int:
        """Delete all but the newest `keep` runs (and the tests only they named); the number deleted."""
        with self.guard():
            self._begin_write()
            try:
                self.check_readable()
                rows = self.conn.execute(self.sql("SELECT seq FROM runs ORDER BY seq DESC LIMIT 1 OFFSET ?"), (keep,)).fetchall() if keep >= 0 else []
                removed = 0
                if rows:
                    cutoff = rows[0][0]
                    removed = self.conn.execute(self.sql("SELECT COUNT(*) FROM runs WHERE seq <= ?"), (cutoff,)).fetchone()[0]
                    self.conn.execute(self.sql("DELETE FROM results WHERE run_seq <= ?"), (cutoff,))
                    self.conn.execute(self.sql("DELETE FROM runs WHERE seq <= ?"), (cutoff,))
                    self.conn.execute("DELETE FROM tests WHERE NOT EXISTS (SELECT 1 FROM results WHERE results.test_id = tests.id)")
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._compact()
        return removed

    def _compact(self) -> None:
        self.conn.execute("VACUUM")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresStore(Store):
    param = "%s"
    serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    clustered = ""
    what = "postgresql"

    def _begin_write(self) -> None:
        self.conn.execute("BEGIN")
        self.conn.execute(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})")

    def _tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}

    def _columns(self, table: str) -> set[str]:
        query = "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s"
        return {r[0] for r in self.conn.execute(query, (table,))}

    def _insert_results(self, rows: list[tuple[Any, ...]]) -> None:
        names = (*schema.RESULT_NAMES, "run_seq", "test_id")
        with self.conn.cursor().copy(f"COPY results ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _problem(self, e: Exception) -> str:
        text = " ".join(str(e).split()) or type(e).__name__
        return f"postgresql: {text}"

    def _errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.Error,)

    def _safe(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        # PostgreSQL's text cannot hold NUL: stored as the escape the report shows it as (report/text.py).
        # (100,000 rows a run: one C-speed look for a NUL in the row's text first.)
        if "\x00" not in "".join(v for v in values if type(v) is str):
            return values
        return tuple(v.replace("\x00", "\\u0000") if type(v) is str else v for v in values)

    def _insert_tests(self, keys: list[tuple[str, ...]]) -> None:
        # A run of new names (the first run: 100,000) by COPY into a scratch table, then one INSERT.
        names = ", ".join(KEY_FIELDS)
        self.conn.execute(f"CREATE TEMP TABLE new_tests ({', '.join(f'{n} TEXT' for n in KEY_FIELDS)}) ON COMMIT DROP")
        with self.conn.cursor().copy(f"COPY new_tests ({names}) FROM STDIN") as copy:
            for key in keys:
                copy.write_row(key)
        self.conn.execute(f"INSERT INTO tests ({names}) SELECT {names} FROM new_tests ON CONFLICT DO NOTHING")

    def _after_append(self) -> None:
        # The planner's statistics follow the tables (autovacuum's come late after a bulk load): failing-since
        # took 4.6 s at 1,000,000 results without them, 0.4 s with.
        try:
            self.conn.execute("ANALYZE runs, tests, results")
        except self._errors():
            pass  # the run is committed; statistics only speed the queries up

    def _compact(self) -> None:
        pass  # PostgreSQL's autovacuum reclaims the space


def open_store(location: str, timeout_s: float = DEFAULT_TIMEOUT_S, create: bool = True) -> Store:
    """The store at `location`: a postgresql:// URL, else an SQLite file path. With create=False (the
    `history` queries), a missing SQLite file is an error rather than a new empty store."""
    if is_url(location):
        return _open_postgres(location, timeout_s)
    path = Path(location)
    if not create and not path.is_file():
        raise StoreError(f"history {location}: no such store yet; `report` creates it (or give --history)")
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): the store begins and commits its own transactions.
        conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    except (OSError, sqlite3.Error) as e:
        raise StoreError(f"history {location}: cannot open ({getattr(e, 'strerror', None) or e})") from None
    return Store(location, conn, timeout_s)


def _open_postgres(url: str, timeout_s: float) -> Store:
    import psycopg

    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout_s)))
    except psycopg.Error as e:
        raise StoreError(f"history {shown_location(url)}: cannot connect to PostgreSQL ({' '.join(str(e).split())}); "
                         "is the server up and the URL right? (--history none stores nothing)") from None  # fmt: skip
    store = PostgresStore(url, conn, timeout_s)
    # A lock held longer than this is reported as such, not waited on forever.
    with store.guard():
        conn.execute(f"SET lock_timeout = {int(timeout_s * 1000)}")
    return store

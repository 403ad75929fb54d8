"""``suho sql`` is read-only by the engine, on both backends (issue 17, section 2).

Each refused query must leave the store as it was (same tables, same row counts),
write no file, read nothing from outside and connect nowhere.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from repositories.adhoc import run_read_only
from repositories.errors import InvalidInputError
from repositories.runs import TrainingRunRepository
from suho_models.db import Database, migrations
from tests.conftest import BACKENDS, fresh_database_name

SECRET = "s3cr3t-marker-line"


@pytest.fixture(scope="module", params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[Database]:
    """One migrated store per backend for the module (migrating costs seconds); every
    test asserts it leaves the store unchanged, so sharing it is safe."""
    name = fresh_database_name()
    if request.param == "embedded":
        url = f"clickhouse+chdb:///{request.getfixturevalue('embedded_dir')}/{name}"
    else:
        url = request.getfixturevalue("local_server").native_url(name)
    migrations.upgrade(url)
    database = Database(url)
    repo = TrainingRunRepository(database)
    for run_name in ("alpha-1", "alpha-2", "beta"):
        repo.create({"run_name": run_name, "model_type": "xgboost", "target_variable": "t"})
    try:
        yield database
    finally:
        database.close()


def snapshot(db: Database) -> tuple[list[str], int]:
    tables = sorted(
        name
        for (name,) in db.execute(
            "SELECT name FROM system.tables WHERE database = currentDatabase()"
        )
    )
    return tables, db.scalar("SELECT count() FROM training_runs")


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A local port that records every connection made to it (url() must make none)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    seen.append(conn.recv(1024))
                except OSError:
                    seen.append(b"")
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n1\n")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(2)
        server.close()


def assert_refused(db: Database, query: str, match: str) -> InvalidInputError:
    before = snapshot(db)
    with pytest.raises(InvalidInputError, match=match) as info:
        run_read_only(db, query)
    assert SECRET not in str(info.value)
    assert snapshot(db) == before
    return info.value


# A second statement the old first-keyword and ';' checks did not see: the quote
# opened in a '#' comment (or inside $$...$$) hid the ';' from the old string regex.
HIDDEN_WRITES = {
    "drop": "DROP TABLE training_runs",
    "insert": "INSERT INTO training_runs SELECT * FROM training_runs",
    "create": "CREATE TABLE evil (a Int8) ENGINE = Memory",
}


@pytest.mark.parametrize("write", sorted(HIDDEN_WRITES))
def test_a_statement_hidden_after_a_hash_comment_is_refused(store: Database, write: str) -> None:
    query = f"SELECT 1 # '\n; {HIDDEN_WRITES[write]} # '"
    assert_refused(store, query, "one statement.*Multi-statements are not allowed")


@pytest.mark.parametrize("write", sorted(HIDDEN_WRITES))
def test_a_statement_hidden_in_dollar_quoting_is_refused(store: Database, write: str) -> None:
    query = f"SELECT $$ ' $$; {HIDDEN_WRITES[write]}; SELECT $$ ' $$"
    assert_refused(store, query, "one statement.*Multi-statements are not allowed")


@pytest.mark.parametrize("write", sorted(HIDDEN_WRITES))
def test_writes_are_refused(store: Database, write: str) -> None:
    assert_refused(store, HIDDEN_WRITES[write], r"read-only.*only SELECT.*\(got \w+Query\)")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM training_runs INTO OUTFILE '{path}'",
        "SELECT 1 UNION ALL SELECT 2 INTO OUTFILE '{path}' FORMAT RowBinary",
        "WITH x AS (SELECT 1) SELECT * FROM x INTO OUTFILE '{path}'",
        "SHOW TABLES INTO OUTFILE '{path}'",
        "DESCRIBE training_runs INTO OUTFILE '{path}'",
    ],
)
def test_into_outfile_is_refused_and_writes_nothing(
    store: Database, tmp_path: Path, query: str
) -> None:
    target = tmp_path / "x.bin"
    assert_refused(store, query.format(path=target), "INTO OUTFILE and FORMAT are not allowed")
    assert not target.exists()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET + "\n")
    return path


@pytest.mark.parametrize(
    "template",
    [
        "SELECT * FROM file('{path}', 'LineAsString')",
        # The old code added no readonly once 'SETTINGS' appeared, even in a literal.
        "SELECT 'SETTINGS' AS s, * FROM file('{path}', 'LineAsString')",
        "SELECT * FROM FILE('{path}', 'LineAsString') AS `SETTINGS`",
        "SELECT * FROM view(SELECT * FROM file('{path}', 'LineAsString'))",
        "SELECT run_name FROM training_runs WHERE run_name IN "
        "(SELECT line FROM file('{path}', 'LineAsString'))",
        "DESCRIBE file('{path}', 'LineAsString')",
        "DESCRIBE TABLE file('{path}', 'LineAsString')",
        "EXPLAIN SELECT * FROM file('{path}', 'LineAsString')",
        "EXPLAIN SYNTAX SELECT * FROM file('{path}', 'LineAsString')",
        "EXPLAIN PIPELINE SELECT * FROM file('{path}', 'LineAsString')",
    ],
)
def test_table_function_file_is_refused(store: Database, secret_file: Path, template: str) -> None:
    assert_refused(store, template.format(path=secret_file), r"table function (file|FILE)\(\)")


@pytest.mark.parametrize(
    "template",
    [
        "SELECT file('{path}') AS s",
        "SELECT 'SETTINGS', length(file('{path}'))",
        "WITH file('{path}') AS x SELECT x",
    ],
)
def test_the_file_function_is_refused(store: Database, secret_file: Path, template: str) -> None:
    assert_refused(store, template.format(path=secret_file), r"function file\(\)")


@pytest.mark.parametrize(
    "template",
    [
        "SELECT * FROM url('http://127.0.0.1:{port}/x.csv', 'CSV', 'a String')",
        "SELECT 'SETTINGS' AS s, * FROM url('http://127.0.0.1:{port}/x.csv', 'CSV', 'a String')",
        "DESCRIBE url('http://127.0.0.1:{port}/x.csv', 'CSV')",
        "EXPLAIN SELECT * FROM url('http://127.0.0.1:{port}/x.csv', 'CSV', 'a String')",
        "SELECT * FROM s3('http://127.0.0.1:{port}/b/x.csv', 'CSV', 'a String')",
        "SELECT * FROM remote('127.0.0.1:{port}', system.one)",
        "SELECT * FROM mysql('127.0.0.1:{port}', 'd', 't', 'u', 'p')",
        "SELECT * FROM postgresql('127.0.0.1:{port}', 'd', 't', 'u', 'p')",
    ],
)
def test_table_functions_that_connect_out_are_refused(
    store: Database, listener: tuple[int, list[bytes]], template: str
) -> None:
    port, seen = listener
    assert_refused(store, template.format(port=port), "table function .*is not allowed")
    assert seen == []


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM executable('id', 'TSV', 'a String')",
        "SELECT * FROM python(x)",
        "SELECT * FROM Python(x)",
        "SELECT * FROM input('a String')",
        "SELECT * FROM sqlite('/tmp/x.db', 't')",
        "SELECT * FROM hdfs('hdfs://127.0.0.1:1/x', 'CSV', 'a String')",
    ],
)
def test_other_outside_table_functions_are_refused(store: Database, query: str) -> None:
    assert_refused(store, query, "table function .*is not allowed")


def test_a_path_as_table_name_is_refused(store: Database, secret_file: Path) -> None:
    assert_refused(store, f"SELECT * FROM `{secret_file}`", "is a path or URL")
    assert_refused(store, f"SELECT * FROM '{secret_file}'", "is a path or URL")


def test_a_real_settings_readonly_0_cannot_lift_readonly(store: Database) -> None:
    for query in (
        "SELECT count() FROM training_runs SETTINGS readonly = 0",
        "SELECT count() FROM training_runs SETTINGS readonly = 2",
        "SELECT count() FROM training_runs SETTINGS max_threads = 1",
        "SET readonly = 0",
    ):
        error = assert_refused(store, query, "read-only")
        assert "readonly" in str(error) or "Set" in str(error)


def test_the_session_itself_is_read_only(store: Database, secret_file: Path) -> None:
    """The engine layer alone, with no parsing in front of it."""
    before = snapshot(store)
    with store.read_only_session() as session:
        assert session.query("SELECT getSetting('readonly')")[1] == [(1,)]
        for sql in (
            "SELECT getSetting('readonly') SETTINGS readonly = 0",
            "SET readonly = 0",
            "INSERT INTO training_runs SELECT * FROM training_runs",
            "CREATE TABLE evil (a Int8) ENGINE = Memory",
            "DROP TABLE training_runs",
            f"SELECT * FROM file('{secret_file}', 'LineAsString')",
        ):
            with pytest.raises(Exception, match="(?i)readonly|read-only"):
                session.query(sql)
        assert session.query("SELECT getSetting('readonly')")[1] == [(1,)]
    assert snapshot(store) == before
    # The store's own connections stay writable.
    assert store.scalar("SELECT getSetting('readonly')") == 0


def test_like_with_percent_works(store: Database) -> None:
    columns, rows = run_read_only(
        store, "SELECT count() AS n FROM training_runs WHERE run_name LIKE 'alpha%'"
    )
    assert columns == ["n"] and rows == [(2,)]
    _, rows = run_read_only(store, "SELECT '100%' AS p, '%(x)s' AS q, '%s%%' AS r")
    assert rows == [("100%", "%(x)s", "%s%%")]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT run_name FROM training_runs ORDER BY run_name LIMIT 1", [("alpha-1",)]),
        ("WITH 2 AS k SELECT k * 3 AS v", [(6,)]),
        ("SELECT 1 AS a # a comment\n", [(1,)]),
        ("SELECT $$a; b$$ AS s;", [("a; b",)]),
        ("SELECT sum(number) AS s FROM numbers(4)", [(6,)]),
        ("SELECT format('{}-{}', 'a', 'b') AS s", [("a-b",)]),
        ("EXISTS TABLE training_runs", [(1,)]),
        ("SELECT 'DROP TABLE x; INTO OUTFILE file(1) SETTINGS' AS s", None),
    ],
)
def test_reads_still_work(store: Database, query: str, expected: list[tuple] | None) -> None:
    _, rows = run_read_only(store, query)
    if expected is not None:
        assert rows == expected
    else:
        assert rows == [("DROP TABLE x; INTO OUTFILE file(1) SETTINGS",)]


def test_an_empty_result_still_has_its_columns(store: Database) -> None:
    columns, rows = run_read_only(store, "SELECT run_name, run_id FROM training_runs WHERE 0")
    assert (columns, rows) == (["run_name", "run_id"], [])


@pytest.mark.parametrize("query", ["SELECT 1 AS a FORMAT CSV", "SHOW TABLES FORMAT JSON"])
def test_a_format_clause_is_refused_clearly(store: Database, query: str) -> None:
    assert_refused(store, query, "INTO OUTFILE and FORMAT are not allowed")


def test_show_describe_explain_still_work(store: Database) -> None:
    _, tables = run_read_only(store, "SHOW TABLES")
    assert ("training_runs",) in tables
    columns, described = run_read_only(store, "DESCRIBE training_runs")
    assert columns[:2] == ["name", "type"] and described[0][:1] == ("run_id",)
    _, plan = run_read_only(store, "EXPLAIN SELECT count() FROM training_runs")
    assert plan


def test_empty_and_broken_queries_say_so(store: Database) -> None:
    for query in ("", "  ", "-- only a comment"):
        assert_refused(store, query, "query: (empty|must be one statement)")
    assert_refused(store, "SELECT FROM WHERE", "must be one statement.*Syntax error")

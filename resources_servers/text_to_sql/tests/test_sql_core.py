"""The SQL core: generated databases, the read-only runner (authorizer, limits) and the comparison."""

from __future__ import annotations

import pytest

from resources_servers.text_to_sql.generate import TEMPLATES, generate
from resources_servers.text_to_sql.sql_core import (
    DOMAINS,
    QueryError,
    ReadOnlyDatabase,
    asks_for_order,
    build_database,
    database_from_context,
    same_result,
)


@pytest.fixture(scope="module")
def db() -> ReadOnlyDatabase:
    return ReadOnlyDatabase(build_database("shop", 7), max_rows=50, timeout_s=1.0)


def test_databases_are_deterministic_and_differ_by_seed() -> None:
    assert build_database("shop", 7) == build_database("shop", 7)
    a = ReadOnlyDatabase(build_database("shop", 7)).query("SELECT * FROM customers").rows
    b = ReadOnlyDatabase(build_database("shop", 8)).query("SELECT * FROM customers").rows
    assert a and b and a != b
    with pytest.raises(KeyError, match="unknown text_to_sql domain 'zoo'"):
        build_database("zoo", 1)


def test_tools_view(db: ReadOnlyDatabase) -> None:
    assert db.tables() == ["customers", "orders"]
    columns = db.describe("orders")
    assert [c["column"] for c in columns] == ["id", "customer_id", "total", "status", "order_date"]
    assert columns[1]["references"] == "customers(id)" and columns[0]["rows"] > 0
    with pytest.raises(QueryError, match="no table 'nope'"):
        db.describe("nope")


@pytest.mark.parametrize("sql", [
    "DELETE FROM customers",
    "UPDATE customers SET age = 0",
    "INSERT INTO customers VALUES (999, 'x', 'y', 1)",
    "DROP TABLE orders",
    "CREATE TABLE t (x)",
    "ATTACH DATABASE '/tmp/x.db' AS x",
    "PRAGMA table_info(customers)",
    "PRAGMA writable_schema = ON",
    "BEGIN",
    "SELECT load_extension('x')",
    "WITH x AS (SELECT 1) DELETE FROM customers",
])
def test_writes_attach_and_pragmas_are_refused(db: ReadOnlyDatabase, sql: str) -> None:
    with pytest.raises(QueryError, match="refused|not authorized|cannot|read-only"):
        db.query(sql)
    assert len(db.query("SELECT * FROM customers").rows) > 0


def test_one_statement_row_limit_and_time_limit(db: ReadOnlyDatabase) -> None:
    with pytest.raises(QueryError, match="one statement"):
        db.query("SELECT 1; DELETE FROM customers")
    result = db.query("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000) SELECT x FROM n")
    assert len(result.rows) == 50 and result.truncated
    with pytest.raises(QueryError, match="longer than 1 s"):
        db.query("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n")
    with pytest.raises(QueryError, match="no such table"):
        db.query("SELECT * FROM nope")


def test_same_result() -> None:
    rows = [("Lyon", 3), ("Oslo", 2)]
    assert same_result([("Oslo", 2), ("Lyon", 3)], rows, ordered=False)
    assert not same_result([("Oslo", 2), ("Lyon", 3)], rows, ordered=True)
    assert same_result([(3, "Lyon"), (2, "Oslo")], rows, ordered=False)          # columns permuted
    assert same_result([("Lyon", 3.0), ("Oslo", 2.0)], rows, ordered=True)       # 3 == 3.0
    assert same_result([(0.1 + 0.2,)], [(0.3,)], ordered=False)
    assert not same_result([("Lyon", 3)], rows, ordered=False)
    assert not same_result([("Lyon", 3, 1), ("Oslo", 2, 1)], rows, ordered=False)  # extra column
    assert not same_result([("Lyon", 2), ("Oslo", 3)], rows, ordered=False)      # pairs swapped
    assert same_result([], [], ordered=True)


def test_asks_for_order() -> None:
    assert asks_for_order("SELECT a FROM t ORDER BY a DESC")
    assert not asks_for_order("SELECT a FROM (SELECT a FROM t ORDER BY a LIMIT 3)")


def test_reference_context_runs_in_sqlite() -> None:
    context = ("CREATE TABLE customers (\n  customer_id SERIAL PRIMARY KEY,\n  name VARCHAR(100) NOT NULL\n);\n"
               "CREATE TABLE s (id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY, v TINYINT(1)) ENGINE=InnoDB;\n"
               "INSERT INTO customers (name) VALUES ('Alice'), ('Bob');\nINSERT INTO s (v) VALUES (1);")
    db = ReadOnlyDatabase(database_from_context(context))
    assert db.query("SELECT customer_id, name FROM customers ORDER BY 1").rows == [(1, "Alice"), (2, "Bob")]
    with pytest.raises(ValueError, match="does not run in SQLite"):
        database_from_context("CREATE TABLE (")


def test_generator_rows_have_answers() -> None:
    rows = list(generate("validation", 60, 0))
    assert rows == list(generate("validation", 60, 0))
    assert rows != list(generate("validation", 60, 1))
    assert {r["template"] for r in rows} == set(TEMPLATES)
    for row in rows:
        assert row["db"]["domain"] in DOMAINS
        ReadOnlyDatabase(build_database(row["db"]["domain"], row["db"]["seed"])).query(row["sql"])
        assert row["ordered"] == asks_for_order(row["sql"]) or row["template"] == "largest"

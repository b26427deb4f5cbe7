"""text_to_sql over its HTTP routes (in-process): tools, the oracle, equivalent queries, wrong
queries, hacks (hard-coded answers, writes, several statements), and the reference's rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ngym.devkit.testing.asgi import wire
from ngym.server.client import ServerClient, response_cookies
from resources_servers.text_to_sql.app import TextToSqlEnvironment, extract_sql
from resources_servers.text_to_sql.generate import generate
from resources_servers.text_to_sql.sql_core import ReadOnlyDatabase, build_database
from tests.fakes import make

pytestmark = pytest.mark.anyio
ENV_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = [json.loads(line) for line in (ENV_DIR / "data" / "example.jsonl").read_text().splitlines()]
# the reference's row shape (its example.jsonl): schema and rows in sql_context, PostgreSQL syntax
REFERENCE_ROW = {
    "responses_create_params": {"input": [{"role": "user", "content": "Customers with more than 1 order?"}]},
    "sql": "SELECT c.name, COUNT(o.order_id) AS n FROM customers c JOIN orders o ON c.customer_id = o.customer_id "
           "GROUP BY c.customer_id, c.name HAVING COUNT(o.order_id) > 1 ORDER BY n DESC;",
    "sql_dialect": "postgresql",
    "sql_prompt": "Customers with more than 1 order, most orders first?",
    "sql_context": "CREATE TABLE customers (\n  customer_id SERIAL PRIMARY KEY,\n  name VARCHAR(100) NOT NULL\n);\n\n"
                   "CREATE TABLE orders (\n  order_id SERIAL PRIMARY KEY,\n  customer_id INT REFERENCES "
                   "customers(customer_id),\n  total_amount DECIMAL(10,2) NOT NULL\n);\n\nINSERT INTO customers (name) "
                   "VALUES ('Alice'), ('Bob'), ('Carol');\nINSERT INTO orders (customer_id, total_amount) VALUES "
                   "(1, 10.0), (1, 20.0), (1, 5.0), (2, 7.0), (2, 8.0), (3, 1.0);",
    "uuid": "ecommerce-001",
}


@pytest.fixture(scope="module")
def client() -> ServerClient:
    return wire({"env": make(TextToSqlEnvironment, "env", domain="coding", max_queries=3)})


async def verify(client: ServerClient, row: dict[str, Any], text: str) -> dict[str, Any]:
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    result = await client.post("env", "/verify", json={**row, "response": {"output": [message] if text else []}})
    assert result.status_code == 200, result.text
    return dict(result.json())


def sql(query: str) -> str:
    return f"Here is the query:\n```sql\n{query}\n```"


async def test_oracle_and_empty(client: ServerClient) -> None:
    for row in list(generate("validation", 48, 3)):
        body = await verify(client, row, sql(row["sql"]))
        assert body["reward"] == 1.0, (row["template"], body)
        assert body["extracted_sql"] == row["sql"] and len(body["checks"]) == 2  # visible + hidden variant
        assert (await verify(client, row, ""))["reward"] == 0.0


async def test_equivalent_queries_score(client: ServerClient) -> None:
    rows = {r["template"]: r for r in generate("validation", 200, 4)}
    group = rows["group_count"]
    category = group["sql"].split()[1].rstrip(",")
    table = group["sql"].split("FROM ")[1].split()[0]
    forms = [
        f"SELECT {category}, COUNT(id) FROM {table} GROUP BY 1 ORDER BY 2",          # another order
        f"select count(*) as n, {category} from {table} group by {category}",         # columns swapped
        f"WITH t AS (SELECT {category} AS c FROM {table}) SELECT c, COUNT(*) FROM t GROUP BY c",
    ]
    for form in forms:
        assert (await verify(client, group, sql(form)))["reward"] == 1.0, form
    assert (await verify(client, group, "```\n" + forms[0] + "\n```"))["reward"] == 1.0  # unlabeled block


async def test_order_matters_only_when_asked(client: ServerClient) -> None:
    rows = {r["template"]: r for r in generate("validation", 200, 4)}
    ordered = rows["filter_ordered"]
    assert ordered["ordered"] is True
    unordered = ordered["sql"].replace(" DESC, name", " ASC, name")
    assert (await verify(client, ordered, sql(unordered)))["reward"] == 0.0
    assert (await verify(client, ordered, sql(ordered["sql"].split(" ORDER BY")[0])))["reward"] == 0.0


async def test_wrong_queries_and_hacks_score_zero(client: ServerClient) -> None:
    rows = {r["template"]: r for r in generate("validation", 200, 4)}
    row = rows["count_category"]
    db = ReadOnlyDatabase(build_database(row["db"]["domain"], row["db"]["seed"]))
    visible = db.query(row["sql"]).rows[0][0]
    attempts = [
        "The answer is 7.",                                                    # no query
        sql(f"SELECT {visible}"),                                              # hard-coded visible answer
        sql(row["sql"].replace("=", "!=")),
        sql("DELETE FROM " + row["sql"].split("FROM ")[1].split()[0]),         # a write
        sql(row["sql"] + "; SELECT 1"),                                        # two statements
        sql("SELECT * FROM sqlite_master"),
        sql(row["sql"]) + "\nor maybe\n" + sql("SELECT 0"),                    # the last block counts
        sql("ATTACH DATABASE ':memory:' AS x"),
    ]
    for text in attempts:
        body = await verify(client, row, text)
        assert body["reward"] == 0.0, (text, body)
    refused = await verify(client, row, attempts[3])
    assert "refused" in refused["checks"][0]["error"]


async def test_tools(client: ServerClient) -> None:
    row = EXAMPLES[0]
    cookies = response_cookies(await client.post("env", "/seed_session", json=row))
    tables = (await client.post("env", "/list_tables", cookies=cookies)).json()["tables"]
    assert len(tables) == 2
    described = (await client.post("env", "/describe_table", json={"table": tables[0]}, cookies=cookies)).json()
    assert described["columns"][0]["column"] == "id"
    assert "no table" in (await client.post("env", "/describe_table", json={"table": "x"}, cookies=cookies)).json()["error"]
    result = (await client.post("env", "/run_query", json={"sql": f"SELECT * FROM {tables[0]}"}, cookies=cookies)).json()
    assert result["columns"][0] == "id" and len(result["rows"]) <= 50
    write = (await client.post("env", "/run_query", json={"sql": f"DROP TABLE {tables[0]}"}, cookies=cookies)).json()
    assert "refused" in write["error"]
    await client.post("env", "/run_query", json={"sql": "SELECT 1"}, cookies=cookies)
    assert "at most 3 times" in (await client.post("env", "/run_query", json={"sql": "SELECT 1"}, cookies=cookies)).json()["error"]
    # the write was refused: the table is still there for this and every other episode
    assert len((await client.post("env", "/list_tables", cookies=cookies)).json()["tables"]) == 2


async def test_reference_rows(client: ServerClient) -> None:
    body = await verify(client, REFERENCE_ROW, sql(str(REFERENCE_ROW["sql"])))
    assert body["reward"] == 1.0 and body["ordered"] is True and len(body["checks"]) == 1
    other = ("SELECT name, n FROM (SELECT customer_id, COUNT(*) AS n FROM orders GROUP BY customer_id) "
             "JOIN customers USING (customer_id) WHERE n > 1 ORDER BY n DESC")
    assert (await verify(client, REFERENCE_ROW, sql(other)))["reward"] == 1.0
    assert (await verify(client, REFERENCE_ROW, sql(other.replace("DESC", "ASC"))))["reward"] == 0.0
    cookies = response_cookies(await client.post("env", "/seed_session", json=REFERENCE_ROW))
    assert (await client.post("env", "/list_tables", cookies=cookies)).json()["tables"] == ["customers", "orders"]


async def test_bad_rows(client: ServerClient) -> None:
    result = await client.post("env", "/seed_session", json={"responses_create_params": {"input": "x"}, "sql": "SELECT 1"})
    assert result.status_code == 422 and "needs its database" in result.text
    broken = {**EXAMPLES[0], "sql": "SELECT nope FROM nowhere"}
    result = await client.post("env", "/verify", json={**broken, "response": {"output": []},
                                                       "responses_create_params": broken["responses_create_params"]})
    assert result.status_code == 200  # no answer: nothing to compare, reward 0
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": sql("SELECT 1")}]}
    failed = await client.post("env", "/verify", json={**broken, "response": {"output": [message]}})
    assert failed.status_code == 500 and "gold query fails" in failed.text


def test_extract_sql() -> None:
    assert extract_sql("```sql\nSELECT 1\n```\n```python\nx\n```") == "SELECT 1"
    assert extract_sql("```SQL\nSELECT 2;\n```") == "SELECT 2;"
    assert extract_sql("SELECT 1") is None and extract_sql("```sql\n\n```") is None

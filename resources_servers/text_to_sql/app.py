"""text_to_sql: answer a question about an SQLite database with one query, exploring it with tools.

Each task names its database: a generated one (``db = {domain, seed}``, rebuilt by seed) or, for the
reference's rows, the schema and rows of ``sql_context`` (MySQL/PostgreSQL column syntax translated
where SQLite does not take it). Tools: ``list_tables``, ``describe_table``, ``run_query`` — a private
read-only copy behind an authorizer (writes, DDL, ATTACH, PRAGMA refused), a row limit, a time limit.

Reward: the final answer's query (the last ```sql block) is executed and its result set compared with
the gold query's (``sql``): 1.0 iff equal as multisets of rows (as lists when the question asks for an
order: ``ordered``, else inferred from the gold query's outer ORDER BY), columns matched in any order,
numbers within 1e-4. For generated databases the comparison is repeated on ``hidden_variants`` more
databases of the same schema with other rows, so a query that hard-codes the visible answer fails.
Unlike the reference (an LLM judge comparing SQL texts), nothing here needs a model.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, model_validator

from ngym.env import EnvConfig, Environment, ToolError, Verdict, VerifierError, run_blocking, tool
from ngym.wire.responses import Response
from resources_servers.text_to_sql.sql_core import (
    QueryError,
    ReadOnlyDatabase,
    asks_for_order,
    build_database,
    database_from_context,
    same_result,
)

_BLOCK = re.compile(r"```[ \t]*([A-Za-z]*)[^\n]*\n(.*?)```", re.DOTALL)
VARIANT_STRIDE = 7_919_000


class DatabaseSpec(BaseModel):
    domain: str
    seed: int


class SqlTask(BaseModel):
    sql: str = Field(description="the gold query")
    sql_prompt: str | None = None
    sql_context: str | None = None
    sql_dialect: str | None = None
    db: DatabaseSpec | None = None
    ordered: bool | None = None

    @model_validator(mode="after")
    def _has_database(self) -> SqlTask:
        if self.db is None and not self.sql_context:
            raise ValueError("a task needs its database: db = {domain, seed} or sql_context (CREATE/INSERT statements)")
        return self


class SqlState(BaseModel):
    queries: int = 0


class TextToSqlConfig(EnvConfig):
    max_rows: int = Field(50, ge=1, description="rows run_query shows the model")
    query_timeout_s: float = Field(2.0, gt=0)
    max_queries: int = Field(30, ge=0, description="run_query calls per episode")
    hidden_variants: int = Field(1, ge=0, description="extra databases the answer is also checked on")
    verify_max_rows: int = Field(10000, ge=1)


def extract_sql(text: str) -> str | None:
    """The last ```sql block, else the last fenced block; None if there is none."""
    blocks = _BLOCK.findall(text)
    if not blocks:
        return None
    sql_blocks = [body for lang, body in blocks if lang.lower() == "sql"]
    body = (sql_blocks or [b for _, b in blocks])[-1].strip()
    return body or None


class TextToSqlEnvironment(Environment[SqlTask, SqlState]):
    config: TextToSqlConfig

    def _data(self, task: SqlTask, variant: int = 0) -> bytes:
        if task.db is not None:
            return build_database(task.db.domain, task.db.seed + variant * VARIANT_STRIDE)
        assert task.sql_context is not None
        return database_from_context(task.sql_context)

    async def _database(self) -> ReadOnlyDatabase:
        try:
            data = await run_blocking(self._data, self.task)
        except (KeyError, ValueError) as e:
            raise VerifierError(f"{self.config.name}: cannot build the task's database: {e}") from e
        return ReadOnlyDatabase(data, max_rows=self.config.max_rows, timeout_s=self.config.query_timeout_s)

    @tool
    async def list_tables(self) -> dict[str, list[str]]:
        """List the tables of the database."""
        db = await self._database()
        return {"tables": await run_blocking(db.tables)}

    @tool
    async def describe_table(self, table: str) -> dict[str, Any]:
        """Describe a table: its columns (name, type, keys, references) and its number of rows.

        Args:
            table: The table's name.
        """
        db = await self._database()
        try:
            return {"table": table, "columns": await run_blocking(db.describe, table)}
        except QueryError as e:
            raise ToolError(str(e)) from None

    @tool
    async def run_query(self, sql: str) -> dict[str, Any]:
        """Run one read-only SQL query (SQLite) and see the first rows of its result (`truncated` if there are more).

        Args:
            sql: One SELECT statement (WITH ... SELECT allowed).
        """
        if self.state.queries >= self.config.max_queries:
            raise ToolError(f"run_query may be called at most {self.config.max_queries} times per task; answer now")
        self.state.queries += 1
        db = await self._database()
        try:
            result = await run_blocking(db.query, sql)
        except QueryError as e:
            raise ToolError(str(e)) from None
        return {"columns": result.columns, "rows": [list(r) for r in result.rows], "truncated": result.truncated}

    def _compare(self, task: SqlTask, predicted: str, ordered: bool) -> dict[str, Any]:
        """Blocking: gold and predicted on the visible database and the hidden variants."""
        variants = self.config.hidden_variants if task.db is not None else 0
        checks: list[dict[str, Any]] = []
        for variant in range(variants + 1):
            db = ReadOnlyDatabase(self._data(task, variant), timeout_s=max(5.0, self.config.query_timeout_s))
            try:
                gold = db.query(task.sql, max_rows=self.config.verify_max_rows)
            except QueryError as e:
                raise VerifierError(f"{self.config.name}: the gold query fails on database variant {variant}: {e} "
                                    f"(gold: {task.sql!r}). Fix the data row.") from None
            try:
                got = db.query(predicted, max_rows=self.config.verify_max_rows)
            except QueryError as e:
                checks.append({"variant": variant, "match": False, "error": str(e)})
                break
            match = same_result(got.rows, gold.rows, ordered)
            checks.append({"variant": variant, "match": match, "rows": len(got.rows), "gold_rows": len(gold.rows)})
            if not match:
                break
        return {"checks": checks, "match": all(c["match"] for c in checks) and len(checks) == variants + 1}

    async def verify(self, response: Response) -> Verdict:
        text = response.output_text()
        predicted = extract_sql(text)
        ordered = self.task.ordered if self.task.ordered is not None else asks_for_order(self.task.sql)
        if predicted is None:
            return Verdict(reward=0.0, extracted_sql=None, ordered=ordered, checks=[])
        try:
            outcome = await run_blocking(self._compare, self.task, predicted, ordered)
        except (KeyError, ValueError) as e:
            raise VerifierError(f"{self.config.name}: cannot build the task's database: {e}") from e
        return Verdict(reward=float(outcome["match"]), extracted_sql=predicted, ordered=ordered,
                       checks=outcome["checks"], queries_run=self.state.queries)


if __name__ == "__main__":
    TextToSqlEnvironment.run_webserver()

"""`lint`: offline checks of the SQL folders and the snapshot, no database and no Directus.

Findings (one per line, `file:line:col: severity: message`):
- syntax errors, from the real Postgres parser (pglast);
- phase ordering: a pre-schema statement that touches a table the snapshot creates, or a `directus_*` table, runs
  before schema-apply and fails on a fresh database (the bug this project was born from): error. That includes the
  body of a `LANGUAGE sql` function (Postgres checks it at CREATE FUNCTION) and a table name passed as a string to a
  function (`create_hypertable('vehicles', ...)`: a string argument of a function call that equals such a table's
  name, bare or `public.`-qualified). A post-schema statement on a table that neither the snapshot nor a pre-schema
  file creates: warning;
- psql-only syntax (`\\i file`, `\\copy`, other meta-commands, `COPY ... FROM stdin` with inline rows): error, since
  the supervisor sends SQL to the server, not through psql;
- a statement that cannot run in a transaction, in a file without `-- supervisor: no-transaction`: error;
- directives: an unknown or misspelt `-- supervisor:` directive on the first line, `repeatable` combined with
  `no-transaction`, or a `-- supervisor:` comment on a later line (ignored by the runner): error (the runner refuses
  each too, exit 2);
- a repeatable file: a plain CREATE (VIEW, FUNCTION, TRIGGER, TABLE, INDEX, ...) not preceded by a DROP of that
  name, which fails when the file re-runs: warning;
- transaction control (BEGIN, COMMIT, ROLLBACK, PREPARE TRANSACTION, ...) where it would break the file's own
  transaction or its progress records: error (the runner refuses the file); a no-op COMMIT/ROLLBACK in a
  no-transaction file: warning;
- integrity: the same file name in both folders, non-UTF-8 or empty files (errors), non-.sql files (warning);
- the snapshot: parses, vendor `postgres`, `systemFields` where its Directus version needs them.
Exit status: 0 without errors (warnings are printed but pass), 1 with errors, 2 for usage errors.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from supervisor.errors import ConfigError, SupervisorError
from supervisor.lint_psql import COPY_STDIN, parse_without_psql
from supervisor.settings import Settings
from supervisor.snapshot import load_snapshot, needs_system_fields, parse_version
from supervisor.sqlfile import (
    SqlFile,
    classify,
    directive_problem,
    location,
    misplaced_directives,
    read_sql_file,
    session_leak,
    sql_paths,
    unreadable,
)
from supervisor.sqlwords import sql_words

__all__ = ["Finding", "lint"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding, located."""

    file: str
    line: int
    col: int
    severity: str  # error | warning
    message: str

    def render(self) -> str:
        """`file:line:col: severity: message`."""
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """For `--json`."""
        return asdict(self)


@dataclass
class _Parsed:
    file: SqlFile
    stmts: list[Any]  # pglast RawStmt nodes


def _at(f: SqlFile, offset: int, severity: str, message: str) -> Finding:
    line, col = (int(x) for x in location(f.text, offset).split(":"))
    return Finding(str(f.path), line, col, severity, message)


def lint(settings: Settings) -> list[Finding]:
    """Every finding for the configured folders and snapshot, in file order."""
    findings: list[Finding] = []
    folders = {"pre-schema": settings.db_init_dir, "post-schema": settings.db_init_post_dir}
    parsed: dict[str, list[_Parsed]] = {}
    for phase, folder in folders.items():
        if not folder.is_dir():
            findings.append(Finding(str(folder), 1, 1, "error", f"the {phase} folder does not exist"))
            parsed[phase] = []
            continue
        try:
            for other in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix != ".sql"):
                findings.append(
                    Finding(str(other), 1, 1, "warning", "not a .sql file: the supervisor ignores it")
                )
            paths = sql_paths(folder)
        except (OSError, ConfigError) as e:
            # An unreadable folder is a finding, like a missing one: lint reports, `migrate` refuses (exit 2).
            text = (e if isinstance(e, ConfigError) else unreadable(folder, e, "folder")).message
            findings.append(Finding(str(folder), 1, 1, "error", text))
            parsed[phase] = []
            continue
        parsed[phase] = []
        for path in paths:
            try:
                f = read_sql_file(path)
            except ConfigError as e:
                findings.append(Finding(str(path), 1, 1, "error", e.message))
                continue
            if p := _parse(f, findings):
                parsed[phase].append(p)
    both = {p.file.name for p in parsed["pre-schema"]} & {p.file.name for p in parsed["post-schema"]}
    for p in parsed["post-schema"]:
        if p.file.name in both:
            findings.append(Finding(str(p.file.path), 1, 1, "error", f"{p.file.name} is in both SQL folders; the "
                                    "tracking table is keyed by file name, so rename one"))  # fmt: skip
    snapshot_tables = _snapshot_tables(settings, findings)
    pre_created = {t for p in parsed["pre-schema"] for t in _created(p)}
    post_created = {t for p in parsed["post-schema"] for t in _created(p)}
    for p in parsed["pre-schema"] + parsed["post-schema"]:
        _transactions(p, findings)
        _copy_from_stdin(p, findings)
        if p.file.repeatable:
            _rerun_hazards(p, findings)
    for p in parsed["pre-schema"]:
        for name, offset, what in _references(p, strings=True):
            if name in pre_created:
                continue
            if name.startswith("directus_") or (snapshot_tables is not None and name in snapshot_tables):
                source = (
                    "a Directus system table" if name.startswith("directus_") else "created by the snapshot"
                )
                findings.append(_at(p.file, offset, "error", (
                    f"{what} references table {name} ({source}), but pre-schema runs before schema-apply, so on a "
                    f"fresh database it does not exist yet: move this statement to the post-schema folder "
                    f"({settings.db_init_post_dir})")))  # fmt: skip
    if snapshot_tables is not None:
        known = snapshot_tables | pre_created | post_created
        for p in parsed["post-schema"]:
            for name, offset, what in _references(p):
                if name not in known and not name.startswith(("directus_", "pg_")):
                    findings.append(_at(p.file, offset, "warning", (
                        f"{what} references table {name}, which neither the snapshot nor a pre-schema file "
                        "creates")))  # fmt: skip
    return sorted(findings, key=lambda f: (f.file, f.line, f.col))


def _parse(f: SqlFile, findings: list[Finding]) -> _Parsed | None:
    from pglast.parser import ParseError

    try:
        text = f.text
    except SupervisorError as e:
        findings.append(Finding(str(f.path), 1, 1, "error", e.message.split(": ", 1)[-1]))
        return None
    try:
        stmts, psql = parse_without_psql(text)
    except ParseError as e:
        offset = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], int) else 0
        findings.append(_at(f, offset, "error", f"syntax error: {e.args[0]}"))
        return None
    findings += [_at(f, offset, "error", message) for offset, message in psql]
    if why := directive_problem(f):
        findings.append(Finding(str(f.path), 1, 1, "error", why))
    findings += [_at(f, offset, "error", message) for offset, message in misplaced_directives(f)]
    if not stmts and not psql:
        findings.append(
            Finding(str(f.path), 1, 1, "error", "the file has no SQL statement; delete it or add one")
        )
    return _Parsed(f, stmts)


def _snapshot_tables(settings: Settings, findings: list[Finding]) -> set[str] | None:
    """Tables the snapshot creates (collections with a schema), or None when it cannot be read."""
    path = settings.snapshot
    try:
        snap = load_snapshot(path)
        data = snap.data
    except SupervisorError as e:
        where = e.message.split(": ", 1)[0] if e.message.startswith(str(path)) else str(path)
        parts = where.split(":")
        line, col = (int(parts[1]), int(parts[2])) if len(parts) == 3 else (1, 1)
        findings.append(Finding(str(path), line, col, "error", e.message.split(": ", 1)[-1]))
        return None
    if snap.vendor != "postgres":
        findings.append(
            Finding(str(path), 1, 1, "error", f"vendor is {snap.vendor or '(none)'!r}, not 'postgres'")
        )
    try:
        parse_version(snap.directus)
    except ValueError:
        findings.append(Finding(str(path), 1, 1, "warning", "no `directus` version in the snapshot"))
    if needs_system_fields(snap.directus) and not snap.has_system_fields:
        findings.append(Finding(str(path), 1, 1, "error", f"Directus {snap.directus} snapshots need `systemFields`; "
                                "without it schema-apply would drop the system tables' indexes"))  # fmt: skip
    return {
        str(c["collection"]).lower() for c in data["collections"] if isinstance(c, dict) and c.get("schema")
    }


# A string that names a table the way a function such as create_hypertable('vehicles') takes one.
_TABLE_STRING = re.compile(r"(?:public\.)?[A-Za-z_][A-Za-z0-9_$]*")


def _name(schema: str | None, rel: str | None) -> str | None:
    return rel.lower() if rel and schema in (None, "public") else None


def _created(p: _Parsed) -> set[str]:
    from pglast import ast

    out: set[str] = set()
    for raw in p.stmts:
        s: Any = raw.stmt
        rel: Any = None
        if isinstance(s, ast.CreateStmt):
            rel = s.relation
        elif isinstance(s, ast.CreateTableAsStmt) and s.into is not None:
            rel = s.into.rel
        elif isinstance(s, ast.ViewStmt):
            rel = s.view
        if rel is not None and (name := _name(rel.schemaname, rel.relname)):
            out.add(name)
    return out


def _copy_from_stdin(p: _Parsed, findings: list[Finding]) -> None:
    from pglast import ast

    for raw in p.stmts:
        if isinstance(raw.stmt, ast.CopyStmt) and raw.stmt.is_from and raw.stmt.filename is None:
            findings.append(_at(p.file, raw.stmt_location, "error", COPY_STDIN))


def _references(p: _Parsed, *, strings: bool = False) -> list[tuple[str, int, str]]:
    """(table, offset, statement kind) for every table a statement touches, except the one it creates: names in
    FROM/ON/REFERENCES/INTO..., `'name'::regclass` casts, COMMENT ON targets, and the same inside DO blocks and
    `LANGUAGE sql` function bodies; with `strings`, also string arguments of function calls (any string could be a
    table name there, so only a caller that matches them against known tables asks for them)."""
    from pglast import ast
    from pglast.enums import ObjectType

    found: list[tuple[str, int, str]] = []
    for raw in p.stmts:
        stmt: Any = raw.stmt
        kind = _kind(stmt)
        if isinstance(stmt, ast.CreateFunctionStmt) and stmt.sql_body is not None:
            kind += " (its BEGIN ATOMIC or RETURN body is checked at creation)"
        created = stmt.relation if isinstance(stmt, ast.CreateStmt) else None
        for name, loc, note in _tables_in(stmt, created, strings):
            found.append((name, loc if loc >= 0 else raw.stmt_location, kind + note))
        if isinstance(stmt, ast.CommentStmt) and stmt.objtype in (
            ObjectType.OBJECT_TABLE,
            ObjectType.OBJECT_COLUMN,
        ):
            parts: Any = stmt.object
            names: list[str] = [s.sval for s in parts]
            names = names[:-1] if stmt.objtype == ObjectType.OBJECT_COLUMN else names
            schema: str | None = names[0] if len(names) == 2 else None
            if target := _name(schema, names[-1]):
                found.append((target, raw.stmt_location, kind))
        if isinstance(stmt, ast.DoStmt):
            found += _in_do_block(p.file, raw, strings)
        if isinstance(stmt, ast.CreateFunctionStmt):
            found += _in_sql_function(p.file, raw, strings)
    return found


def _in_sql_function(f: SqlFile, raw: Any, strings: bool) -> list[tuple[str, int, str]]:
    """Tables read by a `LANGUAGE sql` function's string body (`AS '...'`, `AS $$...$$`), which Postgres parses and
    checks when the function is created (check_function_bodies is on by default). A BEGIN ATOMIC or RETURN body is
    part of the statement's own tree and found with it."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    options = {o.defname: o.arg for o in raw.stmt.options or ()}
    language = getattr(options.get("language"), "sval", "")
    body = options.get("as")
    if language.lower() != "sql" or not body:
        return []
    text: str = body[0].sval
    try:
        stmts = parse_sql(text)
    except ParseError:
        return []  # Postgres reports that one itself, located
    stmt_text = f.text[raw.stmt_location : raw.stmt_location + raw.stmt_len if raw.stmt_len else len(f.text)]
    start = stmt_text.find(
        text
    )  # found where the body is dollar-quoted, or single-quoted without quotes in it
    found = []
    for s in stmts:
        for name, loc, note in _tables_in(s.stmt, None, strings):
            where = raw.stmt_location + start + loc if start >= 0 and loc >= 0 else raw.stmt_location
            kind = f"{sql_words(s.stmt)}{note} in the LANGUAGE sql body of {sql_words(raw.stmt)} (checked at creation)"
            found.append((name, where, kind))
    return found


def _tables_in(tree: Any, created: Any = None, strings: bool = False) -> list[tuple[str, int, str]]:
    """Table names (with their offset in the parsed text, and a note on how they were named) in a statement's tree;
    with `strings`, string arguments of function calls that look like a table name too."""
    from pglast import ast
    from pglast.visitors import Visitor

    out: list[tuple[str, int, str]] = []

    class _Refs(Visitor):
        def visit_RangeVar(self, _ancestors: Any, node: Any) -> None:
            if node is not created and (name := _name(node.schemaname, node.relname)):
                out.append((name, node.location, ""))

        def visit_FuncCall(self, _ancestors: Any, node: Any) -> None:
            if not strings:
                return
            func = ".".join(n.sval for n in node.funcname or ())
            for arg in node.args or ():
                value: Any = arg.arg if isinstance(arg, ast.NamedArgExpr) else arg
                literal = getattr(value, "val", None) if isinstance(value, ast.A_Const) else None
                text = (literal.sval or "") if isinstance(literal, ast.String) else ""
                if _TABLE_STRING.fullmatch(text):
                    schema, _, table = text.rpartition(".")
                    if name := _name(schema.lower() or None, table):
                        # pglast keeps no location for a constant: point at the call.
                        out.append((name, node.location, f" (the string '{text}' passed to {func}())"))

        def visit_TypeCast(self, _ancestors: Any, node: Any) -> None:
            type_name = node.typeName.names[-1].sval if node.typeName and node.typeName.names else ""
            value = getattr(node.arg, "val", None) if isinstance(node.arg, ast.A_Const) else None
            if type_name == "regclass" and isinstance(value, ast.String) and value.sval:
                schema, _, table = value.sval.rpartition(".")
                if name := _name(schema or None, table):
                    out.append((name, node.location, ""))

    _Refs()(tree)
    return out


def _in_do_block(f: SqlFile, raw: Any, strings: bool = False) -> list[tuple[str, int, str]]:
    """Tables touched by the SQL inside a DO block's PL/pgSQL, located on the line that uses them."""
    from pglast import parse_plpgsql, parse_sql

    text = f.text[raw.stmt_location : raw.stmt_location + raw.stmt_len]
    try:
        tree = parse_plpgsql(text + ";")
    except Exception:  # noqa: BLE001 (a body pglast cannot read is Postgres's to judge at run time)
        return []
    first_line = f.text.count("\n", 0, raw.stmt_location)
    found: list[tuple[str, int, str]] = []

    def walk(node: Any, lineno: int) -> None:
        if isinstance(node, dict):
            lineno = node.get("lineno", lineno)
            expr = node.get("PLpgSQL_expr")
            if isinstance(expr, dict) and isinstance(expr.get("query"), str):
                query = expr["query"] if expr.get("parseMode", 0) == 0 else f"SELECT {expr['query']}"
                stmts: Any
                try:
                    stmts = parse_sql(query)
                except Exception:  # noqa: BLE001 (PL/pgSQL variables can make a fragment unparsable alone)
                    stmts = ()
                for s in stmts:
                    for name, _, note in _tables_in(s.stmt, getattr(s.stmt, "relation", None) if _kind(s.stmt) ==
                                                    "CREATE TABLE (foreign key)" else None, strings):  # fmt: skip
                        found.append(
                            (
                                name,
                                _line_offset(f, first_line + lineno - 1, name),
                                f"{_kind(s.stmt)}{note} in DO",
                            )
                        )
            for value in node.values():
                walk(value, lineno)
        elif isinstance(node, list):
            for value in node:
                walk(value, lineno)

    walk(tree, 1)
    return found


def _line_offset(f: SqlFile, line_index: int, name: str) -> int:
    """Offset of `name` on 0-based line `line_index` (or of the line's first non-blank character)."""
    start = 0
    for _ in range(line_index):
        start = f.text.find("\n", start) + 1
    end = f.text.find("\n", start)
    line = f.text[start : end if end >= 0 else len(f.text)]
    col = line.find(name)
    return start + (col if col >= 0 else len(line) - len(line.lstrip()))


def _kind(stmt: Any) -> str:
    """The statement in SQL words; a CREATE TABLE can only reference another table through a foreign key."""
    return "CREATE TABLE (foreign key)" if type(stmt).__name__ == "CreateStmt" else sql_words(stmt)


def _no_transaction_reason(stmt: Any) -> str | None:
    from pglast import ast

    if isinstance(stmt, ast.IndexStmt) and stmt.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(stmt, ast.DropStmt) and stmt.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(stmt, ast.ReindexStmt) and any(
        getattr(o, "defname", "") == "concurrently" for o in stmt.params or ()
    ):
        return "REINDEX CONCURRENTLY"
    simple = {
        "VacuumStmt": "VACUUM/ANALYZE", "AlterSystemStmt": "ALTER SYSTEM", "CreatedbStmt": "CREATE DATABASE",
        "DropdbStmt": "DROP DATABASE", "CreateTableSpaceStmt": "CREATE TABLESPACE",
        "DropTableSpaceStmt": "DROP TABLESPACE",
    }  # fmt: skip
    name = simple.get(type(stmt).__name__)
    if name == "VACUUM/ANALYZE" and not stmt.is_vacuumcmd:
        return None  # ANALYZE alone runs fine in a transaction
    return name


def _created_again(stmt: Any) -> tuple[str, str, str] | None:
    """(what, name, fix) when `stmt` creates an object and fails once that object exists, else None."""
    kind = type(stmt).__name__  # by name, not isinstance: pglast's node types have optional fields everywhere
    if kind == "ViewStmt" and not stmt.replace:
        return "CREATE VIEW", stmt.view.relname, "CREATE OR REPLACE VIEW"
    if kind == "CreateFunctionStmt" and not stmt.replace:
        what = "CREATE PROCEDURE" if stmt.is_procedure else "CREATE FUNCTION"
        return what, stmt.funcname[-1].sval, what.replace("CREATE", "CREATE OR REPLACE")
    if kind == "CreateTrigStmt" and not stmt.replace:
        return "CREATE TRIGGER", stmt.trigname, "CREATE OR REPLACE TRIGGER (PostgreSQL 14 and later)"
    if kind == "CreateStmt" and not stmt.if_not_exists:
        return "CREATE TABLE", stmt.relation.relname, "CREATE TABLE IF NOT EXISTS"
    if kind == "IndexStmt" and not stmt.if_not_exists and stmt.idxname:
        return "CREATE INDEX", stmt.idxname, "CREATE INDEX IF NOT EXISTS"
    if kind == "CreateSeqStmt" and not stmt.if_not_exists:
        return "CREATE SEQUENCE", stmt.sequence.relname, "CREATE SEQUENCE IF NOT EXISTS"
    if kind == "CreateSchemaStmt" and not stmt.if_not_exists and stmt.schemaname:
        return "CREATE SCHEMA", stmt.schemaname, "CREATE SCHEMA IF NOT EXISTS"
    if kind == "CreateTableAsStmt" and not stmt.if_not_exists:
        what = "CREATE MATERIALIZED VIEW" if "MATVIEW" in str(stmt.objtype) else "CREATE TABLE"
        return what, stmt.into.rel.relname, f"{what} IF NOT EXISTS"
    return None


def _dropped_names(stmt: Any) -> set[str]:
    """Every name a DROP statement mentions (any part of a qualified name): enough to tell that a later CREATE of
    that name follows a DROP ... IF EXISTS and so re-runs cleanly."""
    from pglast import ast

    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, ast.String) and node.sval:
            names.add(node.sval)
        elif isinstance(node, tuple | list):
            for item in node:
                walk(item)
        elif isinstance(node, ast.ObjectWithArgs):
            walk(node.objname)

    if isinstance(stmt, ast.DropStmt):
        walk(stmt.objects)
    return names


def _rerun_hazards(p: _Parsed, findings: list[Finding]) -> None:
    """A repeatable file re-runs over what its last version created, so a plain CREATE of an object that then
    exists fails the re-run (exit 4) on some later boot, long after the file was written: warn now. A DROP of the
    same name earlier in the file makes it safe."""
    dropped: set[str] = set()
    for raw in p.stmts:
        dropped |= _dropped_names(raw.stmt)
        hit = _created_again(raw.stmt)
        if hit and hit[1] not in dropped:
            what, name, fix = hit
            findings.append(_at(p.file, raw.stmt_location, "warning", (
                f"{what} {name} fails when this repeatable file re-runs, since {name} exists by then; use {fix}, "
                f"or drop it first (DROP ... IF EXISTS {name})")))  # fmt: skip


def _transactions(p: _Parsed, findings: list[Finding]) -> None:
    from pglast import ast

    for raw in p.stmts:
        if isinstance(raw.stmt, ast.TransactionStmt):
            end = raw.stmt_location + raw.stmt_len if raw.stmt_len else len(p.file.text)  # 0: to the end
            sql = p.file.text[raw.stmt_location : end]
            hit = classify(raw.stmt, sql, p.file.no_transaction, p.file.repeatable)
            if hit:
                findings.append(_at(p.file, raw.stmt_location, "error" if hit[1] else "warning", hit[2]))
        end = raw.stmt_location + raw.stmt_len if raw.stmt_len else len(p.file.text)
        why = session_leak(raw.stmt, p.file.text[raw.stmt_location : end])
        if why:
            findings.append(_at(p.file, raw.stmt_location, "error", why))
    if p.file.no_transaction:
        return
    for raw in p.stmts:
        reason = _no_transaction_reason(raw.stmt)
        if reason and p.file.repeatable:
            findings.append(_at(p.file, raw.stmt_location, "error", (
                f"{reason} cannot run inside a transaction, and a repeatable file runs in one (with its tracking "
                "row); move it to a file of its own whose first line is `-- supervisor: no-transaction`")))  # fmt: skip
        elif reason:
            findings.append(_at(p.file, raw.stmt_location, "error", (
                f"{reason} cannot run inside a transaction; put `-- supervisor: no-transaction` on the file's first "
                "line (the supervisor then runs its statements one by one, recording progress)")))  # fmt: skip

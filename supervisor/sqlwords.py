"""SQL words for parse-tree nodes: `lint` says `GRANT` or `CREATE MATERIALIZED VIEW`, never `GrantStmt` or
`CreateTableAsStmt`. Every statement node pglast knows is named here; a node added by a later pglast falls back to
its class name split into words (`AlterFooBarStmt` -> `ALTER FOO BAR`)."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["object_words", "sql_words"]

_WORDS = {
    "AlterCollationStmt": "ALTER COLLATION", "AlterDatabaseRefreshCollStmt": "ALTER DATABASE REFRESH COLLATION VERSION",
    "AlterDatabaseSetStmt": "ALTER DATABASE SET", "AlterDatabaseStmt": "ALTER DATABASE",
    "AlterDefaultPrivilegesStmt": "ALTER DEFAULT PRIVILEGES", "AlterDomainStmt": "ALTER DOMAIN",
    "AlterEnumStmt": "ALTER TYPE (enum)", "AlterEventTrigStmt": "ALTER EVENT TRIGGER",
    "AlterExtensionContentsStmt": "ALTER EXTENSION ADD/DROP", "AlterExtensionStmt": "ALTER EXTENSION UPDATE",
    "AlterFdwStmt": "ALTER FOREIGN DATA WRAPPER", "AlterForeignServerStmt": "ALTER SERVER",
    "AlterFunctionStmt": "ALTER FUNCTION", "AlterObjectDependsStmt": "ALTER ... DEPENDS ON EXTENSION",
    "AlterOpFamilyStmt": "ALTER OPERATOR FAMILY", "AlterOperatorStmt": "ALTER OPERATOR",
    "AlterPolicyStmt": "ALTER POLICY", "AlterPublicationStmt": "ALTER PUBLICATION", "AlterRoleSetStmt": "ALTER ROLE SET",
    "AlterRoleStmt": "ALTER ROLE", "AlterSeqStmt": "ALTER SEQUENCE", "AlterStatsStmt": "ALTER STATISTICS",
    "AlterSubscriptionStmt": "ALTER SUBSCRIPTION", "AlterSystemStmt": "ALTER SYSTEM",
    "AlterTSConfigurationStmt": "ALTER TEXT SEARCH CONFIGURATION", "AlterTSDictionaryStmt": "ALTER TEXT SEARCH DICTIONARY",
    "AlterTableMoveAllStmt": "ALTER ... ALL IN TABLESPACE", "AlterTableSpaceOptionsStmt": "ALTER TABLESPACE",
    "AlterTableStmt": "ALTER TABLE", "AlterTypeStmt": "ALTER TYPE", "AlterUserMappingStmt": "ALTER USER MAPPING",
    "CallStmt": "CALL", "CheckPointStmt": "CHECKPOINT", "ClosePortalStmt": "CLOSE", "ClusterStmt": "CLUSTER",
    "CommentStmt": "COMMENT ON", "CompositeTypeStmt": "CREATE TYPE (composite)", "ConstraintsSetStmt": "SET CONSTRAINTS",
    "CopyStmt": "COPY", "CreateAmStmt": "CREATE ACCESS METHOD", "CreateCastStmt": "CREATE CAST",
    "CreateConversionStmt": "CREATE CONVERSION", "CreateDomainStmt": "CREATE DOMAIN", "CreateEnumStmt": "CREATE TYPE (enum)",
    "CreateEventTrigStmt": "CREATE EVENT TRIGGER", "CreateExtensionStmt": "CREATE EXTENSION",
    "CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER", "CreateForeignServerStmt": "CREATE SERVER",
    "CreateForeignTableStmt": "CREATE FOREIGN TABLE", "CreateFunctionStmt": "CREATE FUNCTION",
    "CreateOpClassStmt": "CREATE OPERATOR CLASS", "CreateOpFamilyStmt": "CREATE OPERATOR FAMILY",
    "CreatePLangStmt": "CREATE LANGUAGE", "CreatePolicyStmt": "CREATE POLICY", "CreatePublicationStmt": "CREATE PUBLICATION",
    "CreateRangeStmt": "CREATE TYPE (range)", "CreateRoleStmt": "CREATE ROLE", "CreateSchemaStmt": "CREATE SCHEMA",
    "CreateSeqStmt": "CREATE SEQUENCE", "CreateStatsStmt": "CREATE STATISTICS", "CreateStmt": "CREATE TABLE",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION", "CreateTableAsStmt": "CREATE TABLE AS",
    "CreateTableSpaceStmt": "CREATE TABLESPACE", "CreateTransformStmt": "CREATE TRANSFORM",
    "CreateTrigStmt": "CREATE TRIGGER", "CreateUserMappingStmt": "CREATE USER MAPPING", "CreatedbStmt": "CREATE DATABASE",
    "DeallocateStmt": "DEALLOCATE", "DeclareCursorStmt": "DECLARE CURSOR", "DefineStmt": "CREATE", "DeleteStmt": "DELETE",
    "DiscardStmt": "DISCARD", "DoStmt": "DO", "DropOwnedStmt": "DROP OWNED", "DropRoleStmt": "DROP ROLE",
    "DropStmt": "DROP", "DropSubscriptionStmt": "DROP SUBSCRIPTION", "DropTableSpaceStmt": "DROP TABLESPACE",
    "DropUserMappingStmt": "DROP USER MAPPING", "DropdbStmt": "DROP DATABASE", "ExecuteStmt": "EXECUTE",
    "ExplainStmt": "EXPLAIN", "FetchStmt": "FETCH", "GrantRoleStmt": "GRANT (role)", "GrantStmt": "GRANT",
    "ImportForeignSchemaStmt": "IMPORT FOREIGN SCHEMA", "IndexStmt": "CREATE INDEX", "InsertStmt": "INSERT",
    "ListenStmt": "LISTEN", "LoadStmt": "LOAD", "LockStmt": "LOCK", "MergeStmt": "MERGE", "NotifyStmt": "NOTIFY",
    "PLAssignStmt": "assignment", "PrepareStmt": "PREPARE", "ReassignOwnedStmt": "REASSIGN OWNED",
    "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW", "ReindexStmt": "REINDEX", "RenameStmt": "ALTER ... RENAME",
    "AlterObjectSchemaStmt": "ALTER ... SET SCHEMA", "AlterOwnerStmt": "ALTER ... OWNER TO",
    "ReplicaIdentityStmt": "REPLICA IDENTITY", "ReturnStmt": "RETURN", "RuleStmt": "CREATE RULE",
    "SecLabelStmt": "SECURITY LABEL", "SelectStmt": "SELECT", "SetOperationStmt": "UNION/INTERSECT/EXCEPT",
    "TransactionStmt": "transaction control", "TruncateStmt": "TRUNCATE", "UnlistenStmt": "UNLISTEN",
    "UpdateStmt": "UPDATE", "VacuumStmt": "VACUUM", "VariableSetStmt": "SET", "VariableShowStmt": "SHOW",
    "ViewStmt": "CREATE VIEW",
}  # fmt: skip
_OBJECTS = {
    "MATVIEW": "MATERIALIZED VIEW", "TSCONFIGURATION": "TEXT SEARCH CONFIGURATION",
    "TSDICTIONARY": "TEXT SEARCH DICTIONARY", "TSPARSER": "TEXT SEARCH PARSER", "TSTEMPLATE": "TEXT SEARCH TEMPLATE",
    "FDW": "FOREIGN DATA WRAPPER", "FOREIGN_SERVER": "SERVER", "OPCLASS": "OPERATOR CLASS",
    "OPFAMILY": "OPERATOR FAMILY", "TABCONSTRAINT": "CONSTRAINT", "DOMCONSTRAINT": "CONSTRAINT",
    "EVENT_TRIGGER": "EVENT TRIGGER", "LARGEOBJECT": "LARGE OBJECT", "ACCESS_METHOD": "ACCESS METHOD",
    "STATISTIC_EXT": "STATISTICS", "USER_MAPPING": "USER MAPPING", "PUBLICATION_NAMESPACE": "PUBLICATION",
    "PUBLICATION_REL": "PUBLICATION", "DEFACL": "DEFAULT PRIVILEGES", "AMOP": "OPERATOR", "AMPROC": "FUNCTION",
}  # fmt: skip
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]*")


def object_words(object_type: Any) -> str:
    """`MATERIALIZED VIEW` for pglast's `ObjectType.OBJECT_MATVIEW`, `TABLE` for `OBJECT_TABLE`, ..."""
    name = getattr(object_type, "name", str(object_type)).removeprefix("OBJECT_")
    return _OBJECTS.get(name, name.replace("_", " "))


def sql_words(stmt: Any) -> str:
    """The SQL command a parse-tree statement node stands for, as its author wrote it (`GRANT`, `REVOKE`, `CREATE
    MATERIALIZED VIEW`, `DROP INDEX`, ...)."""
    cls = type(stmt).__name__
    specific = _specific(cls, stmt)
    if specific:
        return specific
    if cls in _WORDS:
        return _WORDS[cls]
    return " ".join(w.upper() for w in _CAMEL.findall(cls.removesuffix("Stmt")))


def _specific(cls: str, stmt: Any) -> str | None:
    """Words that depend on the node's fields (one node type serves several commands)."""
    if cls in ("GrantStmt", "GrantRoleStmt"):
        return ("GRANT" if stmt.is_grant else "REVOKE") + (" (role)" if cls == "GrantRoleStmt" else "")
    if cls == "CreateTableAsStmt":
        kind = getattr(stmt.objtype, "name", "")
        if kind == "OBJECT_MATVIEW":
            return "CREATE MATERIALIZED VIEW"
        return "SELECT INTO" if stmt.is_select_into else "CREATE TABLE AS"
    if cls == "DropStmt" and stmt.removeType is not None:
        return f"DROP {object_words(stmt.removeType)}"
    if cls in ("RenameStmt", "AlterObjectSchemaStmt", "AlterOwnerStmt"):
        kind = stmt.renameType if cls == "RenameStmt" else stmt.objectType
        tail = {"RenameStmt": "RENAME", "AlterObjectSchemaStmt": "SET SCHEMA", "AlterOwnerStmt": "OWNER TO"}[
            cls
        ]
        return f"ALTER {object_words(kind)} {tail}" if kind is not None else None
    if cls == "CommentStmt" and stmt.objtype is not None:
        return f"COMMENT ON {object_words(stmt.objtype)}"
    if cls == "DefineStmt" and stmt.kind is not None:
        return f"CREATE {object_words(stmt.kind)}"
    if cls == "AlterTableStmt" and stmt.objtype is not None:
        return f"ALTER {object_words(stmt.objtype)}"
    if cls == "VariableSetStmt" and getattr(stmt.kind, "name", "").startswith("VAR_RESET"):
        return "RESET"
    if cls == "VacuumStmt":
        return "VACUUM" if stmt.is_vacuumcmd else "ANALYZE"
    if cls == "CreateFunctionStmt" and stmt.is_procedure:
        return "CREATE PROCEDURE"
    if cls == "IndexStmt" and stmt.unique:
        return "CREATE UNIQUE INDEX"
    return None

"""A read-only SQL grammar built per database: SELECT / WITH / UNION with joins, WHERE, GROUP BY,
HAVING, ORDER BY, LIMIT, aggregates, CASE, IN / BETWEEN / LIKE and subqueries, whose table and
column names are exactly the schema's, so a model generating under it cannot invent names.

Hand-written: the grammar text (llguidance's Lark variant); masking is hearth.structured's.
"""

from __future__ import annotations

import json

from hearth.query.sql_schema import Schema, quote_identifier
from hearth.structured import Constraint, compile, lark

FUNCTIONS = {
    "sqlite": (
        "ROUND", "ABS", "LENGTH", "LOWER", "UPPER", "SUBSTR", "TRIM", "REPLACE", "COALESCE",
        "IFNULL", "NULLIF", "INSTR", "STRFTIME", "DATE", "DATETIME", "JULIANDAY", "PRINTF",
    ),
    "postgres": (
        "ROUND", "ABS", "LENGTH", "LOWER", "UPPER", "SUBSTRING", "TRIM", "REPLACE", "COALESCE",
        "NULLIF", "CONCAT", "DATE_TRUNC", "DATE_PART", "TO_CHAR", "AGE", "GREATEST", "LEAST",
    ),
}  # fmt: skip
AGGREGATES = {
    "sqlite": ("COUNT", "SUM", "AVG", "MIN", "MAX", "GROUP_CONCAT"),
    "postgres": ("COUNT", "SUM", "AVG", "MIN", "MAX", "STRING_AGG"),
}
TYPES = ("INTEGER", "REAL", "TEXT", "NUMERIC", "DATE", "FLOAT", "DECIMAL", "VARCHAR")

_RULES = r"""
start: query ";"?
query: with_clause? compound order_by? limit?
with_clause: "WITH"i "RECURSIVE"i? cte ("," cte)*
cte: CTE_NAME "AS"i "(" query ")"
compound: select (set_op select)*
set_op: "UNION"i "ALL"i? | "INTERSECT"i | "EXCEPT"i
select: "SELECT"i "DISTINCT"i? select_list "FROM"i from_item join* where? group_by? having?
select_list: select_item ("," select_item)*
select_item: "*" | qualifier "." "*" | expr ("AS"i ALIAS)?
from_item: table ("AS"i? TABLE_ALIAS)? | CTE_NAME ("AS"i? TABLE_ALIAS)?
    | "(" query ")" "AS"i? TABLE_ALIAS
join: join_kind? "JOIN"i from_item ("ON"i expr)?
join_kind: "LEFT"i "OUTER"i? | "INNER"i | "CROSS"i
where: "WHERE"i expr
group_by: "GROUP"i "BY"i expr ("," expr)*
having: "HAVING"i expr
order_by: "ORDER"i "BY"i order_item ("," order_item)*
order_item: (expr | ALIAS) ("ASC"i | "DESC"i)?
limit: "LIMIT"i NUMBER ("OFFSET"i NUMBER)?
expr: and_expr ("OR"i and_expr)*
and_expr: not_expr ("AND"i not_expr)*
not_expr: "NOT"i? predicate
predicate: sum (cmp_op sum | "IS"i "NOT"i? "NULL"i | "NOT"i? "IN"i "(" (query | expr_list) ")"
    | "NOT"i? "BETWEEN"i sum "AND"i sum | "NOT"i? "LIKE"i sum)?
cmp_op: "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
sum: product (("+" | "-" | "||") product)*
product: unary (("*" | "/" | "%") unary)*
unary: "-"? primary
primary: NUMBER | STRING | "NULL"i | "TRUE"i | "FALSE"i | column_ref | call | aggregate
    | case | "(" expr ")" | "(" query ")" | "EXISTS"i "(" query ")"
    | "CAST"i "(" expr "AS"i type ")"
expr_list: expr ("," expr)*
aggregate: "COUNT"i "(" "*" ")" | AGG "(" "DISTINCT"i? expr ("," expr)? ")"
call: FUNC "(" expr_list? ")"
case: "CASE"i expr? ("WHEN"i expr "THEN"i expr)+ ("ELSE"i expr)? "END"i
column_ref: column | qualifier "." column
qualifier: table | TABLE_ALIAS | CTE_NAME
NUMBER: /[0-9]+(\.[0-9]+)?/
STRING: /'([^'\\\n]|'')*'/
ALIAS: /[a-zA-Z][a-zA-Z0-9_]{0,30}/
TABLE_ALIAS: /[a-zA-Z][0-9]?|[a-z][a-z0-9]/
CTE_NAME: /[a-z][a-z0-9_]{0,15}_cte|cte[0-9]?/
%ignore /[ \t\n]+/
"""


def _alternatives(names: list[str]) -> str:
    return " | ".join(json.dumps(quote_identifier(n)) for n in names)


def grammar_text(schema: Schema) -> str:
    """The Lark grammar for read-only queries on `schema`'s tables and columns."""
    dialect = schema.dialect
    tables = [t.name for t in schema.tables]
    columns = sorted({c.name for t in schema.tables for c in t.columns})
    lines = [
        _RULES.strip(),
        f"table: {_alternatives(tables)}",
        f"column: {_alternatives(columns)}",
        "type: " + " | ".join(f'"{t}"i' for t in TYPES),
        "FUNC: " + " | ".join(f'"{f}"i' for f in FUNCTIONS[dialect]),
        "AGG: " + " | ".join(f'"{f}"i' for f in AGGREGATES[dialect]),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def sql_constraint(schema: Schema) -> Constraint:
    """The compiled grammar (cached by hearth.structured: the same schema compiles once)."""
    return compile(lark(grammar_text(schema)))

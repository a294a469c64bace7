"""What client SQL may do: decided on ClickHouse's own parse tree, never on the query's text.

The query service (server/query/service.py) has the engine parse the query (`EXPLAIN AST` of
the single statement `formatQuery` produced) and hands the tree's text to `refusal()`, which
returns why the statement is refused, or None. The tree is one node a line, indented by depth:

    SelectWithUnionQuery (children 2)
     ExpressionList (children 1)
      SelectQuery (children 2)
       ...
         TableExpression (children 1)
          Function file (children 1)
     Literal 'out.csv'                <- INTO OUTFILE: a literal straight under the root

The rules, each a reason to refuse:
- the statement is not a read: only SELECT (with UNION/INTERSECT/EXCEPT, WITH, sub-queries),
  SHOW, DESCRIBE, EXISTS and EXPLAIN of those are run;
- `INTO OUTFILE` (a literal directly under the statement), a `SETTINGS` clause anywhere (a
  `Set` node: it could loosen the limits or name files), an INSERT anywhere (EXPLAIN INSERT);
- a table function outside the allow-list (`file`, `url`, `s3`, `remote`, `executable`,
  `mysql`, `input`, `python`…), and any function *named* like one anywhere in the tree (the
  scalar `file('/etc/shadow')` reads a file too), and the scalar functions that reach other
  hosts.

Aliases and quoted identifiers can hold newlines and so add lines to the tree's text, but never
remove one: every rule refuses on the presence of a line, so an added line can only refuse more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Statements that only read. (`SHOW DATABASES`, `SHOW SETTINGS`, `SHOW DICTIONARIES` parse as ShowTables.)
READ_STATEMENTS = frozenset({
    "SelectWithUnionQuery", "ShowTables", "ShowColumns", "ShowCreateTableQuery", "ExistsTableQuery",
    "DescribeQuery", "ShowFunctions", "Explain",
})
# Table functions that make rows from nothing or read tables the session may read anyway.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "primes",
    "values", "view", "merge", "generaterandom", "null",
})
# Scalar functions that reach the file system or another host. Table-function names are refused
# wherever they appear, which covers the scalar `file()`.
DENIED_SCALAR_FUNCTIONS = frozenset({"file", "hascolumnintable", "catboostevaluate", "naivebayesclassifier"})

NODE = re.compile(r"^( *)(\S+)(?: (\S+))?")


@dataclass(frozen=True)
class Refusal:
    """Why a statement is not run, in ClickHouse's terms (code and name as the engine's own)."""

    code: int
    name: str
    message: str


def _readonly(message: str) -> Refusal:
    return Refusal(164, "READONLY", message)


def _denied(message: str) -> Refusal:
    return Refusal(497, "ACCESS_DENIED", message)


def parse_tree(tree: str) -> list[tuple[int, str, str]]:
    """(depth, node kind, first word after the kind) for every line of `EXPLAIN AST` output."""
    nodes = []
    for line in tree.splitlines():
        match = NODE.match(line)
        if match:
            nodes.append((len(match.group(1)), match.group(2), match.group(3) or ""))
    return nodes


def refusal(tree: str, table_functions: frozenset[str]) -> Refusal | None:
    """None when the statement may run; otherwise why not. `table_functions`: every table
    function the engine knows, lower-cased (system.table_functions)."""
    nodes = parse_tree(tree)
    roots = [kind for depth, kind, _ in nodes if depth == 0]
    if len(roots) != 1:
        return _readonly("one statement at a time")
    root = roots[0]
    if root not in READ_STATEMENTS:
        return _readonly(f"Cannot execute query in readonly mode: only SELECT, SHOW, DESCRIBE, EXISTS and EXPLAIN "
                         f"are allowed here, not {root}")
    denied_functions = (table_functions - ALLOWED_TABLE_FUNCTIONS) | DENIED_SCALAR_FUNCTIONS
    parents: list[str] = []  # the kind of the last node seen at each depth
    for depth, kind, name in nodes:
        del parents[depth:]
        parent = parents[-1] if parents else ""
        parents.append(kind)
        if depth == 1 and kind == "Literal":
            return _denied("INTO OUTFILE is not allowed: queries here may not write files")
        if kind == "Set":
            return _readonly("Cannot modify settings in readonly mode: SETTINGS clauses (and EXPLAIN options) "
                             "are not allowed here")
        if kind.startswith("InsertQuery") or (root == "Explain" and depth == 1 and kind not in READ_STATEMENTS
                                              and kind != "Identifier"):
            return _readonly(f"Cannot execute query in readonly mode: {kind} is not a read")
        if kind == "Function":
            lowered = name.lower()
            if lowered in denied_functions:
                return _denied(f"function {name} reaches files, processes or the network: not allowed here")
            if parent == "TableExpression" and lowered not in ALLOWED_TABLE_FUNCTIONS:
                return _denied(f"table function {name} is not allowed here (allowed: "
                               f"{', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))})")
    return None


def output_format(tree: str, output_formats: frozenset[str]) -> str | None:
    """The statement's FORMAT clause: the last identifier straight under the root that names an
    output format (`output_formats`, lower-cased). SHOW and EXISTS also keep the names of
    databases and tables there, before the FORMAT clause."""
    formats = [name for depth, kind, name in parse_tree(tree)
               if depth == 1 and kind == "Identifier" and name.lower() in output_formats]
    return formats[-1] if formats else None

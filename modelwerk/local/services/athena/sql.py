"""Reading Athena's statements: which kind a statement is, the parts of the ones Athena runs itself (CTAS, UNLOAD,
DROP TABLE, CREATE/DROP DATABASE, SHOW), and ``?`` execution parameters.

Only the outer shape of a statement is parsed here; the queries inside are DuckDB's to read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


class SqlError(Exception):
    """A statement Athena would refuse, with Athena's message."""


def segments(sql: str) -> list[tuple[bool, str]]:
    """``sql`` cut into (is_code, text): string literals, quoted identifiers and comments are not code."""
    out: list[tuple[bool, str]] = []
    i, start, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        end = -1
        if c in "'\"`":
            end = i + 1
            while end < n:
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:  # a doubled quote is the quote itself
                        end += 2
                        continue
                    break
                end += 1
            end = min(end + 1, n)
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            end = n if newline < 0 else newline
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            end = n if close < 0 else close + 2
        if end < 0:
            i += 1
            continue
        if i > start:
            out.append((True, sql[start:i]))
        out.append((False, sql[i:end]))
        i = start = end
    if start < n:
        out.append((True, sql[start:]))
    return out


def strip(sql: str) -> str:
    """The statement without leading comments, surrounding blanks and trailing semicolons."""
    parts = segments(sql)
    while parts and (not parts[0][0] and parts[0][1][:2] in ("--", "/*") or parts[0][0] and not parts[0][1].strip()):
        parts.pop(0)
    text = "".join(t for _, t in parts).strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def bind(sql: str, parameters: list[str] | None) -> str:
    """Athena's ``ExecutionParameters``: each ``?`` of the code takes the next value, as SQL text."""
    values = list(parameters or [])
    out: list[str] = []
    count = 0
    for is_code, text in segments(sql):
        if not is_code:
            out.append(text)
            continue
        pieces = text.split("?")
        for index, piece in enumerate(pieces):
            out.append(piece)
            if index < len(pieces) - 1:
                count += 1
                out.append(values[count - 1] if count <= len(values) else "?")
    if count != len(values):
        raise SqlError(f"INVALID_PARAMETER_USAGE: Incorrect number of parameters: expected {count} but found "
                       f"{len(values)}")
    return "".join(out)


def _words(sql: str, count: int) -> list[str]:
    """The first ``count`` keywords of the code, upper case."""
    code = " ".join(t for is_code, t in segments(sql) if is_code)
    return [w.upper() for w in _WORD.findall(code)[:count]]


# -- names ----------------------------------------------------------------------------------------------------------
_NAME_PART = r'(?:"(?:[^"]|"")+"|`[^`]+`|[A-Za-z0-9_$@-]+)'
_NAME = re.compile(rf"\s*({_NAME_PART}(?:\s*\.\s*{_NAME_PART}){{0,2}})")


def _unquote(part: str) -> str:
    part = part.strip()
    if part[:1] == '"':
        return part[1:-1].replace('""', '"')
    if part[:1] == "`":
        return part[1:-1]
    return part.lower()


def _name(text: str, pos: int) -> tuple[list[str], int]:
    match = _NAME.match(text, pos)
    if not match:
        raise SqlError(f"SYNTAX_ERROR: a name was expected at: {text[pos:pos + 40]!r}")
    parts = re.findall(_NAME_PART, match.group(1))
    return [_unquote(p) for p in parts], match.end()


@dataclass(frozen=True)
class TableName:
    database: str | None
    table: str

    @classmethod
    def of(cls, parts: list[str]) -> "TableName":
        if len(parts) == 3:  # catalog.database.table; Athena's one catalog is awsdatacatalog
            parts = parts[1:]
        return cls(parts[0] if len(parts) == 2 else None, parts[-1])


def _balanced(text: str, pos: int) -> int:
    """The index just past the parenthesis that closes the one at ``pos`` (quotes respected)."""
    depth = 0
    offset = 0
    for is_code, piece in segments(text[pos:]):
        if is_code:
            for i, c in enumerate(piece):
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        return pos + offset + i + 1
        offset += len(piece)
    raise SqlError("SYNTAX_ERROR: unbalanced parentheses")


def _properties(body: str) -> dict[str, object]:
    """``key = 'value', other = ARRAY['a', 'b']`` (a WITH clause of CTAS or UNLOAD)."""
    props: dict[str, object] = {}
    pattern = re.compile(r"\s*,?\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(ARRAY\s*\[[^\]]*\]|'(?:[^']|'')*'|[^,\s]+)",
                         re.IGNORECASE)
    pos = 0
    while pos < len(body.rstrip()):
        match = pattern.match(body, pos)
        if not match:
            raise SqlError(f"SYNTAX_ERROR: cannot read the table properties at: {body[pos:pos + 40]!r}")
        key, value = match.group(1).lower(), match.group(2)
        if value.upper().startswith("ARRAY"):
            props[key] = [v.replace("''", "'") for v in re.findall(r"'((?:[^']|'')*)'", value)]
        elif value.startswith("'"):
            props[key] = value[1:-1].replace("''", "'")
        else:
            props[key] = value
        pos = match.end()
    return props


#: Statements Athena knows that the embedded Athena does not run (their first keyword).
_OTHER_STATEMENTS = ("CREATE", "ALTER", "DROP", "MSCK", "MERGE", "UPDATE", "DELETE", "OPTIMIZE", "VACUUM", "PREPARE",
                     "EXECUTE", "DEALLOCATE", "GRANT", "REVOKE")


# -- statements -----------------------------------------------------------------------------------------------------
@dataclass
class Statement:
    """One statement: Athena's ``StatementType`` and ``SubstatementType``, and what to run."""

    kind: str  # DDL, DML, UTILITY
    substatement: str  # SELECT, CREATE_TABLE_AS_SELECT, UNLOAD, DROP_TABLE, ...
    query: str = ""  # the query DuckDB runs (SELECT, the CTAS or UNLOAD inner query)
    table: TableName | None = None
    properties: dict[str, object] = field(default_factory=dict)
    if_exists: bool = False
    with_data: bool = True
    location: str = ""
    columns: list[str] = field(default_factory=list)


def parse(sql: str) -> Statement:
    """What ``sql`` asks for (its ``?`` already bound)."""
    text = strip(sql)
    words = _words(text, 4)
    first = words[0] if words else ""
    if first in ("SELECT", "WITH", "VALUES", "TABLE") or text.startswith("("):
        return Statement("DML", "SELECT", query=text)
    if first == "CREATE" and len(words) > 1 and words[1] == "TABLE":
        return _create_table(text)
    if first == "DROP" and len(words) > 1 and words[1] == "TABLE":
        match = re.match(r"\s*DROP\s+TABLE\s+(IF\s+EXISTS\s+)?", text, re.IGNORECASE)
        parts, _ = _name(text, match.end())
        return Statement("DDL", "DROP_TABLE", table=TableName.of(parts), if_exists=bool(match.group(1)))
    if first in ("CREATE", "DROP") and len(words) > 1 and words[1] in ("DATABASE", "SCHEMA"):
        match = re.match(r"\s*(CREATE|DROP)\s+(DATABASE|SCHEMA)\s+(IF\s+(NOT\s+)?EXISTS\s+)?", text, re.IGNORECASE)
        parts, _ = _name(text, match.end())
        return Statement("DDL", f"{first}_DATABASE", table=TableName(parts[-1], ""), if_exists=bool(match.group(3)))
    if first == "UNLOAD":
        return _unload(text)
    if first == "SHOW" and len(words) > 1 and words[1] in ("TABLES", "DATABASES", "SCHEMAS"):
        match = re.match(r"\s*SHOW\s+TABLES\s+(?:IN|FROM)\s+", text, re.IGNORECASE)
        database = _name(text, match.end())[0][-1] if match else None
        return Statement("UTILITY", f"SHOW_{'TABLES' if words[1] == 'TABLES' else 'DATABASES'}",
                         table=TableName(database, ""))
    if first == "INSERT":
        return _insert(text)
    if first in ("SHOW", "DESCRIBE", "EXPLAIN", "USE"):
        return Statement("UTILITY", first, query=text)
    if first in _OTHER_STATEMENTS:
        return Statement("DDL", first, query=text)
    return Statement("DML", "SELECT", query=text)  # not a statement at all: DuckDB's parser says why


def _create_table(text: str) -> Statement:
    match = re.match(r"\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?", text, re.IGNORECASE)
    parts, pos = _name(text, match.end())
    rest = text[pos:]
    props: dict[str, object] = {}
    with_clause = re.match(r"\s*WITH\s*\(", rest, re.IGNORECASE)
    if with_clause:
        close = _balanced(rest, with_clause.end() - 1)
        props = _properties(rest[with_clause.end():close - 1])
        rest = rest[close:]
    as_clause = re.match(r"\s*AS\s+", rest, re.IGNORECASE)
    if not as_clause:
        return Statement("DDL", "CREATE_TABLE", query=text, table=TableName.of(parts))
    query = rest[as_clause.end():].strip()
    with_data = True
    tail = re.search(r"\s+WITH\s+(NO\s+)?DATA\s*$", query, re.IGNORECASE)
    if tail:
        with_data = not tail.group(1)
        query = query[:tail.start()]
    if query.startswith("(") and _balanced(query, 0) == len(query):
        query = query[1:-1].strip()
    return Statement("DDL", "CREATE_TABLE_AS_SELECT", query=query, table=TableName.of(parts), properties=props,
                     if_exists=bool(match.group(1)), with_data=with_data)


def _unload(text: str) -> Statement:
    open_paren = re.match(r"\s*UNLOAD\s*\(", text, re.IGNORECASE)
    if not open_paren:
        raise SqlError("SYNTAX_ERROR: UNLOAD takes a query in parentheses: UNLOAD (SELECT ...) TO 's3://...' "
                       "WITH (format = 'PARQUET')")
    close = _balanced(text, open_paren.end() - 1)
    query = text[open_paren.end():close - 1].strip()
    target = re.match(r"\s*TO\s+'([^']+)'\s*", text[close:], re.IGNORECASE)
    if not target:
        raise SqlError("SYNTAX_ERROR: UNLOAD needs TO 's3://bucket/prefix/'")
    rest = text[close + target.end():]
    props: dict[str, object] = {}
    with_clause = re.match(r"\s*WITH\s*\(", rest, re.IGNORECASE)
    if with_clause:
        props = _properties(rest[with_clause.end():_balanced(rest, with_clause.end() - 1) - 1])
    return Statement("DML", "UNLOAD", query=query, properties=props, location=target.group(1))


def _insert(text: str) -> Statement:
    match = re.match(r"\s*INSERT\s+INTO\s+", text, re.IGNORECASE)
    if not match:
        raise SqlError("SYNTAX_ERROR: INSERT INTO <table> [(columns)] <query>")
    parts, pos = _name(text, match.end())
    rest = text[pos:].strip()
    columns: list[str] = []
    if rest.startswith("("):
        close = _balanced(rest, 0)
        inner = rest[1:close - 1].strip()
        if not re.match(r"(SELECT|WITH|VALUES|TABLE)\b", inner, re.IGNORECASE):
            columns = [_unquote(c) for c in inner.split(",")]
            rest = rest[close:].strip()
    return Statement("DML", "INSERT", query=rest, table=TableName.of(parts), columns=columns)

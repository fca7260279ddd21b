"""Names the engine gives the sequences it creates: PostgreSQL's own, as `serial` would."""

from __future__ import annotations

NAMEDATALEN = 64


def _clip(name: str, nbytes: int) -> str:
    return name.encode()[:nbytes].decode("utf-8", "ignore")


def serial_name(table: str, column: str, label: str = "seq") -> str:
    """The name PostgreSQL gives a serial column's sequence (makeObjectName: both parts are
    shortened, the longer first, to fit NAMEDATALEN - 1 bytes)."""
    avail = NAMEDATALEN - 1 - (len(label) + 1) - 1
    n1, n2 = len(table.encode()), len(column.encode())
    while n1 + n2 > avail:
        if n1 > n2:
            n1 -= 1
        else:
            n2 -= 1
    return "_".join((_clip(table, n1), _clip(column, n2), label))

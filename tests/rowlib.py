"""Rows as another tool writes them: a plain ``sqlite3`` INSERT, none of our rules applied."""

import sqlite3

from hypothesis import strategies as st


def insert_row(db_path, pipeline_type, updated_at, updated_by="tool", metadata=None) -> int:
    """Insert one row into ``pipeline_config`` in its own connection; return its id."""
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            cursor = conn.execute(
                "INSERT INTO pipeline_config (pipeline_type, updated_at, updated_by, metadata) "
                "VALUES (?, ?, ?, ?)",
                (pipeline_type, updated_at, updated_by, metadata),
            )
    finally:
        conn.close()
    return cursor.lastrowid


def stamp_strings():
    """Plausible and implausible ``updated_at`` texts: any year, offset, leap second, 24:00..."""
    number = st.integers
    date = st.tuples(number(0, 12000), number(0, 13), number(0, 32)).map(
        lambda d: f"{d[0]:04d}-{d[1]:02d}-{d[2]:02d}"
    )
    clock = st.tuples(number(0, 25), number(0, 61), number(0, 61)).map(
        lambda t: f"{t[0]:02d}:{t[1]:02d}:{t[2]:02d}"
    )
    fraction = st.one_of(
        st.just(""), st.text("0123456789", min_size=1, max_size=40).map(lambda digits: "." + digits)
    )
    offset = st.one_of(
        st.sampled_from(["", "Z", "z", " ", "+00:00", "-00:00"]),
        st.tuples(st.sampled_from("+-"), number(0, 30), number(0, 59)).map(
            lambda o: f"{o[0]}{o[1]:02d}:{o[2]:02d}"
        ),
    )
    separator = st.sampled_from([" ", "T", "t", "  "])
    full = st.tuples(date, separator, clock, fraction, offset).map("".join)
    return st.one_of(full, date, st.text(max_size=40))

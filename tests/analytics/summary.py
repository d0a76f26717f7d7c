"""Reads a file of `aggregator archive export` with a reader no one here wrote, and prints what it
finds per source, for tests/archive_export.rs to compare with the archive:

    column NAME TYPE                    (Parquet: each column as the reader types it)
    source KIND ID ROWS PAYLOAD_BYTES MIN_SEQUENCE MAX_SEQUENCE APIDS RECEIVED_MIN RECEIVED_MAX

tab-separated, sources sorted; APIDS counts the rows whose apid is set (`-` for the CSV, which
has no such column), RECEIVED_* are nanoseconds since the epoch.

    python summary.py duckdb-parquet|duckdb-csv|pyarrow FILE
"""

import sys


def duckdb_rows(path, csv):
    import duckdb

    con = duckdb.connect()
    if csv:
        # The CSV's columns as the docs define them; an empty payload is an empty field (NULL).
        source = (
            "read_csv(?, header = true, columns = {'received': 'VARCHAR', 'kind': 'VARCHAR', "
            "'source': 'UINTEGER', 'sequence': 'UBIGINT', 'priority': 'VARCHAR', "
            "'shard': 'UINTEGER', 'position': 'VARCHAR', 'payload': 'VARCHAR', "
            "'link': 'VARCHAR', 'station': 'VARCHAR', 'mode': 'VARCHAR', "
            "'earth_received': 'VARCHAR', 'ax25_from': 'VARCHAR', 'ax25_to': 'VARCHAR', "
            "'recording': 'VARCHAR'})"
        )
        length = "coalesce(octet_length(from_base64(payload)), 0)"
        apids = "NULL"
        received = "epoch_ns(CAST(received AS TIMESTAMPTZ_NS))"
    else:
        source = "read_parquet(?)"
        length = "octet_length(payload)"
        apids = "count(apid)"
        received = "epoch_ns(received)"
        for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}", [path]).fetchall():
            print(f"column\t{name}\t{kind}")
    query = (
        f"SELECT kind, source, count(*), sum({length}), min(sequence), max(sequence), {apids}, "
        f"min({received}), max({received}) "
        f"FROM {source} GROUP BY kind, source ORDER BY kind, source"
    )
    for row in con.execute(query, [path]).fetchall():
        print("source\t" + "\t".join("-" if f is None else str(f) for f in row))


def pyarrow_rows(path):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for field in table.schema:
        print(f"column\t{field.name}\t{field.type}")
    table = table.append_column("length", pc.binary_length(table["payload"]))
    table = table.append_column("ns", table["received"].cast(pa.int64()))
    grouped = table.group_by(["kind", "source"]).aggregate(
        [
            ("sequence", "count"),
            ("length", "sum"),
            ("sequence", "min"),
            ("sequence", "max"),
            ("apid", "count"),
            ("ns", "min"),
            ("ns", "max"),
        ]
    )
    rows = sorted(grouped.to_pylist(), key=lambda r: (r["kind"], r["source"]))
    for r in rows:
        fields = [
            r["kind"],
            r["source"],
            r["sequence_count"],
            r["length_sum"],
            r["sequence_min"],
            r["sequence_max"],
            r["apid_count"],
            r["ns_min"],
            r["ns_max"],
        ]
        print("source\t" + "\t".join(str(f) for f in fields))


def main():
    reader, path = sys.argv[1], sys.argv[2]
    if reader == "duckdb-parquet":
        duckdb_rows(path, csv=False)
    elif reader == "duckdb-csv":
        duckdb_rows(path, csv=True)
    elif reader == "pyarrow":
        pyarrow_rows(path)
    else:
        sys.exit(f"unknown reader {reader}: duckdb-parquet, duckdb-csv or pyarrow")


if __name__ == "__main__":
    main()

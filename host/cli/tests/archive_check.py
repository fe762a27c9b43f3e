"""Reads the change-data archive with clients nobody here wrote, for
host/cli/tests/e2e_archive.rs (run with the venv of scripts/pyclients):

  duckdb    the Parquet archive, hive partitioning (dt=…): the latest change
            of every item that is not deleted must be exactly the table's
            items, PII scrubbed (hashes recomputed here with hashlib);
  pyarrow   every Parquet file's schema equals the one derived from the
            type's .avsc;
  fastavro  the Avro archive: the same check on its records, and every
            file's writer schema has the .avsc's fields;
  sqlglot   every derived DDL (.parquet.sql, .avro.sql) parses in the Hive
            dialect as a CREATE of the type's table with its columns.

usage: archive_check.py FORMAT ROOT PREFIX DERIVED EXPECTED.json
  FORMAT    parquet | avro
  ROOT      the bucket's folder (objects as files)
  PREFIX    the archive's key prefix
  DERIVED   schemas/archive/derived
  EXPECTED  {"salt": …, "items": [demand-table item …]}, and optionally
            "types": {"sale": count of archived sale records}
Prints a JSON summary; exits 1 naming the first difference.
"""

import glob
import hashlib
import json
import os
import sys


def fail(message):
    print(json.dumps({"ok": False, "error": message}))
    sys.exit(1)


def sha(salt, text):
    return hashlib.sha256((salt + text).encode()).hexdigest()


def mask(text):
    return text[:1] + "*" * (len(text) - 1) if text else text


def expected_rows(salt, items):
    """The scrubbed projection of each table item, by (hashed) PK."""
    out = {}
    for item in items:
        entry = dict(item.get("entry") or {})
        for key, how in (("firstName", "mask"), ("lastName", "mask"), ("phone", "drop"), ("email", "hash")):
            if key in entry and entry[key] is not None:
                entry[key] = {"mask": mask, "drop": lambda _v: None, "hash": lambda v: sha(salt, v)}[how](entry[key])
        # The PK holds the user id: archived hashed.
        pk = sha(salt, item["PK"])
        out[pk] = {
            "PK": pk,
            "campaignId": item.get("campaignId"),
            "globalUserId": sha(salt, item["globalUserId"]),
            "email": sha(salt, item["email"]) if item.get("email") is not None else None,
            "accessCode": None,
            "version": item.get("version"),
            "needsReplication": item.get("needsReplication"),
            "entry": entry,
        }
    return out


def archived_projection(row):
    return {
        "PK": row["PK"],
        "campaignId": row["campaignId"],
        "globalUserId": row["globalUserId"],
        "email": row["email"],
        "accessCode": row["accessCode"],
        "version": row["version"],
        "needsReplication": row["needsReplication"],
        "entry": json.loads(row["entry"]) if row["entry"] is not None else {},
    }


def latest(rows):
    """The latest change of each item (by sequence number), deletions dropped."""
    best = {}
    for row in rows:
        ref = row["reference"]
        if ref not in best or int(row["sequenceNumber"]) > int(best[ref]["sequenceNumber"]):
            best[ref] = row
    return {r["PK"]: r for r in best.values() if not r["deleted"]}


def compare(want, rows, what):
    got = {pk: archived_projection(r) for pk, r in latest(rows).items()}
    if set(got) != set(want):
        missing = sorted(set(want) - set(got))[:5]
        extra = sorted(set(got) - set(want))[:5]
        fail(f"{what}: items differ: missing {missing}, not in the table {extra} ({len(got)} archived, {len(want)} in the table)")
    for pk, w in want.items():
        if got[pk] != w:
            fail(f"{what}: {pk}: archived {got[pk]} but the table gives {w}")


def avsc(derived, record_type):
    with open(os.path.join(derived, f"{record_type}.avsc")) as f:
        return json.load(f)


def arrow_schema(schema):
    import pyarrow as pa

    fields = []
    for f in schema["fields"]:
        t = f["type"]
        nullable = isinstance(t, list)
        if nullable:
            t = [b for b in t if b != "null"][0]
        if isinstance(t, dict) and t.get("logicalType") == "timestamp-millis":
            at = pa.timestamp("ms", tz="UTC")
        else:
            at = {"string": pa.string(), "long": pa.int64(), "double": pa.float64(), "boolean": pa.bool_()}[t]
        fields.append(pa.field(f["name"], at, nullable=nullable))
    return pa.schema(fields)


def utc(schema):
    """The schema with every UTC timestamp's zone spelled "UTC"."""
    import pyarrow as pa

    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_timestamp(t) and t.tz in ("UTC", "+00:00", "Z"):
            t = pa.timestamp(t.unit, tz="UTC")
        fields.append(pa.field(f.name, t, nullable=f.nullable))
    return pa.schema(fields)


def check_parquet(root, prefix, derived, want, types):
    import duckdb
    import pyarrow.parquet as pq

    base = os.path.join(root, prefix)
    files = sorted(glob.glob(os.path.join(base, "*", "dt=*", "*.parquet")))
    if not files:
        fail(f"no Parquet files under {base}")
    # pyarrow: each file's schema equals the derived one.
    for path in files:
        record_type = os.path.relpath(path, base).split(os.sep)[0]
        expected = arrow_schema(avsc(derived, record_type))
        got = utc(pq.read_schema(path).remove_metadata())
        if not got.equals(utc(expected)):
            fail(f"pyarrow: {path}: schema {got} is not the derived {expected}")
    con = duckdb.connect()
    pattern = os.path.join(base, "demand", "*", "*.parquet")
    cur = con.execute(
        f"SELECT *, strftime(changedAt AT TIME ZONE 'UTC', '%Y-%m-%d') AS changed_day "
        f"FROM read_parquet('{pattern}', hive_partitioning = true)"
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    for r in rows:
        if str(r["dt"]) != r["changed_day"]:
            fail(f"duckdb: {r['PK']} seq {r['sequenceNumber']} is in dt={r['dt']} but changed on {r['changed_day']}")
    compare(want, rows, "duckdb")
    # Other types: how many records, by duckdb's own count.
    counts = {}
    for record_type in types:
        pattern = os.path.join(base, record_type, "*", "*.parquet")
        counts[record_type] = con.execute(
            f"SELECT count(*) FROM read_parquet('{pattern}', hive_partitioning = true)"
        ).fetchone()[0]
        if counts[record_type] != types[record_type]:
            fail(f"duckdb: {counts[record_type]} {record_type} records, {types[record_type]} expected")
    return {"files": len(files), "demand_records": len(rows), "types": counts}


def check_avro(root, prefix, derived, want, types):
    import fastavro

    base = os.path.join(root, prefix)
    files = sorted(glob.glob(os.path.join(base, "*", "dt=*", "*.avro")))
    if not files:
        fail(f"no Avro files under {base}")
    rows = []
    counts = {t: 0 for t in types}
    for path in files:
        record_type = os.path.relpath(path, base).split(os.sep)[0]
        schema = avsc(derived, record_type)
        with open(path, "rb") as f:
            reader = fastavro.reader(f)
            names = [fld["name"] for fld in reader.writer_schema["fields"]]
            if names != [fld["name"] for fld in schema["fields"]]:
                fail(f"fastavro: {path}: fields {names} are not the derived schema's")
            records = list(reader)
        if record_type == "demand":
            rows.extend(records)
        elif record_type in counts:
            counts[record_type] += len(records)
    compare(want, rows, "fastavro")
    for t, n in types.items():
        if counts[t] != n:
            fail(f"fastavro: {counts[t]} {t} records, {n} expected")
    return {"files": len(files), "demand_records": len(rows), "types": counts}


def check_ddl(derived):
    import sqlglot
    from sqlglot import exp

    parsed = 0
    for path in sorted(glob.glob(os.path.join(derived, "*.sql"))):
        record_type = os.path.basename(path).split(".")[0]
        with open(path) as f:
            text = f.read()
        tree = sqlglot.parse_one(text, read="hive")
        if not isinstance(tree, exp.Create):
            fail(f"sqlglot: {path} is not a CREATE")
        table = tree.find(exp.Table)
        if table is None or table.name != record_type:
            fail(f"sqlglot: {path} creates {table}, not {record_type}")
        columns = [c.name for c in tree.find_all(exp.ColumnDef)]
        want = [f["name"] for f in avsc(derived, record_type)["fields"]]
        if [c for c in columns if c != "dt"] != want or "dt" not in columns:
            fail(f"sqlglot: {path}: columns {columns}, expected {want} and dt")
        parsed += 1
    if parsed == 0:
        fail(f"no DDL under {derived}")
    return parsed


def main():
    if len(sys.argv) != 6:
        fail(__doc__)
    fmt, root, prefix, derived, expected_path = sys.argv[1:]
    with open(expected_path) as f:
        expected = json.load(f)
    want = expected_rows(expected["salt"], expected["items"])
    types = expected.get("types", {})
    if fmt == "parquet":
        summary = check_parquet(root, prefix, derived, want, types)
    elif fmt == "avro":
        summary = check_avro(root, prefix, derived, want, types)
    else:
        fail(f"unknown format {fmt}")
    summary["ddl_parsed"] = check_ddl(derived)
    summary["ok"] = True
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

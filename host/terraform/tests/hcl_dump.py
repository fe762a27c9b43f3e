"""Parses every *.tf file of a folder with python-hcl2 and prints one JSON
document: {"resource": {type: {label: body}}, "data": {...}, "variable":
{...}, "output": {...}}. Labels and string literals are unquoted; an
expression stays as python-hcl2 gives it ("${...}")."""
import json
import os
import sys

import hcl2


def unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def clean(value):
    if isinstance(value, dict):
        return {unquote(k): clean(v) for k, v in value.items() if k not in ("__start_line__", "__end_line__")}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return unquote(value)


def main(folder):
    out = {"resource": {}, "data": {}, "variable": {}, "output": {}, "files": []}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".tf"):
            continue
        out["files"].append(name)
        with open(os.path.join(folder, name)) as f:
            doc = hcl2.load(f)
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for rtype, labelled in block.items():
                    for label, body in labelled.items():
                        bucket = out[kind].setdefault(unquote(rtype), {})
                        label = unquote(label)
                        if label in bucket:
                            raise SystemExit(f"{name}: {kind} {rtype}.{label} defined twice")
                        bucket[label] = clean(body)
        for kind in ("variable", "output"):
            for block in doc.get(kind, []):
                for label, body in block.items():
                    out[kind][unquote(label)] = clean(body)
    json.dump(out, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1])

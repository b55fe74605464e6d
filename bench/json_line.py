"""How every benchmark reports: one JSON line on stdout, also appended to --out when given."""
from __future__ import annotations

import json


def emit(record: dict | str, out: str | None) -> None:
    """Prints `record` (a dict, or a line already in JSON) and appends it to the file `out`, if any."""
    line = record if isinstance(record, str) else json.dumps(record)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")

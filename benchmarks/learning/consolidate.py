"""One-off: move the per-run files (``results/<algo>/<env>/seed<k>.json`` + ``_curve.csv`` and
``sweeps/<variant>/<algo>/<env>/seed<k>.json`` + ``_curve.csv``) into ``data/`` (``store.py``), checking that
every run reads back exactly as its files had it. Run once, on the tree that still held the per-run files::

    python benchmarks/learning/consolidate.py
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path
from typing import Any

from store import BENCHMARK_TABLE, DATA_DIR, SWEEP_TABLE, Store, _gzip, record_to_row, row_to_record

HERE = Path(__file__).resolve().parent


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def main() -> None:
    if any(DATA_DIR.glob("*.csv*")):
        raise SystemExit(f"{DATA_DIR} holds data already")
    jobs = [(path, "") for path in sorted(HERE.glob("results/*/*/seed*.json"))]
    jobs += [(path, path.relative_to(HERE / "sweeps").parts[0]) for path in sorted(HERE.glob("sweeps/*/*/*/seed*.json"))]
    stores = {"": Store(DATA_DIR, BENCHMARK_TABLE), "sweep": Store(DATA_DIR, SWEEP_TABLE)}
    expected_curves: dict[str, list[list[str]]] = {}
    for path, variant in jobs:
        text = path.read_text()
        record = json.loads(text)
        curve_path = path.with_name(record.pop("curve_csv"))
        with open(curve_path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            raw = list(reader)
        assert header == ["timesteps", *header[1:]], header
        curve = [{k: int(v) if k == "timesteps" else float(v) for k, v in zip(header, line, strict=True)} for line in raw]
        # the record reads back as it was written (a missing "tag" reads back as "")
        back = row_to_record(record_to_row(record, variant))
        if "tag" not in record:
            assert back.pop("tag") == "", path
        assert same(back, record), (path, back, record)
        name = stores["sweep" if variant else ""].append(record, curve, variant)
        expected_curves[name] = raw
    # one gzip member for the whole history (the appends above wrote one per run)
    curves_path = stores[""].curves_path
    with gzip.open(curves_path, "rt", newline="") as f:
        text = f.read()
    curves_path.write_bytes(_gzip(text))
    for key, store in stores.items():
        records = store.load()
        assert len(records) == sum(1 for _, v in jobs if bool(v) == bool(key)), key
        for record in records:  # the curves' text, cell by cell, and as floats
            raw = expected_curves[record["run"]]
            assert [[str(c) for c in line] for line in raw] == raw
            assert same(record["curve"], [{k: float(v) for k, v in zip(header, line, strict=True)} for line in raw])
    with gzip.open(stores[""].curves_path, "rt", newline="") as f:
        lines = list(csv.reader(f))[1:]
    assert [line[1:] for line in lines] == [line for name in expected_curves for line in expected_curves[name]]
    print(f"{len(jobs)} runs -> {', '.join(str(p.relative_to(HERE)) for p in sorted(DATA_DIR.glob('*.csv*')))}")


if __name__ == "__main__":
    main()

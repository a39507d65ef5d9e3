"""``python -m docket.schemas`` (from a source checkout): keep the current version of every
schema in ``schemas/released/``, so that later Dockets read what this one writes."""

from pathlib import Path

from docket.codec.schemas import keep_current

for path in keep_current(Path(__file__).resolve().parent / "released"):
    print(f"kept {path}")

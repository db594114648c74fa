"""An outside system (an ingestion job, Spark, dbt) announcing that raw data is ready.

Start the service in one terminal, then run this in another:

    eventflow dev examples/ml_pipeline.py
    python examples/publisher.py [DAY]

Only the path and the row count travel; the file stays where the job wrote it.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

from ml_pipeline import generate_trips

import eventflow as ef

day = sys.argv[1] if len(sys.argv) > 1 else (date.today() - timedelta(days=1)).isoformat()
folder = Path(tempfile.mkdtemp(prefix="eventflow-ingest-")) / day
path = generate_trips(folder, day)
event = ef.publish("raw.trips", day, metadata={"path": str(path), "rows": 5000})
print(f"announced raw.trips@{day} version {event.data.version}: {path}")

"""The request store: one SQLite table of requests plus one folder per request, under the server's --store.

SQLite commits every change before the server answers, so a killed server loses nothing it acknowledged; the
request folder (`requests/<id>/`) holds what the job writes (request.json, progress, the run, the receipt).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
COLUMNS = ("id", "seq", "state", "created", "updated", "started", "finished", "job", "attempts", "follows",
           "error", "request")

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    started REAL,
    finished REAL,
    job TEXT,               -- the Ray submission id of the current attempt (NULL: not submitted yet)
    attempts INTEGER NOT NULL DEFAULT 0,
    follows TEXT,
    error TEXT,
    request TEXT NOT NULL   -- the resolved request (request.json), as JSON
)"""


class Store:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.folder / "requests.db"), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)

    def request_dir(self, request_id: str) -> Path:
        return self.folder / "requests" / request_id

    def _row(self, row) -> dict:
        r = dict(zip(COLUMNS, row, strict=True))
        r["request"] = json.loads(r["request"])
        r["folder"] = str(self.request_dir(r["id"]))
        return r

    def add(self, request: dict) -> dict:
        """Store a new request (state queued) and write its folder's request.json; returns the stored row."""
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM requests").fetchone()[0]
            request_id = f"r{seq:04d}-{secrets.token_hex(3)}"
            folder = self.request_dir(request_id)
            folder.mkdir(parents=True)
            full = request | {"id": request_id, "references": str(self.folder / "references")}
            (folder / "request.json").write_text(json.dumps(full, indent=1))
            now = time.time()
            self._db.execute("INSERT INTO requests (id, seq, state, created, updated, follows, request) "
                             "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                             (request_id, seq, now, now, request.get("follows"), json.dumps(full)))
        return self.get(request_id)

    def get(self, request_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM requests WHERE id = ?", (request_id,)).fetchone()
        return None if row is None else self._row(row)

    def list(self, states: tuple[str, ...] = STATES) -> list[dict]:
        marks = ", ".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM requests WHERE state IN ({marks}) ORDER BY seq",
                                    states).fetchall()
        return [self._row(r) for r in rows]

    def update(self, request_id: str, **fields) -> None:
        fields["updated"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE requests SET {sets} WHERE id = ?", (*fields.values(), request_id))

    def close(self) -> None:
        with self._lock:
            self._db.close()

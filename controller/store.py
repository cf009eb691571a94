"""The controller's embedded store (SQLite): analyzer VMs, captures and the configuration
objects written through Contrail's configuration API survive a controller restart, so it can
reconcile the vRouters to what was active."""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from mirrorlab.controller.mirroring import Capture, Direction
from mirrorlab.controller.mirrorto import MirrorTo, mirror_to_from_dict
from mirrorlab.recorder import DEFAULT_LIMIT_BYTES
from mirrorlab.topology import VM, vm_from_dict, vm_to_dict

SCHEMA = """
CREATE TABLE IF NOT EXISTS analyzers (
    name TEXT PRIMARY KEY,
    vm TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS captures (
    id INTEGER PRIMARY KEY,
    compute TEXT NOT NULL,
    interface TEXT NOT NULL,
    direction TEXT NOT NULL,
    analyzer TEXT NOT NULL,
    slot INTEGER NOT NULL,
    started_at REAL NOT NULL,
    stopped_at REAL,
    lease_seconds REAL,
    lease_expires_at REAL,
    limit_bytes INTEGER NOT NULL DEFAULT %d,
    stop_reason TEXT,
    failed INTEGER NOT NULL DEFAULT 0,
    secret TEXT,
    origin TEXT NOT NULL DEFAULT 'api',
    mirror_to TEXT,
    mirror_index INTEGER NOT NULL DEFAULT 0
);
-- Contrail configuration objects written through the configuration API (network policies),
-- and refs it set on the lab's own objects (a virtual network's network_policy_refs).
CREATE TABLE IF NOT EXISTS config_objects (
    uuid TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    fq_name TEXT NOT NULL,
    props TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS config_refs (
    owner TEXT NOT NULL,
    field TEXT NOT NULL,
    refs TEXT NOT NULL,
    PRIMARY KEY (owner, field)
);
""" % DEFAULT_LIMIT_BYTES
# Columns added since the first schema, added to an older store when it is opened.
ADDED_COLUMNS = {"limit_bytes": f"INTEGER NOT NULL DEFAULT {DEFAULT_LIMIT_BYTES}",
                 "stop_reason": "TEXT", "failed": "INTEGER NOT NULL DEFAULT 0", "secret": "TEXT",
                 "origin": "TEXT NOT NULL DEFAULT 'api'", "mirror_to": "TEXT",
                 "mirror_index": "INTEGER NOT NULL DEFAULT 0"}
CAPTURE_COLUMNS = ("id, compute, interface, direction, analyzer, slot, started_at, stopped_at, "
                   "lease_seconds, lease_expires_at, limit_bytes, stop_reason, failed, secret, origin, "
                   "mirror_to, mirror_index")


class Store:
    """Analyzers and captures in one SQLite file; every write is committed at once (durable
    across the controller's death, not the machine's)."""

    def __init__(self, path: Path | str):
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # A commit is written to the log at once but not forced to the disk each time: it
        # survives the controller's death (kill -9 included), which is what the store is for;
        # only a crash of the machine, which takes the lab with it, could lose the last ones.
        # Forcing each one cost milliseconds, under the service's lock, per capture start and stop.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        present = {row[1] for row in self.db.execute("PRAGMA table_info(captures)")}
        for column, definition in ADDED_COLUMNS.items():
            if column not in present:
                self.db.execute(f"ALTER TABLE captures ADD COLUMN {column} {definition}")
        self.lock = threading.Lock()

    def analyzers(self) -> list[VM]:
        """Every analyzer VM, in creation order."""
        with self.lock:
            rows = self.db.execute("SELECT vm FROM analyzers ORDER BY rowid").fetchall()
        return [vm_from_dict(json.loads(row[0])) for row in rows]

    def add_analyzer(self, vm: VM) -> None:
        """Record a new analyzer VM."""
        with self.lock:
            self.db.execute("INSERT INTO analyzers (name, vm) VALUES (?, ?)",
                            (vm.analyzer, json.dumps(vm_to_dict(vm))))

    def remove_analyzer(self, name: str) -> None:
        """Forget an analyzer."""
        with self.lock:
            self.db.execute("DELETE FROM analyzers WHERE name = ?", (name,))

    def captures(self) -> list[Capture]:
        """Every capture ever started, active or stopped, by id."""
        with self.lock:
            rows = self.db.execute(f"SELECT {CAPTURE_COLUMNS} FROM captures ORDER BY id").fetchall()
        return [Capture(id=r[0], compute=r[1], interface=r[2], direction=Direction(r[3]),
                        analyzer=r[4], slot=r[5], started_at=r[6], stopped_at=r[7],
                        lease_seconds=r[8], lease_expires_at=r[9], limit_bytes=r[10],
                        stop_reason=r[11], failed=bool(r[12]),
                        secret=r[13], origin=r[14],
                        # A capture stored before destinations were kept went to its analyzer
                        # the default way.
                        mirror_to=mirror_to_from_dict(json.loads(r[15])) if r[15]
                        else MirrorTo(analyzer_name=r[4]), mirror_index=r[16]) for r in rows]

    def next_capture_id(self) -> int:
        """The id the next capture gets (ids are never reused)."""
        with self.lock:
            return self.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM captures").fetchone()[0]

    def save_capture(self, capture: Capture) -> None:
        """Insert or update a capture."""
        with self.lock:
            self.db.execute(
                f"INSERT OR REPLACE INTO captures ({CAPTURE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (capture.id, capture.compute, capture.interface, capture.direction.value,
                 capture.analyzer, capture.slot, capture.started_at, capture.stopped_at,
                 capture.lease_seconds, capture.lease_expires_at, capture.limit_bytes,
                 capture.stop_reason, int(capture.failed), capture.secret, capture.origin,
                 json.dumps(capture.mirror_to.to_dict()), capture.mirror_index))

    def config_objects(self) -> list[tuple[str, list[str], dict]]:
        """(type, fq_name, properties) of every object created through the configuration API."""
        with self.lock:
            rows = self.db.execute("SELECT type, fq_name, props FROM config_objects ORDER BY rowid").fetchall()
        return [(row[0], json.loads(row[1]), json.loads(row[2])) for row in rows]

    def save_config_object(self, uuid: str, obj_type: str, fq_name: list[str], props: dict) -> None:
        """Insert or update an object created through the configuration API."""
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO config_objects (uuid, type, fq_name, props) "
                            "VALUES (?, ?, ?, ?)", (uuid, obj_type, json.dumps(fq_name), json.dumps(props)))

    def remove_config_object(self, uuid: str) -> None:
        """Forget an object created through the configuration API."""
        with self.lock:
            self.db.execute("DELETE FROM config_objects WHERE uuid = ?", (uuid,))

    def config_refs(self) -> dict[tuple[str, str], list]:
        """The refs the configuration API set, by (owner uuid, field)."""
        with self.lock:
            rows = self.db.execute("SELECT owner, field, refs FROM config_refs").fetchall()
        return {(row[0], row[1]): json.loads(row[2]) for row in rows}

    def save_config_refs(self, owner: str, field: str, refs: list) -> None:
        """Set the refs of `owner`'s `field` (an empty list forgets them)."""
        with self.lock:
            if refs:
                self.db.execute("INSERT OR REPLACE INTO config_refs (owner, field, refs) VALUES (?, ?, ?)",
                                (owner, field, json.dumps(refs)))
            else:
                self.db.execute("DELETE FROM config_refs WHERE owner = ? AND field = ?", (owner, field))

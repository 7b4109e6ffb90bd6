"""The model registry: a SQLite index plus blob files, in one directory.

    reg = Registry()                                  # $PYMICRO_HOME/models, default ~/.pymicro/models
    model_id = reg.add(blob, "momentum", metrics={"accuracy": 0.41})   # "momentum-1b925ee6"
    reg.get(model_id)                                 # ModelRecord (name, params, hash, metrics, status, ...)
    model = reg.load(model_id)                        # a pymicro.Model, bytes checked against the index
    reg.list(); reg.set_status(model_id, "validated"); reg.remove(model_id)

Layout of a store::

    <root>/index.sqlite3        the index (WAL journal: readers never block the writer)
    <root>/blobs/<id>.pmb       one blob per model, written atomically (temp file, fsync, rename)
    <root>/reports/<id>.json    optional training report (.md when the report is text)

Model ids are ``<name>-<first 8 hex digits of the blob's sha256>`` (more digits on the rare
prefix collision) and must match :data:`ID_RE`, which admits ASCII letters, digits, ``_``
and ``-`` only: no dots, slashes, NUL or other characters, so an id can never name a path
outside the store. Every file path is built from a validated id, resolved, and checked to
sit directly in its folder of the store; files are opened with ``O_NOFOLLOW`` and a blob or
folder that is a symbolic link is refused. Anything refused raises :class:`RegistryError`.

Several processes and threads may use one store at once: each thread keeps its own
connection; writers take SQLite's write lock (``BEGIN IMMEDIATE``, 30 s busy timeout)
around each change.

Crash safety (a process killed at any instruction, ``kill -9`` included): a row is never
committed without its files, and files are deleted only after the row that names them is
gone. ``add`` writes the report and the blob (atomically) *before* its row commits;
``remove`` commits the row's deletion *first* and unlinks the files afterwards, in a second
transaction that unlinks only files no row names. A crash between leaves files without a
row, never a row without its file; opening a store sweeps those orphans (and the ``*.tmp``
files of interrupted atomic writes) under the write lock, so no writer is mid-way. A
reader that finds a row therefore finds its blob, unless the model is removed after the
reader read the row. ``PYMICRO_REGISTRY_CRASH_AT=<step>`` kills the process at that step
(:data:`CRASH_STEPS`); the tests use it to check every crash point.

Retention is automatic: after every :meth:`Registry.add_version` (so after every ``learn``
round) the name's versions go through :meth:`Registry.retain` with the store's ``keep_last``
(``Registry(root, keep_last=N)``; default ``$PYMICRO_KEEP_LAST``, else
:data:`DEFAULT_KEEP_LAST`; 0 turns it off). Retain never retires a version an alias points
at, one an alias would roll back to, or the parent of a version it keeps; it deletes rows
first and blobs afterwards, with the same crash guarantees as ``remove``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import signal
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pymicro.runtime.blob import write_atomic
from pymicro.errors import RegistryError
from pymicro.runtime.model import load

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}", re.ASCII)
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}-[0-9a-f]{8,64}", re.ASCII)
#: The same pattern as a JSON-schema / MCP ``pattern`` (anchored).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}-[0-9a-f]{8,64}$"
ID_MAX_LEN = 48 + 1 + 64
STATUSES = ("registered", "validated", "deployed", "deprecated", "failed")
MAX_BLOB_BYTES = 64 << 20  # far above any micro network (10,000 params are ~40 kB)
MAX_METRICS_BYTES = 64 << 10
MAX_REPORT_BYTES = 4 << 20
BUSY_TIMEOUT_S = 30.0
CRASH_ENV = "PYMICRO_REGISTRY_CRASH_AT"
KEEP_LAST_ENV = "PYMICRO_KEEP_LAST"
#: Versions of a name kept by automatic retention besides aliased ones, rollback targets and parents.
DEFAULT_KEEP_LAST = 20
#: The steps of ``add`` and ``remove`` at which ``PYMICRO_REGISTRY_CRASH_AT`` kills the process.
CRASH_STEPS = ("add:report-written", "add:blob-written", "add:row-inserted", "add:committed",
               "remove:row-deleted", "remove:committed", "remove:blob-unlinked", "remove:done",
               "version:row-inserted", "version:committed", "alias:half-moved", "alias:committed",
               "retain:rows-deleted", "retain:committed", "retain:blob-unlinked")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    created       TEXT NOT NULL,
    params        INTEGER NOT NULL,
    input_size    INTEGER NOT NULL,
    n_classes     INTEGER NOT NULL,
    content_hash  TEXT NOT NULL,
    blob_file     TEXT NOT NULL,
    blob_size     INTEGER NOT NULL,
    metrics       TEXT NOT NULL DEFAULT '{}',
    report_file   TEXT,
    status        TEXT NOT NULL DEFAULT 'registered',
    kind          TEXT NOT NULL DEFAULT 'model',
    members       TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS models_name ON models(name);
CREATE TABLE IF NOT EXISTS versions (
    name            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    model_id        TEXT NOT NULL REFERENCES models(id),
    created         TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    parent_version  INTEGER,
    parent_hash     TEXT,
    data_window     TEXT NOT NULL DEFAULT '{}',
    config          TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS versions_model ON versions(model_id);
CREATE TABLE IF NOT EXISTS aliases (
    name     TEXT NOT NULL,
    alias    TEXT NOT NULL,
    version  INTEGER NOT NULL,
    moved    TEXT NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS alias_log (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    name     TEXT NOT NULL,
    alias    TEXT NOT NULL,
    kind     TEXT NOT NULL,
    version  INTEGER,
    at       TEXT NOT NULL,
    reason   TEXT
);
CREATE TABLE IF NOT EXISTS events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    name     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    version  INTEGER,
    at       TEXT NOT NULL,
    payload  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_name ON events(name, kind);
CREATE TRIGGER IF NOT EXISTS events_append_only_update BEFORE UPDATE ON events
  BEGIN SELECT RAISE(ABORT, 'the registry events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_delete BEFORE DELETE ON events
  BEGIN SELECT RAISE(ABORT, 'the registry events are append-only'); END;
"""
_COLUMNS = ("id", "name", "created", "params", "input_size", "n_classes", "content_hash",
            "blob_file", "blob_size", "metrics", "report_file", "status", "kind", "members")
#: Columns added after the first release, with their definitions: an older index gains them on open.
_ADDED_COLUMNS = {"kind": "TEXT NOT NULL DEFAULT 'model'", "members": "TEXT NOT NULL DEFAULT '[]'"}
#: What a row holds: a single model blob (PMB1) or an ensemble container (PMBC).
KINDS = ("model", "ensemble")


def default_root() -> Path:
    """``$PYMICRO_HOME/models``; ``PYMICRO_HOME`` defaults to ``~/.pymicro``."""
    home = os.environ.get("PYMICRO_HOME")
    return (Path(home) if home else Path.home() / ".pymicro") / "models"


def _write_file(path: Path, data: bytes) -> None:
    """Atomically (temp file, fsync, rename); an OSError becomes a RegistryError."""
    try:
        write_atomic(path, data)
    except OSError as e:
        raise RegistryError(f"cannot write {path}: {e.strerror or e}") from None


def _keep_last(value) -> int:
    """The automatic retention's ``keep_last``: ``value``, else ``$PYMICRO_KEEP_LAST``, else the default."""
    source = "keep_last"
    if value is None:
        text = os.environ.get(KEEP_LAST_ENV, "").strip()
        if not text:
            return DEFAULT_KEEP_LAST
        source = KEEP_LAST_ENV
        try:
            value = int(text)
        except ValueError:
            raise RegistryError(f"{KEEP_LAST_ENV}={text!r} is not an integer (0 turns retention off)") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RegistryError(f"{source} must be an int >= 0 (0: no automatic retention), got {_shown(value)}")
    return value


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _crash_point(step: str) -> None:
    """Kill this process (SIGKILL: no cleanup, no flush) if ``$PYMICRO_REGISTRY_CRASH_AT`` is ``step``."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        os._exit(137)  # pragma: no cover - where SIGTERM could be handled


def _shown(value, limit: int = 60) -> str:
    """repr() of a caller's value, cut short: error messages never echo a huge payload."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"...' ({len(text)} chars)"


def check_id(model_id) -> str:
    """Return ``model_id`` if it is a well-formed model id, else raise RegistryError."""
    if not isinstance(model_id, str):
        raise RegistryError(f"model id must be a string, got {type(model_id).__name__}")
    if len(model_id) > ID_MAX_LEN or not ID_RE.fullmatch(model_id):
        raise RegistryError(
            f"model id {_shown(model_id)} is malformed: ids look like 'momentum-1b925ee6' "
            "(a name of ASCII letters, digits, '_' or '-', then '-' and 8-64 hex digits)")
    return model_id


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RegistryError(
            f"model name {_shown(name)} is not allowed: 1-48 ASCII letters, digits, '_' or '-', "
            "starting with a letter or digit")
    return name


def slug(text: str) -> str:
    """A valid model name made from free text ('My trader v2' -> 'My-trader-v2')."""
    out = re.sub(r"[^A-Za-z0-9_-]+", "-", str(text), flags=re.ASCII).strip("-_")[:48].strip("-_")
    return out or "model"


def _member_entries(blob: bytes, described: dict) -> list[dict]:
    """Each member of a parsed container: its name, size and the sha256 of its own blob bytes."""
    from pymicro.runtime.ensemble import member_spans

    return [{"name": m["name"], "params": int(m["params"]), "input_size": int(m["input_size"]),
             "n_classes": int(m["n_classes"]), "weight": float(m["weight"]),
             "content_hash": hashlib.sha256(blob[off:off + size]).hexdigest()}
            for m, (off, size) in zip(described["members"], member_spans(blob))]


@dataclass(frozen=True)
class ModelRecord:
    """One row of the index. Paths are relative to the store (see Registry.blob_path)."""

    id: str
    name: str
    created: str  # ISO 8601, UTC
    params: int
    input_size: int
    n_classes: int
    content_hash: str  # sha256 of the blob bytes
    blob_file: str
    blob_size: int
    metrics: dict = field(default_factory=dict)
    report_file: str | None = None
    status: str = "registered"
    kind: str = "model"  # "model" (a .pmb) or "ensemble" (a PMBC container)
    #: An ensemble's members, in order: name, params, input_size, n_classes, weight,
    #: content_hash (sha256 of the member's own blob) and model_id (the registered model with
    #: those bytes when the container was added, else None). Empty for a single model.
    members: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


ALIAS_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}", re.ASCII)
#: The aliases ``learn`` and ``promote`` move; any other matching ALIAS_RE is a custom alias.
CHAMPION, CHALLENGER = "champion", "challenger"
_VCOLUMNS = ("name", "version", "model_id", "created", "content_hash", "parent_version", "parent_hash",
             "data_window", "config")


def check_alias(alias) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias):
        raise RegistryError(f"alias {_shown(alias)} is not allowed: 1-32 lower-case ASCII letters, digits, "
                            "'_' or '-', starting with a letter")
    return alias


@dataclass(frozen=True)
class VersionRecord:
    """One version of a named model: its blob (``model_id``, ``content_hash``) and lineage.

    ``parent_version`` is the version it was fine-tuned from (None: trained from scratch),
    ``parent_hash`` that parent's content hash (kept even after the parent is retired),
    ``data_window`` the dates it trained on, ``config`` how; ``aliases`` point at it now."""

    name: str
    version: int
    model_id: str
    created: str
    content_hash: str
    parent_version: int | None = None
    parent_hash: str | None = None
    data_window: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


class Registry:
    """A model store rooted at ``root`` (default :func:`default_root`); created on first use."""

    def __init__(self, root: str | os.PathLike | None = None, *, keep_last: int | None = None):
        self.keep_last = _keep_last(keep_last)
        root = Path(root) if root is not None else default_root()
        try:
            root.expanduser().mkdir(parents=True, exist_ok=True, mode=0o700)
            self.root = root.expanduser().resolve(strict=True)
        except OSError as e:
            raise RegistryError(f"cannot create the model store at {os.fspath(root)!r}: {e.strerror}") from None
        self.blobs_dir = self._subdir("blobs")
        self.reports_dir = self._subdir("reports")
        self.index_path = self.root / "index.sqlite3"
        self._local = threading.local()
        if self.index_path.is_symlink():
            raise RegistryError(f"{self.index_path} is a symbolic link; refusing to use it as the index")
        with self._connect() as con:
            con.execute("PRAGMA journal_mode = WAL")  # persistent: set once per index file
            con.executescript(_SCHEMA)
        self._migrate()
        self.swept = self._sweep()

    def _migrate(self) -> None:
        """Give an index written before ensembles the ``kind`` and ``members`` columns (its rows
        are single models: the defaults say so)."""
        with self._write() as con:
            have = {row[1] for row in con.execute("PRAGMA table_info(models)")}
            for column, definition in _ADDED_COLUMNS.items():
                if column not in have:
                    con.execute(f"ALTER TABLE models ADD COLUMN {column} {definition}")

    def _sweep(self) -> list[str]:
        """Delete what a crashed writer left: blob and report files no row names, and the
        temp files of interrupted atomic writes. Runs under the write lock: every writer
        writes its files inside its write transaction, so none is mid-way. Returns the
        names deleted (``blobs/...``, ``reports/...``)."""
        removed = []
        with self._write() as con:
            named = {row[0] for row in con.execute("SELECT blob_file FROM models")}
            named |= {row[0] for row in con.execute("SELECT report_file FROM models WHERE report_file IS NOT NULL")}
            for folder, exts in ((self.blobs_dir, (".pmb",)), (self.reports_dir, (".json", ".md"))):
                try:
                    entries = list(os.scandir(folder))
                except OSError as e:
                    raise RegistryError(f"cannot list {folder}: {e.strerror}") from None
                for entry in entries:
                    name = entry.name
                    stale_tmp = name.startswith(".") and name.endswith(".tmp")
                    orphan = name.endswith(exts) and name not in named
                    if (stale_tmp or orphan) and not entry.is_dir(follow_symlinks=False):
                        try:
                            os.unlink(entry.path)
                        except FileNotFoundError:
                            continue
                        except OSError as e:
                            raise RegistryError(f"cannot delete the orphan {entry.path}: {e.strerror}") from None
                        removed.append(f"{folder.name}/{name}")
        return removed

    def __repr__(self) -> str:
        return f"<pymicro.Registry {str(self.root)!r}>"

    # ------------------------------------------------------------------ paths

    def _subdir(self, name: str) -> Path:
        path = self.root / name
        if path.is_symlink():
            raise RegistryError(f"{path} is a symbolic link; the store's folders must be real folders")
        try:
            path.mkdir(exist_ok=True, mode=0o700)
        except OSError as e:
            raise RegistryError(f"cannot create {path}: {e.strerror}") from None
        if path.resolve() != path or not path.is_dir():
            raise RegistryError(f"{path} is not a folder inside the store {self.root}")
        return path

    def _confined(self, folder: Path, file_name) -> Path:
        """``folder / file_name``, refused unless it names a plain file directly in ``folder``."""
        if (not isinstance(file_name, str) or "/" in file_name or "\\" in file_name or "\0" in file_name
                or file_name in ("", ".", "..") or os.path.isabs(file_name)):
            raise RegistryError(f"file name {_shown(file_name)} would leave the store")
        stem, dot, ext = file_name.rpartition(".")
        if not dot or ext not in ("pmb", "json", "md"):
            raise RegistryError(f"file name {_shown(file_name)} is not a registry file")
        check_id(stem)
        path = folder / file_name
        if path.is_symlink():
            raise RegistryError(f"{path} is a symbolic link; refusing to follow it out of the store")
        resolved = path.resolve()
        if resolved.parent != folder or not resolved.is_relative_to(self.root):
            raise RegistryError(f"{file_name!r} resolves to {resolved}, outside the store {self.root}")
        return path

    def _read(self, path: Path, limit: int) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise RegistryError(f"cannot open {path}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise RegistryError(f"{path} is larger than {limit} bytes")
        return data

    # ------------------------------------------------------------------ index

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection to the index (opened once per thread and process)."""
        local = self._local
        if getattr(local, "con", None) is None or local.pid != os.getpid():
            con = sqlite3.connect(self.index_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            con.execute("PRAGMA synchronous = FULL")
            local.con, local.pid = con, os.getpid()
        return local.con

    @contextmanager
    def _connect(self):
        try:
            con = self._connection()
        except sqlite3.Error as e:
            raise RegistryError(f"cannot open the registry index {self.index_path}: {e}") from None
        try:
            yield con
        except sqlite3.Error as e:
            raise RegistryError(f"registry index {self.index_path}: {e}") from None

    @contextmanager
    def _write(self):
        """A write transaction holding SQLite's write lock (other writers wait, readers don't)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    @staticmethod
    def _record(row) -> ModelRecord:
        values = dict(zip(_COLUMNS, row))
        values["metrics"] = json.loads(values["metrics"] or "{}")
        values["members"] = json.loads(values["members"] or "[]")
        return ModelRecord(**values)

    def _row(self, con, model_id: str):
        return con.execute(f"SELECT {', '.join(_COLUMNS)} FROM models WHERE id = ?", (model_id,)).fetchone()

    # ------------------------------------------------------------------ API

    def add(self, blob, name: str | None = None, metrics: dict | None = None,
            report: str | dict | None = None, status: str = "registered") -> str:
        """Store ``blob`` (bytes of a valid .pmb, or of a valid ensemble container) and return its id.

        ``name`` defaults to the blob's own name (made id-safe); given explicitly it must be
        1-48 ASCII letters, digits, ``_`` or ``-``. ``metrics`` is a JSON-able dict;
        ``report`` is a training report (a dict is stored as JSON, text as Markdown).
        The blob is validated by the core first: a model blob by the model parser, a container
        (magic ``PMBC``) by the container parser, which validates every member and the
        meta-model with the model parser too. A container's record has ``kind="ensemble"`` and
        its ``members`` (each linked to the registered model with the same bytes, if any).
        Adding the same bytes under the same name again returns the same id, replacing
        metrics and report if they are given.
        """
        prepared = self._prepare(blob, name, metrics, report, status)
        stale: list[Path] = []
        with self._write() as con:
            model_id = self._store(con, prepared, stale)
        _crash_point("add:committed")
        if stale:
            self._unlink_unnamed(stale)
        return model_id

    def _prepare(self, blob, name, metrics, report, status) -> dict:
        """Everything ``add`` checks and computes before it takes the write lock."""
        from pymicro import _core

        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise RegistryError(f"add() takes the blob's bytes, got {type(blob).__name__}")
        blob = bytes(blob)
        if len(blob) > MAX_BLOB_BYTES:
            raise RegistryError(f"blob of {len(blob)} bytes is over the store's limit of {MAX_BLOB_BYTES}")
        if blob[:4] == b"PMBC":  # an ensemble container: the core's container parser validates it whole
            described = _core.parse_container(blob)  # BlobError if any part is invalid
            kind, members = "ensemble", _member_entries(blob, described)
        else:
            described = _core.parse(blob)  # BlobError if the bytes are not a valid blob
            kind, members = "model", []
        default = "ensemble" if kind == "ensemble" else "model"
        name = slug(described["metadata"].get("name", default)) if name is None else check_name(name)
        self._check_status(status)
        report_data, report_ext = self._report_bytes(report)
        return {"blob": blob, "name": name, "described": described, "status": status, "metrics": metrics,
                "metrics_json": self._metrics_json(metrics), "report_data": report_data,
                "report_ext": report_ext, "digest": hashlib.sha256(blob).hexdigest(), "kind": kind,
                "members": members}

    def _store(self, con, p: dict, stale: list[Path]) -> str:
        """Write the files and the row of a prepared blob inside the caller's write transaction."""
        name, digest, blob, metrics = p["name"], p["digest"], p["blob"], p["metrics"]
        for n in (8, 16, 64):  # a longer prefix only if another blob took this one
            model_id = f"{name}-{digest[:n]}"
            row = self._row(con, model_id)
            if row is None or row[_COLUMNS.index("content_hash")] == digest:
                break
        blob_file = f"{model_id}.pmb"
        blob_path = self._confined(self.blobs_dir, blob_file)
        report_file = None if p["report_data"] is None else f"{model_id}.{p['report_ext']}"
        if report_file is not None:
            _write_file(self._confined(self.reports_dir, report_file), p["report_data"])
            _crash_point("add:report-written")
        if row is not None:  # the same bytes under the same name: keep the record
            if metrics is not None:
                con.execute("UPDATE models SET metrics = ? WHERE id = ?", (p["metrics_json"], model_id))
            old_report = row[_COLUMNS.index("report_file")]
            if report_file is not None:
                con.execute("UPDATE models SET report_file = ? WHERE id = ?", (report_file, model_id))
                if old_report and old_report != report_file:  # unlinked once the row stops naming it
                    stale.append(self._confined(self.reports_dir, old_report))
            if not blob_path.exists():  # heal a store whose blob file was deleted by hand
                _write_file(blob_path, blob)
        else:
            members = [dict(m, model_id=self._model_with_hash(con, m["content_hash"])) for m in p["members"]]
            self._insert(con, model_id, name, p["described"], digest, blob, blob_path, p["metrics_json"],
                         report_file, p["status"], p["kind"], json.dumps(members, sort_keys=True))
        return model_id

    @staticmethod
    def _model_with_hash(con, digest: str) -> str | None:
        """The oldest registered single model whose blob has this sha256, if any."""
        row = con.execute("SELECT id FROM models WHERE content_hash = ? AND kind = 'model' ORDER BY created, id "
                          "LIMIT 1", (digest,)).fetchone()
        return None if row is None else row[0]

    def _insert(self, con, model_id, name, described, digest, blob, blob_path, metrics_json, report_file,
                status, kind="model", members_json="[]") -> None:
        """Write the blob, then insert its row (committed by the caller's transaction)."""
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
        try:
            _write_file(blob_path, blob)  # complete on disk before the row can commit
            _crash_point("add:blob-written")
            con.execute(
                f"INSERT INTO models ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                (model_id, name, created, int(described["params"]), int(described["input_size"]),
                 int(described["n_classes"]), digest, blob_path.name, len(blob), metrics_json, report_file,
                 status, kind, members_json))
            _crash_point("add:row-inserted")
        except BaseException:  # no row, so no files either
            blob_path.unlink(missing_ok=True)
            if report_file is not None:
                self._confined(self.reports_dir, report_file).unlink(missing_ok=True)
            raise

    def get(self, model_id: str) -> ModelRecord:
        """The record of ``model_id``; RegistryError if the id is malformed or unknown."""
        check_id(model_id)
        with self._connect() as con:
            row = self._row(con, model_id)
        if row is None:
            raise RegistryError(f"unknown model id {model_id!r} in the store {self.root}")
        return self._record(row)

    def __contains__(self, model_id) -> bool:
        try:
            self.get(model_id)
        except RegistryError:
            return False
        return True

    def blob_path(self, model_id: str) -> Path:
        """Absolute path of the model's blob file (checked to lie inside the store)."""
        return self._confined(self.blobs_dir, self.get(model_id).blob_file)

    def report_path(self, model_id: str) -> Path | None:
        record = self.get(model_id)
        return None if record.report_file is None else self._confined(self.reports_dir, record.report_file)

    def read_blob(self, model_id: str) -> bytes:
        """The blob's bytes, checked against the content hash in the index."""
        record = self.get(model_id)
        data = self._read(self._confined(self.blobs_dir, record.blob_file), MAX_BLOB_BYTES)
        if hashlib.sha256(data).hexdigest() != record.content_hash:
            raise RegistryError(f"blob file of {model_id!r} does not match its content hash in the index "
                                "(modified outside the registry?)")
        return data

    def read_report(self, model_id: str) -> str | dict | None:
        path = self.report_path(model_id)
        if path is None:
            return None
        text = self._read(path, MAX_REPORT_BYTES).decode("utf-8")
        return json.loads(text) if path.suffix == ".json" else text

    def load(self, model_id: str, backend: str = "native", **kwargs):
        """Load the model onto a backend (see :func:`pymicro.load`)."""

        return load(self.read_blob(model_id), backend=backend, **kwargs)

    def list(self, status: str | None = None, name: str | None = None,
             kind: str | None = None) -> list[ModelRecord]:
        """Every record, oldest first; optionally only one status, name and/or kind
        (``"model"`` or ``"ensemble"``)."""
        where, args = [], []
        if kind is not None:
            if kind not in KINDS:
                raise RegistryError(f"kind {_shown(kind)} is not one of {KINDS}")
            where.append("kind = ?")
            args.append(kind)
        if status is not None:
            where.append("status = ?")
            args.append(self._check_status(status))
        if name is not None:
            where.append("name = ?")
            args.append(check_name(name))
        sql = f"SELECT {', '.join(_COLUMNS)} FROM models"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connect() as con:
            rows = con.execute(sql + " ORDER BY created, id", args).fetchall()
        return [self._record(r) for r in rows]

    def remove(self, model_id: str) -> ModelRecord:
        """Delete the model's row, then its blob and report; return the record it had.

        The row's deletion commits first, so no crash leaves a listed model without its
        blob; a crash before the files go leaves orphans, which the next open sweeps."""
        check_id(model_id)
        with self._write() as con:
            row = self._row(con, model_id)
            if row is None:
                raise RegistryError(f"unknown model id {model_id!r} in the store {self.root}")
            record = self._record(row)
            named = con.execute("SELECT name, version FROM versions WHERE model_id = ?", (model_id,)).fetchone()
            if named is not None:
                raise RegistryError(f"{model_id!r} is version {named[1]} of {named[0]!r}; versions leave the "
                                    "store through retain(), which keeps aliased versions and rollback targets")
            paths = [self._confined(self.blobs_dir, record.blob_file)]
            if record.report_file:
                paths.append(self._confined(self.reports_dir, record.report_file))
            con.execute("DELETE FROM models WHERE id = ?", (model_id,))
            _crash_point("remove:row-deleted")
        _crash_point("remove:committed")
        self._unlink_unnamed(paths, step="remove:blob-unlinked")
        _crash_point("remove:done")
        return record

    def set_status(self, model_id: str, status: str) -> ModelRecord:
        self._check_status(status)
        return self._update(model_id, "status", status)

    def set_metrics(self, model_id: str, metrics: dict, merge: bool = True) -> ModelRecord:
        """Replace the model's metrics (or merge them into the existing ones)."""
        if merge:
            metrics = {**self.get(model_id).metrics, **(metrics or {})}
        return self._update(model_id, "metrics", self._metrics_json(metrics))

    # ------------------------------------------------------------------ versions, aliases, lineage
    #
    # A *name* has versions 1, 2, ... in the order they were added; each is one model row
    # (one blob). Aliases (``champion``, ``challenger``, custom) point at a version and move
    # in one transaction with their log entry, so a reader (one SELECT, one snapshot) sees an
    # alias before or after a move, never between. ``alias_log`` is a stack per alias:
    # a move pushes, a rollback pops, so rollback() returns to exactly the version (the
    # same blob bytes) the alias held before its last move.

    def add_version(self, blob, name: str, *, parent: int | None = None, data_window: dict | None = None,
                    config: dict | None = None, metrics: dict | None = None, report=None,
                    aliases: tuple[str, ...] | list[str] = (), reason: str | None = None,
                    retain: bool = True) -> VersionRecord:
        """Store ``blob`` as the next version of ``name`` (its parent ``parent``, a version of the
        same name) and point ``aliases`` at it, all in one transaction. The same bytes added
        again return the version they already are (aliases still move). Then, unless
        ``retain=False`` or the store's ``keep_last`` is 0, :meth:`retain` runs on ``name``
        (a separate transaction: a crash between leaves extra versions, retired next time)."""
        prepared = self._prepare(blob, check_name(name), metrics, report, "registered")
        window_json, config_json = self._metrics_json(data_window), self._metrics_json(config)
        aliases = [check_alias(a) for a in aliases]
        stale: list[Path] = []
        with self._write() as con:
            parent_hash = None
            if parent is not None:
                parent_hash = self._vrow(con, name, self._check_version(parent))[_VCOLUMNS.index("content_hash")]
            model_id = self._store(con, prepared, stale)
            row = con.execute(f"SELECT {', '.join(_VCOLUMNS)} FROM versions WHERE name = ? AND model_id = ?",
                              (name, model_id)).fetchone()
            if row is None:
                version = con.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name = ?",
                                      (name,)).fetchone()[0]
                con.execute(f"INSERT INTO versions ({', '.join(_VCOLUMNS)}) VALUES ({', '.join('?' * len(_VCOLUMNS))})",
                            (name, version, model_id, _now(), prepared["digest"], parent, parent_hash,
                             window_json, config_json))
                _crash_point("version:row-inserted")
            else:
                version = row[1]
            for alias in aliases:
                self._move(con, name, alias, version, "move", reason)
        _crash_point("version:committed")
        if stale:
            self._unlink_unnamed(stale)
        if retain and self.keep_last:
            self.retain(name, self.keep_last)
        return self.get_version(name, version)

    def versions(self, name: str) -> list[VersionRecord]:
        """Every version of ``name``, oldest first, with the aliases that point at each."""
        check_name(name)
        with self._connect() as con:
            con.execute("BEGIN")
            try:
                rows = con.execute(f"SELECT {', '.join(_VCOLUMNS)} FROM versions WHERE name = ? ORDER BY version",
                                   (name,)).fetchall()
                pointing = con.execute("SELECT alias, version FROM aliases WHERE name = ?", (name,)).fetchall()
            finally:
                con.execute("COMMIT")
        return [self._vrecord(r, pointing) for r in rows]

    def names(self) -> list[str]:
        """The names that have versions."""
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT name FROM versions ORDER BY name")]

    def get_version(self, name: str, ref: int | str) -> VersionRecord:
        """Version ``ref`` of ``name``: a number, or an alias resolved in the same query."""
        check_name(name)
        with self._connect() as con:
            if isinstance(ref, str):
                row = con.execute(f"SELECT {', '.join('v.' + c for c in _VCOLUMNS)} FROM aliases a JOIN versions v "
                                  "ON v.name = a.name AND v.version = a.version WHERE a.name = ? AND a.alias = ?",
                                  (name, check_alias(ref))).fetchone()
                if row is None:
                    raise RegistryError(f"{name!r} has no alias {ref!r}")
            else:
                row = self._vrow(con, name, self._check_version(ref))
            pointing = con.execute("SELECT alias, version FROM aliases WHERE name = ?", (name,)).fetchall()
        return self._vrecord(row, pointing)

    def aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}`` of ``name``, read in one statement (one consistent snapshot)."""
        check_name(name)
        with self._connect() as con:
            return dict(con.execute("SELECT alias, version FROM aliases WHERE name = ? ORDER BY alias", (name,)))

    def set_alias(self, name: str, alias: str, version: int, reason: str | None = None) -> VersionRecord:
        """Point ``alias`` at ``version`` (atomically; logged, so rollback() can undo it)."""
        check_name(name)
        check_alias(alias)
        with self._write() as con:
            self._vrow(con, name, self._check_version(version))
            self._move(con, name, alias, version, "move", reason)
        _crash_point("alias:committed")
        return self.get_version(name, version)

    def promote(self, name: str, version: int | None = None, reason: str | None = None) -> VersionRecord:
        """Make ``version`` (default: the ``challenger``) the ``champion``; the challenger alias
        is cleared when it pointed there. One transaction: no reader sees both aliases on one
        version, or neither moved."""
        check_name(name)
        with self._write() as con:
            current = dict(con.execute("SELECT alias, version FROM aliases WHERE name = ?", (name,)))
            if version is None:
                if CHALLENGER not in current:
                    raise RegistryError(f"{name!r} has no challenger to promote; name a version")
                version = current[CHALLENGER]
            self._vrow(con, name, self._check_version(version))
            self._move(con, name, CHAMPION, version, "move", reason or "promote")
            _crash_point("alias:half-moved")
            if current.get(CHALLENGER) == version:
                self._move(con, name, CHALLENGER, None, "move", reason or "promoted to champion")
        _crash_point("alias:committed")
        return self.get_version(name, version)

    def rollback(self, name: str, alias: str = CHAMPION, reason: str | None = None) -> VersionRecord:
        """Point ``alias`` back at the version it held before its last move (undoing moves one at
        a time); RegistryError if it has no earlier version."""
        check_name(name)
        check_alias(alias)
        with self._write() as con:
            stack = self._stack(con, name, alias)
            if len(stack) < 2 or stack[-2] is None:
                raise RegistryError(f"{name!r}'s {alias!r} has no earlier version to roll back to")
            target = stack[-2]
            self._vrow(con, name, target)
            self._move(con, name, alias, target, "rollback", reason or "rollback")
            _crash_point("alias:half-moved")
        _crash_point("alias:committed")
        return self.get_version(name, target)

    def alias_history(self, name: str, alias: str | None = None) -> list[dict]:
        """The alias log of ``name``: ``{seq, alias, kind, version, at, reason}``, oldest first."""
        check_name(name)
        sql, args = "SELECT seq, alias, kind, version, at, reason FROM alias_log WHERE name = ?", [name]
        if alias is not None:
            sql, args = sql + " AND alias = ?", [name, check_alias(alias)]
        with self._connect() as con:
            rows = con.execute(sql + " ORDER BY seq", args).fetchall()
        return [dict(zip(("seq", "alias", "kind", "version", "at", "reason"), r)) for r in rows]

    def lineage(self, name: str, version: int | str) -> list[VersionRecord]:
        """``version`` and its ancestors (parent, grandparent, ...) still in the store, newest first."""
        out = [self.get_version(name, version)]
        while out[-1].parent_version is not None and len(out) < 10_000:
            try:
                out.append(self.get_version(name, out[-1].parent_version))
            except RegistryError:  # retired by retain(); its hash stays in the child's parent_hash
                break
        return out

    def retain(self, name: str, keep_last: int = 5) -> list[VersionRecord]:
        """Retire the versions of ``name`` the rules no longer keep, and return them. Kept: the
        ``keep_last`` newest, every version an alias points at, every version an alias would
        roll back to, and the parent of each of those (one generation: a long fine-tuning
        chain still retires its middle; the child keeps the parent's hash). Rows go first
        (one transaction), then the blobs no row names."""
        check_name(name)
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
            raise RegistryError(f"keep_last must be an int >= 1, got {_shown(keep_last)}")
        paths: list[Path] = []
        with self._write() as con:
            rows = con.execute(f"SELECT {', '.join(_VCOLUMNS)} FROM versions WHERE name = ? ORDER BY version",
                               (name,)).fetchall()
            pointing = con.execute("SELECT alias, version FROM aliases WHERE name = ?", (name,)).fetchall()
            keep = {r[1] for r in rows[-keep_last:]} | {v for _, v in pointing}
            for (alias,) in con.execute("SELECT DISTINCT alias FROM alias_log WHERE name = ?", (name,)).fetchall():
                stack = self._stack(con, name, alias)
                keep |= {v for v in stack[-2:] if v is not None}
            parent_of = {r[1]: r[_VCOLUMNS.index("parent_version")] for r in rows}
            keep |= {parent_of[v] for v in keep if parent_of.get(v) is not None}
            retired = [self._vrecord(r, pointing) for r in rows if r[1] not in keep]
            for record in retired:
                con.execute("DELETE FROM versions WHERE name = ? AND version = ?", (name, record.version))
                if con.execute("SELECT 1 FROM versions WHERE model_id = ?", (record.model_id,)).fetchone() is None:
                    model = self._record(self._row(con, record.model_id))
                    con.execute("DELETE FROM models WHERE id = ?", (record.model_id,))
                    paths.append(self._confined(self.blobs_dir, model.blob_file))
                    if model.report_file:
                        paths.append(self._confined(self.reports_dir, model.report_file))
            if retired:
                self._event(con, name, "retain", None, {"retired": [r.version for r in retired],
                                                        "keep_last": keep_last})
            _crash_point("retain:rows-deleted")
        _crash_point("retain:committed")
        self._unlink_unnamed(paths, step="retain:blob-unlinked")
        return retired

    def log_event(self, name: str, kind: str, payload: dict, version: int | None = None) -> int:
        """Store a JSON ``payload`` (a drift report, a promotion decision) about ``name``; returns its seq."""
        check_name(name)
        check_alias(kind)
        with self._write() as con:
            return self._event(con, name, kind, version, payload)

    def log_state(self, name: str, kind: str, subject: str, state: str, payload: dict,
                  version: int | None = None, initial: str | None = None) -> int | None:
        """Log ``payload`` (with ``subject`` and ``state`` added) as a ``kind`` event of ``name``
        only when ``state`` differs from the newest such event's state for ``subject`` (no
        event yet: from ``initial``). The read and the write are one transaction, so two
        processes evaluating the same alert log one transition. Returns the seq, or None."""
        check_name(name)
        check_alias(kind)
        if not isinstance(subject, str) or not isinstance(state, str):
            raise RegistryError("subject and state must be strings")
        with self._write() as con:
            row = con.execute("SELECT json_extract(payload, '$.state') FROM events WHERE name = ? AND kind = ? "
                              "AND json_extract(payload, '$.subject') = ? ORDER BY seq DESC LIMIT 1",
                              (name, kind, subject)).fetchone()
            if (row[0] if row else initial) == state:
                return None
            return self._event(con, name, kind, version, {**payload, "subject": subject, "state": state})

    def events(self, name: str, kind: str | None = None, limit: int = 100) -> list[dict]:
        """The newest ``limit`` events of ``name`` (optionally one kind), oldest first."""
        check_name(name)
        sql, args = "SELECT seq, kind, version, at, payload FROM events WHERE name = ?", [name]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [name, check_alias(kind)]
        with self._connect() as con:
            rows = con.execute(sql + " ORDER BY seq DESC LIMIT ?", [*args, int(limit)]).fetchall()
        return [{"seq": s, "kind": k, "version": v, "at": a, "payload": json.loads(p)} for s, k, v, a, p in rows[::-1]]

    # version helpers (inside a transaction)

    def _event(self, con, name, kind, version, payload) -> int:
        text = self._metrics_json(payload)
        return con.execute("INSERT INTO events (name, kind, version, at, payload) VALUES (?, ?, ?, ?, ?)",
                           (name, kind, version, _now(), text)).lastrowid

    def _move(self, con, name, alias, version, kind, reason) -> None:
        now = con.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
        if kind == "move" and (now[0] if now else None) == version:
            return  # already there: no log entry, so rollback() never "returns" to the same version
        if version is None:
            con.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))
        else:
            con.execute("INSERT INTO aliases (name, alias, version, moved) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, moved = excluded.moved",
                        (name, alias, version, _now()))
        con.execute("INSERT INTO alias_log (name, alias, kind, version, at, reason) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, alias, kind, version, _now(), None if reason is None else str(reason)[:500]))

    @staticmethod
    def _stack(con, name, alias) -> list[int | None]:
        """Replay the alias log: a move pushes its version (None: cleared), a rollback pops."""
        stack: list[int | None] = []
        for kind, version in con.execute("SELECT kind, version FROM alias_log WHERE name = ? AND alias = ? "
                                         "ORDER BY seq", (name, alias)):
            if kind == "rollback":
                stack.pop()
            else:
                stack.append(version)
        return stack

    def _vrow(self, con, name, version):
        row = con.execute(f"SELECT {', '.join(_VCOLUMNS)} FROM versions WHERE name = ? AND version = ?",
                          (name, version)).fetchone()
        if row is None:
            raise RegistryError(f"{name!r} has no version {version} in the store {self.root}")
        return row

    @staticmethod
    def _vrecord(row, pointing) -> VersionRecord:
        values = dict(zip(_VCOLUMNS, row))
        values["data_window"] = json.loads(values["data_window"] or "{}")
        values["config"] = json.loads(values["config"] or "{}")
        values["aliases"] = tuple(sorted(a for a, v in pointing if v == values["version"]))
        return VersionRecord(**values)

    @staticmethod
    def _check_version(version) -> int:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RegistryError(f"a version is an int >= 1, got {_shown(version)}")
        return version

    # ------------------------------------------------------------------ helpers

    def _update(self, model_id: str, column: str, value) -> ModelRecord:
        check_id(model_id)
        with self._write() as con:
            if con.execute(f"UPDATE models SET {column} = ? WHERE id = ?", (value, model_id)).rowcount != 1:
                raise RegistryError(f"unknown model id {model_id!r} in the store {self.root}")
            return self._record(self._row(con, model_id))

    def _unlink_unnamed(self, paths: list[Path], step: str | None = None) -> None:
        """Unlink ``paths`` that no row names, under the write lock: a concurrent ``add`` that
        re-registered the same bytes under the same name meanwhile keeps its files."""
        with self._write() as con:
            for path in paths:
                column = "blob_file" if path.parent == self.blobs_dir else "report_file"
                if con.execute(f"SELECT 1 FROM models WHERE {column} = ?", (path.name,)).fetchone() is None:
                    path.unlink(missing_ok=True)
                    if step is not None and column == "blob_file":
                        _crash_point(step)

    @staticmethod
    def _check_status(status) -> str:
        if status not in STATUSES:
            raise RegistryError(f"status {_shown(status)} is not one of {STATUSES}")
        return status

    @staticmethod
    def _metrics_json(metrics) -> str:
        if metrics is None:
            return "{}"
        if not isinstance(metrics, dict):
            raise RegistryError(f"metrics must be a dict, got {type(metrics).__name__}")
        try:
            text = json.dumps(metrics, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise RegistryError(f"metrics must be JSON (finite numbers, strings, lists, dicts): {e}") from None
        if len(text) > MAX_METRICS_BYTES:
            raise RegistryError(f"metrics take {len(text)} bytes as JSON; at most {MAX_METRICS_BYTES}")
        return text

    @staticmethod
    def _report_bytes(report) -> tuple[bytes | None, str | None]:
        if report is None:
            return None, None
        if isinstance(report, dict):
            try:
                data, ext = json.dumps(report, allow_nan=False, indent=1).encode(), "json"
            except (TypeError, ValueError) as e:
                raise RegistryError(f"report must be JSON: {e}") from None
        elif isinstance(report, str):
            data, ext = report.encode("utf-8"), "md"
        else:
            raise RegistryError(f"report must be a dict or text, got {type(report).__name__}")
        if len(data) > MAX_REPORT_BYTES:
            raise RegistryError(f"report of {len(data)} bytes; at most {MAX_REPORT_BYTES}")
        return data, ext

"""What survives ``local down`` and a crash of the embedded AWS: moto's state, snapshotted after every change.

moto keeps every service's state in memory, in one ``BackendDict`` per service. The embedded AWS pickles each
service that changed into its own file under ``<records>/local/aws/`` and names the current files in
``manifest.json``, replaced in one step (:class:`Snapshots`):

- after every request that changes something, before its answer leaves (a group commit: requests that finish while a
  snapshot is being written share the next one), so whatever a client was told happened is on disk when a ``kill -9``
  comes; and every few seconds, for what the services' background work changes in moto's backends directly;
- only the services a request reached are pickled again, and S3 object bodies go to ``blobs/`` once each (moto's
  objects never change their body): a snapshot after a ``PutObject`` costs the S3 metadata, not the lake.

``local up`` restores the last snapshot before the services start: same ids, version ids, ARNs and times, nothing run
again; the services' own records under the state folder are kept with it. Every process the embedded AWS starts
carries :data:`MARKER` (naming its records folder) in its environment, so :func:`stop_leftovers` finds what a dead
instance left running (the SageMaker Runtime, endpoint fleets, jobs) and stops it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import json
import logging
import os
import pickle
import signal
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("modelwerk.local")

#: The environment variable every process of one embedded AWS carries: the records folder it serves.
MARKER = "MODELWERK_EMBEDDED_AWS"
#: The folder of the snapshot, under the records folder.
FOLDER = ("local", "aws")
SNAPSHOT = "manifest.json"
#: How often the background work's direct changes to moto's backends are saved (seconds).
PERIODIC_SECONDS = 2.0
#: Operations whose names start so change nothing (JSON and query protocols send them as POST).
READ_PREFIXES = ("Describe", "List", "Get", "Head", "Search", "BatchGet", "Query", "Lookup", "Select", "Check",
                 "Validate", "Estimate", "Preview", "Test", "Simulate")


def folder(records: Path) -> Path:
    return Path(records).joinpath(*FOLDER)


def exists(records: Path) -> bool:
    """Whether a snapshot of an earlier embedded AWS is kept in ``records``."""
    return (folder(records) / SNAPSHOT).is_file()


def discard(records: Path) -> None:
    """Forget the kept state (``local down --discard``)."""
    import shutil

    shutil.rmtree(folder(records), ignore_errors=True)


# -- pickling moto's backends ------------------------------------------------------------------------------------------
class _Blob:
    """An S3 object's body in ``blobs/<name>``, written once."""

    def __init__(self, name: str, data: bytes | None = None, folder: str = ""):
        self.name, self.data, self.folder = name, data, folder


def _new(cls: type) -> Any:
    return cls.__new__(cls)


def _set_key_state(key: Any, state: dict[str, Any]) -> None:
    """Rebuild a moto S3 object around its body read back from its blob (and remember that blob)."""
    blob = state["value"]
    key.__setstate__({**state, "value": blob.data})
    _KEY_BLOBS[key] = (blob.folder, blob.name)


def _set_dict(target: dict[Any, Any], state: tuple[dict[str, Any], list[tuple[Any, Any]]]) -> None:
    attributes, items = state
    target.__dict__.update(attributes)
    for key, value in items:
        dict.__setitem__(target, key, value)


def _weak_values(items: dict[Any, Any]) -> weakref.WeakValueDictionary:
    return weakref.WeakValueDictionary(items)


def _weak_reference(referent: Any) -> Any:
    return weakref.ref(referent) if referent is not None else (lambda: None)


def _key_from_pem(key: Any) -> tuple[Callable[..., Any], tuple[bytes]]:
    """A cryptography key (KMS keeps them) as the PEM that loads it again."""
    from cryptography.hazmat.primitives import serialization

    if hasattr(key, "private_bytes"):
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        return _load_private_key, (pem,)
    if hasattr(key, "public_bytes"):
        return _load_public_key, (key.public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo),)
    raise TypeError(f"cannot keep a {type(key).__name__}")


def _load_private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem, password=None)


def _load_public_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_public_key(pem)


def _live_backend_dict(module: str, attribute: str) -> Any:
    return getattr(importlib.import_module(module), attribute)


def _live_account_backend(module: str, attribute: str, account: str) -> Any:
    return _live_backend_dict(module, attribute)[account]


#: moto's S3 objects and the blob holding each one's body, as (blobs folder, name): an object never changes its body.
_KEY_BLOBS: "weakref.WeakKeyDictionary[Any, tuple[str, str]]" = weakref.WeakKeyDictionary()


@functools.cache
def _pickler_class() -> type:
    """The pickler of snapshots (built on first use: cloudpickle is imported only by a server that keeps state)."""
    import cloudpickle

    class _Pickler(cloudpickle.Pickler):
        """Locks and events are pickled as new ones, moto's service dictionaries by name, S3 bodies as blobs; functions
        moto keeps that cannot be named (its backends' lambdas, as ``defaultdict`` factories) by value (cloudpickle)."""

        def __init__(self, stream: io.BytesIO, blobs: Path, names: dict[int, tuple[str, str]]):
            super().__init__(stream, protocol=5)
            self.blobs, self.names = blobs, names
            self.referenced: set[str] = set()
            self.written = 0
            from moto.core.base_backend import AccountSpecificBackend, BackendDict
            from moto.s3.models import FakeKey

            self._types = (BackendDict, AccountSpecificBackend, FakeKey)

        def reducer_override(self, obj: Any) -> Any:
            backend_dict, account_backend, fake_key = self._types
            if isinstance(obj, _LOCK_TYPES):
                return type(obj), ()
            if isinstance(obj, threading.Event):
                return threading.Event, ()
            if isinstance(obj, threading.Condition):
                return threading.Condition, ()
            if isinstance(obj, weakref.WeakValueDictionary):  # moto's index of Lambda functions by ARN
                return _weak_values, (dict(obj.items()),)
            if isinstance(obj, weakref.ref):
                return _weak_reference, (obj(),)
            if type(obj).__module__.startswith("cryptography."):  # KMS keys, as PEM
                return _key_from_pem(obj)
            if isinstance(obj, fake_key):
                return _new, (type(obj),), self._key_state(obj), None, None, _set_key_state
            if isinstance(obj, backend_dict):
                if id(obj) not in self.names:
                    self.names.update(_backend_names())
                return _live_backend_dict, self.names[id(obj)]
            if isinstance(obj, account_backend):
                return _live_account_backend, (*self._owner(obj), obj.account_id)
            if isinstance(obj, dict) and type(obj).__module__.startswith("moto."):
                # moto's dict types answer items() their own way (S3's versioned key store: the latest version only)
                return _new, (type(obj),), (getattr(obj, "__dict__", {}), list(dict.items(obj))), None, None, _set_dict
            return super().reducer_override(obj)

        def _owner(self, account_backend: Any) -> tuple[str, str]:
            """(module, attribute) of the BackendDict holding ``account_backend``."""
            for _ in range(2):
                for key, value in _BACKEND_DICTS.items():
                    if dict.get(value, account_backend.account_id) is account_backend and key in self.names:
                        return self.names[key]
                self.names.update(_backend_names())
            raise TypeError(f"no moto service holds the {account_backend.service_name} backend of "
                            f"{account_backend.account_id}")

        def persistent_id(self, obj: Any) -> Any:
            return obj.name if isinstance(obj, _Blob) else None

        def _key_state(self, key: Any) -> dict[str, Any]:
            folder, name = _KEY_BLOBS.get(key, ("", ""))
            if folder != str(self.blobs) or not name:
                name = uuid.uuid4().hex
                _write(self.blobs / name, key.value)
                _KEY_BLOBS[key] = (str(self.blobs), name)
                self.written += 1
            self.referenced.add(name)
            state = {k: v for k, v in key.__dict__.items() if k not in ("_value_buffer", "lock")}
            state["value"] = _Blob(name)
            return state

    return _Pickler


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream: io.BytesIO, blobs: Path):
        super().__init__(stream)
        self.blobs = blobs
        self.referenced: set[str] = set()

    def persistent_load(self, name: str) -> _Blob:
        self.referenced.add(name)
        return _Blob(name, (self.blobs / name).read_bytes(), str(self.blobs))


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))
#: id(BackendDict) -> the BackendDict, for the reducer's lookups of account backends.
_BACKEND_DICTS: dict[int, Any] = {}


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _backend_names() -> dict[int, tuple[str, str]]:
    """(module, attribute) of every BackendDict moto uses now (found in moto's imported modules)."""
    from moto.core.base_backend import BackendDict

    wanted = {id(d): d for d in list(BackendDict._instances)}
    _BACKEND_DICTS.clear()
    _BACKEND_DICTS.update(wanted)
    names: dict[int, tuple[str, str]] = {}
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("moto.") or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            if id(value) in wanted and isinstance(value, BackendDict) and id(value) not in names:
                names[id(value)] = (module_name, attribute)
    return names


class Snapshots:
    """moto's state, one file per service (``BackendDict``) and a manifest naming the current file of each, replaced
    in one step (a crash leaves the previous set whole); S3 bodies beside them.

    Only the services touched since the last snapshot are pickled again: moto's ``BackendDict.__getitem__`` (every
    request and every service reaches a backend through it) is wrapped while the server runs (:meth:`track`) to
    note them. Reads note nothing (:func:`reading`); a changing request's services are noted again when it commits,
    and a service the background work touched is pickled in two consecutive snapshots, so a change made while the
    first was being taken is in the second. References between services' objects (a CloudFormation stack's
    resources) come back as copies of those objects; moto finds resources again by name.
    """

    def __init__(self, records: Path):
        self.folder = folder(records)
        self.blobs = self.folder / "blobs"
        self._names: dict[int, tuple[str, str]] = {}
        self._manifest: dict[str, str] = {}
        self._digests: dict[str, bytes] = {}
        self._referenced: dict[str, set[str]] = {}
        self._on_disk: set[str] | None = None
        self._touched: set[Any] = set()
        self._background: set[Any] = set()
        self._previous: set[Any] = set()
        self._lock = threading.Lock()
        self._original: Any = None

    # -- which services changed --------------------------------------------------------------------------------------
    def track(self) -> None:
        """Note every service reached from now on (moto has no hook for "this backend changed": its lookup is it)."""
        from moto.core.base_backend import BackendDict

        if self._original is not None:
            return
        original = self._original = BackendDict.__getitem__
        touched, lock = self, self._lock

        def __getitem__(backend_dict: Any, account_id: str) -> Any:
            request = getattr(_request, "touched", None)
            if request is None:  # background work
                with lock:
                    touched._touched.add(backend_dict)
                    touched._background.add(backend_dict)
            elif request is not _READING:
                request.add(backend_dict)
                with lock:
                    touched._touched.add(backend_dict)
            return original(backend_dict, account_id)

        BackendDict.__getitem__ = __getitem__

    def untrack(self) -> None:
        from moto.core.base_backend import BackendDict

        if self._original is not None:
            BackendDict.__getitem__ = self._original
            self._original = None

    def note(self, backend_dicts: set[Any]) -> None:
        """Services a changing request reached: in the next snapshot, even if the last one took them already."""
        with self._lock:
            self._touched |= backend_dicts

    # -- saving ------------------------------------------------------------------------------------------------------
    def save(self, everything: bool = False) -> bool:
        """Write the services touched since the last save (or all of them) whose state changed; True if any was."""
        from moto.core.base_backend import BackendDict

        with self._lock:
            touched, self._touched = self._touched, set()
            background, self._background = self._background, set()
        dirty = set(BackendDict._instances) if everything else touched | self._previous
        self._previous = background
        instances = [d for d in list(BackendDict._instances) if d in dirty]
        if not instances:
            return False
        if any(id(d) not in self._names for d in instances):
            self._names = _backend_names()
        self.blobs.mkdir(parents=True, exist_ok=True)
        changed: dict[str, str] = {}
        for backend_dict in instances:
            if id(backend_dict) not in self._names:
                continue
            key = ":".join(self._names[id(backend_dict)])
            data, referenced = self._pickle(backend_dict)
            digest = hashlib.blake2b(data, digest_size=16).digest()
            if self._digests.get(key) == digest:
                continue
            name = f"{key}.{uuid.uuid4().hex[:12]}.pickle"
            _write(self.folder / name, data)
            changed[key] = name
            self._digests[key], self._referenced[key] = digest, referenced
        if not changed:
            return False
        previous, self._manifest = self._manifest, {**self._manifest, **changed}
        _write(self.folder / SNAPSHOT, json.dumps(self._manifest, indent=1).encode())
        for key in changed:
            if key in previous:
                (self.folder / previous[key]).unlink(missing_ok=True)
        self._drop_unreferenced_blobs()
        return True

    def _pickle(self, backend_dict: Any) -> tuple[bytes, set[str]]:
        for attempt in range(5):
            stream = io.BytesIO()
            pickler = _pickler_class()(stream, self.blobs, self._names)
            try:
                pickler.dump({account: dict(backend) for account, backend in list(backend_dict.items())})
                return stream.getvalue(), pickler.referenced
            except RuntimeError as error:  # a background thread changed a dict mid-way: take it again
                if attempt == 4:
                    raise
                log.debug("snapshot retried: %s", error)
        raise AssertionError("unreachable")

    def _drop_unreferenced_blobs(self) -> None:
        if self._on_disk is None:
            self._on_disk = {p.name for p in self.blobs.iterdir() if not p.name.startswith(".")} \
                if self.blobs.is_dir() else set()
        referenced = set().union(*self._referenced.values()) if self._referenced else set()
        for name in self._on_disk - referenced:
            (self.blobs / name).unlink(missing_ok=True)
        self._on_disk = referenced

    # -- restoring ---------------------------------------------------------------------------------------------------
    def restore(self) -> bool:
        """Put the kept state back into moto's backends (empty ones: right after a reset). False if none is kept."""
        path = self.folder / SNAPSHOT
        if not path.is_file():
            return False
        self._manifest = json.loads(path.read_text(encoding="utf-8"))
        for key, name in self._manifest.items():
            data = (self.folder / name).read_bytes()
            unpickler = _Unpickler(io.BytesIO(data), self.blobs)
            accounts = unpickler.load()
            backend_dict = _live_backend_dict(*key.split(":", 1))
            for account, regions in accounts.items():
                dict.update(backend_dict[account], regions)
            self._digests[key] = hashlib.blake2b(data, digest_size=16).digest()
            self._referenced[key] = unpickler.referenced
        with self._lock:
            self._touched.clear()  # restoring reached every service; nothing changed
            self._background.clear()
        kept = set(self._manifest.values()) | {SNAPSHOT}
        for stale in self.folder.glob("*.pickle"):  # written by a snapshot a crash cut short
            if stale.name not in kept:
                stale.unlink(missing_ok=True)
        self._drop_unreferenced_blobs()
        return True


# -- when to snapshot --------------------------------------------------------------------------------------------------
#: The services the request on this thread reached (``_READING`` for a read, None outside requests).
_request = threading.local()
_READING: set[Any] = set()


def mutates(environ: dict[str, Any], body: bytes) -> bool:
    """Whether a request may change what moto stores (reads answer without a snapshot)."""
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "")
    if method in ("GET", "HEAD", "OPTIONS") or path.startswith("/modelwerk-api/server/"):
        return False
    if "/endpoints/" in path and path.endswith("/invocations"):  # the SageMaker Runtime stores nothing
        return False
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return not target.rsplit(".", 1)[-1].startswith(READ_PREFIXES)
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded") and not path.strip("/"):
        from urllib.parse import parse_qs

        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        return not action.startswith(READ_PREFIXES)
    return True


class Persistence:
    """WSGI middleware in front of the embedded AWS: a changing request is answered once a snapshot holds it.

    One thread writes snapshots; a request waits for the first snapshot that started after its change (requests
    finishing meanwhile share it). The same thread saves every :data:`PERIODIC_SECONDS` for changes made without a
    request (background work writing to moto's backends).
    """

    def __init__(self, app: Any, snapshots: Snapshots):
        self.app = app
        self.snapshots = snapshots
        self.enabled = False
        self.saves = 0
        self.failures = 0
        self._changed = threading.Condition()
        self._requested = 0
        self._done = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self.enabled:
            return self.app(environ, start_response)
        stream = environ["wsgi.input"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = stream.read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if not mutates(environ, body):
            _request.touched = _READING
            try:
                return self.app(environ, start_response)
            finally:
                _request.touched = None
        _request.touched = touched = set()
        try:
            chunks = self.app(environ, start_response)
            try:
                answer = list(chunks)  # the change is complete once the answer is
            finally:
                getattr(chunks, "close", lambda: None)()
        finally:
            _request.touched = None
        self.snapshots.note(touched)
        self.commit()
        return answer

    def commit(self, timeout: float = 60.0) -> None:
        """Return once a snapshot taken after this call's start is on disk."""
        with self._changed:
            self._requested += 1
            ticket = self._requested
            self._changed.notify_all()
            deadline = time.monotonic() + timeout
            while self._done < ticket and self.enabled and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())

    def start(self) -> None:
        self.snapshots.track()
        self.enabled = True
        self._thread = threading.Thread(target=self._run, name="embedded-aws-snapshots", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write the last snapshot and stop (before moto's state is reset)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._save()
        self.enabled = False
        self.snapshots.untrack()
        with self._changed:
            self._changed.notify_all()

    def _run(self) -> None:
        next_periodic = time.monotonic() + PERIODIC_SECONDS
        while True:
            with self._changed:
                while self._requested == self._done and not self._stopping:
                    if not self._changed.wait(max(0.0, next_periodic - time.monotonic())):
                        break
                if self._stopping:
                    return
                target = self._requested
            self._save()
            next_periodic = time.monotonic() + PERIODIC_SECONDS
            with self._changed:
                self._done = max(self._done, target)
                self._changed.notify_all()

    def _save(self) -> None:
        try:
            if self.snapshots.save():
                self.saves += 1
        except Exception:  # noqa: BLE001 - logged and counted; the next change tries again
            self.failures += 1
            log.exception("the embedded AWS could not save its state")


# -- what a dead instance left running ---------------------------------------------------------------------------------
def _marked_processes(value: str) -> list[int]:
    """Processes of this user whose environment carries ``MARKER=value`` (Linux's /proc; psutil elsewhere)."""
    wanted = f"{MARKER}={value}".encode()
    found: list[int] = []
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if wanted in environ.split(b"\0"):
                found.append(int(entry.name))
        return found
    try:
        import psutil
    except ImportError:
        return found
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == value:
                found.append(process.pid)
        except (psutil.Error, OSError):
            continue
    return found


def _ancestors() -> set[int]:
    """This process and its parents: a command run from inside the embedded AWS must not stop itself."""
    pids, pid = {os.getpid()}, os.getppid()
    proc = Path("/proc")
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = (proc / str(pid) / "stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def stop_leftovers(records: Path, timeout: float = 10.0) -> list[int]:
    """Stop every process an embedded AWS of ``records`` started (SIGTERM, SIGKILL after ``timeout``); their pids."""
    value = str(Path(records).resolve())
    spared = _ancestors()
    pids = [pid for pid in _marked_processes(value) if pid not in spared]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    remaining = list(pids)
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [pid for pid in remaining if _running(pid)]
    for pid in remaining:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return pids


def _running(pid: int) -> bool:
    """Alive and not a zombie (a child of this process that ended waits in the process table until reaped)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# -- endpoints: fleets restarted from what moto kept -------------------------------------------------------------------
def restart_endpoints(context: Any) -> list[str]:
    """Start the fleets of every endpoint moto kept (in every account), as SageMaker brings an endpoint's instances
    back: same name, ARN, config and creation time; ``Creating`` until its fleets answer, then ``InService``."""
    from datetime import timezone

    from moto.sagemaker.models import sagemaker_backends

    from modelwerk.local.services.sagemaker import endpoints

    fleets = endpoints._fleets()
    restarted = []
    for account, region, backend in list(sagemaker_backends.iter_backends()):
        for name, stored in list(backend.endpoints.items()):
            if stored.endpoint_status in ("Deleting",) or fleets.get(account, region, name) is not None:
                continue
            try:
                endpoint = fleets.create(account, region, name, stored.endpoint_config_name, None)
            except Exception as error:  # noqa: BLE001 - its config is gone: it stays as moto kept it
                log.warning("endpoint %s/%s/%s not restarted: %s", account, region, name, error)
                continue
            created = stored.creation_time
            if hasattr(created, "tzinfo"):
                endpoint.created = created if created.tzinfo else created.replace(tzinfo=timezone.utc)
            restarted.append(endpoint.arn)
    return restarted

"""Run a local, independent FHIR R4 server (PyPI ``sekmet-fhir``) on loopback for tests and local runs.

Stdlib only.  The server lives in its own virtual environment (``$SEKMET_VENV`` or ``<repo>/.venv-sekmet``)
so its dependencies never mix with the service's own venv.

Library use::

    from localfhir.server import start, stop
    handle = start()                      # free port, temp data dir, waits for /metadata 200
    ...  handle.base_url  ->  "http://127.0.0.1:PORT/fhir"
    stop(handle)                          # terminates the process, removes the temp dir it created

Command line (``python -m localfhir`` takes the same arguments; ``scripts/fhir_server.py`` runs this module
with any python3, no dependencies needed)::

    python scripts/fhir_server.py ensure-venv
    python scripts/fhir_server.py start [--port N] [--data-dir D] [--token T]   # detached, prints base URL
    python scripts/fhir_server.py status
    python scripts/fhir_server.py reset [--port N]        # wipe all data of a running server
    python scripts/fhir_server.py stop [--port N]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator, Sequence

SEKMET_REQUIREMENT = "sekmet-fhir==0.1.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(tempfile.gettempdir()) / f"sekmet-fhir-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
_MARKER = ".sekmet-installed"
# env vars sekmet's config loader lets override settings.yaml; scrubbed so the file we write is what runs
_SEKMET_ENV_OVERRIDES = ("SEKMET_CONFIG", "SEKMET_BASE_URL", "SEKMET_DB", "SEKMET_PORT", "SEKMET_PUBLIC_URL")


class FhirServerError(RuntimeError):
    """The sekmet server could not be installed, started or reached."""


@dataclass
class ServerHandle:
    """A running sekmet server started by :func:`start`."""

    base_url: str
    port: int
    pid: int
    data_dir: Path
    config_path: Path
    log_path: Path
    db_path: Path
    tokens: list[str] = field(default_factory=list)
    owns_data_dir: bool = False  # True when start() created data_dir (stop() then deletes it)
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def token(self) -> str | None:
        """First bearer token, if auth is on."""
        return self.tokens[0] if self.tokens else None

    def auth_headers(self) -> dict[str, str]:
        """``Authorization`` header for this server ({} when auth is off)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def to_json(self) -> dict:
        """JSON-able fields (no process object), for the CLI state file."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "process"}
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


# --------------------------------------------------------------------------- venv


def venv_dir_default() -> Path:
    """``$SEKMET_VENV``, else ``.venv-sekmet`` in the checkout this module runs from, else in the current folder
    (an installed wheel has no checkout: site-packages is no place for a second venv)."""
    if os.environ.get("SEKMET_VENV"):
        return Path(os.environ["SEKMET_VENV"]).expanduser().resolve()
    home = REPO_ROOT if (REPO_ROOT / "pyproject.toml").exists() else Path.cwd()
    return (home / ".venv-sekmet").resolve()


def _venv_bin(venv_dir: Path, name: str) -> Path:
    return venv_dir / ("Scripts" if os.name == "nt" else "bin") / (name + (".exe" if os.name == "nt" else ""))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock (parallel pytest workers must not install into the same venv at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # non-POSIX: no lock
            pass
        yield


def ensure_venv(venv_dir: str | Path | None = None, quiet: bool = True) -> Path:
    """Create ``venv_dir`` (default :func:`venv_dir_default`) with sekmet-fhir installed; return the venv path.

    Idempotent: when the marker file written after a successful install is present it returns at once.
    """
    venv = Path(venv_dir).expanduser().resolve() if venv_dir else venv_dir_default()
    marker = venv / _MARKER
    sekmet = _venv_bin(venv, "sekmet")
    if sekmet.exists() and marker.exists() and marker.read_text().strip() == SEKMET_REQUIREMENT:
        return venv
    import hashlib
    with _file_lock(STATE_DIR / f"venv-{hashlib.sha1(str(venv).encode()).hexdigest()[:12]}.lock"):
        if sekmet.exists() and marker.exists() and marker.read_text().strip() == SEKMET_REQUIREMENT:
            return venv  # another process finished while we waited
        py = _venv_bin(venv, "python")
        if not py.exists():
            base = getattr(sys, "_base_executable", None) or sys.executable
            _run([base, "-m", "venv", str(venv)], "create venv")
        pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check"]
        if quiet:
            pip.append("-q")
        _run([*pip, SEKMET_REQUIREMENT], f"pip install {SEKMET_REQUIREMENT}")
        _run([str(py), "-c", "import sekmet.cli, sekmet.main"], "import check")
        if not sekmet.exists():
            raise FhirServerError(f"{sekmet} missing after install")
        marker.write_text(SEKMET_REQUIREMENT + "\n")
    return venv


def _run(cmd: Sequence[str], what: str) -> None:
    proc = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise FhirServerError(f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}")


# --------------------------------------------------------------------------- start / stop


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def write_settings(data_dir: Path, port: int, tokens: Sequence[str] | None = None,
                   extra: dict | None = None) -> Path:
    """Write ``data_dir/settings.yaml`` for sekmet (JSON is valid YAML) and return its path.

    Keys follow ``sekmet.config.Settings`` (pydantic): host, port, base_url, data_dir, simulator.enabled,
    log_inbound, server_auth{types,tokens}.  ``extra`` is merged on top at the top level (one level deep
    for dict values), e.g. ``{"validation": {"inbound": "off"}}``.
    """
    base_url = f"http://127.0.0.1:{port}/fhir"
    cfg: dict = {
        "host": "127.0.0.1",
        "port": port,
        "base_url": base_url,
        "data_dir": str(data_dir / "data"),
        "own_private_key_path": str(data_dir / "keys" / "sekmet_private.pem"),
        "simulator": {"enabled": False},
        "log_inbound": False,
        "server_auth": {"types": ["bearer"], "tokens": list(tokens)} if tokens else {"types": ["none"]},
    }
    for k, v in (extra or {}).items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    path = data_dir / "settings.yaml"
    path.write_text("# generated by scripts/fhir_server.py (JSON is valid YAML)\n" + json.dumps(cfg, indent=2) + "\n")
    return path


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the server when the launching process dies (Linux only, best effort)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def start(port: int | None = None, data_dir: str | Path | None = None, tokens: Sequence[str] | None = None,
          timeout: float = 60.0, venv_dir: str | Path | None = None, extra_settings: dict | None = None,
          detach: bool = False) -> ServerHandle:
    """Start ``sekmet serve`` on 127.0.0.1 and wait until ``GET {base}/metadata`` answers 200.

    port: free one picked when None.  data_dir: run folder holding settings.yaml, server.log and data/sekmet.db;
    a temp folder (deleted by :func:`stop`) when None.  tokens: enable static bearer auth with these tokens.
    detach: keep the server running after this Python process exits (CLI use); otherwise it is sent SIGTERM
    when the launching process dies (Linux).
    """
    venv = ensure_venv(venv_dir)
    owns = data_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="sekmet-fhir-")) if data_dir is None else Path(data_dir).expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port else 3
    last_err: Exception | None = None
    for _ in range(attempts):
        p = port or free_port()
        if _port_in_use(p):
            last_err = FhirServerError(f"port {p} is already in use")
            continue
        try:
            return _launch(venv, run_dir, p, list(tokens or []), owns, timeout, extra_settings, detach)
        except FhirServerError as e:  # e.g. lost a race for the port: try another
            last_err = e
    if owns:
        shutil.rmtree(run_dir, ignore_errors=True)
    raise last_err or FhirServerError("could not start sekmet")


def _launch(venv: Path, run_dir: Path, port: int, tokens: list[str], owns: bool, timeout: float,
            extra: dict | None, detach: bool) -> ServerHandle:
    config = write_settings(run_dir, port, tokens, extra)
    log_path = run_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in _SEKMET_ENV_OVERRIDES}
    env["PYTHONUNBUFFERED"] = "1"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(_venv_bin(venv, "sekmet")), "serve", "--config", str(config)],
            cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=None if detach or os.name == "nt" else _die_with_parent)
    handle = ServerHandle(base_url=f"http://127.0.0.1:{port}/fhir", port=port, pid=proc.pid, data_dir=run_dir,
                          config_path=config, log_path=log_path, db_path=run_dir / "data" / "sekmet.db",
                          tokens=tokens, owns_data_dir=owns, process=proc)
    try:
        wait_ready(handle.base_url, timeout, proc=proc, log_path=log_path)
    except BaseException:
        stop(handle, remove_data=False)
        raise
    return handle


def wait_ready(base_url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None,
               log_path: Path | None = None) -> None:
    """Poll ``GET {base_url}/metadata`` until 200; raise :class:`FhirServerError` on timeout or early exit."""
    url = base_url.rstrip("/") + "/metadata"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise FhirServerError(f"sekmet exited with {proc.returncode} before ready\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/fhir+json"}),
                                        timeout=2) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.1)
    raise FhirServerError(f"{url} not ready after {timeout}s ({last})\n{_tail(log_path)}")


def _tail(path: Path | None, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:] if path else ""
    except OSError:
        return ""


def stop(handle: ServerHandle, timeout: float = 10.0, remove_data: bool | None = None) -> None:
    """Stop the server (SIGTERM, then SIGKILL after ``timeout``); delete its run folder if start() made it."""
    proc = handle.process
    if proc is not None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    elif _is_our_server(handle):  # handle re-read from a state file (CLI): only that pid, if still ours
        _kill_pid(handle.pid, timeout)
    if remove_data if remove_data is not None else handle.owns_data_dir:
        shutil.rmtree(handle.data_dir, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_server(handle: ServerHandle) -> bool:
    """Guard against pid reuse: the pid must still run sekmet with this handle's config (Linux /proc)."""
    try:
        cmdline = Path(f"/proc/{handle.pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return _pid_alive(handle.pid) and not Path("/proc/self").exists()
    return "sekmet" in cmdline and str(handle.config_path) in cmdline


def _kill_pid(pid: int, timeout: float) -> None:
    if not _pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# seeded at startup by sekmet (SubscriptionTopic definitions stored as Basic); kept by reset_db
_KEEP = "type='Basic' AND id IN (SELECT id FROM resources WHERE type='Basic' AND origin='subscription-engine')"


def reset_db(db_path: str | Path) -> None:
    """Wipe all resources, history, index and logs of a (running or stopped) sekmet database in a few ms.

    sekmet has no HTTP reset/$expunge; ``sekmet reset --yes`` exists but takes ~1.5 s and also drops the
    SubscriptionTopic ``Basic`` resources seeded at startup, which this keeps.  Safe while the server runs
    (SQLite WAL, the server re-reads on every request).  Caveat: the server caches active Subscriptions in
    memory, so tests that create Subscriptions should use their own server.
    """
    import sqlite3

    con = sqlite3.connect(str(db_path), timeout=30, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute(f"DELETE FROM idx WHERE NOT ({_KEEP})")
        con.execute(f"DELETE FROM versions WHERE NOT ({_KEEP})")
        con.execute("DELETE FROM resources WHERE NOT (type='Basic' AND origin='subscription-engine')")
        for table in ("notifications", "traffic", "runs"):
            con.execute(f"DELETE FROM {table}")
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()


def is_ready(base_url: str) -> bool:
    """True if ``{base_url}/metadata`` answers 200 within 2 s."""
    try:
        wait_ready(base_url, timeout=2)
        return True
    except FhirServerError:
        return False


# --------------------------------------------------------------------------- CLI


def _state_file(port: int) -> Path:
    return STATE_DIR / f"{port}.json"


def _load_states() -> list[ServerHandle]:
    out = []
    for f in sorted(STATE_DIR.glob("*.json")):
        with contextlib.suppress(ValueError, TypeError, OSError):
            d = json.loads(f.read_text())
            for k in ("data_dir", "config_path", "log_path", "db_path"):
                d[k] = Path(d[k])
            out.append(ServerHandle(**d))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Local sekmet-fhir FHIR R4 server for tests and dev runs")
    ap.add_argument("command", choices=["start", "stop", "status", "reset", "ensure-venv"])
    ap.add_argument("--port", type=int)
    ap.add_argument("--data-dir", help="run folder (settings.yaml, server.log, data/); default: new temp folder")
    ap.add_argument("--token", action="append", help="enable bearer auth with this static token (repeatable)")
    ap.add_argument("--venv", help="sekmet venv (default: $SEKMET_VENV or <repo>/.venv-sekmet)")
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args(argv)

    if a.command == "ensure-venv":
        print(ensure_venv(a.venv, quiet=False))
        return 0
    if a.command == "start":
        h = start(a.port, a.data_dir, a.token, timeout=a.timeout, venv_dir=a.venv, detach=True)
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        _state_file(h.port).write_text(json.dumps(h.to_json(), indent=2))
        print(json.dumps({"base_url": h.base_url, "pid": h.pid, "data_dir": str(h.data_dir),
                          "log": str(h.log_path)}, indent=2))
        return 0
    states = [h for h in _load_states() if a.port in (None, h.port)]
    if a.command == "status":
        if not states:
            print("no servers started by this tool" + (f" on port {a.port}" if a.port else ""))
            return 1
        for h in states:
            up = _is_our_server(h) and is_ready(h.base_url)
            print(f"{h.base_url} pid={h.pid} {'UP' if up else 'DOWN'} data_dir={h.data_dir}")
        return 0 if all(_is_our_server(h) for h in states) else 1
    if a.command == "reset":
        if len(states) != 1:
            print("reset needs exactly one server (use --port)")
            return 1
        reset_db(states[0].db_path)
        print(f"wiped {states[0].db_path}")
        return 0
    if a.command == "stop":
        if not states:
            print("nothing to stop")
            return 1
        for h in states:
            stop(h)
            _state_file(h.port).unlink(missing_ok=True)
            print(f"stopped {h.base_url} (pid {h.pid})")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""llama.cpp's ``llama-server`` as a process specfair starts and stops: locate the binary, start
it on 127.0.0.1 (a free port, one slot, ``--metrics``), wait until it is healthy, send it JSON
requests, read its Prometheus counters, stop it.

Flag names differ between llama.cpp versions (``--draft-max/--draft-min/--draft-p-min`` before
the ``--spec-draft-*`` rename); they are picked by reading ``llama-server --help``. A server
drafts with a draft model or, without one, with llama.cpp's own prompt lookup
(``--spec-type ngram-simple``, builds from 2026 on).

A server is always stopped: on ``stop()``, at interpreter exit, on errors and on Ctrl-C (it
runs in its own process group, terminated then killed), and when specfair's process dies.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError
from specfair.models.registry import cache_root

LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # the sdist whose vendored llama.cpp the installer builds
INSTALL_HINT = "specfair backends install llamacpp"
SPEC_KINDS = ("draft", "ngram")  # a draft model (or none: AR); llama.cpp's own prompt lookup
NGRAM_LOOKUP = 3  # lookup n-gram length of ``spec="ngram"`` (Hugging Face prompt lookup's)
_LIVE: set[LlamaServer] = set()


def llamacpp_home() -> Path:
    return cache_root() / "llamacpp"


def find_llama_server(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, ``$SPECFAIR_LLAMA_SERVER``, the pinned build in the cache, any cached build,
    or ``llama-server`` on PATH; a :class:`SpecfairError` naming the install command if none."""
    for cand in (explicit, os.environ.get("SPECFAIR_LLAMA_SERVER")):
        if cand:
            p = Path(cand).expanduser()
            if p.is_file() and os.access(p, os.X_OK):
                return p
            raise SpecfairError(f"llama-server not found at {p}; install it with `{INSTALL_HINT}`")
    home = llamacpp_home()
    pinned = home / LLAMA_CPP_PYTHON_VERSION / "bin" / "llama-server"
    cached = [pinned] + sorted(home.glob("*/bin/llama-server"), reverse=True)
    for p in cached:
        if p.is_file() and os.access(p, os.X_OK):
            return p
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    raise SpecfairError(
        f"llama-server not found (looked in {home}/*/bin, $SPECFAIR_LLAMA_SERVER and PATH); "
        f"install it with `{INSTALL_HINT}` (builds llama.cpp from source, ~25 min on 2 cores)"
    )


@functools.cache
def server_help(binary: str) -> str:
    proc = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


@functools.cache
def server_version(binary: str) -> str:
    proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    text = (proc.stdout + proc.stderr).strip()
    m = re.search(r"version:\s*\S+(?:\s*\([0-9a-f]+\))?", text)
    return m.group(0) if m else text.splitlines()[0] if text else "unknown"


def _pick(help_text: str, *names: str) -> str | None:
    """The first of ``names`` that ``llama-server --help`` lists."""
    for n in names:
        if re.search(rf"(^|[\s,]){re.escape(n)}([\s,=]|$)", help_text, re.M):
            return n
    return None


def spec_types(help_text: str) -> list[str]:
    """The speculative methods of ``--spec-type a,b,...`` (builds from 2026 on; else [])."""
    m = re.search(r"--spec-type\s+(\S+)", help_text)
    return m.group(1).split(",") if m else []


def draft_flags(help_text: str) -> dict[str, str]:
    """The draft-related flag names this ``llama-server`` understands (new names first)."""
    def pick(*names):
        return _pick(help_text, *names)

    flags = {
        "model": pick("--spec-draft-model", "--model-draft", "-md"),
        "n_max": pick("--spec-draft-n-max", "--draft-max", "--draft", "--draft-n"),
        "n_min": pick("--spec-draft-n-min", "--draft-min", "--draft-n-min"),
        "p_min": pick("--spec-draft-p-min", "--draft-p-min"),
        "threads": pick("--spec-draft-threads", "--threads-draft", "-td"),
        "ngl": pick("--spec-draft-ngl", "--gpu-layers-draft", "-ngld"),
    }
    # builds with several speculative methods (2026 on) need the method named, else none runs
    if "draft-simple" in spec_types(help_text):
        flags["type"] = "--spec-type"
    missing = [k for k in ("model", "n_max") if flags[k] is None]
    if missing:
        raise SpecfairError(
            "this llama-server has no draft-model flags (" + ", ".join(missing) + "); "
            f"rebuild it with `{INSTALL_HINT}`"
        )
    return {k: v for k, v in flags.items() if v}


def ngram_flags(help_text: str) -> dict[str, str]:
    """The flag names of llama.cpp's own prompt lookup (``--spec-type ngram-simple``); a
    :class:`SpecfairError` when this ``llama-server`` has none."""
    n = _pick(help_text, "--spec-ngram-simple-size-n", "--spec-ngram-size-n")
    m = _pick(help_text, "--spec-ngram-simple-size-m", "--spec-ngram-size-m")
    if "ngram-simple" not in spec_types(help_text) or n is None or m is None:
        raise SpecfairError(
            "this llama-server has no n-gram drafting (no `--spec-type ngram-simple` with "
            "--spec-ngram-simple-size-n/-m in its --help); --proposer ngram with --backend "
            f"llamacpp needs a newer llama-server: `{INSTALL_HINT}`"
        )
    return {"type": "--spec-type", "size_n": n, "size_m": m}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_metrics(text: str) -> dict:
    """Prometheus text → ``{name: value}``; labelled series as ``{name: {label: value}}``."""
    out: dict = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([\w:]+)(?:\{(\w+)="([^"]*)"\})?\s+(\S+)$', line)
        if not m:
            continue
        name, _label, lval, val = m.groups()
        name = name.split(":", 1)[-1]
        v = float(val)
        if lval is None:
            out[name] = v
        else:
            out.setdefault(name, {})[lval] = v
    return out


class LlamaServer:
    """One ``llama-server`` process (context manager): start, wait for health, stop."""

    def __init__(
        self, model: str | os.PathLike, *, draft: str | os.PathLike | None = None,
        gamma: int = DEFAULT_GAMMA, binary: str | os.PathLike | None = None,
        threads: int | None = None, spec: str = "draft",
        ctx_size: int = 4096, startup_timeout: float = 300.0, extra_args: Sequence[str] = (),
        log_dir: str | os.PathLike | None = None,
    ):  # fmt: skip
        """``spec``: "draft" (with ``draft``, a draft model drafts ``gamma`` tokens; without,
        the target alone) or "ngram" (no draft model: llama.cpp's ``ngram-simple`` prompt
        lookup, a :data:`NGRAM_LOOKUP`-token n-gram, drafts of up to ``gamma`` tokens).
        ``log_dir``: keep the server's log there (default: a temporary file, removed on
        stop; its tail is in the error message when the server fails)."""
        self.binary = str(find_llama_server(binary))
        if spec not in SPEC_KINDS:
            raise SpecfairError(f"spec must be one of {', '.join(SPEC_KINDS)}, got {spec!r}")
        if spec == "ngram" and draft is not None:
            raise SpecfairError("n-gram drafting (spec='ngram') takes no draft model")
        if spec == "ngram" and gamma < NGRAM_LOOKUP:  # ngram-simple drafts >= n tokens or none
            raise SpecfairError(f"llama.cpp's n-gram drafting needs gamma >= {NGRAM_LOOKUP} "
                                f"(its lookup length), got {gamma}")
        self.spec = spec
        self._ngram = ngram_flags(server_help(self.binary)) if spec == "ngram" else None
        self.model, self.draft = Path(model), Path(draft) if draft else None
        for p in filter(None, (self.model, self.draft)):
            if not p.is_file():
                raise SpecfairError(f"GGUF file not found: {p}")
        self.gamma, self.threads, self.ctx_size = gamma, threads, ctx_size
        self.startup_timeout, self.extra_args = startup_timeout, list(extra_args)
        self.log_dir = Path(log_dir) if log_dir else None
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path: Path | None = None
        self._log = None

    # -------------------------------------------------------------- process
    def command(self, port: int) -> list[str]:
        cmd = [
            self.binary, "-m", str(self.model), "--host", "127.0.0.1", "--port", str(port),
            "-c", str(self.ctx_size), "-np", "1", "--metrics", "-ngl", "0",
        ]  # fmt: skip
        if self.threads:
            cmd += ["-t", str(self.threads)]
        if "--no-webui" in server_help(self.binary):
            cmd.append("--no-webui")
        if self.draft is not None:
            f = draft_flags(server_help(self.binary))
            cmd += [f["model"], str(self.draft), f["n_max"], str(self.gamma)]
            if "type" in f:
                cmd += [f["type"], "draft-simple"]
            if "n_min" in f:
                cmd += [f["n_min"], "0"]
            if "p_min" in f:
                cmd += [f["p_min"], "0"]
            if "ngl" in f:
                cmd += [f["ngl"], "0"]
            if self.threads and "threads" in f:
                cmd += [f["threads"], str(self.threads)]
        if self._ngram is not None:
            f = self._ngram
            cmd += [f["type"], "ngram-simple", f["size_n"], str(NGRAM_LOOKUP),
                    f["size_m"], str(self.gamma)]  # fmt: skip
        return cmd + self.extra_args

    def start(self) -> LlamaServer:
        if self.proc is not None:
            return self
        self.port = free_port()
        cmd = self.command(self.port)
        log_dir = self.log_dir or Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log", dir=log_dir)
        self.log_path = Path(name)
        self._log = os.fdopen(fd, "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to us; we stop it (see stop())
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        _LIVE.add(self)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise SpecfairError(
                    f"llama-server exited with status {self.proc.returncode} while starting:\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(self.url("/health"), timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise SpecfairError(
                    f"llama-server not healthy after {self.startup_timeout:.0f} s:\n"
                    + self.log_tail()
                )
            time.sleep(0.2)

    def log_tail(self, n: int = 15) -> str:
        """The server's last ``n`` output lines, or "(no output)"."""
        if self.log_path is None or not self.log_path.exists():
            return "(no output)"
        lines = [x for x in self.log_path.read_text(errors="replace").splitlines() if x.strip()]
        return "\n".join(lines[-n:]) or "(no output)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log is not None:
            self._log.close()
            self._log = None
            if self.log_dir is None and self.log_path is not None:  # a temporary log
                self.log_path.unlink(missing_ok=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -------------------------------------------------------------- HTTP
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, path: str, body: dict | None = None, timeout: float = 600.0):
        if not self.running:
            raise SpecfairError("llama-server is not running:\n" + self.log_tail())
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url(path), data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read().decode()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise SpecfairError(f"llama-server {path}: HTTP {e.code}: {detail}") from e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise SpecfairError(f"llama-server {path} failed: {e}\n{self.log_tail()}") from e
        return raw if path == "/metrics" else json.loads(raw)

    def metrics(self) -> dict:
        return parse_metrics(self.request("/metrics", timeout=30))


def _die_with_parent() -> None:
    """In the child: SIGTERM when specfair's process dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop_all() -> None:
    for s in list(_LIVE):
        s.stop()


atexit.register(_stop_all)

"""Start a throwaway JupyterLab and a headless Chromium for the UI tests, and always stop them.

Both are plain objects with ``start()`` / ``stop()``; the fixtures in ``conftest.py`` call ``stop()`` in
a ``finally`` so nothing outlives a test run, even one that fails half-way. Processes are stopped by
their ids: the server's whole process group, then every descendant recorded while it ran (kernels
live in process groups of their own), then the browser's processes; ``stop()`` raises when any of them
is still alive afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

#: Debian's Chromium (package ``chromium``); ``SEGLIB_CHROMIUM`` points elsewhere.
CHROMIUM = Path(os.environ.get("SEGLIB_CHROMIUM", "/usr/bin/chromium"))
#: What this network needs (no QUIC, no background fetches); Playwright adds ``--user-data-dir``.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
#: Lab settings that keep dialogs out of the way: start the kernel without asking, no news, no
#: update checks, every cell in the DOM (no windowing) so off-screen cells can be inspected.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "autoStartDefaultKernel": True, "windowingMode": "none",
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False,
    },
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the server is started with ``port_retries=0``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill(procs: list[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """SIGTERM, then SIGKILL what is left; return the processes still alive after that."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        procs = [p for p in procs if _alive(p)]
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=timeout)
    return [p for p in procs if _alive(p)]


class ServerProcess:
    """A server started in a process group of its own, stopped by its pid with every process it made.

    Subclasses set ``proc`` (the Popen), ``_seen`` (pid -> psutil.Process), ``log_path``, and the class
    attributes ``NAME`` (for messages) and ``STOP_TIMEOUT`` (seconds given to SIGTERM).
    """

    NAME = "the server"
    STOP_TIMEOUT = 10.0

    def track(self) -> None:
        """Remember the server's current descendants (kernels start in sessions of their own)."""
        try:
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                self._seen.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            pass

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        """Stop the server's process group, then any kernel left; raise if a process survives."""
        if self.proc is None:
            return
        self.track()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the server shuts its kernels down
                self.proc.wait(timeout=self.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        left = _kill(list(self._seen.values()))
        if left:
            raise RuntimeError(f"processes of {self.NAME} still alive: {[p.pid for p in left]}")


class LabServer(ServerProcess):
    """JupyterLab serving ``root_dir`` on 127.0.0.1, without token, with throwaway settings.

    Parameters
    ----------
    root_dir : Path
        Folder served (a copy of the notebooks: the lab may save into it).
    work_dir : Path
        Empty folder for the config, settings, workspaces, runtime and data dirs and ``server.log``.
    project_root : Path
        Exported as ``SEGLIB_ROOT`` so the notebooks find the project's data from the copy.
    timeout : float
        Seconds to wait for ``/api/status``; ~3 s is usual, the margin is for a busy machine.
    """

    NAME = "jupyter lab"

    def __init__(self, root_dir: Path, work_dir: Path, project_root: Path, *, timeout: float = 60.0):
        self.root_dir, self.work_dir, self.project_root = Path(root_dir), Path(work_dir), Path(project_root)
        self.timeout = timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.work_dir / "server.log"
        self._seen: dict[int, psutil.Process] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _environment(self) -> dict[str, str]:
        dirs = {name: self.work_dir / name for name in ("config", "settings", "workspaces", "runtime",
                                                        "data", "ipython")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for name, values in LAB_SETTINGS.items():
            path = dirs["settings"] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)  # Agg would drop the inline figures the explorer shows
        env.update(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
            JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),  # no stray --user kernel spec shadows the venv's
            IPYTHONDIR=str(dirs["ipython"]),
            SEGLIB_ROOT=str(self.project_root),
        )
        return env

    def start(self, attempts: int = 3) -> "LabServer":
        """Start the server and wait until ``/api/status`` answers; fail with the log tail if not.

        The free port is only free when it was picked: when another process took it meanwhile the
        server exits at once (``port_retries=0``) and is started again on a new port.
        """
        for attempt in range(1, attempts + 1):
            try:
                return self._start()
            except RuntimeError:
                if attempt == attempts or "already in use" not in self.log_tail():
                    raise
                logger.warning("port %d taken meanwhile, retrying", self.port)

    def _start(self) -> "LabServer":
        self.port = free_port()
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            "--IdentityProvider.token=", f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        env = self._environment()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root_dir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        logger.info("jupyter lab pid %d on port %d", self.proc.pid, self.port)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.get("api/status")
                ready = True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                ready = False
            if self.proc.poll() is not None:  # checked after the request: the answer must be ours
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            if ready:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab not ready after {self.timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def get(self, path: str):
        """GET ``/path`` of the server's REST API, decoded from JSON."""
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return json.loads(r.read())

    def kernel_state(self, notebook: str) -> str | None:
        """``execution_state`` of the kernel of ``notebook`` (``None`` while it has no session).

        Also records the server's descendants (the kernels) so :meth:`stop` can check them.
        """
        self.track()
        for s in self.get("api/sessions"):
            if s.get("path") == notebook and s.get("kernel"):
                return s["kernel"].get("execution_state")
        return None

    def evaluate(self, notebook: str, expression: str, timeout: float = 30.0) -> str:
        """``repr`` of ``expression`` evaluated in the kernel of ``notebook``, silently.

        A second client on the kernel's connection file sends a silent execute request with a user
        expression: no output, no execution count, nothing the page shows. The tests use it as an
        oracle (e.g. the segment count a ``max_d`` implies) independent of the widget callbacks.
        """
        from jupyter_client import BlockingKernelClient

        kernel = next(s["kernel"]["id"] for s in self.get("api/sessions") if s.get("path") == notebook)
        connection = self.work_dir / "runtime" / f"kernel-{kernel}.json"
        client = BlockingKernelClient(connection_file=str(connection))
        client.load_connection_file()
        client.start_channels()
        try:
            msg_id = client.execute("", silent=True, store_history=False, user_expressions={"x": expression})
            deadline = time.monotonic() + timeout
            while True:
                reply = client.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.1))
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
        finally:
            client.stop_channels()
        result = reply["content"].get("user_expressions", {}).get("x", {})
        if result.get("status") != "ok":
            raise RuntimeError(f"{expression!r} failed in the kernel of {notebook}: "
                               f"{result.get('ename')}: {result.get('evalue')}")
        return result["data"]["text/plain"]

class Browser:
    """Headless Chromium driven by Playwright's sync API, with a fresh user-data dir.

    Parameters
    ----------
    user_data_dir : Path
        Empty folder: the profile of this run only.
    executable : Path
        Debian's Chromium; Playwright's own browser builds cannot be downloaded here.
    """

    def __init__(self, user_data_dir: Path, executable: Path = CHROMIUM):
        self.user_data_dir, self.executable = Path(user_data_dir), Path(executable)
        self.context = None
        self._pw = None
        self._procs: dict[int, psutil.Process] = {}

    def start(self, viewport=(1280, 1000)) -> "Browser":
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.context = self._pw.chromium.launch_persistent_context(
            str(self.user_data_dir), executable_path=str(self.executable), headless=True,
            args=list(CHROMIUM_FLAGS), viewport={"width": viewport[0], "height": viewport[1]},
        )
        self.track()
        logger.info("chromium pids %s", sorted(self._procs))
        return self

    def _own(self) -> list[psutil.Process]:
        """Chromium processes of this profile (the browser and every process it started)."""
        mark = f"--user-data-dir={self.user_data_dir}"
        roots = []
        for p in psutil.process_iter(["cmdline"]):
            if mark in (p.info["cmdline"] or []):
                roots.append(p)
        procs = {p.pid: p for p in roots}
        for p in roots:
            try:
                procs.update((c.pid, c) for c in p.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        return list(procs.values())

    def track(self) -> None:
        for p in self._own():
            self._procs.setdefault(p.pid, p)

    def stop(self) -> None:
        """Close the browser, stop Playwright's driver, kill any process left; raise if one survives."""
        self.track()
        try:
            if self.context is not None:
                self.context.close()
        except Exception as exc:  # a crashed browser must not stop the clean-up
            logger.warning("closing chromium failed: %s", exc)
        try:
            if self._pw is not None:
                self._pw.stop()
        except Exception as exc:
            logger.warning("stopping playwright failed: %s", exc)
        left = _kill(list(self._procs.values()) + self._own())
        if left:
            raise RuntimeError(f"chromium processes still alive: {[p.pid for p in left]}")


# --- driving a notebook in the lab ------------------------------------------------------------------
#: One code cell per entry: [prompt text, has source]; '[*]:' while queued or running.
_CELLS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')].map(c => [
    (c.querySelector('.jp-InputPrompt') || {}).textContent.trim(),
    ((c.querySelector('.cm-content') || {}).textContent || '').trim().length > 0])"""
_ERRORS = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"


def menu(page, *path: str) -> None:
    """Click through the menu bar, e.g. ``menu(page, "Run", "Run All Cells")``."""
    for name in path:
        page.get_by_role("menuitem", name=name, exact=True).click()


def wait_kernel_idle(lab: LabServer, notebook: str, timeout: float = 60.0) -> None:
    """Wait until the server reports the notebook's kernel idle (it starts by itself: see settings)."""
    deadline = time.monotonic() + timeout
    while (state := lab.kernel_state(notebook)) != "idle":
        if time.monotonic() > deadline:
            raise AssertionError(f"kernel of {notebook} not idle after {timeout:.0f} s (state {state!r}):\n"
                                 f"{lab.log_tail()}")
        time.sleep(0.2)


def open_notebook(page, lab: LabServer, notebook: str, timeout: float = 60.0) -> None:
    """Open ``notebook`` (relative to the served folder) alone in a fresh workspace; wait for its kernel.

    A workspace of its own per notebook (reset on opening), so the tabs of earlier tests are not
    restored next to it.
    """
    workspace = "".join(c if c.isalnum() else "-" for c in notebook)
    page.goto(f"{lab.url}lab/workspaces/{workspace}/tree/{notebook}?reset")
    page.locator(".jp-NotebookPanel .jp-Notebook").wait_for(timeout=timeout * 1000)
    wait_kernel_idle(lab, notebook, timeout)


def run_all_cells(page, lab: LabServer, notebook: str, timeout: float = 120.0) -> list:
    """Clear all outputs, then Run -> Run All Cells, and wait until every code cell has run.

    Clearing first means the saved outputs of a previous run cannot pass for this one: done is
    "no ``[*]`` prompt, every non-empty code cell numbered, kernel idle". Raises ``AssertionError``
    with the error outputs when the run stops early (Run All stops at the first error).
    Returns the ``[prompt, has_source]`` list of the code cells.
    """
    menu(page, "Edit", "Clear Outputs of All Cells")
    menu(page, "Run", "Run All Cells")
    deadline = time.monotonic() + timeout
    while True:
        cells = page.evaluate(_CELLS_JS)
        running = any("*" in prompt for prompt, _ in cells)
        if not running and lab.kernel_state(notebook) == "idle":
            if all(any(c.isdigit() for c in prompt) for prompt, src in cells if src):
                return cells
            errors = "\n".join(page.locator(_ERRORS).all_inner_texts())
            if errors:
                raise AssertionError(f"{notebook}: Run All stopped at an error:\n{errors[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{notebook}: cells still running or not run after {timeout:.0f} s: {cells}")
        time.sleep(0.25)

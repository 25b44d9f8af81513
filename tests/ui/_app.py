"""Start ``seglib app`` (Voila) for the browser tests, and always stop it by its process id.

The server runs in a session of its own with a throwaway project root (``SEGLIB_ROOT``: no latest run,
nothing written into the checkout), a throwaway ``TMPDIR`` (where the app keeps its private folder, so
the test can read the run the page made as an oracle) and throwaway Jupyter folders. ``stop()`` ends the
server's process group, then every descendant recorded while it ran (the kernels), and raises when one
of them is still alive.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from ._lab import ServerProcess, free_port


class AppServer(ServerProcess):
    """``seglib app --no-browser --port P`` on 127.0.0.1.

    Parameters
    ----------
    work_dir : Path
        Empty folder: project root copy, TMPDIR, Jupyter folders and ``server.log``.
    notebook : Path
        The dashboard notebook; its folder (the notebooks) is copied into the throwaway project root.
    timeout : float
        Seconds to wait for the port to accept connections.
    """

    NAME = "seglib app"
    STOP_TIMEOUT = 15.0

    def __init__(self, work_dir: Path, notebook: Path, *, timeout: float = 60.0, args: tuple = ()):
        self.work_dir, self.notebook, self.timeout, self.args = Path(work_dir), Path(notebook), timeout, args
        self.root = self.work_dir / "project"
        self.tmp = self.work_dir / "tmp"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.work_dir / "server.log"
        self._seen: dict[int, psutil.Process] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "AppServer":
        # the notebooks only (the pipeline's, for the parameter names, and the app): no data, no runs
        shutil.copytree(self.notebook.parent, self.root / "notebooks",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        self.tmp.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)
        env.update(SEGLIB_ROOT=str(self.root), TMPDIR=str(self.tmp))
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR"):
            path = self.work_dir / name.lower()
            path.mkdir(exist_ok=True)
            env[name] = str(path)
        self.port = free_port()
        cmd = [sys.executable, "-m", "seglib", "app", "--no-browser", "--port", str(self.port), *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.work_dir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"seglib app exited with code {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"seglib app not listening after {self.timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def app_runs(self) -> list[Path]:
        """Run folders the page made (in the app's private folder under our TMPDIR), oldest first."""
        return sorted(self.tmp.glob("seglib-app-*/runs/run-*"), key=lambda p: int(p.name.split("-")[1]))

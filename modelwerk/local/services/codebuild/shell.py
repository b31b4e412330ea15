"""The build's one bash process: every command of every phase runs in it, so what a command exports, the folder it
changes to and the functions it defines stay for the commands after it, as in CodeBuild.

The server drives the shell step by step: it writes a step (a command, or a line for the log) to a file, sends the
file's path on a control pipe, and the shell sources it and answers its exit status on a status pipe. So the server
decides what runs next (CodeBuild's phase rules live in Python, in :mod:`.models`), and stops the build between or
during commands. The shell's output (stdout and stderr, merged as CodeBuild's log has them) goes to ``output``.

A command that calls ``exit`` ends the shell, as it ends CodeBuild's: the build then fails in its phase.
"""

from __future__ import annotations

import os
import select
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

#: The driver: read a step's path, print its title (CodeBuild's "Running command" line), source it (the two pipes
#: closed meanwhile, so that nothing a command starts holds them), answer $?.
DRIVER = r"""
__mw_control=$MW_CONTROL_FD
__mw_status=$MW_STATUS_FD
unset MW_CONTROL_FD MW_STATUS_FD
while IFS= read -r -u "$__mw_control" __mw_step; do
  if [ -f "$__mw_step.title" ]; then
    printf '[Container] %s %s\n' "$(date -u '+%Y/%m/%d %H:%M:%S')" "$(< "$__mw_step.title")"
  fi
  . "$__mw_step" {__mw_control}<&- {__mw_status}>&-
  printf '%s\n' "$?" >&"$__mw_status"
done
"""

#: Seconds between checks of a running step (stop, timeout, the shell's end).
_POLL_SECONDS = 0.25
#: Seconds a stopped shell gets to end before it is killed.
_STOP_GRACE_SECONDS = 5.0


class ShellEnded(Exception):
    """The shell ended during a step (a command called ``exit``, or it was killed)."""

    def __init__(self, returncode: int):
        super().__init__(f"the build's shell ended with exit status {returncode}")
        self.returncode = returncode


class Interrupted(Exception):
    """The build was stopped or timed out during a step; the shell is gone."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class BuildShell:
    """One bash process for one build; ``interrupt()`` answers a reason to end it now (stop, timeout) or None."""

    def __init__(self, folder: Path, env: dict[str, str], cwd: Path, output: Callable[[str], None],
                 interrupt: Callable[[], str | None]):
        self.folder = folder
        self.env = env
        self.cwd = cwd
        self.output = output
        self.interrupt = interrupt
        self.process: subprocess.Popen[bytes] | None = None
        self._steps = 0
        self._control = -1
        self._status = -1
        self._pending = b""
        self._reader: threading.Thread | None = None
        self._closing = threading.Lock()  # the build's thread and the server's stop may both close it

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        driver = self.folder / "driver.sh"
        driver.write_text(DRIVER, encoding="utf-8")
        control_read, control_write = os.pipe()
        status_read, status_write = os.pipe()
        env = {**self.env, "MW_CONTROL_FD": str(control_read), "MW_STATUS_FD": str(status_write)}
        try:
            self.process = subprocess.Popen(["bash", "--noprofile", "--norc", str(driver)], env=env, cwd=self.cwd,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, pass_fds=(control_read, status_write),
                                            start_new_session=True)
        finally:
            os.close(control_read)
            os.close(status_write)
        self._control, self._status = control_write, status_read
        self._reader = threading.Thread(target=self._read, name="codebuild-output", daemon=True)
        self._reader.start()

    def run(self, script: str, title: str | None = None) -> int:
        """Source ``script`` in the shell; its exit status. Raises :class:`ShellEnded` or :class:`Interrupted`."""
        assert self.process is not None
        self._steps += 1
        step = self.folder / f"step-{self._steps:04d}.sh"
        step.write_text(script + "\n", encoding="utf-8")
        if title is not None:
            Path(f"{step}.title").write_text(title, encoding="utf-8")
        try:
            os.write(self._control, f"{step}\n".encode())
        except BrokenPipeError:
            raise ShellEnded(self.process.wait()) from None
        while True:
            answer = self._answer()
            if answer is not None:
                return answer
            reason = self.interrupt()
            if reason is not None:
                self.close()
                raise Interrupted(reason)

    def say(self, line: str) -> None:
        """A line of the build's own in the log, in order with the commands' output."""
        self.run(f"printf '%s\\n' {shlex.quote(line)}")

    def close(self) -> None:
        """End the shell (and what its commands started in its session); wait for its output to be read."""
        with self._closing:
            self._close()

    def _close(self) -> None:
        if self.process is None:
            return
        if self._control >= 0:
            os.close(self._control)  # the driver's loop ends
            self._control = -1
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        _terminate(self.process)
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self._status >= 0:
            os.close(self._status)
            self._status = -1

    def _answer(self) -> int | None:
        assert self.process is not None
        while b"\n" not in self._pending:
            ready, _, _ = select.select([self._status], [], [], _POLL_SECONDS)
            if not ready and self.process.poll() is not None:
                ready, _, _ = select.select([self._status], [], [], 0)  # its last answer, if it gave one
                if not ready:
                    raise ShellEnded(self.process.returncode)
            if not ready:
                return None
            chunk = os.read(self._status, 64)
            if not chunk:  # every writer is gone: the shell ended
                raise ShellEnded(self.process.wait())
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return int(line.strip() or b"1")

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            self.output(raw.decode("utf-8", "replace").rstrip("\n"))
        self.process.stdout.close()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the shell's process group (with what its commands left running, as a build's end does), SIGKILL
    if it has not ended in time."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.05)
        if process.poll() is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # what the shell left behind in its group
            except ProcessLookupError:
                pass
            return

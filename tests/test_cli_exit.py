"""How the ``lmhtc`` process ends (compiler/cli.py ``exit_now``): the command's exit status, its whole output,
the atexit handlers run, and a running non-daemon thread is waited for; only the interpreter's teardown is
skipped. Each case runs in a fresh process, since ``exit_now`` ends the process it runs in."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_console_script_output_and_status():
    lmhtc = Path(sys.executable).with_name("lmhtc")
    proc = subprocess.run([str(lmhtc), "version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "0.1.0", (proc.returncode, proc.stdout, proc.stderr)
    proc = subprocess.run([str(lmhtc), "inspect", "no-such.lmhtc"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "no-such.lmhtc" in proc.stderr, proc


def test_atexit_handlers_run_and_buffered_output_is_flushed(tmp_path):
    marker = tmp_path / "atexit-ran"
    proc = _python(
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('yes'))\n"
        "from lmhtc.compiler.cli import exit_now\n"
        "sys.stdout.write('x' * 100000 + 'END')\n"           # buffered, no newline: lost without a flush
        "sys.stderr.write('to stderr')\n"
        "exit_now(7)\n"
        "print('not reached')\n")
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "x" * 100000 + "END"
    assert proc.stderr == "to stderr"
    assert marker.read_text() == "yes"


def test_a_running_non_daemon_thread_is_waited_for(tmp_path):
    marker = tmp_path / "thread-done"
    proc = _python(
        "import threading, time\n"
        "from lmhtc.compiler.cli import exit_now\n"
        f"def work():\n    time.sleep(0.5)\n    open({str(marker)!r}, 'w').write('done')\n"
        "threading.Thread(target=work).start()\n"
        "exit_now(4)\n")
    assert proc.returncode == 4, proc.stderr
    assert marker.read_text() == "done"


@pytest.mark.parametrize("code, status, stderr", [(None, 0, ""), (0, 0, ""), (2, 2, ""), ("boom", 1, "boom\n")])
def test_exit_codes_follow_sys_exit(code, status, stderr):
    proc = _python(f"from lmhtc.compiler.cli import exit_now\nexit_now({code!r})\n")
    assert (proc.returncode, proc.stderr) == (status, stderr)

"""What the measuring scripts share: a hub process started on a free port, and its /proc figures.

Imported by scripts/history-memory-rss.py, idle-stream-rss.py and resume-memory.py (Python puts
a script's own folder on its import path).
"""
import os
import resource
import socket
import subprocess
import sys
import time


def rss_kib(pid):
    """The process's resident set (VmRSS) in KiB, -1 once it is gone."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def cpu_seconds(pid):
    """(user, system) CPU seconds of the process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def tcp_mem_kib():
    """The kernel's memory for TCP buffers (/proc/net/sockstat), in KiB."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * 4
    return -1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_open_files(needed=0):
    """Raises the open-file limit to its hard limit (the hub inherits it); exits when even that
    is below `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < needed:
        sys.exit(f"open-file limit {hard} is too low (need {needed})")


def start_hub(binary, *serve_args, timeout=10.0):
    """Starts `binary serve --host 127.0.0.1 --port P SERVE_ARGS...` on a free port and waits
    until it accepts connections; returns (process, port). The caller terminates it."""
    port = free_port()
    args = [binary, "serve", "--host", "127.0.0.1", "--port", str(port), *serve_args]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return server, port
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                sys.exit(f"{' '.join(args)} did not start")
            time.sleep(0.05)

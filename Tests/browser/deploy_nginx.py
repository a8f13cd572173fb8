"""The shipped Examples/deploy/nginx.conf (TLS + HTTP/2) run by Debian's nginx as an ordinary user.

The site file is the shipped one, unchanged except for what cannot be used in a test: the listen
addresses (loopback, free ports, no IPv6), the certificate paths (a self-signed certificate for
localhost / 127.0.0.1 made with openssl in a temporary directory) and the upstream's port (the
hub under test). Each substitution must match the shipped text, so a change to the file that the
test cannot follow fails the test instead of testing something else. Everything else — the
`location /events` block users copy, `location = /healthz`, the redirect server — is as shipped.
nginx runs in the foreground with its prefix, pid file, logs and temp paths in that directory
(as Tests/DoctorTests/Support.swift does).
"""

import os
import shutil
import socket
import subprocess
import tempfile

import support
from support import ROOT, free_port, wait_until

SHIPPED = os.path.join(ROOT, "Examples", "deploy", "nginx.conf")


def _tool(name):
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not path:
        raise AssertionError(f"{name} is not installed (Tests/browser/run.sh installs it)")
    return path


def self_signed_cert(directory):
    """A key and a self-signed certificate for localhost and 127.0.0.1 (valid one day)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    r = subprocess.run(
        [_tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        capture_output=True, timeout=30,
    )
    if r.returncode != 0:
        raise AssertionError(f"openssl req failed: {r.stderr.decode()}")
    return cert, key


def site_config(hub_port, https_port, http_port, cert, key):
    """Examples/deploy/nginx.conf with only the addresses, ports and certificate paths replaced."""
    with open(SHIPPED) as f:
        text = f.read()
    for old, new in (
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{hub_port};"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", ""),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("listen [::]:443 ssl http2;", ""),
        ("ssl_certificate /etc/ssl/certs/events.example.com.pem;", f"ssl_certificate {cert};"),
        ("ssl_certificate_key /etc/ssl/private/events.example.com.key;", f"ssl_certificate_key {key};"),
    ):
        if text.count(old) != 1:
            raise AssertionError(f"{old!r} is not in {SHIPPED} exactly once: update deploy_nginx.py with the shipped file")
        text = text.replace(old, new)
    return text


def main_config(d):
    """The main config around site.conf, everything nginx writes kept in d."""
    return f"""worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/site.conf;
}}
"""


class Nginx:
    """nginx in front of the hub on hub_port with the shipped TLS + HTTP/2 site; .base is https://127.0.0.1:PORT."""

    def __init__(self, hub_port, attempts=3):
        nginx = _tool("nginx")
        self.dir = tempfile.mkdtemp(prefix="microsse-nginx-")
        self.proc = None
        cert, key = self_signed_cert(self.dir)
        last = None
        for _ in range(attempts):  # another port when a probed free port was taken in between
            self.port = free_port()
            site = site_config(hub_port, self.port, free_port(), cert, key)
            with open(os.path.join(self.dir, "site.conf"), "w") as f:
                f.write(site)
            with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
                f.write(main_config(self.dir))
            d = self.dir
            self.proc = subprocess.Popen(
                [nginx, "-e", f"{d}/error.log", "-p", d, "-c", f"{d}/nginx.conf",
                 "-g", f"daemon off; pid {d}/nginx.pid; error_log {d}/error.log;"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            support._children.append(self.proc)
            try:
                wait_until(lambda: self.proc.poll() is not None or self._accepts(), 10, "nginx to listen")
                if self.proc.poll() is None:
                    self.base = f"https://127.0.0.1:{self.port}"
                    return
                last = f"nginx exited with {self.proc.returncode}: {self.error_log()}"
            except AssertionError as e:
                last = f"{e}: {self.error_log()}"
                self.kill()
        self.close()
        raise AssertionError(f"nginx did not start: {last}")

    def _accepts(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def _read(self, name):
        try:
            with open(os.path.join(self.dir, name), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def error_log(self):
        return self._read("error.log")[-2000:]

    def access_log(self):
        return self._read("access.log")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)  # master and worker: one process group
            except OSError:
                pass
            self.proc.wait(timeout=10)

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

"""A mosquitto broker run on this machine: a free 127.0.0.1 port and a generated config (plain or
TLS, passwords, ACL, persistence). Used by `make demo` and the tests; production brokers get their
configuration from the fleet tools."""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tools.pki import PKI

START_TIMEOUT = 10.0


def mosquitto_binary(name="mosquitto"):
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])
    found = shutil.which(name, path=path)
    if not found:
        raise RuntimeError("%s is missing: run `make setup` (apt-get install mosquitto mosquitto-clients)" % name)
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalBroker:
    """One mosquitto process; `restart()` keeps the port, config and persistence database."""

    def __init__(self, directory, *, tls=False, pki=None, require_certificate=False, users=None, acl=None,
                 persistence=False, extra=()):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls = tls or require_certificate
        self.pki = pki if pki or not self.tls else PKI(self.dir / "pki")
        self.log_path = self.dir / "mosquitto.log"
        self.proc = None
        lines = ["listener %d %s" % (self.port, self.host), "set_tcp_nodelay true"]
        anonymous = not users and not require_certificate
        lines.append("allow_anonymous %s" % ("true" if anonymous else "false"))
        if self.tls:
            server = self.pki.issue("localhost", server=True)
            lines += ["cafile %s" % self.pki.ca_file, "certfile %s" % server["cert_file"],
                      "keyfile %s" % server["key_file"], "tls_version tlsv1.2"]
            if require_certificate:
                lines += ["require_certificate true", "use_identity_as_username true"]
        if users:
            pw = self.dir / "passwd"
            pw.write_text("")
            for name, password in users.items():
                subprocess.run([mosquitto_binary("mosquitto_passwd"), "-b", str(pw), name, password], check=True,
                               capture_output=True)
            pw.chmod(0o644)
            lines.append("password_file %s" % pw)
        if acl is not None:
            acl_path = self.dir / "acl"
            acl_path.write_text(acl)
            acl_path.chmod(0o644)
            lines.append("acl_file %s" % acl_path)
        if persistence:
            (self.dir / "db").mkdir(exist_ok=True)
            lines += ["persistence true", "persistence_location %s/" % (self.dir / "db"), "autosave_interval 1"]
        lines += self.local_lines() + list(extra)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @classmethod
    def from_config(cls, directory, make_config, pki=None):
        """A broker running a configuration generated elsewhere (the fleet tools):
        `make_config(port, extra_lines)` writes it, with `extra_lines` (this runner's logging)
        appended, and returns its path. The listener must be TLS on 127.0.0.1:`port`."""
        self = cls.__new__(cls)
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host, self.port, self.tls, self.pki, self.proc = "127.0.0.1", free_port(), True, pki, None
        self.log_path = self.dir / "mosquitto.log"
        self.conf = Path(make_config(self.port, self.local_lines()))
        return self

    def local_lines(self):
        """This runner's own lines for a configuration: the log it reads, and root's user when root."""
        lines = ["user root"] if os.geteuid() == 0 else []  # keep read access to the key files
        return lines + ["log_dest file %s" % self.log_path, "log_type all", "connection_messages true"]

    def reload(self):
        """SIGHUP: mosquitto reads its configuration, ACL and CRL again without dropping anyone."""
        mark = len(self.log_text())
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + START_TIMEOUT
        while "Reloading config" not in self.log_text()[mark:] and time.monotonic() < deadline:
            time.sleep(0.02)

    def start(self):
        assert self.proc is None, "broker already running"
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")
                self.proc = None
                raise RuntimeError("mosquitto exited at start:\n%s\n%s" % (err, self.log_text()))
            if " running" in self.log_text()[mark:]:
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("mosquitto did not start within %ss:\n%s" % (START_TIMEOUT, self.log_text()))

    def stop(self, sig=signal.SIGTERM):
        """Stop the broker; SIGTERM lets it write its persistence database, SIGKILL does not."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
        self.proc = None

    def kill(self):
        self.stop(signal.SIGKILL)

    def restart(self, pause=0.0):
        self.stop()
        time.sleep(pause)
        return self.start()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def dropped_lines(self):
        """Log lines where mosquitto admits dropping or refusing a message."""
        words = ("dropped", "dropping", "denied")
        return [line for line in self.log_text().splitlines() if any(w in line.lower() for w in words)]

    def client_cert(self, device_id):
        """A per-device client certificate (CN = device id) from this broker's test CA."""
        return self.pki.issue(device_id)



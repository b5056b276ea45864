"""A RabbitMQ node run on this machine with its MQTT plugin: the second real broker the update
protocol is tested against (docs/SCALING.md). Every port is free and chosen here (AMQP, MQTT,
MQTT over TLS, Erlang distribution, and a private epmd), and the node's data, logs and Erlang
cookie live in its own folder, so several nodes (a cluster) and the mosquitto tests can run side
by side and nothing is left behind.

Debian's `rabbitmq-server` package provides it (`make setup` installs it)."""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tools.localbroker import free_port
from tools.pki import PKI

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # Debian's scripts (those in /usr/sbin switch to the rabbitmq user)
START_TIMEOUT = 90.0  # a node boots in about 10 s on an idle 2-core machine; much slower on a busy one


def rabbit_script(name):
    path = RABBIT_BIN / name
    if not path.exists():
        raise RuntimeError("%s is missing: run `make setup` (apt-get install rabbitmq-server)" % path)
    return str(path)


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Epmd:
    """A private Erlang port mapper on a free port, so nodes find each other without the system's."""

    def __init__(self):
        exe = shutil.which("epmd", path=os.pathsep.join(["/usr/bin", "/usr/lib/erlang/bin", os.environ.get("PATH", "")]))
        if not exe:
            raise RuntimeError("epmd is missing: run `make setup` (apt-get install rabbitmq-server)")
        self.port = free_port()
        self.proc = subprocess.Popen([exe, "-port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("epmd did not start on port %d" % self.port)
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class RabbitNode:
    """One RabbitMQ node with the MQTT plugin on 127.0.0.1: a plain and a TLS MQTT listener.
    `restart()` keeps ports, data (retained messages) and configuration. Nodes sharing `home`
    and `epmd` share an Erlang cookie and can be clustered (`join(other)`)."""

    def __init__(self, directory, *, name="rabbit", pki=None, epmd=None, home=None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = "%s@localhost" % name
        self.host = "127.0.0.1"
        self.own_epmd = epmd is None
        self.epmd = epmd or Epmd()
        self.home = Path(home or self.dir)
        self.pki = pki or PKI(self.dir / "pki")
        self.amqp_port, self.dist_port = free_port(), free_port()
        self.plain_port, self.tls_port = free_port(), free_port()
        self.log_dir = self.dir / "log"
        self.proc = None
        server = self.pki.issue("localhost", server=True)
        conf = ["listeners.tcp.1 = 127.0.0.1:%d" % self.amqp_port,
                "mqtt.listeners.tcp.1 = 127.0.0.1:%d" % self.plain_port,
                "mqtt.listeners.ssl.1 = 127.0.0.1:%d" % self.tls_port,
                "ssl_options.cacertfile = %s" % self.pki.ca_file,
                "ssl_options.certfile = %s" % server["cert_file"],
                "ssl_options.keyfile = %s" % server["key_file"],
                "ssl_options.versions.1 = tlsv1.2",
                "mqtt.allow_anonymous = true",
                "log.file.level = info", "log.console = false"]
        (self.dir / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        (self.dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (self.dir / "advanced.config").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        self.env = dict(os.environ, HOME=str(self.home), ERL_EPMD_PORT=str(self.epmd.port),
                        RABBITMQ_NODENAME=self.name, RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
                        RABBITMQ_NODE_PORT=str(self.amqp_port), RABBITMQ_DIST_PORT=str(self.dist_port),
                        RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
                        RABBITMQ_ADVANCED_CONFIG_FILE=str(self.dir / "advanced.config"),
                        RABBITMQ_CONF_ENV_FILE=str(self.dir / "rabbitmq-env.conf"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
                        RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"), RABBITMQ_LOG_BASE=str(self.log_dir),
                        RABBITMQ_PID_FILE=str(self.dir / "node.pid"))
        self.ctl("rabbitmq-plugins", "--offline", "enable", "rabbitmq_mqtt")

    def ctl(self, script, *args, check=True):
        """Run one of RabbitMQ's command-line tools against this node; returns its stdout."""
        cmd = [rabbit_script(script)] + (["-n", self.name] if script != "rabbitmq-plugins" else []) + list(args)
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if check and proc.returncode:
            raise RuntimeError("%s %s failed:\n%s%s" % (script, " ".join(args), proc.stdout, proc.stderr))
        return proc.stdout

    def start(self):
        assert self.proc is None, "node already running"
        out = open(self.dir / "console.log", "ab")
        self.proc = subprocess.Popen([rabbit_script("rabbitmq-server")], env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not (_listening(self.plain_port) and _listening(self.tls_port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("RabbitMQ node %s did not start:\n%s" % (self.name, self.log_text()[-3000:]))
            time.sleep(0.1)
        return self

    def stop(self, sig=signal.SIGTERM):
        """Stop the node (SIGTERM: an orderly shutdown that closes the retained store)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        try:  # the Erlang VM may outlive the start script by a moment
            os.killpg(self.proc.pid, 0)
            time.sleep(1)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc = None

    def close(self):
        """Stop the node and, if it has its own, its epmd."""
        self.stop()
        if self.own_epmd:
            self.epmd.stop()

    def restart(self, pause=0.0):
        self.stop()
        time.sleep(pause)
        return self.start()

    def join(self, other):
        """Make this node a member of `other`'s cluster (they must share epmd and home)."""
        self.ctl("rabbitmqctl", "stop_app")
        self.ctl("rabbitmqctl", "join_cluster", other.name)
        self.ctl("rabbitmqctl", "start_app")
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(self.plain_port):
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not come back after joining %s" % (self.name, other.name))
            time.sleep(0.1)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        path = self.log_dir / (self.name + ".log")
        return path.read_text(errors="replace") if path.exists() else ""

    def dropped_lines(self, since=0):
        """Log lines (after character `since`) where the node admits losing or refusing
        something: RabbitMQ logs no per-message drops, so these are denials, discarded or
        rejected messages, resource alarms (which block publishers) and crashed processes."""
        words = ("drop", "discard", "denied", "refused", "rejected", "alarm", "crash")
        return [line for line in self.log_text()[since:].splitlines()
                if ("[warning]" in line or "[error]" in line) and any(w in line.lower() for w in words)]

    def client_cert(self, device_id):
        return self.pki.issue(device_id)

    def endpoint(self, tls):
        """This node seen through one of its MQTT listeners: what a broker fixture returns."""
        return Endpoint(self, tls)


class Endpoint:
    """One listener of a RabbitNode, with LocalBroker's attributes (host, port, tls, pki,
    restart, log_text, dropped_lines) so tests take either broker."""

    kind = "rabbitmq"

    def __init__(self, node, tls):
        self.node = node
        self.tls = tls
        self.port = node.tls_port if tls else node.plain_port
        self.mark = len(node.log_text())  # the node may be shared: only what happens from here on

    def dropped_lines(self):
        return self.node.dropped_lines(self.mark)

    def __getattr__(self, name):
        return getattr(self.node, name)

"""A host command run under strace (Debian's strace, installed by tools/ensure-brokers.sh): what it
did to the filesystem, read from the kernel's side, and the same command killed (SIGKILL) on
entering its n-th call of one system call (strace's fault injection). Tests observe the real
program this way instead of patching the functions it calls."""
import os
import re
import shutil
import signal
import subprocess
import sys

_LINE = re.compile(r"^\d+ +(\w+)\((.*)\) += (-?\d+)")
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')  # -xx: every byte of a string as \xNN
_FD = re.compile(r"\d+<((?:\\x[0-9a-f]{2})*)>")  # -y: a descriptor with the path it refers to
_MODE = re.compile(r", (0[0-7]+)$")


def strace():
    """The strace binary; a missing one fails the test that needs it, loudly."""
    path = shutil.which("strace")
    assert path, "strace is missing: run `make setup` (tools/ensure-brokers.sh installs it)"
    return path


def _unhex(text):
    return bytes.fromhex(text.replace("\\x", "")).decode("utf-8", "surrogateescape")


def _data(text):
    return bytes.fromhex(text.replace("\\x", ""))


class Call:
    """One finished system call: `name`, `result`, `paths` (its path arguments, then the paths of
    its descriptors), `flags`/`mode` of an open, `data` of a write."""

    def __init__(self, name, args, result):
        self.name, self.result = name, result
        strings = _STRING.findall(args)
        self.paths = [_unhex(s) for s in strings if name != "write"] + [_unhex(s) for s in _FD.findall(args)]
        self.data = _data(strings[0]) if name == "write" and strings else b""
        self.flags = set()
        self.mode = None
        if name in ("open", "openat", "creat"):
            after = args.split('"', 2)[2] if args.count('"') >= 2 else ""
            mode = _MODE.search(after)
            self.mode = int(mode.group(1), 8) if mode else None
            self.flags = set(re.findall(r"O_[A-Z]+", after))

    def writes_file(self):
        return self.name == "creat" or bool(self.flags & {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"})


def parse(text):
    """The finished calls of a trace written with -f -y -xx (`run_traced` writes one)."""
    calls = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            calls.append(Call(m.group(1), m.group(2), int(m.group(3))))
    return calls


def _env():
    # No .pyc written behind the program's back: the calls it makes are the same run after run.
    return dict(os.environ, PYTHONDONTWRITEBYTECODE="1")


def run_traced(argv, log, calls, *, umask=0o022, cwd=None):
    """Run `python argv...` under strace, tracing `calls` (strace's -e trace= list: `%file` for
    every call that takes a path, `?name` for one this architecture may lack) into `log`;
    returns (completed process, parsed calls)."""
    proc = subprocess.run([strace(), "-f", "-qq", "-y", "-xx", "-s", "1000000", "-o", str(log), "-e", "trace=" + calls,
                           sys.executable] + [str(a) for a in argv], capture_output=True, text=True, umask=umask,
                          cwd=cwd, env=_env(), timeout=120)
    return proc, parse(open(log, encoding="ascii").read())


def kill_at(argv, call, n, *, umask=0o022, cwd=None):
    """Run `python argv...` and kill it with SIGKILL as it enters its `n`-th `call`; asserts it
    got that far (a kill point the program never reaches would test nothing)."""
    proc = subprocess.run([strace(), "-f", "-qq", "-o", os.devnull, "-e", "trace=" + call,
                           "-e", "inject=%s:signal=KILL:when=%d" % (call, n), sys.executable] + [str(a) for a in argv],
                          capture_output=True, text=True, umask=umask, cwd=cwd, env=_env(), timeout=120)
    assert proc.returncode == -signal.SIGKILL, (call, n, proc.returncode, proc.stderr)
    return proc


def kill_points(calls, touches):
    """(name, n) of every call for which `touches(call)` holds and of the call after it: when
    `calls` holds every call that changes the files in question, a kill on entering those leaves
    each state they pass through, since nothing changes between two of them."""
    seen, numbered = {}, []
    for c in calls:
        seen[c.name] = seen.get(c.name, 0) + 1
        numbered.append((c.name, seen[c.name]))
    points = set()
    for i, c in enumerate(calls):
        if touches(c):
            points.update(numbered[i:i + 2])
    return sorted(points)

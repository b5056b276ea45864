"""Fetch the third-party MicroPython libraries the real ESP32_GENERIC build freezes (micropython-lib's
umqtt.simple and umqtt.robust, `require()`d by ports/esp32/boards/manifest.py) from the package
index at set-up time (never copied into the repository), into each folder named: build/frozen,
which the simulated board's supervisor lays out as frozen modules of every image, and
build/devicelibs, a plain copy for code run on the unix port outside a board.

They are published on PyPI in MicroPython's own (upip) sdist format, which pip cannot install, so
the pinned archive is taken from the index's simple API (PEP 691, the listing pip reads), checked
against its pinned SHA-256, and only the named modules are extracted.

    python tests/devicelibs/fetch.py build/frozen build/devicelibs
"""
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

INDEX = "https://pypi.org/simple/%s/"
# (project, archive, sha256, {path in the archive: path on the board})
PINS = [
    ("micropython-umqtt-simple", "micropython-umqtt.simple-1.3.4.tar.gz",
     "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f",
     {"micropython-umqtt.simple-1.3.4/umqtt/simple.py": "umqtt/simple.py"}),
    ("micropython-umqtt-robust", "micropython-umqtt.robust-1.0.tar.gz",
     "22a1b8c8e1128281efb13b3020927d07e33c5b747869da2cd77d37983a9ea002",
     {"micropython-umqtt.robust-1.0/umqtt/robust.py": "umqtt/robust.py"}),
]


def archive_url(project, filename):
    request = urllib.request.Request(INDEX % project, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        files = json.load(answer)["files"]
    for entry in files:
        if entry["filename"] == filename:
            return entry["url"]
    raise SystemExit("%s is not on the index for %s" % (filename, project))


def fetch(*outs):
    outs = [Path(out) for out in outs]
    for project, filename, sha256, members in PINS:
        if all((out / target).exists() for out in outs for target in members.values()):
            continue
        with urllib.request.urlopen(archive_url(project, filename), timeout=60) as answer:
            data = answer.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise SystemExit("%s: SHA-256 differs from the pinned one" % filename)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member, target in members.items():
                source = archive.extractfile(member).read()
                for out in outs:
                    path = out / target
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(source)
        print("%s from %s" % (", ".join(members.values()), filename))


if __name__ == "__main__":
    fetch(*(sys.argv[1:] or ["build/frozen", "build/devicelibs"]))

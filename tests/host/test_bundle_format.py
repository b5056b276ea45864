"""The bundle table (docs/FORMAT.md section 6), device parser (`ota.bundle.read_table` under the
unix port) and host codec (`mpota.bundle`) against the same vectors: well-formed bundles parse to
the same table on both ends; every malformed one (paths that climb out or hide in .ota, bad
characters, duplicates, lengths that do not add up, bad magic) is refused by both, the device
with FormatError `bad_format`."""
import hashlib
import json
import struct

import pytest

import mpunix
from mpota import bundle


def _raw(entries, data=None, magic=b"MOTB", version=1, count=None, h_delta=0):
    """A bundle built without the host's checks: [(path bytes, content bytes)]."""
    table = b"".join(struct.pack(">BI32s", len(p), len(c), hashlib.sha256(c).digest()) + p for p, c in entries)
    head = struct.pack(">4sBBH", magic, version, len(entries) if count is None else count, 8 + len(table) + h_delta)
    return head + table + (b"".join(c for _, c in entries) if data is None else data)


GOOD = [
    [(b"main.py", b"print(1)\n")],
    [(b"main.py", b"x"), (b"lib/a.mpy", b"M\x06\x00"), (b"data/empty.bin", b"")],
    [(b"a" * 96, b"long path")],
]
BAD = {
    "parent": _raw([(b"../boot.py", b"x")]),
    "inner_parent": _raw([(b"lib/../../x", b"x")]),
    "absolute": _raw([(b"/main.py", b"x")]),
    "dot_segment": _raw([(b"./main.py", b"x")]),
    "empty_segment": _raw([(b"lib//a.py", b"x")]),
    "state_dir": _raw([(b".ota/trust.bin", b"x")]),
    "space": _raw([(b"my app.py", b"x")]),
    "nul": _raw([(b"main\x00.py", b"x")]),
    "too_long": _raw([(b"a" * 97, b"x")]),
    "empty_path": _raw([(b"", b"x")]),
    "duplicate": _raw([(b"main.py", b"x"), (b"main.py", b"y")]),
    "magic": _raw([(b"main.py", b"x")], magic=b"MOTA"),
    "version": _raw([(b"main.py", b"x")], version=2),
    "no_files": _raw([], count=0),
    "short_data": _raw([(b"main.py", b"xyz")], data=b"xy"),
    "long_data": _raw([(b"main.py", b"xyz")], data=b"xyzw"),
    "header_length": _raw([(b"main.py", b"x")], h_delta=1),
    "count_past_table": _raw([(b"main.py", b"x")], count=2),
}

DEVICE = """
import json, sys
from ota.bundle import read_table
from ota.errors import OTAError
out = []
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    f = open(path, "rb")
    try:
        got = [[p, n, d.hex()] for p, n, d in read_table(f, len(data))]
        if len(set(p for p, _, _ in got)) != len(got):
            raise OTAError("bad_format")  # a duplicate path: the sink finds the file already written
        out.append(got)
    except OTAError as exc:
        out.append(exc.reason)
print(json.dumps(out))
"""


def _device(tmp_path, blobs):
    paths = []
    for i, blob in enumerate(blobs):
        path = tmp_path / ("b%d.bin" % i)
        path.write_bytes(blob)
        paths.append(str(path))
    script = tmp_path / "parse.py"
    script.write_text(DEVICE)
    return json.loads(mpunix.run(script=script, args=paths).stdout)


def test_good_bundles_parse_alike_on_both_ends(tmp_path):
    blobs = [_raw(entries) for entries in GOOD]
    got = _device(tmp_path, blobs)
    for blob, parsed in zip(blobs, got):
        assert parsed == [[p, n, d.hex()] for p, n, d in bundle.read_table(blob)]
    assert bundle.pack({p.decode(): c for p, c in GOOD[1]}) == _raw(sorted(GOOD[1]))  # path order


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_bundles_are_refused_by_both(tmp_path, case):
    assert _device(tmp_path, [BAD[case]]) == ["bad_format"]
    with pytest.raises(bundle.BundleError):
        bundle.read_table(BAD[case])


@pytest.mark.parametrize("path", ["../x.py", "/x.py", ".ota/x", "a//b.py", "a b.py", "x" * 97])
def test_the_host_never_builds_a_path_the_device_refuses(path):
    with pytest.raises(bundle.BundleError):
        bundle.pack({"main.py": b"", path: b""})

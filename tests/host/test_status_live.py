"""`mpota status` live: on a terminal one table redrawn in place (a fleet's traffic does not scroll
the screen), piped a line per change, and --json for scripts."""
import io
import json
import subprocess
import sys

from mpunix import ROOT
from mpota import broker as hostbroker
from mpota.livetable import CURSOR_UP, ERASE_BELOW, LiveTable


class Terminal(io.StringIO):
    def isatty(self):
        return True


def table(rows):
    return "device state\n" + "\n".join("%s %s" % (d, rows[d]["state"]) for d in sorted(rows))


def test_on_a_terminal_the_table_is_redrawn_over_itself():
    out = Terminal()
    live = LiveTable(out, table, lambda row: "unused")
    rows = {"a": {"state": "idle"}, "b": {"state": "idle"}}
    live.show(rows)
    first = out.getvalue()
    assert CURSOR_UP.split("%")[0] not in first and first.count("\n") == 4  # time, header, a, b
    rows["c"] = {"state": "downloading"}
    live.show(rows, ["c"])
    second = out.getvalue()[len(first):]
    assert second.startswith(CURSOR_UP % 4 + ERASE_BELOW)  # back over the 4 lines drawn, then erase
    assert second.count("\n") == 5 and "c downloading" in second
    live.show(rows, ["c"])
    assert out.getvalue()[len(first) + len(second):].startswith(CURSOR_UP % 5 + ERASE_BELOW)


def test_piped_the_table_once_then_a_line_per_change():
    out = io.StringIO()
    live = LiveTable(out, table, lambda row: "row %s" % row["state"])
    rows = {"a": {"state": "idle"}}
    live.show(rows)
    rows["a"] = {"state": "rebooting"}
    live.show(rows, ["a"])
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue() and len(lines) == 4 and lines[3].endswith(" row rebooting")


def test_status_command_piped_prints_each_change_as_a_line(mosquitto):
    mq = mosquitto()
    state = lambda s: json.dumps({"device": "dev-1", "state": s, "version": "1.0.0"})  # noqa: E731
    with hostbroker.Connection(mq.host, mq.port) as conn:
        conn.wait([conn.publish("ota/status/dev-1/state", state("idle")), conn.publish("ota/status/dev-1/online", b"1")])
        proc = subprocess.Popen([sys.executable, "-m", "mpota", "status", "--wait", "0.3", "--broker",
                                 "127.0.0.1:%d" % mq.port], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            head = [proc.stdout.readline() for _ in range(3)]  # time, header, dev-1
            assert "changes follow" in head[0] and head[1].split()[0] == "device" and "idle" in head[2], head
            for s in ("downloading", "rebooting", "trial"):
                conn.wait([conn.publish("ota/status/dev-1/state", state(s))])
                line = proc.stdout.readline()
                assert line.split()[1:4] == ["dev-1", "yes", s], line
        finally:
            proc.terminate()
            proc.wait(10)

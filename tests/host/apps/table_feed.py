# Device-side helper of the test applications local_update.py and bundle_app.py (MicroPython):
# each installs it beside its main.py (tests/host/pipeline_env.py, tests/host/rp2_env.py).


def feed_table(updater, m, path):
    """Give `updater` the digest table first (index, then pages), read from `path`, where it is
    laid out as the device keeps it: the index, then every chunk's digest."""
    with open(path, "rb") as table:
        while True:
            need = [k for k in updater.missing(8) if k >= m.chunk_count]
            if not need:
                return
            for k in need:
                j = k - m.chunk_count
                first = (j - 1) * m.fanout
                offset, length = (0, 32 * m.pages) if j == 0 else (32 * (m.pages + first), 32 * min(m.fanout, m.chunk_count - first))
                table.seek(offset)
                updater.write_chunk(k, table.read(length))

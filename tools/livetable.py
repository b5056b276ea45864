"""One table kept up to date in a terminal, or a line per change when the output is a pipe.

On a terminal the table is drawn once and redrawn in place (ANSI: cursor up to its first line,
erase to the end of the screen), so a busy fleet does not scroll the screen away. Piped, each
change is one line (time, then the row), which `grep` and log files can use."""
import time

CURSOR_UP = "\x1b[%dF"  # to the start of the line n lines up
ERASE_BELOW = "\x1b[J"


class LiveTable:
    def __init__(self, stream, render_table, render_row):
        """`render_table(rows)` -> text; `render_row(row)` -> one line for the piped form."""
        self.stream, self.render_table, self.render_row = stream, render_table, render_row
        self.terminal = stream.isatty()
        self.drawn = 0  # lines of the table on screen

    def show(self, rows, changed=()):
        """Draw the table (first call), then redraw it, or print the `changed` rows when piped."""
        if self.terminal or not self.drawn:
            body = "%s  (%s, Ctrl-C to stop)\n%s\n" % (time.strftime("%H:%M:%S"), "live" if self.terminal else
                                                      "changes follow", self.render_table(rows))
            self.stream.write((CURSOR_UP % self.drawn + ERASE_BELOW if self.drawn else "") + body)
            self.drawn = body.count("\n")
        else:
            for key in changed:
                self.stream.write("%s %s\n" % (time.strftime("%H:%M:%S"), self.render_row(rows[key])))
        self.stream.flush()

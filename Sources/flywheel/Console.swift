import FlywheelOutput

/// Output for the CLI, written straight to file descriptors 1 and 2 (unbuffered), so `tail -f` output reaches
/// pipes at once and no shared C `FILE*` state is involved.
enum Console {
    static func line(_ text: String) { write(fd: 1, text + "\n") }

    static func error(_ text: String) { write(fd: 2, text + "\n") }

    /// Rewrites the current line of stderr (a progress line on a terminal).
    static func progress(_ text: String) { write(fd: 2, "\r\u{1B}[2K" + text) }

    /// Writes `text` to stdout as is (no newline), at once: streamed generation output.
    static func write(_ text: String) { write(fd: 1, text) }

    private static func write(fd: Int32, _ text: String) { writeAll(text, to: fd) }
}

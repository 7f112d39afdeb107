#if canImport(Glibc)
import Glibc
#endif

/// Output for the CLI, written straight to file descriptors 1 and 2 (unbuffered), so `tail -f` output reaches
/// pipes at once and no shared C `FILE*` state is involved.
enum Console {
    static func line(_ text: String) { write(fd: 1, text + "\n") }

    static func error(_ text: String) { write(fd: 2, text + "\n") }

    /// Rewrites the current line of stderr (a progress line on a terminal).
    static func progress(_ text: String) { write(fd: 2, "\r\u{1B}[2K" + text) }

    /// Writes `text` to stdout as is (no newline), at once: streamed generation output.
    static func write(_ text: String) { write(fd: 1, text) }

    private static func write(fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                return  // the reader went away (e.g. `| head`): nothing useful to do
            }
            offset += n
        }
        bytes.removeAll()
    }
}

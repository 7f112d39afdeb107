#if canImport(Glibc)
import Glibc
#endif

/// Output for the CLI: stdout lines are flushed at once so `tail -f` output reaches pipes promptly.
enum Console {
    static func line(_ text: String) {
        fputs(text + "\n", stdout)
        fflush(stdout)
    }

    static func error(_ text: String) {
        fputs(text + "\n", stderr)
    }
}

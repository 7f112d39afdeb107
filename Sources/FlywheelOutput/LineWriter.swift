import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Writes lines to a file descriptor from a thread of its own, so that whoever logs (an event loop finishing a
/// request) only appends to a queue: the disk or a slow terminal never holds up a request. The queue holds at
/// most `capacity` lines; beyond that lines are dropped and counted, and the next written line says how many.
/// Thread-safe.
public final class LineWriter: Sendable {
    private struct State {
        var lines: [String] = []
        var dropped = 0
        var writing = false
        var stopped = false
    }
    private let descriptor: Int32
    private let ownsDescriptor: Bool
    private let capacity: Int
    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let idle = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    /// Writes to `descriptor` (2 for stderr); `ownsDescriptor`: close it when the writer stops.
    public init(descriptor: Int32, ownsDescriptor: Bool = false, capacity: Int = 10_000, name: String = "flywheel-output") {
        self.descriptor = descriptor
        self.ownsDescriptor = ownsDescriptor
        self.capacity = capacity
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    /// Appends a file (`O_APPEND`, created with mode 0640 when missing); throws naming the path and errno.
    public static func appending(toFile path: String, name: String) throws -> LineWriter {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw OutputError("cannot open \(path) for appending: \(String(cString: strerror(errno)))")
        }
        return LineWriter(descriptor: fd, ownsDescriptor: true, name: name)
    }

    /// Queues one line (a newline is added). Never blocks on I/O.
    public func write(_ line: String) {
        let queued = state.withLock { s -> Bool in
            guard !s.stopped else { return false }
            guard s.lines.count < capacity else {
                s.dropped += 1
                return false
            }
            s.lines.append(line)
            return true
        }
        if queued { wake.signal() }
    }

    /// Lines dropped because the queue was full.
    public var droppedCount: Int { state.withLock { $0.dropped } }

    /// Blocks until every line queued before the call is written.
    public func flush() {
        let pending = state.withLock { !$0.lines.isEmpty || $0.writing }
        guard pending else { return }
        wake.signal()
        while state.withLock({ !$0.lines.isEmpty || $0.writing }) {
            _ = idle.wait(timeout: .now() + 0.05)
        }
    }

    /// Writes what is queued, then stops the thread (and closes the descriptor if it owns it). Later lines are
    /// dropped. Call once.
    public func close() {
        flush()
        state.withLock { $0.stopped = true }
        wake.signal()
        finished.wait()
    }

    private func run() {
        var reportedDrops = 0
        while true {
            wake.wait()
            while true {
                let (batch, dropped, stopped) = state.withLock { s -> ([String], Int, Bool) in
                    let batch = s.lines
                    s.lines.removeAll(keepingCapacity: true)
                    s.writing = !batch.isEmpty
                    return (batch, s.dropped, s.stopped)
                }
                if batch.isEmpty {
                    idle.signal()
                    if stopped {
                        if ownsDescriptor { Glibc.close(descriptor) }
                        finished.signal()
                        return
                    }
                    break
                }
                var text = ""
                if dropped > reportedDrops {
                    text += "(\(dropped - reportedDrops) lines dropped: the output could not keep up)\n"
                    reportedDrops = dropped
                }
                for line in batch {
                    text += line
                    text += "\n"
                }
                writeAll(text, to: descriptor)
                state.withLock { $0.writing = false }
            }
        }
    }

}

/// A problem opening the daemon's output (an access log file that cannot be written).
public struct OutputError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

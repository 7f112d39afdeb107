import FlywheelJSON
import FlywheelStore
#if canImport(Glibc)
import Glibc
#endif

/// `flywheel tail`: prints the newest rows of the log, then, when following, new rows as they land.
/// Polls the database (WAL lets it read while the daemon writes); one thread.
public struct LogTailer {
    public struct Options: Sendable {
        public var count = 20
        public var follow = false
        public var json = false
        public var includeFeedback = false
        public var filter = RequestFilter()
        public var pollInterval = 0.2
        public init() {}
    }

    let reader: any LogQueries
    let options: Options
    let output: (String) -> Void

    /// `output` receives one line at a time (without the newline).
    public init(reader: any LogQueries, options: Options, output: @escaping (String) -> Void) {
        self.reader = reader
        self.options = options
        self.output = output
    }

    /// Prints the last `count` rows, then follows until `shouldStop` returns true.
    public func run(shouldStop: () -> Bool) throws {
        // Where following starts when nothing is printed first: read before the rows, so a row committed in
        // between is printed by the first poll rather than skipped.
        let feedbackBase = try reader.maxFeedbackRowID()
        let requestBase = try reader.maxRequestRowID()
        let feedback = options.includeFeedback ? try reader.latestFeedback(limit: options.count) : []
        let requests = try reader.latestRequests(limit: options.count, filter: options.filter)
        var lastRequest = requests.last?.rowID ?? requestBase
        var lastFeedback = feedback.last?.rowID ?? feedbackBase
        try emit(requests: requests, feedback: feedback)
        guard options.follow else { return }
        while !shouldStop() {
            // Feedback first: a feedback row is committed no earlier than its request, so reading it before
            // the requests means a commit landing between the two reads can never show feedback ahead of
            // the request it is about.
            let newFeedback = options.includeFeedback ? try reader.feedback(afterRowID: lastFeedback, limit: 1000) : []
            let newRequests = try reader.requests(afterRowID: lastRequest, filter: options.filter, limit: 1000)
            if let last = newRequests.last { lastRequest = last.rowID }
            if let last = newFeedback.last { lastFeedback = last.rowID }
            try emit(requests: newRequests, feedback: newFeedback)
            if newRequests.count < 1000 && newFeedback.count < 1000 {
                sleepInterruptibly(options.pollInterval, shouldStop: shouldStop)
            }
        }
    }

    /// Requests and feedback interleaved by time.
    private func emit(requests: [StoredRequest], feedback: [StoredFeedback]) throws {
        var i = 0, j = 0
        while i < requests.count || j < feedback.count {
            let takeRequest = j >= feedback.count
                || (i < requests.count && requests[i].record.createdAtMillis <= feedback[j].record.createdAtMillis)
            if takeRequest {
                let r = requests[i].record
                if options.json {
                    let fb = try reader.feedback(forRequest: r.id)
                    output(RecordFormatter.jsonLine(r, feedback: fb))
                } else {
                    output(RecordFormatter.line(r))
                }
                i += 1
            } else {
                let f = feedback[j].record
                output(options.json ? RecordFormatter.jsonLine(f) : RecordFormatter.line(f))
                j += 1
            }
        }
    }

    private func sleepInterruptibly(_ seconds: Double, shouldStop: () -> Bool) {
        var left = seconds
        while left > 0, !shouldStop() {
            let step = min(left, 0.05)
            usleep(UInt32(step * 1_000_000))
            left -= step
        }
    }
}

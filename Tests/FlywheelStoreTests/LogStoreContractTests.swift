import Dispatch
import FlywheelStore
import Testing

/// The rules every log backend keeps (see `LogSink` and `LogQueries`), written against the protocols
/// only and run once per backend in `LogStoreBackends.all`.
@Suite("Log store contract")
struct LogStoreContractTests {
    // MARK: Request ids

    @Test("A resent id is stored under id#2, id#3, ...; no copy is lost", arguments: LogStoreBackends.all)
    func resentIDIsRenamedAndNeverLost(_ backend: any LogStoreBackend) throws {
        let store = try backend.makeStore(LogStoreTuning(maxBatch: 700))
        defer { store.remove() }
        let copies = 3_000
        for i in 0..<copies {
            var r = Self.record("same")
            r.latencyMillis = Double(i)
            #expect(store.sink.enqueue(r))
            if i == copies / 2 { store.sink.flush() } // renames continue across batches and commits
            if i % 100 == 0 { store.sink.enqueue(Self.record("other-\(i)")) }
        }
        store.sink.close()
        #expect(store.sink.writtenCount == copies + 30)
        #expect(store.sink.writeErrorCount == 0)

        let queries = try store.openQueries()
        var byID: [String: Double] = [:]
        try queries.forEachRequest(RequestQuery(filter: RequestFilter(), limit: 1_000, includeFeedback: false)) { row in
            #expect(byID.updateValue(row.record.latencyMillis, forKey: row.record.id) == nil, "id \(row.record.id) twice")
        }
        #expect(byID.count == copies + 30)
        // The first copy keeps the plain id (feedback refers to it); the n-th is `same#n`.
        for n in 1...copies {
            #expect(byID[n == 1 ? "same" : "same#\(n)"] == Double(n - 1))
        }
    }

    // MARK: Feedback

    @Test("Feedback finds a request still waiting in the queue", arguments: LogStoreBackends.all)
    func feedbackFindsQueuedRequests(_ backend: any LogStoreBackend) throws {
        // A long batching interval and small batches: ordering must come from the queue, not from luck.
        let store = try backend.makeStore(LogStoreTuning(maxBatch: 7, flushInterval: 5))
        defer { store.remove() }
        for i in 0..<50 { store.sink.enqueue(Self.record("bulk-\(i)")) }
        store.sink.enqueue(Self.record("fresh"))
        var feedback = FeedbackRecord(requestID: "fresh", createdAtMillis: 2, signal: .edited)
        feedback.correction = "better answer"
        feedback.value = 0.5
        feedback.comment = "close"
        feedback.source = "ui"
        feedback.weight = 2
        let result = try #require(Self.submit(store.sink, feedback))
        let submission = try result.get()
        #expect(!submission.duplicate)
        #expect(try Self.submit(store.sink, FeedbackRecord(requestID: "bulk-0", createdAtMillis: 3, signal: .accepted))?.get().duplicate == false)
        store.sink.flush()

        let queries = try store.openQueries()
        feedback.id = submission.feedbackID
        #expect(try queries.feedback(forRequest: "fresh") == [feedback])
    }

    @Test("Feedback for an id that was never logged is refused", arguments: LogStoreBackends.all)
    func feedbackForUnknownRequest(_ backend: any LogStoreBackend) throws {
        let store = try backend.makeStore(LogStoreTuning())
        defer { store.remove() }
        store.sink.enqueue(Self.record("known"))
        let result = Self.submit(store.sink, FeedbackRecord(requestID: "ghost", createdAtMillis: 1, signal: .accepted))
        #expect(result == .failure(.unknownRequest("ghost")))
        store.sink.flush()
        #expect(try store.openQueries().feedback(forRequest: "ghost").isEmpty)
    }

    @Test("An idempotency key repeats identical feedback as a duplicate and refuses different feedback",
          arguments: LogStoreBackends.all)
    func idempotencyDuplicateAndConflict(_ backend: any LogStoreBackend) throws {
        let store = try backend.makeStore(LogStoreTuning())
        defer { store.remove() }
        store.sink.enqueue(Self.record("req-a"))
        store.sink.enqueue(Self.record("req-b"))

        var first = FeedbackRecord(requestID: "req-a", createdAtMillis: 10, signal: .score)
        first.value = 4
        first.comment = "good"
        first.idempotencyKey = "key-1"
        let original = try #require(Self.submit(store.sink, first)).get()
        #expect(!original.duplicate)

        var retry = first
        retry.createdAtMillis = 99 // a retry is stamped later; it is still the same submission
        #expect(Self.submit(store.sink, retry) == .success(FeedbackSubmission(feedbackID: original.feedbackID, duplicate: true)))

        let changes: [(String, (inout FeedbackRecord) -> Void)] = [
            ("request", { $0.requestID = "req-b" }),
            ("signal", { $0.signal = .accepted }),
            ("value", { $0.value = 5 }),
            ("value removed", { $0.value = nil }),
            ("correction", { $0.correction = "fixed" }),
            ("comment", { $0.comment = "bad" }),
            ("source", { $0.source = "ui" }),
            ("weight", { $0.weight = 2 }),
        ]
        for (name, change) in changes {
            var changed = first
            change(&changed)
            #expect(Self.submit(store.sink, changed) == .failure(.idempotencyConflict("key-1")), "changed \(name)")
        }

        // Two identical submits in flight at once: one row, one duplicate of it.
        var pair = FeedbackRecord(requestID: "req-b", createdAtMillis: 11, signal: .rejected)
        pair.idempotencyKey = "key-2"
        let boxA = ResultBox(), boxB = ResultBox()
        let done = DispatchSemaphore(value: 0)
        store.sink.submitFeedback(pair) { boxA.set($0); done.signal() }
        store.sink.submitFeedback(pair) { boxB.set($0); done.signal() }
        #expect(done.wait(timeout: .now() + 10) == .success && done.wait(timeout: .now() + 10) == .success)
        let a = try #require(boxA.get()).get(), b = try #require(boxB.get()).get()
        #expect(a.feedbackID == b.feedbackID)
        #expect([a.duplicate, b.duplicate] == [false, true])

        store.sink.flush()
        let queries = try store.openQueries()
        #expect(try queries.feedback(forRequest: "req-a").map(\.value) == [4])
        #expect(try queries.feedback(forRequest: "req-b").count == 1)
    }

    @Test("Feedback on an episode is stored on each of its requests, once per idempotency key",
          arguments: LogStoreBackends.all)
    func episodeFeedbackReachesEveryRequest(_ backend: any LogStoreBackend) throws {
        let store = try backend.makeStore(LogStoreTuning())
        defer { store.remove() }
        for (id, episode, at) in [("t1", "ep-1", Int64(1)), ("other", "ep-2", 2), ("t2", "ep-1", 3), ("loose", nil, 4)] {
            var r = Self.record(id, at: at)
            r.episodeID = episode
            store.sink.enqueue(r)
        }
        var outcome = FeedbackRecord(requestID: "", createdAtMillis: 10, signal: .score)
        outcome.episodeID = "ep-1"
        outcome.value = 1
        outcome.source = "tensorzero"
        outcome.idempotencyKey = "ep-key"
        let stored = try #require(Self.submit(store.sink, outcome)).get()
        #expect(!stored.duplicate && stored.rows == 2)
        var retry = outcome
        retry.createdAtMillis = 20
        let again = try #require(Self.submit(store.sink, retry)).get()
        #expect(again.duplicate && again.feedbackID == stored.feedbackID)
        var changed = outcome
        changed.value = 0
        #expect(Self.submit(store.sink, changed) == .failure(.idempotencyConflict("ep-key")))
        var none = outcome
        none.episodeID = "ep-unknown"
        none.idempotencyKey = nil
        #expect(Self.submit(store.sink, none) == .failure(.unknownRequest("episode:ep-unknown")))

        store.sink.flush()
        let queries = try store.openQueries()
        #expect(try queries.feedback(forRequest: "t1").map(\.episodeID) == ["ep-1"])
        #expect(try queries.feedback(forRequest: "t2").map(\.value) == [1])
        #expect(try queries.feedback(forRequest: "other").isEmpty)
        var filter = RequestFilter()
        filter.episode = "ep-1"
        var seen: [String] = []
        try queries.forEachRequest(RequestQuery(filter: filter)) { seen.append($0.record.id) }
        #expect(seen.sorted() == ["t1", "t2"])
    }

    @Test("A deadline already past is answered at once and stores nothing", arguments: LogStoreBackends.all)
    func pastDeadline(_ backend: any LogStoreBackend) throws {
        let store = try backend.makeStore(LogStoreTuning())
        defer { store.remove() }
        store.sink.enqueue(Self.record("r"))
        let box = ResultBox()
        store.sink.submitFeedback(FeedbackRecord(requestID: "r", createdAtMillis: 1, signal: .accepted),
                                  deadline: .now() - .milliseconds(1)) { box.set($0) }
        #expect(box.get() == .failure(.deadlineExceeded), "answered before submitFeedback returned")
        // A generous deadline does not get in the way.
        #expect(try Self.submit(store.sink, FeedbackRecord(requestID: "r", createdAtMillis: 2, signal: .rejected),
                                deadline: .now() + .seconds(60))?.get().duplicate == false)
        store.sink.flush()
        #expect(try store.openQueries().feedback(forRequest: "r").map(\.signal) == [.rejected])
    }

    // MARK: Lifecycle

    @Test("close() stores everything accepted, then refuses new work", arguments: LogStoreBackends.all)
    func closeDrainsEverything(_ backend: any LogStoreBackend) throws {
        let store = try backend.makeStore(LogStoreTuning(flushInterval: 10))
        defer { store.remove() }
        for i in 0..<1_000 { #expect(store.sink.enqueue(Self.record("drain-\(i)"))) }
        let box = ResultBox()
        store.sink.submitFeedback(FeedbackRecord(requestID: "drain-999", createdAtMillis: 1, signal: .accepted)) { box.set($0) }
        store.sink.close()
        #expect(store.sink.writtenCount == 1_000)
        #expect(store.sink.queueDepth == 0)
        #expect(store.sink.droppedCount == 0)
        #expect(store.sink.writeErrorCount == 0)
        #expect(store.sink.lastWriteError == nil)
        #expect(try #require(box.get()).get().duplicate == false, "pending feedback is answered by close()")

        store.sink.close() // idempotent
        #expect(!store.sink.enqueue(Self.record("late")))
        #expect(store.sink.droppedCount == 1)
        store.sink.flush() // returns at once
        #expect(Self.submit(store.sink, FeedbackRecord(requestID: "drain-0", createdAtMillis: 2, signal: .comment)) == .failure(.closed))

        let queries = try store.openQueries()
        #expect(try queries.requestCount() == 1_000)
        #expect(try queries.feedback(forRequest: "drain-999").count == 1)
        #expect(try queries.request(id: "late") == nil)
    }

    // MARK: Queries

    @Test("Paging visits every row once, also across equal timestamps", arguments: LogStoreBackends.all)
    func pagingIsStable(_ backend: any LogStoreBackend) throws {
        let store = try backend.makeStore(LogStoreTuning())
        defer { store.remove() }
        // 300 rows over 10 timestamps, ids not in timestamp order.
        var expected: [RequestCursor] = []
        for i in 0..<300 {
            let r = Self.record("r\((i * 37) % 300)", at: 1_000 + Int64(i % 10))
            store.sink.enqueue(r)
            expected.append(RequestCursor(createdAtMillis: r.createdAtMillis, id: r.id))
        }
        store.sink.flush()
        expected.sort { ($0.createdAtMillis, $0.id) < ($1.createdAtMillis, $1.id) }
        let queries = try store.openQueries()
        for order in [LogOrder.oldestFirst, .newestFirst] {
            for pageSize in [1, 7, 30, 299, 300, 1_000] {
                var seen: [RequestCursor] = []
                var query = RequestQuery(order: order, limit: pageSize, includeFeedback: false)
                var pages = 0
                while true {
                    let page = try queries.requestPage(query)
                    #expect(page.requests.count <= pageSize)
                    seen += page.requests.map { RequestCursor(createdAtMillis: $0.record.createdAtMillis, id: $0.record.id) }
                    pages += 1
                    guard let next = page.next else { break }
                    query.after = next
                }
                #expect(seen == (order == .oldestFirst ? expected : expected.reversed()), "\(order) by \(pageSize)")
                #expect(pages == 300 / pageSize + 1, "a full last page is followed by one empty page")
            }
        }
    }

    @Test("A page that ended is not disturbed by rows written later", arguments: LogStoreBackends.all)
    func pagingWhileWriting(_ backend: any LogStoreBackend) throws {
        let store = try backend.makeStore(LogStoreTuning())
        defer { store.remove() }
        for i in 0..<20 { store.sink.enqueue(Self.record("old-\(i)", at: 1_000)) }
        store.sink.flush()
        let queries = try store.openQueries()
        let first = try queries.requestPage(RequestQuery(limit: 10, includeFeedback: false))
        // Written between two pages: one sorting before the cursor, one after everything.
        store.sink.enqueue(Self.record("early", at: 500))
        store.sink.enqueue(Self.record("later", at: 2_000))
        store.sink.flush()
        var rest: [String] = []
        var query = RequestQuery(after: first.next, limit: 10, includeFeedback: false)
        while true {
            let page = try queries.requestPage(query)
            rest += page.requests.map(\.record.id)
            guard let next = page.next else { break }
            query.after = next
        }
        let all = first.requests.map(\.record.id) + rest
        #expect(all == (0..<20).map { "old-\($0)" }.sorted() + ["later"])
    }

    @Test("Filters combine with AND and agree across pages, counts and tails", arguments: LogStoreBackends.all)
    func filtersCombine(_ backend: any LogStoreBackend) throws {
        let store = try backend.makeStore(LogStoreTuning())
        defer { store.remove() }
        let models = ["gpt", "llama", nil]
        let routes = ["upstream", "local"]
        let statuses = [200, 200, 429, 500]
        var records: [RequestRecord] = []
        for i in 0..<240 {
            var r = Self.record("f\(i)", model: models[i % 3], route: routes[i % 2], status: statuses[i % 4],
                                at: 10_000 + Int64(i / 3))
            if r.modelRequested == nil && i % 2 == 0 { r.modelServed = "llama" } // matched through modelServed
            if i % 5 == 0 { r.tags = ["eval", "batch-\(i % 3)"] }
            if i % 7 == 0 { r.tags.append("prod") }
            if i % 11 == 0 { r.errorType = "stream_interrupted" } // an error with status 200
            records.append(r)
            store.sink.enqueue(r)
        }
        store.sink.flush()
        let queries = try store.openQueries()

        func matches(_ r: RequestRecord, _ f: RequestFilter) -> Bool {
            if let m = f.model, r.modelRequested != m && r.modelServed != m { return false }
            if let route = f.route, r.route != route { return false }
            if let tag = f.tag, !r.tags.contains(tag) { return false }
            if let status = f.status, r.status != status { return false }
            if f.errorsOnly && r.status < 400 && r.errorType == nil { return false }
            if let from = f.createdFrom, r.createdAtMillis < from { return false }
            if let before = f.createdBefore, r.createdAtMillis >= before { return false }
            return true
        }
        var filters: [RequestFilter] = []
        for model in [nil, "gpt", "llama"] as [String?] {
            for route in [nil, "local"] as [String?] {
                for tag in [nil, "eval", "prod", "batch-1", "eva"] as [String?] {
                    for errorsOnly in [false, true] {
                        filters.append(RequestFilter(model: model, route: route, tag: tag, errorsOnly: errorsOnly))
                    }
                }
            }
        }
        filters.append(RequestFilter(status: 429))
        filters.append(RequestFilter(model: "gpt", status: 500, errorsOnly: true))
        filters.append(RequestFilter(createdFrom: 10_020, createdBefore: 10_040))
        filters.append(RequestFilter(route: "upstream", tag: "eval", createdFrom: 10_030))
        filters.append(RequestFilter(model: "nobody"))

        for filter in filters {
            let expected = records.filter { matches($0, filter) }
            var paged: [String] = []
            try queries.forEachPage(RequestQuery(filter: filter, limit: 13, includeFeedback: false)) { page in
                paged += page.map(\.record.id)
            }
            let byTime = expected.sorted { ($0.createdAtMillis, $0.id) < ($1.createdAtMillis, $1.id) }.map(\.id)
            #expect(paged == byTime, "\(filter)")
            #expect(try queries.requestCount(filter: filter) == expected.count, "\(filter)")
            #expect(try queries.latestRequests(limit: 1_000, filter: filter).map(\.record.id) == expected.map(\.id), "\(filter)")
        }
    }

    @Test("Each request in a page carries its own feedback", arguments: LogStoreBackends.all)
    func pagesCarryFeedback(_ backend: any LogStoreBackend) throws {
        let store = try backend.makeStore(LogStoreTuning())
        defer { store.remove() }
        for i in 0..<10 { store.sink.enqueue(Self.record("p\(i)", at: Int64(i))) }
        for i in [2, 5, 5, 9] {
            var f = FeedbackRecord(requestID: "p\(i)", createdAtMillis: 100, signal: .score)
            f.value = Double(i)
            _ = Self.submit(store.sink, f)
        }
        store.sink.flush()
        let queries = try store.openQueries()
        var counts: [String: [Double?]] = [:]
        try queries.forEachRequest(RequestQuery(limit: 4)) { row in
            #expect(row.feedback.allSatisfy { $0.requestID == row.record.id })
            counts[row.record.id] = row.feedback.map(\.value)
        }
        #expect(counts.count == 10)
        #expect(counts["p5"] == [5, 5])
        #expect(counts["p9"] == [9])
        #expect(counts["p0"] == [])
        #expect(try queries.requestPage(RequestQuery(limit: 10, includeFeedback: false)).requests.allSatisfy { $0.feedback.isEmpty })
    }

    /// 20,000 rows walked in pages of 500: the walk hands over one page at a time (it never has the whole
    /// result), in order, each row once.
    @Test("Streaming iteration visits every row holding one page at a time", arguments: LogStoreBackends.all)
    func streamingIteration(_ backend: any LogStoreBackend) throws {
        let total = 20_000
        let store = try backend.makeStore(LogStoreTuning(capacity: total))
        defer { store.remove() }
        for i in 0..<total { #expect(store.sink.enqueue(Self.record("s\(i)", at: Int64(i / 4)))) }
        store.sink.flush()
        #expect(store.sink.writtenCount == total)
        let queries = try store.openQueries()
        var pages = 0, rows = 0
        var last: RequestCursor?
        try queries.forEachPage(RequestQuery(limit: 500, includeFeedback: true)) { page in
            pages += 1
            #expect(page.count <= 500)
            for row in page {
                let key = RequestCursor(createdAtMillis: row.record.createdAtMillis, id: row.record.id)
                if let last { #expect((last.createdAtMillis, last.id) < (key.createdAtMillis, key.id)) }
                last = key
            }
            rows += page.count
        }
        #expect(rows == total)
        #expect(pages == total / 500)
    }

    // MARK: Helpers

    static func record(_ id: String, model: String? = "gpt-4o-mini", route: String? = "upstream", status: Int = 200,
                       at millis: Int64 = 1_700_000_000_000) -> RequestRecord {
        var r = RequestRecord(id: id, createdAtMillis: millis, method: "POST", endpoint: "/v1/chat/completions",
                              requestJSON: "{}", status: status, latencyMillis: 1)
        r.modelRequested = model
        r.modelServed = model
        r.route = route
        return r
    }

    /// Submits feedback and waits (up to 10 s) for its completion; nil (and a recorded issue) if it never came.
    static func submit(_ sink: any LogSink, _ feedback: FeedbackRecord, deadline: DispatchTime? = nil,
                       sourceLocation: SourceLocation = #_sourceLocation) -> Result<FeedbackSubmission, StoreError>? {
        let box = ResultBox()
        let done = DispatchSemaphore(value: 0)
        sink.submitFeedback(feedback, deadline: deadline) { result in
            box.set(result)
            done.signal()
        }
        if done.wait(timeout: .now() + 10) == .timedOut {
            Issue.record("feedback completion never called", sourceLocation: sourceLocation)
            return nil
        }
        return box.get()
    }
}

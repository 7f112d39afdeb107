/// Incremental SSE parser (for reading an upstream's stream): feed arbitrary byte chunks, get complete events.
/// Follows the WHATWG event-stream rules: \n, \r\n and \r line ends (also split across chunks), comments
/// (": ..."), several `data:` lines joined by \n, an event dispatched at a blank line only if it has data.
/// `id` is the id given within that event (not carried over to later ones). Value type; one owner at a time.
public struct ServerSentEventParser: Sendable {
    public struct Event: Sendable, Equatable {
        public var event: String?
        public var data: String
        public var id: String?

        public init(event: String? = nil, data: String, id: String? = nil) {
            self.event = event
            self.data = data
            self.id = id
        }
    }

    public let maxEventBytes: Int
    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var eventName: String?
    private var id: String?
    /// The previous chunk ended with \r: a leading \n in the next one belongs to that line end.
    private var skipLineFeed = false
    private var sawFirstLine = false

    public init(maxEventBytes: Int = 4 << 20) {
        self.maxEventBytes = maxEventBytes
    }

    /// Consumes `bytes` and returns the events they complete. Throws if one event exceeds `maxEventBytes`
    /// (the parser should then be discarded).
    public mutating func feed(_ bytes: some Collection<UInt8>) throws -> [Event] {
        var events: [Event] = []
        for byte in bytes {
            if skipLineFeed {
                skipLineFeed = false
                if byte == 10 { continue }
            }
            if byte == 10 || byte == 13 {
                skipLineFeed = byte == 13
                if let event = processLine() { events.append(event) }
                line.removeAll(keepingCapacity: true)
            } else {
                line.append(byte)
                if line.count + data.count > maxEventBytes {
                    throw ServerSentEventParserError.eventTooLarge(limit: maxEventBytes)
                }
            }
        }
        return events
    }

    private mutating func processLine() -> Event? {
        if !sawFirstLine {
            sawFirstLine = true
            if line.starts(with: [0xEF, 0xBB, 0xBF]) { line.removeFirst(3) } // UTF-8 BOM
        }
        if line.isEmpty { return dispatch() }
        if line[0] == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.count
        var valueStart = min(colon + 1, line.count)
        if valueStart < line.count && line[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
        let name = line[0..<colon]
        let value = line[valueStart...]
        if name.elementsEqual("data".utf8) {
            if hasData { data.append(10) }
            data.append(contentsOf: value)
            hasData = true
        } else if name.elementsEqual("event".utf8) {
            eventName = String(decoding: value, as: UTF8.self)
        } else if name.elementsEqual("id".utf8) {
            if !value.contains(0) { id = String(decoding: value, as: UTF8.self) }
        }
        // "retry" and unknown fields are ignored.
        return nil
    }

    private mutating func dispatch() -> Event? {
        defer {
            data.removeAll(keepingCapacity: true)
            hasData = false
            eventName = nil
            id = nil
        }
        guard hasData else { return nil }
        let name = eventName.flatMap { $0.isEmpty ? nil : $0 }
        return Event(event: name, data: String(decoding: data, as: UTF8.self), id: id)
    }
}

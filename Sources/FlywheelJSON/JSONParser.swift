/// Why a JSON text was rejected, and at which byte.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var offset: Int
    /// The limit the document exceeded, when it was rejected for its size rather than its syntax
    /// (a client error all the same: the gateway answers 400 naming it).
    public var limit: JSONParser.Limit?

    public init(message: String, offset: Int, limit: JSONParser.Limit? = nil) {
        self.message = message
        self.offset = offset
        self.limit = limit
    }

    public var description: String { "\(message) at byte \(offset)" }
}

/// A strict RFC 8259 parser over UTF-8 bytes, linear in the size of its input, with limits so hostile
/// input can neither exhaust the stack nor build an outsized document.
public struct JSONParser {
    /// What a document may contain. The defaults suit an OpenAI request body (16 MiB at most):
    /// far more than any real request, far less than an attack needs.
    public struct Limits: Sendable, Equatable {
        /// Objects and arrays nested deeper than this are rejected rather than recursed into.
        public var maxDepth: Int
        /// Object members (key-value pairs) in the whole document, all objects together.
        public var maxObjectMembers: Int
        /// Array elements in the whole document, all arrays together (a prompt of token ids is one per token).
        public var maxArrayElements: Int
        /// UTF-8 bytes of one string (key or value) after unescaping.
        public var maxStringBytes: Int
        /// Refuse an object that names a key twice instead of keeping the last value. A request that a
        /// proxy forwards as bytes should: the next parser on the way may keep the first value instead
        /// (one reads `"model": "a"`, the other `"model": "b"`).
        public var rejectsDuplicateKeys = false

        public init(maxDepth: Int = 256, maxObjectMembers: Int = 100_000, maxArrayElements: Int = 1_000_000,
                    maxStringBytes: Int = 16 * 1024 * 1024) {
            self.maxDepth = maxDepth
            self.maxObjectMembers = maxObjectMembers
            self.maxArrayElements = maxArrayElements
            self.maxStringBytes = maxStringBytes
        }

        /// Only the default nesting bound (which protects the stack), no size limits: for text whose
        /// size is bounded elsewhere and may legitimately be large, such as an upstream's embeddings
        /// response or a logged record.
        public static let depthOnly = Limits(maxObjectMembers: .max, maxArrayElements: .max, maxStringBytes: .max)
    }

    /// Which of the `Limits` a document exceeded.
    public enum Limit: String, Sendable, Equatable {
        case maxDepth = "max_depth"
        case maxObjectMembers = "max_object_members"
        case maxArrayElements = "max_array_elements"
        case maxStringBytes = "max_string_bytes"
    }

    public static func parse(_ bytes: [UInt8], limits: Limits = Limits()) throws(JSONParseError) -> JSON {
        try bytes.withUnsafeBufferPointer { buffer throws(JSONParseError) in
            var parser = Cursor(buffer: buffer, limits: limits)
            parser.skipWhitespace()
            let value = try parser.parseValue(depth: 0)
            parser.skipWhitespace()
            if parser.index != buffer.count { throw parser.error("unexpected data after the JSON value") }
            return value
        }
    }

    public static func parse(_ text: String, limits: Limits = Limits()) throws(JSONParseError) -> JSON {
        try parse(Array(text.utf8), limits: limits)
    }

    private struct Cursor {
        let buffer: UnsafeBufferPointer<UInt8>
        let limits: Limits
        var index = 0
        /// Object members and array elements read so far, across the whole document.
        var members = 0
        var elements = 0

        init(buffer: UnsafeBufferPointer<UInt8>, limits: Limits) {
            self.buffer = buffer
            self.limits = limits
        }

        func error(_ message: String) -> JSONParseError { JSONParseError(message: message, offset: index) }

        func limitError(_ limit: Limit, _ message: String, at offset: Int) -> JSONParseError {
            JSONParseError(message: "\(message) (limit \(limit.rawValue))", offset: offset, limit: limit)
        }

        func checkDepth(_ depth: Int) throws(JSONParseError) {
            if depth > limits.maxDepth {
                throw limitError(.maxDepth, "nesting deeper than \(limits.maxDepth)", at: index)
            }
        }

        func checkString(_ byteCount: Int, start: Int) throws(JSONParseError) {
            if byteCount > limits.maxStringBytes {
                throw limitError(.maxStringBytes, "a string longer than \(limits.maxStringBytes) bytes", at: start)
            }
        }

        mutating func skipWhitespace() {
            while index < buffer.count {
                switch buffer[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func parseValue(depth: Int) throws(JSONParseError) -> JSON {
            guard index < buffer.count else { throw error("unexpected end of input") }
            switch buffer[index] {
            case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
            case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try parseString())
            case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
            case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
            case UInt8(ascii: "n"): try expectLiteral("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
            default: throw error("unexpected character '\(Character(Unicode.Scalar(buffer[index])))'")
            }
        }

        mutating func expectLiteral(_ word: StaticString) throws(JSONParseError) {
            let n = word.utf8CodeUnitCount
            guard index + n <= buffer.count else { throw error("invalid literal") }
            let w = word.utf8Start
            for i in 0..<n where buffer[index + i] != w[i] { throw error("invalid literal") }
            index += n
        }

        mutating func parseObject(depth: Int) throws(JSONParseError) -> JSON {
            try checkDepth(depth)
            index += 1
            var entries: [(key: String, value: JSON)] = []
            skipWhitespace()
            if index < buffer.count, buffer[index] == UInt8(ascii: "}") { index += 1; return .object(JSONObject()) }
            while true {
                skipWhitespace()
                guard index < buffer.count, buffer[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
                members += 1
                if members > limits.maxObjectMembers {
                    throw limitError(.maxObjectMembers, "more than \(limits.maxObjectMembers) object members", at: index)
                }
                let key = try parseString()
                skipWhitespace()
                guard index < buffer.count, buffer[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
                index += 1
                skipWhitespace()
                let value = try parseValue(depth: depth)
                entries.append((key: key, value: value))
                skipWhitespace()
                guard index < buffer.count else { throw error("unterminated object") }
                if buffer[index] == UInt8(ascii: ",") { index += 1; continue }
                if buffer[index] == UInt8(ascii: "}") { index += 1; break }
                throw error("expected ',' or '}'")
            }
            let object = JSONObject(mergingDuplicates: entries)
            if limits.rejectsDuplicateKeys, object.count < entries.count {
                var seen = Set<String>()
                let key = entries.first { !seen.insert($0.key).inserted }?.key ?? ""
                throw JSONParseError(message: "duplicate key \"\(key.prefix(64))\"", offset: index - 1)
            }
            return .object(object)
        }

        mutating func parseArray(depth: Int) throws(JSONParseError) -> JSON {
            try checkDepth(depth)
            index += 1
            var items: [JSON] = []
            skipWhitespace()
            if index < buffer.count, buffer[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
            while true {
                skipWhitespace()
                elements += 1
                if elements > limits.maxArrayElements {
                    throw limitError(.maxArrayElements, "more than \(limits.maxArrayElements) array elements", at: index)
                }
                items.append(try parseValue(depth: depth))
                skipWhitespace()
                guard index < buffer.count else { throw error("unterminated array") }
                if buffer[index] == UInt8(ascii: ",") { index += 1; continue }
                if buffer[index] == UInt8(ascii: "]") { index += 1; break }
                throw error("expected ',' or ']'")
            }
            return .array(items)
        }

        mutating func parseNumber() throws(JSONParseError) -> JSON {
            let start = index
            var isInteger = true
            if buffer[index] == UInt8(ascii: "-") { index += 1 }
            guard index < buffer.count, isDigit(buffer[index]) else { throw error("invalid number") }
            if buffer[index] == UInt8(ascii: "0") {
                index += 1
            } else {
                while index < buffer.count, isDigit(buffer[index]) { index += 1 }
            }
            if index < buffer.count, buffer[index] == UInt8(ascii: ".") {
                isInteger = false
                index += 1
                guard index < buffer.count, isDigit(buffer[index]) else { throw error("invalid number") }
                while index < buffer.count, isDigit(buffer[index]) { index += 1 }
            }
            if index < buffer.count, buffer[index] == UInt8(ascii: "e") || buffer[index] == UInt8(ascii: "E") {
                isInteger = false
                index += 1
                if index < buffer.count, buffer[index] == UInt8(ascii: "+") || buffer[index] == UInt8(ascii: "-") { index += 1 }
                guard index < buffer.count, isDigit(buffer[index]) else { throw error("invalid number") }
                while index < buffer.count, isDigit(buffer[index]) { index += 1 }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<index]), as: UTF8.self)
            if isInteger, let i = Int64(text) { return .int(i) }
            guard let d = Double(text) else { throw JSONParseError(message: "invalid number", offset: start) }
            // A literal beyond Double's range would become infinity, which JSON cannot write back (it would
            // turn into null on the way to an upstream or the log): refuse it rather than change it.
            guard d.isFinite else { throw JSONParseError(message: "number out of range", offset: start) }
            return .double(d)
        }

        func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

        mutating func parseString() throws(JSONParseError) -> String {
            index += 1  // opening quote
            let start = index
            // Fast path: no escapes.
            while index < buffer.count {
                let c = buffer[index]
                if c == UInt8(ascii: "\"") {
                    try checkString(index - start, start: start)
                    let s = try validUTF8(start, index)
                    index += 1
                    return s
                }
                if c == UInt8(ascii: "\\") { break }
                if c < 0x20 { throw error("control character in string") }
                index += 1
            }
            var bytes = Array(UnsafeBufferPointer(rebasing: buffer[start..<index]))
            while index < buffer.count {
                let c = buffer[index]
                if c == UInt8(ascii: "\"") {
                    try checkString(bytes.count, start: start)
                    index += 1
                    guard let s = String(validating: bytes, as: UTF8.self) else { throw error("invalid UTF-8 in string") }
                    return s
                }
                if c < 0x20 { throw error("control character in string") }
                if c != UInt8(ascii: "\\") { bytes.append(c); index += 1; continue }
                index += 1
                guard index < buffer.count else { break }
                let e = buffer[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""): bytes.append(0x22)
                case UInt8(ascii: "\\"): bytes.append(0x5C)
                case UInt8(ascii: "/"): bytes.append(0x2F)
                case UInt8(ascii: "b"): bytes.append(0x08)
                case UInt8(ascii: "f"): bytes.append(0x0C)
                case UInt8(ascii: "n"): bytes.append(0x0A)
                case UInt8(ascii: "r"): bytes.append(0x0D)
                case UInt8(ascii: "t"): bytes.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        // A high surrogate must be followed by an escaped low surrogate.
                        guard index + 1 < buffer.count, buffer[index] == UInt8(ascii: "\\"), buffer[index + 1] == UInt8(ascii: "u")
                        else { throw error("unpaired surrogate") }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error("unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw error("unpaired surrogate")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw error("invalid unicode escape") }
                    bytes.append(contentsOf: Array(String(Character(u)).utf8))
                default:
                    throw error("invalid escape")
                }
            }
            throw error("unterminated string")
        }

        mutating func hex4() throws(JSONParseError) -> UInt32 {
            guard index + 4 <= buffer.count else { throw error("invalid unicode escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = buffer[index]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw error("invalid unicode escape")
                }
                v = v << 4 | d
                index += 1
            }
            return v
        }

        func validUTF8(_ from: Int, _ to: Int) throws(JSONParseError) -> String {
            let slice = UnsafeBufferPointer(rebasing: buffer[from..<to])
            guard let s = String(validating: slice, as: UTF8.self) else {
                throw JSONParseError(message: "invalid UTF-8 in string", offset: from)
            }
            return s
        }
    }
}

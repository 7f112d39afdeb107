import FlywheelJSON

/// The `/v1/embeddings` answer of a local model, in OpenAI's shape:
/// `{"object":"list","data":[{"object":"embedding","index":i,"embedding":...}],"model":...,"usage":{...}}`,
/// each vector as JSON numbers (each float's shortest round-trip form) or as base64 of its little-endian
/// float32 bytes. Written by hand: a batch can hold millions of floats.
enum LocalEmbeddingResponse {
    /// The log keeps whole `data` items up to about this many bytes; the rest are left out and the row is
    /// marked truncated (the client gets everything).
    static let maxLoggedBytes = 64 << 10

    struct Rendered: Sendable {
        /// The response body sent to the client.
        var body: [UInt8]
        /// The log's copy: the same JSON, with only the `data` items that fit `maxLoggedBytes`.
        var logged: String
        var loggedTruncated: Bool
    }

    static func render(_ vectors: [[Float]], encoding: LocalEmbeddingRequest.Encoding, model: String, promptTokens: Int,
                       maxLoggedBytes: Int = maxLoggedBytes) -> Rendered {
        let head = Array(#"{"object":"list","data":["#.utf8)
        let tail = Array(#"],"model":\#(JSON.string(model).serializedString()),"usage":{"prompt_tokens":\#(promptTokens),"total_tokens":\#(promptTokens)}}"#.utf8)
        var body = head
        var logged = head
        var loggedItems = 0
        var item: [UInt8] = []
        for (index, vector) in vectors.enumerated() {
            item.removeAll(keepingCapacity: true)
            if index > 0 { item.append(UInt8(ascii: ",")) }
            item.append(contentsOf: #"{"object":"embedding","index":\#(index),"embedding":"#.utf8)
            switch encoding {
            case .float: appendFloats(vector, to: &item)
            case .base64:
                item.append(UInt8(ascii: "\""))
                appendBase64(littleEndianBytes(vector), to: &item)
                item.append(UInt8(ascii: "\""))
            }
            item.append(UInt8(ascii: "}"))
            body.append(contentsOf: item)
            // Whole items from the first on, so the logged copy stays valid JSON.
            if loggedItems == index, logged.count + item.count + tail.count <= maxLoggedBytes {
                logged.append(contentsOf: item)
                loggedItems += 1
            }
        }
        body.append(contentsOf: tail)
        logged.append(contentsOf: tail)
        return Rendered(body: body, logged: String(decoding: logged, as: UTF8.self), loggedTruncated: loggedItems < vectors.count)
    }

    /// `[v0,v1,...]` with each float in its shortest form that reads back to the same float32 (finite values only:
    /// the engine refuses vectors that are not).
    static func appendFloats(_ vector: [Float], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for (i, value) in vector.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: value.description.utf8)
        }
        out.append(UInt8(ascii: "]"))
    }

    static func littleEndianBytes(_ vector: [Float]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(vector.count * 4)
        for value in vector {
            let bits = value.bitPattern
            bytes.append(UInt8(truncatingIfNeeded: bits))
            bytes.append(UInt8(truncatingIfNeeded: bits >> 8))
            bytes.append(UInt8(truncatingIfNeeded: bits >> 16))
            bytes.append(UInt8(truncatingIfNeeded: bits >> 24))
        }
        return bytes
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Standard base64 (RFC 4648, with padding).
    static func appendBase64(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.reserveCapacity(out.count + (bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(alphabet[Int(n & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            let n = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(rest == 2 ? alphabet[Int(n >> 6 & 63)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
    }
}

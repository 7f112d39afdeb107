/// Serialises a response status line and header section into a byte buffer. Stateless; any thread.
enum HTTPResponseHead {
    /// How the body that follows the head is delimited.
    enum Framing {
        case contentLength(Int)
        case chunked
        /// No length: the body ends when the connection closes (HTTP/1.0 streams), or there is no body at all.
        case none
    }

    enum ConnectionHeader {
        case omitted
        case keepAlive
        case close
    }

    /// Statuses that never carry a body (RFC 9110 §6.4.1).
    static func allowsBody(_ status: Int) -> Bool {
        !(status / 100 == 1 || status == 204 || status == 304)
    }

    static func write(
        status: Int, headers: HTTPHeaders, framing: Framing, connection: ConnectionHeader,
        dateLine: [UInt8], into bytes: inout [UInt8]
    ) {
        bytes.appendASCII("HTTP/1.1 ")
        bytes.appendDecimal(min(max(status, 100), 999))
        bytes.append(UInt8(ascii: " "))
        bytes.appendASCII(HTTPStatusReason.phrase(for: status))
        bytes.appendASCII("\r\n")
        var hasDate = false
        for (name, value) in headers {
            if HTTPHeaders.equalsIgnoringCase(name, "Content-Length")
                || HTTPHeaders.equalsIgnoringCase(name, "Transfer-Encoding")
                || HTTPHeaders.equalsIgnoringCase(name, "Connection") {
                continue
            }
            if HTTPHeaders.equalsIgnoringCase(name, "Date") { hasDate = true }
            appendSanitized(name, into: &bytes)
            bytes.appendASCII(": ")
            appendSanitized(value, into: &bytes)
            bytes.appendASCII("\r\n")
        }
        if !hasDate { bytes.append(contentsOf: dateLine) }
        switch framing {
        case .contentLength(let length):
            bytes.appendASCII("Content-Length: ")
            bytes.appendDecimal(length)
            bytes.appendASCII("\r\n")
        case .chunked:
            bytes.appendASCII("Transfer-Encoding: chunked\r\n")
        case .none:
            break
        }
        switch connection {
        case .omitted: break
        case .keepAlive: bytes.appendASCII("Connection: keep-alive\r\n")
        case .close: bytes.appendASCII("Connection: close\r\n")
        }
        bytes.appendASCII("\r\n")
    }

    /// Header text from the application must not be able to end the line (response splitting): CR/LF become spaces.
    private static func appendSanitized(_ text: String, into bytes: inout [UInt8]) {
        let start = bytes.count
        bytes.appendString(text)
        var index = start
        while index < bytes.count {
            if bytes[index] == 13 || bytes[index] == 10 { bytes[index] = 32 }
            index += 1
        }
    }
}

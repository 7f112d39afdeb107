/// Server-Sent Events framing helpers. Stateless; any thread.
public enum ServerSentEvents {
    /// "data: ...\n\n"; multi-line data (\n, \r\n or \r) becomes several `data:` lines.
    public static func encode(data: String) -> [UInt8] {
        encode(event: nil, data: data)
    }

    /// "event: name\ndata: ...\n\n" (the event line only when `event` is given).
    public static func encode(event: String?, data: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(data.utf8.count + 16)
        if let event {
            bytes.appendASCII("event: ")
            // A line break inside the name would start a new field; it cannot be represented, so drop it.
            bytes.append(contentsOf: event.utf8.filter { $0 != 10 && $0 != 13 })
            bytes.append(10)
        }
        let utf8 = data.utf8
        var lineStart = utf8.startIndex
        var index = utf8.startIndex
        func appendLine(_ end: String.UTF8View.Index) {
            bytes.appendASCII("data: ")
            bytes.append(contentsOf: utf8[lineStart..<end])
            bytes.append(10)
        }
        while index < utf8.endIndex {
            let byte = utf8[index]
            if byte == 10 || byte == 13 {
                appendLine(index)
                var next = utf8.index(after: index)
                if byte == 13, next < utf8.endIndex, utf8[next] == 10 { next = utf8.index(after: next) }
                lineStart = next
                index = next
            } else {
                index = utf8.index(after: index)
            }
        }
        appendLine(utf8.endIndex)
        bytes.append(10)
        return bytes
    }
}

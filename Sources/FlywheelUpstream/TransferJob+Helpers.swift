/// Pure helpers for building requests and reading response heads: no state, any thread, allocation-free
/// where they run per header line.
extension TransferJob {
    static func parseStatus(_ line: UnsafeRawBufferPointer, end: Int) -> Int {
        var i = 0
        while i < end, line[i] != 0x20 { i += 1 }
        while i < end, line[i] == 0x20 { i += 1 }
        var status = 0
        var digits = 0
        while i < end, digits < 3, line[i] >= 0x30, line[i] <= 0x39 {
            status = status * 10 + Int(line[i] - 0x30)
            i += 1
            digits += 1
        }
        return status
    }

    static func joinURL(_ base: String, _ path: String) -> String {
        let baseSlash = base.utf8.last == UInt8(ascii: "/")
        let pathSlash = path.utf8.first == UInt8(ascii: "/")
        if path.isEmpty { return base }
        if baseSlash && pathSlash { return base + path.dropFirst() }
        if baseSlash || pathSlash { return base + path }
        return base + "/" + path
    }

    /// curl sends "Name;" for an empty value ("Name:" would delete the header).
    static func headerLine(_ name: String, _ value: String) -> String {
        value.isEmpty ? name + ";" : name + ": " + value
    }

    /// Hop-by-hop and framing headers that curl writes itself.
    static func isDropped(_ name: String) -> Bool {
        switch name.utf8.count {
        case 4: return equalsIgnoringCase(name, "host")
        case 6: return equalsIgnoringCase(name, "expect")
        case 10: return equalsIgnoringCase(name, "connection") || equalsIgnoringCase(name, "keep-alive")
        case 14: return equalsIgnoringCase(name, "content-length")
        case 17: return equalsIgnoringCase(name, "transfer-encoding")
        default: return false
        }
    }

    /// ASCII case-insensitive comparison against a lowercase literal, without allocating.
    static func equalsIgnoringCase(_ text: String, _ lowercase: StaticString) -> Bool {
        text.utf8.count == lowercase.utf8CodeUnitCount && hasPrefixIgnoringCase(text, lowercase)
    }

    static func hasPrefixIgnoringCase(_ text: String, _ lowercase: StaticString) -> Bool {
        let count = lowercase.utf8CodeUnitCount
        guard text.utf8.count >= count else { return false }
        return lowercase.withUTF8Buffer { expected in
            var index = 0
            for byte in text.utf8 {
                if index == count { break }
                let lower = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
                if lower != expected[index] { return false }
                index += 1
            }
            return true
        }
    }

    static func isToken(_ name: String) -> Bool {
        guard !name.isEmpty else { return false }
        for byte in name.utf8 where byte <= 0x20 || byte >= 0x7F || byte == UInt8(ascii: ":") {
            return false
        }
        return true
    }

    static func isSafeValue(_ value: String) -> Bool {
        for byte in value.utf8 where byte == 0x0A || byte == 0x0D || byte == 0 {
            return false
        }
        return true
    }

    static func trimmed(_ text: String) -> String {
        var s = Substring(text)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }

    static func validate(_ request: UpstreamRequest) -> String? {
        if request.endpoints.isEmpty { return "no endpoints given" }
        if !isToken(request.method) { return "invalid method \(request.method.debugDescription)" }
        if !isSafeValue(request.path) || request.path.utf8.contains(UInt8(ascii: " ")) {
            return "invalid path \(request.path.debugDescription)"
        }
        for endpoint in request.endpoints {
            let url = endpoint.baseURL
            guard hasPrefixIgnoringCase(url, "http://") || hasPrefixIgnoringCase(url, "https://"),
                  isSafeValue(url), !url.utf8.contains(UInt8(ascii: " ")) else {
                return "endpoint \(endpoint.name): base URL must start with http:// or https://"
            }
        }
        return nil
    }
}

import Foundation

/// Reads a JSONL file line by line with `getline` (one line in memory at a time), skipping blank lines; shared by
/// the tools that read exports (`eval`, `drift`).
enum JSONLLines {
    /// Calls `body` with each non-blank line's number (1-based) and bytes, or `nil` bytes for a line longer than
    /// `maxLineBytes` (reported by the caller, never held).
    static func forEach(path: String, maxLineBytes: Int, _ body: (Int, [UInt8]?) throws -> Void) throws {
        guard let file = fopen(path, "r") else {
            throw EvalError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var buffer: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(buffer) }
        var number = 0
        while true {
            let length = getline(&buffer, &capacity, file)
            if length < 0 { break }
            number += 1
            guard let buffer, length > 0 else { continue }
            guard length <= maxLineBytes else {
                try body(number, nil)
                continue
            }
            let bytes = UnsafeRawBufferPointer(start: buffer, count: length)
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { continue }
            try body(number, Array(bytes))
        }
    }
}

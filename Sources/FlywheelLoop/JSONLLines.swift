import Foundation

/// Reads a JSONL file line by line in fixed-size blocks, skipping blank lines; a line longer than the limit is
/// reported and skipped without ever being held whole. Shared by the tools that read exports (`eval`, `drift`).
enum JSONLLines {
    /// Calls `body` with each non-blank line's number (1-based) and bytes, or `nil` bytes for a line longer than
    /// `maxLineBytes`.
    static func forEach(path: String, maxLineBytes: Int, _ body: (Int, [UInt8]?) throws -> Void) throws {
        guard let file = fopen(path, "r") else {
            throw EvalError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var block = [UInt8](repeating: 0, count: 1 << 16)
        var line: [UInt8] = []
        var oversized = false
        var number = 0
        func finish() throws {
            number += 1
            defer { line.removeAll(keepingCapacity: line.count <= 1 << 20); oversized = false }
            if oversized || line.count > maxLineBytes { return try body(number, nil) }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { return }
            try body(number, line)
        }
        while true {
            let read = block.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if read == 0 { break }
            var start = 0
            for i in 0..<read where block[i] == 0x0A {
                if !oversized { line.append(contentsOf: block[start..<i]) }
                try finish()
                start = i + 1
            }
            if start < read, !oversized {
                line.append(contentsOf: block[start..<read])
                if line.count > maxLineBytes {
                    oversized = true
                    line = []
                }
            }
        }
        if !line.isEmpty || oversized { try finish() }
    }
}

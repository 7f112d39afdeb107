/// Stops the process when an invariant does not hold, so libFuzzer (or the replay) reports the input as a crash.
/// The message says which invariant; the input that broke it is what libFuzzer saves.
@inline(never)
func check(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    if !condition() { fatalError("fuzz invariant violated: \(message())", file: file, line: line) }
}

/// Reads configuration bytes off the front of a fuzz input; past the end it reads zeros.
struct FuzzBytes {
    private let bytes: [UInt8]
    private(set) var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// What has not been read.
    var rest: ArraySlice<UInt8> { bytes[min(position, bytes.count)...] }
}

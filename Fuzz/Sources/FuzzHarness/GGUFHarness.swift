import FlywheelEngine
import FlywheelTokenizer
import Foundation

/// The GGUF reader over arbitrary file bytes, then what the engine reads from an opened file (the tokenizer
/// vocabulary, the model configuration, the weights). Invariants when a file opens:
/// - header values in range: version 2 or 3, a power-of-two alignment, the data section inside the file;
/// - metadata keys unique and equal to the ordered entries, arrays nested no deeper than allowed;
/// - every tensor unique, 1...4 non-zero dimensions whose product is its element count, an aligned offset,
///   and (when its type is sized) its bytes inside the file: `withTensorBytes` hands exactly those bytes;
/// - the same file read through `mmap` from a temporary file parses to the same metadata and tensors.
/// Failures are typed (`GGUFError`, `TokenizerError`, `ModelError`), never a trap.
enum GGUFHarness {
    static func run(_ data: [UInt8]) {
        let file: GGUFFile
        do {
            file = try GGUFFile(bytes: data)
        } catch {
            check(error is GGUFError, "untyped error \(error)")
            return
        }
        checkHeader(file, size: data.count)
        checkMetadata(file)
        checkTensors(file, data)
        checkMappedCopy(file, data)
        readAsModel(file)
    }

    static func checkHeader(_ file: GGUFFile, size: Int) {
        check(file.version == 2 || file.version == 3, "version \(file.version)")
        check(file.fileSize == size, "file size \(file.fileSize) of \(size)")
        check(file.alignment > 0 && file.alignment & (file.alignment - 1) == 0, "alignment \(file.alignment)")
        check(file.dataOffset >= 24 && file.dataOffset <= size, "data offset \(file.dataOffset) of \(size)")
        if !file.tensors.isEmpty { check(file.dataOffset % file.alignment == 0, "unaligned data section") }
    }

    static func checkMetadata(_ file: GGUFFile) {
        check(file.metadata.count == file.metadataEntries.count, "duplicate metadata keys kept")
        for entry in file.metadataEntries {
            check(file.metadata[entry.key] == entry.value, "entry \(entry.key) differs from the lookup")
            check(depth(entry.value) <= GGUFFile.maximumArrayDepth, "arrays nested too deep under \(entry.key)")
        }
    }

    static func depth(_ value: GGUFValue) -> Int {
        guard case let .array(elementType, elements) = value else { return 0 }
        for element in elements { check(element.type == elementType, "array element of another type") }
        return 1 + (elements.map(depth).max() ?? 0)
    }

    static func checkTensors(_ file: GGUFFile, _ data: [UInt8]) {
        var names = Set<String>()
        for tensor in file.tensors {
            check(names.insert(tensor.name).inserted, "duplicate tensor \(tensor.name)")
            check(file.tensor(named: tensor.name) == tensor, "lookup of \(tensor.name) differs")
            check((1...GGUFFile.maximumDimensions).contains(tensor.shape.count), "\(tensor.shape.count) dimensions")
            check(tensor.shape.allSatisfy { $0 >= 1 }, "shape \(tensor.shape)")
            check(tensor.shape.reduce(1, *) == tensor.elementCount, "element count of \(tensor.shape)")
            check(tensor.offset >= 0 && tensor.offset % file.alignment == 0, "offset \(tensor.offset)")
            do {
                let bytes = try file.withTensorBytes(tensor.name) { buffer in (buffer.count, buffer.first, buffer.last) }
                guard let byteCount = tensor.byteCount else {
                    check(false, "an unsized tensor handed out its bytes")
                    return
                }
                let start = file.dataOffset + tensor.offset
                check(start + byteCount <= data.count, "tensor \(tensor.name) runs past the end of the file")
                check(bytes.0 == byteCount, "handed \(bytes.0) bytes, expected \(byteCount)")
                if byteCount > 0 {
                    check(bytes.1 == data[start] && bytes.2 == data[start + byteCount - 1], "handed other bytes")
                }
            } catch GGUFError.unsupportedTensorType {
                check(tensor.byteCount == nil, "a sized tensor refused")
            } catch {
                check(false, "withTensorBytes failed: \(error)")
            }
        }
    }

    /// The `init(path:)` route (mmap) must read what `init(bytes:)` read.
    static func checkMappedCopy(_ file: GGUFFile, _ data: [UInt8]) {
        let path = NSTemporaryDirectory() + "flywheel-fuzz-gguf-\(getpid()).gguf"
        guard FileManager.default.createFile(atPath: path, contents: Data(data)) else { return }
        defer { try? FileManager.default.removeItem(atPath: path) }
        guard let mapped = try? GGUFFile(path: path) else {
            check(false, "opens from memory but not from a file")
            return
        }
        check(mapped.metadataEntries.map(\.key) == file.metadataEntries.map(\.key)
              && mapped.metadata == file.metadata && mapped.tensors == file.tensors
              && mapped.dataOffset == file.dataOffset, "the mapped file reads differently")
    }

    /// What the engine reads from a model file; each failure must be a typed error.
    static func readAsModel(_ file: GGUFFile) {
        do {
            let tokenizer = Tokenizer(try TokenizerVocabulary(gguf: file))
            let ids = tokenizer.encode("Hello, world! <|im_start|> 123", addSpecial: true, parseSpecial: true)
            check(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.vocabularySize }, "an id outside the vocabulary")
            _ = tokenizer.decode(ids)
        } catch {
            check(error is TokenizerError, "untyped tokenizer error \(error)")
        }
        do {
            _ = try LlamaModel(file: file)
        } catch {
            check(error is ModelError || error is GGUFError, "untyped model error \(error)")
        }
    }
}

/// A GGUF (v2/v3) model file, mapped read-only and parsed up front.
///
/// Layout (all integers little-endian):
/// ```
/// u32 magic "GGUF" (bytes 47 47 55 46)   u32 version (2 or 3)
/// u64 tensor_count                       u64 metadata_kv_count
/// metadata_kv_count × { string key; u32 value_type; value }
/// tensor_count × { string name; u32 n_dims; u64 dims[n_dims]; u32 ggml_type; u64 offset }
/// padding to `general.alignment` (default 32)
/// data section: tensor i's bytes start at data_start + offset_i
/// ```
/// Opening validates everything: every count and length against the bytes left, dimensions
/// (1...4, non-zero, no overflow), duplicate keys and tensor names, the alignment, and that every
/// tensor of a supported type lies inside the data section. Tensors of other ggml types are listed
/// but `withTensorBytes` refuses them with `unsupportedTensorType`.
///
/// The mapping lives as long as this object; `deinit` unmaps it.
public final class GGUFFile: Sendable {
    /// Alignment of the data section and tensor offsets when `general.alignment` is absent.
    public static let defaultAlignment = 32
    /// Arrays may contain arrays up to this depth (1 = an array of scalars).
    public static let maximumArrayDepth = 4
    /// The largest number of dimensions a tensor may have.
    public static let maximumDimensions = 4

    public let version: UInt32
    /// Total size of the file in bytes.
    public let fileSize: Int
    /// `general.alignment` or the default.
    public let alignment: Int
    /// Byte offset of the data section from the start of the file.
    public let dataOffset: Int
    /// Metadata in file order.
    public let metadataEntries: [GGUFMetadataEntry]
    /// Metadata by key.
    public let metadata: [String: GGUFValue]
    /// The tensor table in file order.
    public let tensors: [GGUFTensorInfo]

    private let tensorIndex: [String: Int]
    private let mapping: GGUFMapping

    /// Maps and parses the file at `path`.
    public convenience init(path: String) throws {
        try self.init(mapping: GGUFMapping(path: path))
    }

    /// Parses a copy of `bytes` (for in-memory data and tests).
    public convenience init(bytes: some Collection<UInt8>) throws {
        try self.init(mapping: GGUFMapping(copying: bytes))
    }

    private init(mapping: GGUFMapping) throws {
        var cursor = GGUFCursor(mapping.bytes)

        // Header.
        let magic = try cursor.readUInt32()
        guard magic == 0x4655_4747 else { throw GGUFError.badMagic(magic) }
        let version = try cursor.readUInt32()
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(version) }
        // Smallest tensor entry: 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset).
        let tensorCount = try cursor.readCount("tensor count", minimumElementSize: 32)
        // Smallest metadata entry: 8 (key length) + 4 (type) + 1 (a one-byte value).
        let kvCount = try cursor.readCount("metadata count", minimumElementSize: 13)

        // Metadata.
        var entries: [GGUFMetadataEntry] = []
        entries.reserveCapacity(kvCount)
        var metadata: [String: GGUFValue] = [:]
        metadata.reserveCapacity(kvCount)
        for _ in 0 ..< kvCount {
            let key = try cursor.readString()
            let typeID = try cursor.readUInt32()
            guard let type = GGUFValueType(rawValue: typeID) else {
                throw GGUFError.invalidValueType(key: key, type: typeID)
            }
            let value = try Self.readValue(type, key: key, depth: 0, cursor: &cursor)
            guard metadata.updateValue(value, forKey: key) == nil else { throw GGUFError.duplicateKey(key) }
            entries.append(GGUFMetadataEntry(key: key, value: value))
        }
        let alignment = try Self.alignment(from: metadata)

        // Tensor table.
        var rawTensors: [(name: String, dims: [UInt64], type: GGUFTensorType, offset: UInt64)] = []
        rawTensors.reserveCapacity(tensorCount)
        var tensorIndex: [String: Int] = [:]
        tensorIndex.reserveCapacity(tensorCount)
        for index in 0 ..< tensorCount {
            let name = try cursor.readString()
            guard tensorIndex.updateValue(index, forKey: name) == nil else { throw GGUFError.duplicateTensor(name) }
            let dimCount = try cursor.readUInt32()
            guard dimCount >= 1, dimCount <= UInt32(Self.maximumDimensions) else {
                throw GGUFError.invalidDimensionCount(name: name, count: dimCount)
            }
            var dims: [UInt64] = []
            dims.reserveCapacity(Int(dimCount))
            for _ in 0 ..< dimCount { dims.append(try cursor.readUInt64()) }
            let type = GGUFTensorType(rawValue: try cursor.readUInt32())
            let offset = try cursor.readUInt64()
            rawTensors.append((name, dims, type, offset))
        }

        // Data section.
        let tableEnd = cursor.position
        let (padded, overflow) = tableEnd.addingReportingOverflow((alignment - tableEnd % alignment) % alignment)
        let dataOffset = overflow ? Int.max : padded
        let fileSize = mapping.bytes.count
        if !rawTensors.isEmpty, dataOffset > fileSize {
            throw GGUFError.truncated(at: tableEnd, needed: dataOffset - tableEnd)
        }
        let dataSize = max(0, fileSize - dataOffset)

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(rawTensors.count)
        for raw in rawTensors {
            tensors.append(try Self.validate(raw.name, raw.dims, raw.type, raw.offset, alignment: alignment, dataSize: dataSize))
        }

        self.version = version
        self.fileSize = fileSize
        self.alignment = alignment
        self.dataOffset = min(dataOffset, fileSize)
        self.metadataEntries = entries
        self.metadata = metadata
        self.tensors = tensors
        self.tensorIndex = tensorIndex
        self.mapping = mapping
    }

    // MARK: Metadata getters

    /// The value of a `string` key.
    public func string(_ key: String) -> String? { metadata[key]?.stringValue }

    /// The value of any integer-typed key that fits in `Int`.
    public func int(_ key: String) -> Int? { metadata[key]?.intValue }

    /// The value of a `float32` or `float64` key.
    public func float(_ key: String) -> Double? { metadata[key]?.doubleValue }

    /// The value of a `bool` key.
    public func bool(_ key: String) -> Bool? { metadata[key]?.boolValue }

    /// The elements of an `array` key.
    public func array(_ key: String) -> [GGUFValue]? { metadata[key]?.arrayValue }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`); `nil` unless every element is a string.
    public func stringArray(_ key: String) -> [String]? {
        guard case let .array(.string, elements)? = metadata[key] else { return nil }
        return elements.compactMap(\.stringValue)
    }

    // MARK: Tensors

    /// The tensor table entry named `name`.
    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// Calls `body` with the tensor's bytes inside the mapping. The buffer is valid only during
    /// the call. Throws `noSuchTensor` or `unsupportedTensorType`.
    public func withTensorBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard let info = tensor(named: name) else { throw GGUFError.noSuchTensor(name) }
        guard let byteCount = info.byteCount else {
            throw GGUFError.unsupportedTensorType(name: name, typeID: info.type.rawValue)
        }
        let start = dataOffset + info.offset  // validated at open: start + byteCount <= fileSize
        return try withExtendedLifetime(mapping) {
            try body(UnsafeRawBufferPointer(rebasing: mapping.bytes[start ..< start + byteCount]))
        }
    }

    /// Lets the pages of tensor `name`'s bytes leave resident memory (see `GGUFMapping.release`): for a tensor
    /// the model has copied into memory of its own. Its bytes stay readable.
    func releaseTensorPages(_ name: String) {
        guard let info = tensor(named: name), let byteCount = info.byteCount else { return }
        let start = dataOffset + info.offset
        mapping.release(start ..< start + byteCount)
    }

    // MARK: Parsing helpers

    private static func readValue(
        _ type: GGUFValueType, key: String, depth: Int, cursor: inout GGUFCursor
    ) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try cursor.readInteger())
        case .int8: return .int8(try cursor.readInteger())
        case .uint16: return .uint16(try cursor.readInteger())
        case .int16: return .int16(try cursor.readInteger())
        case .uint32: return .uint32(try cursor.readInteger())
        case .int32: return .int32(try cursor.readInteger())
        case .uint64: return .uint64(try cursor.readInteger())
        case .int64: return .int64(try cursor.readInteger())
        case .float32: return .float32(try cursor.readFloat32())
        case .float64: return .float64(try cursor.readFloat64())
        case .bool:
            // Any non-zero byte is true (the spec says 0 or 1; be lenient, never trap).
            return .bool(try cursor.readUInt8() != 0)
        case .string: return .string(try cursor.readString())
        case .array:
            guard depth < maximumArrayDepth else { throw GGUFError.arrayNestingTooDeep(key: key) }
            let elementTypeID = try cursor.readUInt32()
            guard let elementType = GGUFValueType(rawValue: elementTypeID) else {
                throw GGUFError.invalidValueType(key: key, type: elementTypeID)
            }
            let count = try cursor.readCount("array count", minimumElementSize: elementType.minimumEncodedSize)
            var elements: [GGUFValue] = []
            elements.reserveCapacity(count)
            for _ in 0 ..< count {
                elements.append(try readValue(elementType, key: key, depth: depth + 1, cursor: &cursor))
            }
            return .array(elementType: elementType, elements: elements)
        }
    }

    private static func alignment(from metadata: [String: GGUFValue]) throws -> Int {
        guard let value = metadata["general.alignment"] else { return defaultAlignment }
        guard let alignment = value.intValue else {
            throw GGUFError.badAlignment("not an integer (\(value.type))")
        }
        guard alignment > 0, alignment & (alignment - 1) == 0 else {
            throw GGUFError.badAlignment("\(alignment) is not a positive power of two")
        }
        return alignment
    }

    private static func validate(
        _ name: String, _ dims: [UInt64], _ type: GGUFTensorType, _ rawOffset: UInt64,
        alignment: Int, dataSize: Int
    ) throws -> GGUFTensorInfo {
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        var elements = 1
        for dim in dims {
            guard dim >= 1, let size = Int(exactly: dim) else { throw GGUFError.invalidShape(name: name, shape: dims) }
            let (product, overflow) = elements.multipliedReportingOverflow(by: size)
            guard !overflow else { throw GGUFError.invalidShape(name: name, shape: dims) }
            elements = product
            shape.append(size)
        }
        guard rawOffset % UInt64(alignment) == 0 else { throw GGUFError.misalignedTensor(name: name, offset: rawOffset) }
        guard let offset = Int(exactly: rawOffset), offset <= dataSize else { throw GGUFError.tensorOutOfBounds(name: name) }

        var byteCount: Int?
        if let layout = type.layout {
            guard shape[0] % layout.blockSize == 0 else {
                throw GGUFError.rowNotBlockAligned(name: name, rowLength: shape[0], blockSize: layout.blockSize)
            }
            let (bytes, overflow) = (elements / layout.blockSize).multipliedReportingOverflow(by: layout.blockBytes)
            guard !overflow else { throw GGUFError.invalidShape(name: name, shape: dims) }
            guard bytes <= dataSize - offset else { throw GGUFError.tensorOutOfBounds(name: name) }
            byteCount = bytes
        }
        return GGUFTensorInfo(
            name: name, shape: shape, type: type, offset: offset, elementCount: elements, byteCount: byteCount)
    }
}

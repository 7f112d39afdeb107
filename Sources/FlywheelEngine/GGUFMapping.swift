#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The bytes of one GGUF file: either a read-only private `mmap` of the file or an owned heap copy.
///
/// The memory is never written after creation and is released in `deinit`, so sharing the
/// (immutable) buffer across threads is safe; that is why this is `@unchecked Sendable`.
final class GGUFMapping: @unchecked Sendable {
    private enum Storage {
        case mapped
        case allocated
        case empty
    }

    /// All bytes of the file; `count` is the file size.
    let bytes: UnsafeRawBufferPointer
    private let storage: Storage

    /// Maps `path` read-only with `MAP_PRIVATE`.
    init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw GGUFError.io(path: path, operation: "open", errno: errno) }
        defer { _ = close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw GGUFError.io(path: path, operation: "fstat", errno: errno) }
        guard let size = Int(exactly: info.st_size), size >= 0 else {
            throw GGUFError.io(path: path, operation: "fstat", errno: EOVERFLOW)
        }
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            storage = .empty
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            throw GGUFError.io(path: path, operation: "mmap", errno: errno)
        }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
        storage = .mapped
    }

    /// Copies `source` into memory owned by the mapping (for in-memory parsing and tests).
    init(copying source: some Collection<UInt8>) {
        let count = source.count
        if count == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            storage = .empty
            return
        }
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        _ = memory.initializeMemory(as: UInt8.self, from: source)
        bytes = UnsafeRawBufferPointer(memory)
        storage = .allocated
    }

    /// Tells the kernel that the mapped pages wholly inside `range` (byte offsets) will not be read soon, so they
    /// leave the process's resident memory (`MADV_DONTNEED`; a later read maps them in again from the file). For
    /// tensors the model copied elsewhere at load. Does nothing to a heap copy.
    func release(_ range: Range<Int>) {
        guard storage == .mapped, let base = bytes.baseAddress, !range.isEmpty else { return }
        let page = max(4096, Int(sysconf(Int32(_SC_PAGESIZE))))
        let start = (Int(bitPattern: base) + range.lowerBound + page - 1) / page * page
        let end = (Int(bitPattern: base) + range.upperBound) / page * page
        guard end > start, let address = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(address, end - start, Int32(MADV_DONTNEED))
    }

    deinit {
        switch storage {
        case .mapped:
            _ = munmap(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count)
        case .allocated:
            bytes.deallocate()
        case .empty:
            break
        }
    }
}

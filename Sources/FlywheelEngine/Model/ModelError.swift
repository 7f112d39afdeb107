/// Why a GGUF file cannot be used as a model: the file is readable, but what it describes is not
/// a transformer this engine runs. Every case names the key, tensor or dimension at fault.
public enum ModelError: Error, CustomStringConvertible, Equatable, Sendable {
    /// `general.architecture` names an architecture the engine does not run.
    case unsupportedArchitecture(String)
    /// A required metadata key is absent.
    case missingMetadata(key: String)
    /// A metadata key has the wrong type or an impossible value.
    case invalidMetadata(key: String, reason: String)
    /// The model's dimensions do not fit together (e.g. heads that do not divide the embedding).
    case inconsistentDimensions(String)
    /// A tensor the architecture needs is absent.
    case missingTensor(String)
    /// A tensor's shape (GGUF order, innermost first) is not the one the configuration implies.
    case wrongShape(tensor: String, expected: [Int], found: [Int])
    /// A tensor's ggml type is one the engine cannot load: matrices may be any type with a layout
    /// (`GGUFTensorType.supported`), vectors F32, F16 or BF16.
    case unsupportedTensorType(tensor: String, type: GGUFTensorType)
    /// Converting tensor `tensor` at load needed `bytes` bytes of memory the system would not give.
    case outOfMemory(tensor: String, bytes: Int)

    public var description: String {
        switch self {
        case let .unsupportedArchitecture(name):
            return "model: unsupported architecture \"\(name)\" (supported: \(ModelArchitecture.supportedNames))"
        case let .missingMetadata(key):
            return "model: missing metadata key \"\(key)\""
        case let .invalidMetadata(key, reason):
            return "model: metadata key \"\(key)\" \(reason)"
        case let .inconsistentDimensions(detail):
            return "model: inconsistent dimensions: \(detail)"
        case let .missingTensor(name):
            return "model: missing tensor \"\(name)\""
        case let .wrongShape(tensor, expected, found):
            return "model: tensor \"\(tensor)\" has shape \(found), expected \(expected)"
        case let .outOfMemory(tensor, bytes):
            return "not enough memory to load tensor '\(tensor)': its Q8_0 form needs \(bytes) bytes"
        case let .unsupportedTensorType(tensor, type):
            let matrices = GGUFTensorType.supported.map(\.name).joined(separator: ", ")
            return "model: tensor \"\(tensor)\" has type \(type), which the engine cannot load (matrices: \(matrices); vectors: F32, F16, BF16)"
        }
    }
}

/// Writes small, valid `llama` GGUF models in memory (all tensors F32, deterministic values) that a test
/// can then break one way: drop a tensor, change a shape or type, change or drop a metadata key.
struct ModelBuilder {
    enum Value {
        case u32(UInt32)
        case f32(Float)
        case string(String)
    }

    struct Tensor {
        var name: String
        var dims: [Int]
        var type: UInt32 = 0
    }

    var metadata: [(key: String, value: Value)]
    var tensors: [Tensor]

    /// d = 32, 2 heads of 16, 1 KV head, f = 64, vocabulary 8, `layers` blocks.
    init(layers: Int = 1, tiedOutput: Bool = false) {
        metadata = [
            ("general.architecture", .string("llama")),
            ("llama.context_length", .u32(16)),
            ("llama.embedding_length", .u32(32)),
            ("llama.block_count", .u32(UInt32(layers))),
            ("llama.feed_forward_length", .u32(64)),
            ("llama.attention.head_count", .u32(2)),
            ("llama.attention.head_count_kv", .u32(1)),
            ("llama.attention.layer_norm_rms_epsilon", .f32(1e-5)),
        ]
        tensors = [Tensor(name: "token_embd.weight", dims: [32, 8])]
        for i in 0 ..< layers {
            tensors += [
                Tensor(name: "blk.\(i).attn_norm.weight", dims: [32]),
                Tensor(name: "blk.\(i).attn_q.weight", dims: [32, 32]),
                Tensor(name: "blk.\(i).attn_k.weight", dims: [32, 16]),
                Tensor(name: "blk.\(i).attn_v.weight", dims: [32, 16]),
                Tensor(name: "blk.\(i).attn_output.weight", dims: [32, 32]),
                Tensor(name: "blk.\(i).ffn_norm.weight", dims: [32]),
                Tensor(name: "blk.\(i).ffn_gate.weight", dims: [32, 64]),
                Tensor(name: "blk.\(i).ffn_up.weight", dims: [32, 64]),
                Tensor(name: "blk.\(i).ffn_down.weight", dims: [64, 32]),
            ]
        }
        tensors.append(Tensor(name: "output_norm.weight", dims: [32]))
        if !tiedOutput { tensors.append(Tensor(name: "output.weight", dims: [32, 8])) }
    }

    mutating func set(_ key: String, _ value: Value) {
        metadata.removeAll { $0.key == key }
        metadata.append((key, value))
    }

    mutating func remove(key: String) { metadata.removeAll { $0.key == key } }

    mutating func remove(tensor name: String) { tensors.removeAll { $0.name == name } }

    mutating func change(tensor name: String, dims: [Int]? = nil, type: UInt32? = nil) {
        for i in tensors.indices where tensors[i].name == name {
            if let dims { tensors[i].dims = dims }
            if let type { tensors[i].type = type }
        }
    }

    /// The GGUF bytes. F32 data is a small deterministic pattern; other types get zero bytes of the
    /// F32 size (enough for the reader, which does not size unknown types).
    func bytes() -> [UInt8] {
        var b = GGUFBuilder()
        b.header(tensors: UInt64(tensors.count), kvs: UInt64(metadata.count))
        for (key, value) in metadata {
            b.string(key)
            switch value {
            case let .u32(v): b.u32(4); b.u32(v)
            case let .f32(v): b.u32(6); b.f32(v)
            case let .string(v): b.u32(8); b.string(v)
            }
        }
        var offset = 0
        var sizes: [Int] = []
        for t in tensors {
            b.tensor(t.name, dims: t.dims.map { UInt64($0) }, type: t.type, offset: UInt64(offset))
            let elements = t.dims.reduce(1, *)
            let size = t.type == 1 ? elements * 2 : elements * 4
            sizes.append(size)
            offset += (size + 31) / 32 * 32
        }
        b.pad(to: 32)
        for (t, size) in zip(tensors, sizes) {
            let start = b.bytes.count
            if t.type == 0 {
                for i in 0 ..< size / 4 { b.f32(Float((i * 7919) % 13) / 13 - 0.5) }
            } else {
                b.zeros(size)
            }
            b.zeros((size + 31) / 32 * 32 - (b.bytes.count - start))
        }
        return b.bytes
    }
}

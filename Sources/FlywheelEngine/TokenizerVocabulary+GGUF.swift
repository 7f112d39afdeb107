import FlywheelTokenizer

extension TokenizerVocabulary {
    /// Reads the `tokenizer.ggml.*` metadata of a GGUF model file.
    ///
    /// Required: `model` and `tokens` (and `merges` for gpt2 vocabularies). Everything else is optional
    /// and left `nil` when absent. Throws `TokenizerError.missingMetadata` / `.invalidMetadata` for absent
    /// or wrongly typed keys, and the vocabulary's own validation errors.
    public init(gguf file: GGUFFile) throws {
        func string(_ key: String) throws -> String? {
            guard let value = file.metadata[key] else { return nil }
            guard let string = value.stringValue else { throw Self.wrongType(key, "a string", value) }
            return string
        }
        func strings(_ key: String) throws -> [String]? {
            guard let value = file.metadata[key] else { return nil }
            guard case let .array(.string, elements) = value else { throw Self.wrongType(key, "an array of strings", value) }
            return elements.compactMap(\.stringValue)
        }
        func numbers<T>(_ key: String, _ convert: (GGUFValue) -> T?) throws -> [T]? {
            guard let value = file.metadata[key] else { return nil }
            guard let elements = value.arrayValue else { throw Self.wrongType(key, "an array of numbers", value) }
            var result: [T] = []
            result.reserveCapacity(elements.count)
            for (index, element) in elements.enumerated() {
                guard let number = convert(element) else {
                    throw TokenizerError.invalidMetadata(key: key, reason: "element \(index) is a \(element.type)")
                }
                result.append(number)
            }
            return result
        }
        func int(_ key: String) throws -> Int? {
            guard let value = file.metadata[key] else { return nil }
            guard let int = value.intValue else { throw Self.wrongType(key, "an integer", value) }
            return int
        }
        func bool(_ key: String) throws -> Bool? {
            guard let value = file.metadata[key] else { return nil }
            guard let bool = value.boolValue else { throw Self.wrongType(key, "a bool", value) }
            return bool
        }

        let prefix = "tokenizer.ggml."
        guard let model = try string(prefix + "model") else { throw TokenizerError.missingMetadata(key: prefix + "model") }
        guard let tokens = try strings(prefix + "tokens") else { throw TokenizerError.missingMetadata(key: prefix + "tokens") }
        try self.init(
            model: model,
            preTokenizerName: try string(prefix + "pre"),
            tokens: tokens,
            scores: try numbers(prefix + "scores") { $0.doubleValue.map(Float.init) },
            tokenTypes: try numbers(prefix + "token_type") { $0.intValue.flatMap { Int32(exactly: $0) } },
            merges: try strings(prefix + "merges"),
            bosID: try int(prefix + "bos_token_id"),
            eosID: try int(prefix + "eos_token_id"),
            eotID: try int(prefix + "eot_token_id"),
            eomID: try int(prefix + "eom_token_id"),
            unknownID: try int(prefix + "unknown_token_id"),
            paddingID: try int(prefix + "padding_token_id"),
            addBOS: try bool(prefix + "add_bos_token"),
            addEOS: try bool(prefix + "add_eos_token"),
            addSpacePrefix: try bool(prefix + "add_space_prefix"))
    }

    private static func wrongType(_ key: String, _ expected: String, _ value: GGUFValue) -> TokenizerError {
        .invalidMetadata(key: key, reason: "expected \(expected), found \(value.type)")
    }
}

import FlywheelJSON

/// What drift looks at in one request, from a log row or an export line: its prompt's length, script, hashed
/// character trigrams and hashed vector, its answer's length, the tools and system prompt it came with, and
/// (for log rows) whether it failed, was refused or was rejected.
public struct DriftObservation: Sendable {
    public var promptLength: Double
    public var answerLength: Double?
    /// The prompt's dominant script: `latin`, `cyrillic`, `greek`, `arabic`, `hebrew`, `devanagari`, `han`,
    /// `kana`, `hangul`, `thai`, `other` (no letters: `none`).
    public var script: String
    /// Tool names the request offered.
    public var tools: [String]
    /// A hash of the system prompt, when there is one.
    public var systemPrompt: UInt64?
    /// Hashed character trigrams of the prompt, bucket numbers below `DriftObservation.ngramBuckets`.
    public var ngrams: [UInt16]
    /// The prompt's hashed word and trigram counts, L2-normalised (`vectorDimensions`).
    public var vector: [Float]
    /// The prompt's token ids under a local model's tokenizer, folded into `tokenBuckets` (when one was given).
    public var tokens: [UInt16]?
    /// Outcomes, known for log rows only.
    public var failed: Bool?
    public var refused: Bool?
    public var rejected: Bool?
    /// For log rows: the request's id, its error type and the start of its prompt (for outlier listings).
    public var requestID: String?
    public var errorType: String?
    public var preview: String?
    /// The prompt's text as looked at (at most `maxTextScalars`), for a model's own vector of it.
    public var text: String = ""

    public static let ngramBuckets = 512
    public static let tokenBuckets = 4_096
    public static let vectorDimensions = 64
    /// Prompt text beyond this is not looked at (the length still counts all of it).
    static let maxTextScalars = 4_000

    /// From the prompt messages, the tools offered and the answer message (any of them may be missing);
    /// `tokenize`, when given, is a local model's tokenizer (for the token unigram signal).
    public init(messages: [JSON], tools: JSON?, answer: JSON?, tokenize: ((String) -> [Int32])? = nil) {
        var promptText = ""
        var system: String?
        for m in messages {
            let text = EvalChecks.text(m["content"])
            if m["role"]?.stringValue == "system" || m["role"]?.stringValue == "developer" {
                system = (system ?? "") + text
            } else {
                promptText += text + "\n"
            }
        }
        promptLength = Double(promptText.unicodeScalars.count)
        answerLength = answer.map { Double(EvalChecks.text($0["content"]).unicodeScalars.count) }
        self.tools = (tools?.arrayValue ?? []).compactMap { $0["function"]?["name"]?.stringValue ?? $0["name"]?.stringValue }
        systemPrompt = system.map(Self.hash)
        let scalars = Array(promptText.unicodeScalars.prefix(Self.maxTextScalars))
        preview = String(String.UnicodeScalarView(scalars.prefix(120)))
        text = String(String.UnicodeScalarView(scalars))
        script = Self.dominantScript(scalars)
        (ngrams, vector) = Self.features(scalars)
        if let tokenize {
            tokens = tokenize(text).map { UInt16(UInt32(bitPattern: $0) % UInt32(Self.tokenBuckets)) }
        }
        if let answer, answer["refusal"]?.stringValue?.isEmpty == false { refused = true }
    }

    static func hash<S: StringProtocol>(_ s: S) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in s.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return NearDuplicateIndex.mix(h)
    }

    /// Character trigrams (lowercased) into buckets, and words plus trigrams hashed into a signed vector.
    static func features(_ scalars: [Unicode.Scalar]) -> ([UInt16], [Float]) {
        var buckets: [UInt16] = []
        var vector = [Float](repeating: 0, count: vectorDimensions)
        let lower = scalars.map { Unicode.Scalar($0.properties.lowercaseMapping.unicodeScalars.first?.value ?? $0.value) ?? $0 }
        if lower.count >= 3 {
            buckets.reserveCapacity(lower.count - 2)
            for i in 0...(lower.count - 3) {
                let h = NearDuplicateIndex.mix(UInt64(lower[i].value) << 42 ^ UInt64(lower[i + 1].value) << 21 ^ UInt64(lower[i + 2].value))
                buckets.append(UInt16(h % UInt64(ngramBuckets)))
                vector[Int(h >> 32) % vectorDimensions] += (h & 1 == 0) ? 1 : -1
            }
        }
        var word: UInt64 = 0xCBF2_9CE4_8422_2325
        var inWord = false
        for s in lower + [" "] {
            if s.properties.isAlphabetic || s.properties.numericType != nil {
                word = (word ^ UInt64(s.value)) &* 0x0000_0100_0000_01B3
                inWord = true
            } else if inWord {
                let h = NearDuplicateIndex.mix(word)
                vector[Int(h % UInt64(vectorDimensions))] += (h >> 63 == 0) ? 2 : -2
                word = 0xCBF2_9CE4_8422_2325
                inWord = false
            }
        }
        let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if norm > 0 { for i in vector.indices { vector[i] /= norm } }
        return (buckets, vector)
    }

    /// The script most of the prompt's letters are written in.
    static func dominantScript(_ scalars: [Unicode.Scalar]) -> String {
        var counts: [String: Int] = [:]
        for s in scalars where s.properties.isAlphabetic {
            counts[script(of: s.value), default: 0] += 1
        }
        return counts.max { ($0.value, $1.key) < ($1.value, $0.key) }?.key ?? "none"
    }

    static func script(of v: UInt32) -> String {
        switch v {
        case 0x41...0x24F, 0x1E00...0x1EFF: return "latin"
        case 0x370...0x3FF, 0x1F00...0x1FFF: return "greek"
        case 0x400...0x52F: return "cyrillic"
        case 0x590...0x5FF: return "hebrew"
        case 0x600...0x6FF, 0x750...0x77F: return "arabic"
        case 0x900...0x97F: return "devanagari"
        case 0xE00...0xE7F: return "thai"
        case 0x3040...0x30FF: return "kana"
        case 0xAC00...0xD7AF, 0x1100...0x11FF: return "hangul"
        case 0x4E00...0x9FFF, 0x3400...0x4DBF: return "han"
        default: return "other"
        }
    }
}

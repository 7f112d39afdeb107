/// How byte-level BPE text is cut into words before merging (`tokenizer.ggml.pre`).
///
/// Each case implements one family of the split regexes that Hugging Face tokenizers (and llama.cpp)
/// use, written out by hand over Unicode scalars. Names map as llama.cpp maps them:
/// - `.gpt2`: "gpt-2", "phi-2", "mpt", "olmo", "jais", "roberta-bpe", "gigachat", "jina-*", "default";
/// - `.gpt2IsolatedDigits`: "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b";
/// - `.llama3`: "llama-bpe", "llama3", "llama-v3", "falcon3", "dbrx", "smaug-bpe", "chatglm-bpe";
/// - `.qwen2`: "qwen2", "stablelm2", "megrez", "deepseek-r1-qwen";
/// - `.tekken`: "tekken".
/// Any other name (and a missing one) falls back to `.gpt2`: many names share those rules, and a
/// slightly different split still yields valid tokens; `isRecognized` tells the caller whether to warn.
/// (llama.cpp's "default" adds punctuation and three-digit splits that are not reproduced here.)
public enum PreTokenizer: Sendable, Equatable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// Every `\p{N}` character on its own, then the GPT-2 rules on the text between them.
    case gpt2IsolatedDigits
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// As `.llama3` with `\p{N}` (single digits) instead of `\p{N}{1,3}`.
    case qwen2
    /// Mistral's Tekken: words split at lower-to-upper case changes, single digits (see `splitTekken`).
    case tekken

    /// The pre-tokenizer for a `tokenizer.ggml.pre` name; unknown or missing names give `.gpt2`.
    public init(name: String?) {
        self = name.flatMap { Self.known[$0] } ?? .gpt2
    }

    /// Whether `name` is one this type maps explicitly.
    public static func isRecognized(_ name: String?) -> Bool {
        name.map { known[$0] != nil } ?? false
    }

    private static let known: [String: PreTokenizer] = {
        var map: [String: PreTokenizer] = [:]
        for name in ["default", "gpt-2", "phi-2", "mpt", "olmo", "jais", "roberta-bpe", "gigachat", "jina-es",
                     "jina-de", "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code"] { map[name] = .gpt2 }
        for name in ["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"] {
            map[name] = .gpt2IsolatedDigits
        }
        for name in ["llama-bpe", "llama3", "llama-v3", "falcon3", "dbrx", "smaug-bpe", "chatglm-bpe"] {
            map[name] = .llama3
        }
        for name in ["qwen2", "stablelm2", "megrez", "deepseek-r1-qwen"] { map[name] = .qwen2 }
        map["tekken"] = .tekken
        return map
    }()

    /// Cuts `scalars` into words; returns the end index of each word (the last is `scalars.count`).
    func split(_ scalars: [Unicode.Scalar]) -> [Int] {
        let classes = scalars.map(ScalarClass.init)
        var ends: [Int] = []
        ends.reserveCapacity(scalars.count / 3 + 1)
        switch self {
        case .gpt2:
            Self.splitGPT2(scalars, classes, 0 ..< scalars.count, into: &ends)
        case .gpt2IsolatedDigits:
            var start = 0
            for i in scalars.indices where classes[i] == .number {
                Self.splitGPT2(scalars, classes, start ..< i, into: &ends)
                ends.append(i + 1)
                start = i + 1
            }
            Self.splitGPT2(scalars, classes, start ..< scalars.count, into: &ends)
        case .llama3:
            Self.splitLlama3(scalars, classes, maximumDigits: 3, into: &ends)
        case .qwen2:
            Self.splitLlama3(scalars, classes, maximumDigits: 1, into: &ends)
        case .tekken:
            Self.splitTekken(scalars, classes, into: &ends)
        }
        return ends
    }

    /// Length of the contraction `'s 't 're 've 'm 'll 'd` at `i`, or 0.
    static func contractionLength(_ s: [Unicode.Scalar], _ i: Int, end: Int, caseInsensitive: Bool) -> Int {
        guard s[i] == "'", i + 1 < end else { return 0 }
        func lower(_ k: Int) -> UInt32 {
            let v = s[k].value
            return caseInsensitive && (0x41 ... 0x5A).contains(v) ? v + 0x20 : v
        }
        let a = lower(i + 1)
        if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return 2 }  // s t m d
        guard i + 2 < end else { return 0 }
        let b = lower(i + 2)
        if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return 3 }  // re ve ll
        return 0
    }

    /// End of the run of `class` starting at `i` (exclusive), within `end`.
    static func runEnd(_ classes: [ScalarClass], from i: Int, end: Int, where matches: (ScalarClass) -> Bool) -> Int {
        var j = i
        while j < end, matches(classes[j]) { j += 1 }
        return j
    }

    /// Where the whitespace piece starting at `i` ends, as the Llama 3 family of regexes split it:
    /// `\s*[\r\n]+` takes the run up to its last newline; otherwise `\s+(?!\S)` leaves the run's last
    /// character for the next word, and `\s+` takes a single one.
    static func whitespaceEnd(_ classes: [ScalarClass], from i: Int, end: Int) -> Int {
        let runEndIndex = runEnd(classes, from: i, end: end) { $0.isWhitespace }
        if let lastNewline = (i ..< runEndIndex).last(where: { classes[$0] == .newline }) {
            return lastNewline + 1
        } else if runEndIndex == end || runEndIndex - i == 1 {
            return runEndIndex
        } else {
            return runEndIndex - 1
        }
    }
}

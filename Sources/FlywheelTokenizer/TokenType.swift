/// The kind of one vocabulary entry (`tokenizer.ggml.token_type`; the numbers are GGUF's and SentencePiece's).
public enum TokenType: Int32, Sendable {
    /// Ordinary text.
    case normal = 1
    /// The unknown token (`<unk>`).
    case unknown = 2
    /// A control token (`<s>`, `<|im_start|>`): matched in text only when parsing special tokens,
    /// left out of decoded text when skipping special tokens.
    case control = 3
    /// A user-defined token: always matched in text before tokenizing, always decoded as its text.
    case userDefined = 4
    /// A reserved entry that is never produced and decodes to nothing.
    case unused = 5
    /// A byte-fallback token `<0xAB>` (SentencePiece) standing for one raw byte.
    case byte = 6
}

/// The tokenization algorithm a vocabulary uses (`tokenizer.ggml.model`).
public enum TokenizerModelKind: String, Sendable, CaseIterable {
    /// Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM ...): merges ranked by `tokenizer.ggml.merges`.
    case gpt2
    /// SentencePiece BPE (Llama 1/2, Mistral v0.1 ...): the best-scoring adjacent pair merges first,
    /// `<0xAB>` byte tokens for characters outside the vocabulary.
    case llama
}

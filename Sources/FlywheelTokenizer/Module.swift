/// Placeholder so the target builds; the tokenizer lands here.
enum FlywheelTokenizerModule {}

/// Placeholder so the target builds; the chat template renderer lands here.
enum FlywheelChatTemplateModule {}

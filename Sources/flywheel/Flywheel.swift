import ArgumentParser

@main
struct Flywheel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flywheel",
        abstract: "An OpenAI-compatible gateway that logs your traffic so you can own your model.",
        version: "0.1.0",
        subcommands: [ServeCommand.self, TailCommand.self, ShowCommand.self, ReportCommand.self, ExportCommand.self, EvalCommand.self, DriftCommand.self, OutliersCommand.self, CorrectionsCommand.self, PromoteCommand.self, RollbackCommand.self, PromotionsCommand.self, KeysCommand.self, GenerateCommand.self, PruneCommand.self]
    )
}

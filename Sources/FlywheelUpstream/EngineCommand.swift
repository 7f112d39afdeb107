/// A request from another thread to the curl thread, passed through the engine's Mutex-protected inbox.
enum EngineCommand {
    case start(TransferJob)
    case cancel(TransferJob)
}

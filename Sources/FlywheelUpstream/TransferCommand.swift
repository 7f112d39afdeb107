/// A request from any thread to a `TransferScheduler`, applied on the driver's loop thread: directly when issued
/// there outside a scheduler operation, deferred to the end of the current operation when issued inside one (e.g.
/// from a handler callback), or hopped there with `UpstreamEventDriver.execute` from other threads.
enum TransferCommand {
    case start(TransferJob)
    case cancel(TransferJob)
}

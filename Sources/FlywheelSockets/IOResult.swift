/// The outcome of a non-blocking system call: a value, or "not now" (EAGAIN/EWOULDBLOCK).
package enum IOResult<Value> {
    case processed(Value)
    case wouldBlock
}

// ThreadSanitizer reports races on state that one `Synchronization.Mutex` orders, once the lock is contended:
// on Linux a contended lock waits in a futex inside the (uninstrumented) Synchronization library, so TSan never
// sees the acquire. This program is correct; under TSan it prints "Swift access race" / "data race" warnings.
//   swiftc -sanitize=thread -O scripts/sanitizers/tsan_mutex_false_positive.swift -o /tmp/mutex-fp && /tmp/mutex-fp
import Foundation
import Synchronization

final class Box: Sendable { let state = Mutex<[Int]>([]) }
let box = Box()
for t in 0..<4 {
    Thread { for i in 0..<200_000 { box.state.withLock { $0.append(i + t) } } }.start()
}
while box.state.withLock({ $0.count }) < 800_000 { usleep(1000) }
print("count", box.state.withLock { $0.count })

import CFlywheelKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension ComputePool {
    /// One thread per CPU this process may actually use: the online CPUs, narrowed by the
    /// scheduler affinity mask and by a cgroup v2 CPU quota (`cpu.max`, rounded up), at least 1.
    public static var defaultThreadCount: Int {
        var count = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        #if os(Linux)
        if let allowed = affinityCPUCount() { count = min(count, allowed) }
        if let quota = cgroupCPUQuota() { count = min(count, quota) }
        #endif
        return max(1, count)
    }

    #if os(Linux)
    private static func affinityCPUCount() -> Int? {
        let count = Int(fw_affinity_cpu_count())
        return count > 0 ? count : nil
    }

    /// `ceil(quota / period)` from `/sys/fs/cgroup/cpu.max` ("max 100000" means no quota).
    private static func cgroupCPUQuota() -> Int? {
        guard let file = fopen("/sys/fs/cgroup/cpu.max", "r") else { return nil }
        defer { fclose(file) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let read = fread(&buffer, 1, buffer.count - 1, file)
        let fields = String(decoding: buffer[..<read], as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 2, let quota = Int(fields[0]), let period = Int(fields[1]), quota > 0, period > 0
        else { return nil }
        return (quota + period - 1) / period
    }
    #endif
}

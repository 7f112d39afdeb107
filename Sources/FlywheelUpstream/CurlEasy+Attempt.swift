import CCurl

extension CurlEasy {
    /// Loop thread. Sets every option of one attempt of `job` on this (freshly reset) handle. The job is the
    /// handle's CURLOPT_PRIVATE and callback data, unretained: the scheduler keeps it alive (in its `live` map)
    /// until it takes the handle off the multi and resets it, which clears these pointers.
    func configure(for job: TransferJob, configuration: UpstreamClientConfiguration, now: UInt64) {
        let h = handle
        let prepared = job.preparedCurrent()
        let userdata = Unmanaged.passUnretained(job).toOpaque()
        errorBuffer[0] = 0
        _ = prepared.url.withCString { fw_easy_setopt_str(h, CURLOPT_URL, $0) }
        _ = fw_easy_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        _ = fw_easy_setopt_long(h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1)  // a proxy's CONNECT reply is no head
        _ = fw_easy_setopt_ptr(h, CURLOPT_PRIVATE, userdata)
        _ = fw_easy_setopt_ptr(h, CURLOPT_ERRORBUFFER, errorBuffer)
        _ = fw_easy_setopt_datafn(h, CURLOPT_WRITEFUNCTION, Self.writeCallback)
        _ = fw_easy_setopt_ptr(h, CURLOPT_WRITEDATA, userdata)
        _ = fw_easy_setopt_datafn(h, CURLOPT_HEADERFUNCTION, Self.headerCallback)
        _ = fw_easy_setopt_ptr(h, CURLOPT_HEADERDATA, userdata)
        _ = fw_easy_setopt_slist(h, CURLOPT_HTTPHEADER, prepared.headerList)
        _ = configuration.userAgent.withCString { fw_easy_setopt_str(h, CURLOPT_USERAGENT, $0) }
        let timeouts = job.request.timeouts
        _ = fw_easy_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(RetryPolicy.nanos(timeouts.connect)))
        _ = fw_easy_setopt_long(h, CURLOPT_TIMEOUT_MS, Self.milliseconds(job.totalDeadline &- now))
        if !configuration.verifyTLS {
            _ = fw_easy_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 0)
            _ = fw_easy_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 0)
        }
        if let ca = configuration.caBundlePath {
            _ = ca.withCString { fw_easy_setopt_str(h, CURLOPT_CAINFO, $0) }
        }
        let method = job.request.method
        switch method {
        case "GET" where job.bodyCount == 0:
            _ = fw_easy_setopt_long(h, CURLOPT_HTTPGET, 1)
        case "POST":
            _ = fw_easy_setopt_long(h, CURLOPT_POST, 1)
            _ = fw_easy_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(job.bodyCount))
            _ = fw_easy_setopt_ptr(h, CURLOPT_POSTFIELDS, job.bodyBytes)
        case "HEAD" where job.bodyCount == 0:
            _ = fw_easy_setopt_long(h, CURLOPT_NOBODY, 1)
        default:
            if job.bodyCount > 0 {
                _ = fw_easy_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(job.bodyCount))
                _ = fw_easy_setopt_ptr(h, CURLOPT_POSTFIELDS, job.bodyBytes)
            }
            _ = method.withCString { fw_easy_setopt_str(h, CURLOPT_CUSTOMREQUEST, $0) }
        }
    }

    /// CURLOPT_WRITEFUNCTION: body bytes of the current attempt (inside `curl_multi_socket_action`).
    private static let writeCallback: fw_data_callback = { data, size, count, userdata in
        let length = size &* count
        guard let userdata, let data else { return length }
        let job = Unmanaged<TransferJob>.fromOpaque(userdata).takeUnretainedValue()
        return job.receiveBody(UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
    }

    /// CURLOPT_HEADERFUNCTION: one header line of the current attempt (inside `curl_multi_socket_action`).
    private static let headerCallback: fw_data_callback = { data, size, count, userdata in
        let length = size &* count
        guard let userdata, let data else { return length }
        let job = Unmanaged<TransferJob>.fromOpaque(userdata).takeUnretainedValue()
        if job.cancelRequested.load(ordering: .relaxed) { return 0 }
        return job.receiveHeaderLine(UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
    }

    private static func milliseconds(_ nanos: UInt64) -> Int {
        Int(max(1, min(nanos / 1_000_000, UInt64(Int32.max))))
    }
}

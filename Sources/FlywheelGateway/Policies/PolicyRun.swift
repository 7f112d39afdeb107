import FlywheelConfig
import FlywheelHTTP
import FlywheelJSON
import Synchronization

/// One request under a traffic policy: sends it to the chosen target and, when that target fails before its
/// first token, to the policy's fallbacks in order. One target answers at a time; each hand-over is recorded in
/// the decision (logged with the request, shown in its headers).
final class PolicyRun: Sendable {
    private let gateway: Gateway
    private let policy: GatewayConfiguration.TrafficPolicy
    private let object: JSONObject
    private let body: [UInt8]
    private let endpoint: InferenceEndpoint
    private let writer: any ResponseSink
    /// Fallback targets not tried yet, in order.
    private let remaining: Mutex<[String]>

    init(gateway: Gateway, policy: GatewayConfiguration.TrafficPolicy, object: JSONObject, body: [UInt8],
         endpoint: InferenceEndpoint, writer: any ResponseSink) {
        self.gateway = gateway
        self.policy = policy
        self.object = object
        self.body = body
        self.endpoint = endpoint
        self.writer = writer
        self.remaining = Mutex([])
    }

    /// Dispatches to the decision's target, then, when the policy has a shadow and admits this request, runs
    /// it on the shadow target too. On the event loop.
    func start(_ context: RequestContext) {
        let chosen = context.decision?.chosen
        remaining.withLock { $0 = policy.fallback.filter { $0 != chosen } }
        dispatch(context)
        if let shadow = policy.shadow, shadow.target != chosen { startShadow(shadow, of: context) }
    }

    /// The same request on the shadow target, answered into a `ShadowSink` and logged as its own row naming
    /// the request it shadows. Buffered (never streamed), with no fallback.
    private func startShadow(_ shadow: GatewayConfiguration.TrafficPolicy.Shadow, of primary: RequestContext) {
        let gate = gateway.shadows
        let admission = gate.admit(policy, requestID: primary.requestID,
                                   localQueued: self.gateway.localModel(named: shadow.target)?.1?.counts.queued)
        if admission != .sampledOut { gateway.metrics.shadowRun(policy: policy.model, target: shadow.target, outcome: admission.rawValue) }
        guard admission == .admitted, var decision = primary.decision else { return }
        var object = object
        object["stream"] = nil
        object["stream_options"] = nil
        let body = JSON.object(object).serialized()
        var context = primary
        context.requestID = RequestID.newUUIDv7()
        context.requestText = String(decoding: body, as: UTF8.self)
        context.stream = false
        context.shadowOf = primary.requestID
        decision.reason = .shadow
        decision.chosen = shadow.target
        decision.target = shadow.target
        decision.tried = []
        decision.shadowOf = primary.requestID
        context.decision = decision
        let policyName = policy.model
        context.onFinish = { gate.release(policyName) }
        gateway.ledger.begin(context)
        gateway.dispatch(shadow.target, object: object, body: body, endpoint: endpoint,
                         context: context, writer: ShadowSink(eventLoop: writer.eventLoop))
    }

    private func dispatch(_ context: RequestContext) {
        guard let target = context.decision?.target else { return }
        let fallback = Fallback(
            isAvailable: { [self] in remaining.withLock { $0.contains(where: gateway.canServe) } },
            takeOver: { [self] reason in takeOver(context, reason: reason) },
            firstTokenBudget: policy.firstTokenBudget)
        gateway.dispatch(target, object: object, body: body, endpoint: endpoint, context: context, writer: writer, fallback: fallback)
    }

    /// Any thread: the current target gave way; the next one that can still serve (a reload may have removed
    /// some) starts on the connection's loop.
    private func takeOver(_ context: RequestContext, reason: String) {
        guard var decision = context.decision else { return }
        decision.tried.append(.init(target: decision.target, reason: reason))
        var found: String?
        while let candidate = remaining.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
            if gateway.canServe(candidate) { found = candidate; break }
            decision.tried.append(.init(target: candidate, reason: "unavailable"))
        }
        guard let target = found else {
            // Every fallback vanished (a reload) after the exchange handed over: the request is answered here.
            var ended = context
            ended.decision = decision
            let error = OpenAIError.upstreamUnavailable("No target of the traffic policy for '\(policy.model)' is available.")
            let loop = writer.eventLoop
            let final = ended
            let finish: @Sendable () -> Void = { [gateway, writer] in gateway.ledger.reject(final, error, writer: writer) }
            if loop.inEventLoop { finish() } else { loop.execute(finish) }
            return
        }
        decision.target = target
        var next = context
        next.decision = decision
        gateway.metrics.policyFallback(policy: policy.model, from: context.decision?.target ?? "?", reason: reason)
        let loop = writer.eventLoop
        let handed = next
        if loop.inEventLoop { dispatch(handed) } else { loop.execute { self.dispatch(handed) } }
    }
}

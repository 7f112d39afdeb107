extension GatewayConfiguration {
    /// Applies `flywheel serve` flags on top of the file. `--upstream-url` adds an upstream named "default";
    /// with no routes configured it also routes every model there.
    /// `--local-model NAME=PATH` entries replace a configured local model of the same name.
    public mutating func applyOverrides(listen: String?, database: String?, upstreamURL: String?, upstreamKey: String?,
                                        localModels: [LocalModelSettings] = [], threads: Int? = nil) {
        if let listen { server.listen = listen }
        if let database { log.path = database }
        for model in localModels {
            if let i = self.localModels.firstIndex(where: { $0.name == model.name }) {
                self.localModels[i] = model
            } else {
                self.localModels.append(model)
            }
        }
        if let threads { inference.threads = threads }
        guard let upstreamURL else { return }
        var url = upstreamURL
        while url.hasSuffix("/") { url.removeLast() }
        var upstream = Upstream(name: "default", baseURL: url)
        upstream.apiKey = upstreamKey
        if let i = upstreams.firstIndex(where: { $0.name == "default" }) {
            upstreams[i] = upstream
        } else {
            upstreams.append(upstream)
        }
        if routes.isEmpty {
            routes = [Route(model: "*", upstreams: ["default"], upstreamModel: nil, name: nil)]
        }
    }
}

extension GatewayConfiguration.LocalModelSettings {
    /// Parses a `--local-model` value, `NAME=PATH`.
    public init(flag: String) throws {
        guard let eq = flag.firstIndex(of: "="), eq != flag.startIndex, flag.index(after: eq) != flag.endIndex else {
            throw ConfigurationError("--local-model expects NAME=PATH.gguf, got '\(flag)'")
        }
        self.init(name: String(flag[..<eq]), path: String(flag[flag.index(after: eq)...]))
    }
}

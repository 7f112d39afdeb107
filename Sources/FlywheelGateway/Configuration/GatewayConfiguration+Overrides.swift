extension GatewayConfiguration {
    /// Applies `flywheel serve` flags on top of the file. `--upstream-url` adds an upstream named "default";
    /// with no routes configured it also routes every model there.
    public mutating func applyOverrides(listen: String?, database: String?, upstreamURL: String?, upstreamKey: String?) {
        if let listen { server.listen = listen }
        if let database { log.path = database }
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

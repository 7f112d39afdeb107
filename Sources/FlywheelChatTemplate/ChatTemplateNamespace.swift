/// A handle to a `namespace(...)` object created during one render.
///
/// Jinja namespaces are mutable (`{% set ns.found = true %}` inside a loop is seen after it), so
/// the attributes live in the renderer's table and the value only carries the handle.
public struct ChatTemplateNamespace: Sendable, Hashable {
    let id: Int
}

/// `docs/openapi.yaml`, compiled into every service, and each service's part of it.
public enum OpenAPI {
    /// The whole document, as written in `docs/openapi.yaml`.
    public static let document = String(decoding: PackageResources.openapi_yaml, as: UTF8.self)

    /// The document with only the given paths (each a key under `paths:`, like `/orders/{id}`) and this
    /// service's server. It relies on the document's layout: path keys indented two spaces, everything under
    /// one indented further, and the top-level sections in column 0; a test keeps the document to it.
    public static func part(paths: Set<String>, service: String, port: Int) -> String {
        var lines: [Substring] = []
        var section = ""
        var keep = true
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if let first = line.first, first != " " {
                section = String(line)
                keep = true
                if section == "servers:" {
                    lines.append("servers:")
                    lines.append("  - url: http://127.0.0.1:\(port)")
                    lines.append("    description: \(service)")
                    keep = false
                    continue
                }
            } else if section == "paths:", line.hasPrefix("  "), !line.hasPrefix("   ") {
                keep = paths.contains(String(line.dropFirst(2).dropLast()))
            }
            if keep { lines.append(line) }
        }
        return lines.joined(separator: "\n")
    }

    /// The methods the document gives each of `paths`, e.g. `/orders/{id}`: `GET`. Same layout as `part`:
    /// operations are the keys indented four spaces under a path.
    public static func methods(paths: Set<String>) -> [String: [String]] {
        var methods: [String: [String]] = [:]
        var section = ""
        var path: String?
        let verbs: Set<Substring> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
        for line in document.split(separator: "\n") {
            if line.first != " " {
                section = String(line)
            } else if section == "paths:", line.hasPrefix("  "), !line.hasPrefix("   ") {
                let key = String(line.dropFirst(2).dropLast())
                path = paths.contains(key) ? key : nil
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":"), verbs.contains(line.dropFirst(4).dropLast()) {
                methods[path, default: []].append(line.dropFirst(4).dropLast().uppercased())
            }
        }
        return methods
    }

    /// The path template (`/orders/{id}`) that a request path (`/orders/ord-1`) matches, if any.
    public static func template(among templates: some Sequence<String>, matching path: String) -> String? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        return templates.first { template in
            let parts = template.split(separator: "/", omittingEmptySubsequences: false)
            return parts.count == segments.count && zip(parts, segments).allSatisfy { part, segment in
                part == segment || (part.hasPrefix("{") && part.hasSuffix("}") && !segment.isEmpty)
            }
        }
    }
}

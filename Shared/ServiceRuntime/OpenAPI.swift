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
}

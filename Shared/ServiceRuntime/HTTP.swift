import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// JSON responses, and JSON bodies for every error, so that an HTTP client always learns what to fix.
public enum JSONResponse {
    public static func make(_ status: HTTPResponse.Status, _ value: some Encodable, headers: HTTPFields = [:]) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    public static func error(_ status: HTTPResponse.Status, _ message: String, field: String? = nil, headers: HTTPFields = [:]) -> Response {
        make(status, ErrorBody(error: message, field: field), headers: headers)
    }

    struct ErrorBody: Encodable {
        let error: String
        let field: String?
    }
}

/// Turns every error a route throws (no such route, body too large, a bug) into a JSON error response. A path
/// the service has, asked with a method it does not, gets 405 and an `Allow` header naming the methods it has.
public struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Per path template, the methods it answers, as `docs/openapi.yaml` lists them.
    let allowedMethods: [String: [String]]

    public init(allowedMethods: [String: [String]] = [:]) {
        self.allowedMethods = allowedMethods
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && error.body == nil {
            let path = request.uri.path
            guard let template = OpenAPI.template(among: allowedMethods.keys, matching: path), let methods = allowedMethods[template],
                  !methods.contains(request.method.rawValue) else {
                return JSONResponse.error(.notFound, "no route for \(request.method) \(path)")
            }
            let allow = methods.joined(separator: ", ")
            return JSONResponse.error(.methodNotAllowed, "\(path) answers \(allow), not \(request.method)", headers: [.allow: allow])
        } catch let error as HTTPError {
            let message = error.body ?? (error.status == .notFound ? "no route for \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return JSONResponse.error(error.status, message)
        } catch {
            context.logger.error("request failed: \(error)")
            return JSONResponse.error(.internalServerError, "internal error: \(error)")
        }
    }
}

/// The router every service starts from: JSON errors, HTTP metrics, and the endpoints every service has:
/// `GET /health` (naming the very process that answers, so a caller can tell it from a stale one on the same
/// port), `GET /status`, `GET /metrics` and `GET /openapi.yaml`, the service's part of `docs/openapi.yaml`,
/// of which `apiPaths` are its own API's paths.
public func makeServiceRouter(context: ServiceContext, apiPaths: Set<String> = []) -> Router<BasicRequestContext> {
    let settings = context.settings
    let paths = apiPaths.union(["/health", "/status", "/metrics", "/openapi.yaml"])
    let router = Router()
    router.middlewares.add(HTTPMetricsMiddleware())
    router.middlewares.add(JSONErrorMiddleware(allowedMethods: OpenAPI.methods(paths: paths)))
    let health = Health(status: "ok", service: settings.service, instance: settings.instanceID, pid: Int(getpid()))
    router.get("/health") { _, _ in JSONResponse.make(.ok, health) }
    router.get("/status") { _, _ in JSONResponse.make(.ok, try await ServiceStatus(context)) }
    router.get("/metrics") { _, _ in
        try await ServiceStatus.refreshGauges(context)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: ServiceMetrics.exposition())))
    }
    let spec = OpenAPI.part(paths: paths, service: settings.service, port: settings.port)
    router.get("/openapi.yaml") { _, _ in
        Response(status: .ok, headers: [.contentType: "application/yaml"], body: ResponseBody(byteBuffer: ByteBuffer(string: spec)))
    }
    return router
}

struct Health: Encodable {
    let status: String
    let service: String
    let instance: String
    let pid: Int
}

/// Counts every request by method, matched route (never the raw path, which would make a label per order ID)
/// and status, and times it.
struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let route = context.endpointPath ?? "unmatched"
        let status: Int
        do {
            let response = try await next(request, context)
            status = response.status.code
            record(request, route: route, status: status, since: started)
            return response
        } catch let error as HTTPResponseError {
            record(request, route: route, status: error.status.code, since: started)
            throw error
        } catch {
            record(request, route: route, status: 500, since: started)
            throw error
        }
    }

    private func record(_ request: Request, route: String, status: Int, since started: ContinuousClock.Instant) {
        let method = request.method.rawValue
        Instruments.shared.counter("emporium_http_requests_total", [("method", method), ("route", route), ("status", String(status))]).increment()
        Instruments.shared.timer("emporium_http_request_duration_seconds", [("method", method), ("route", route)])
            .recordNanoseconds((ContinuousClock.now - started).nanoseconds)
    }
}

/// A Hummingbird application on the service's port, as a lifecycle service.
public func makeHTTPServer(router: Router<BasicRequestContext>, port: Int, logger: Logger) -> some Service {
    Application(
        router: router,
        configuration: ApplicationConfiguration(address: .hostname("0.0.0.0", port: port)),
        logger: logger)
}

extension Request {
    /// Reads a JSON body of at most `limit` bytes, after checking its content type.
    public mutating func decodeJSON<T: Decodable>(_ type: T.Type, limit: Int = 64 * 1024) async throws -> Result<T, JSONRequestError> {
        guard let contentType = headers[.contentType], contentType.lowercased().hasPrefix("application/json") else {
            return .failure(.unsupportedMediaType(headers[.contentType]))
        }
        let buffer: ByteBuffer
        do {
            buffer = try await collectBody(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            return .failure(.tooLarge(limit))
        } catch is NIOTooManyBytesError {
            return .failure(.tooLarge(limit))
        }
        do {
            return .success(try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView)))
        } catch let DecodingError.keyNotFound(key, _) {
            return .failure(.invalid("missing field '\(key.stringValue)'", field: key.stringValue))
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let field = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return .failure(.invalid("field '\(field)' has the wrong type", field: field))
        } catch {
            return .failure(.invalid("the body is not valid JSON", field: nil))
        }
    }
}

public enum JSONRequestError: Error {
    case unsupportedMediaType(String?)
    case tooLarge(Int)
    case invalid(String, field: String?)

    public var response: Response {
        switch self {
        case .unsupportedMediaType(let type):
            JSONResponse.error(.unsupportedMediaType, "send the body as application/json (got \(type ?? "no content type"))")
        case .tooLarge(let limit):
            JSONResponse.error(.contentTooLarge, "the body is larger than \(limit) bytes")
        case .invalid(let message, let field):
            JSONResponse.error(.badRequest, message, field: field)
        }
    }
}

extension HTTPField.Name {
    /// A client's key for a request it may retry; the retry gets the first answer.
    public static let idempotencyKey = Self("Idempotency-Key")!
    /// W3C trace context, carried from the request through every event it causes.
    public static let traceparent = Self("traceparent")!
}

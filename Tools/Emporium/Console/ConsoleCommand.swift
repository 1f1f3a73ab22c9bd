import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import Kafka
import Logging
import NIOCore
import ServiceRuntime
import Synchronization

struct ConsoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Serve a live page of the shop: orders per second, hop latencies, partitions and lag, dead letters, each order's journey.",
        discussion: """
        One self-contained page (no CDN, no build step) on http://127.0.0.1:<port>, updated every second over
        server-sent events. It reads every topic as a group of its own, Kafka's offsets, and the instances' /status.
        """)

    @Option(help: "The port to serve the page on (loopback only).")
    var port: Int = 8090

    @Option(name: .customLong("service"), help: "An instance's base URL, beside those registered under <var-dir>/instances; repeatable.")
    var services: [String] = []

    @OptionGroup var kafka: KafkaOptions

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be between 1 and 65535") }
    }

    func run() async throws {
        let configuration = try kafka.resolve()
        let observer = try ShopObserver(configuration: configuration, varDirectory: kafka.varDir, extraServices: services)
        do {
            try await serve(observer, configuration: configuration)
        } catch {
            await observer.shutdown()
            throw error
        }
        await observer.shutdown()
    }

    private func serve(_ observer: ShopObserver, configuration: KafkaConfiguration) async throws {
        let feed = try ConsoleFeed(configuration: configuration)
        let console = Console(observer: observer, feed: feed)
        let refresher = Task { await console.refreshEverySecond() }
        defer { refresher.cancel() }
        let app = Application(
            router: console.router(),
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { _ in print("console: http://127.0.0.1:\(port)") },
            logger: Logger(label: "emporium.console"))
        do {
            try await app.runService()
        } catch {
            await feed.stop()
            throw error
        }
        await feed.stop()
    }
}

/// The page's data, refreshed once a second however many pages watch it.
final class Console: Sendable {
    struct Frame: Codable, Sendable {
        let shop: ShopSnapshot?
        let error: String?
        let feed: ConsoleFeed.View
    }

    let observer: ShopObserver
    let feed: ConsoleFeed
    private let latest = Mutex<(snapshot: ShopSnapshot?, error: String?)>((nil, nil))

    init(observer: ShopObserver, feed: ConsoleFeed) {
        self.observer = observer
        self.feed = feed
    }

    func refreshEverySecond() async {
        while !Task.isCancelled {
            do {
                let snapshot = try await observer.snapshot()
                latest.withLock { $0 = (snapshot, nil) }
            } catch {
                latest.withLock { $0.error = "\(error)" }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    var frame: Frame {
        let (snapshot, error) = latest.withLock { $0 }
        return Frame(shop: snapshot, error: error, feed: feed.view())
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                     body: ResponseBody(byteBuffer: ByteBuffer(bytes: PackageResources.console_html)))
        }
        router.get("/snapshot") { _, _ in JSONResponse.make(.ok, self.frame) }
        router.get("/events") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: ResponseBody { writer in
                // Until the page goes away: a write to a closed connection throws and ends the stream.
                while !Task.isCancelled {
                    try await writer.write(ByteBuffer(string: "data: \(self.frame.jsonLine)\n\n"))
                    try await Task.sleep(for: .seconds(1))
                }
                try await writer.finish(nil)
            })
        }
        router.get("/api/orders/{id}") { _, context in
            let id = try context.parameters.require("id")
            guard let orders = self.latest.withLock({ $0.snapshot })?.instances.first(where: { $0.service == "order-service" && $0.status != nil }) else {
                return JSONResponse.error(.serviceUnavailable, "no order-service instance is reachable")
            }
            let response = try await self.observer.http.execute(
                HTTPClientRequest(url: "\(orders.url)/orders/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)"),
                timeout: .seconds(5))
            let body = try await response.body.collect(upTo: 1 << 20)
            return Response(status: .init(code: Int(response.status.code)), headers: [.contentType: "application/json"],
                            body: ResponseBody(byteBuffer: body))
        }
        return router
    }
}

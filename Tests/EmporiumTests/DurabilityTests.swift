import Foundation
import Testing

/// What leaves a service is on disk first (docs/runtime.md, "What is on disk before anything leaves"). A power cut
/// cannot be staged here, so this watches the system calls instead: payment- and inventory-service commit with
/// `synchronous=NORMAL`, which syncs the write-ahead log only at checkpoints, far apart; the relay's sync before
/// it publishes, and the restock's before its answer, are the syncs a short run shows.
@Suite(.serialized) struct DurabilityTests {
    /// `fdatasync`s of a service's write-ahead log, traced with strace until `body` returns.
    private func walSyncs(of services: [String], in shop: Shop, during body: () async throws -> Void) async throws -> [String: Int] {
        var tracers: [String: (ChildProcess, URL)] = [:]
        for service in services {
            let trace = shop.varDir.appendingPathComponent("\(service).strace")
            let tracer = try ChildProcess(URL(fileURLWithPath: "/usr/bin/strace"),
                                          ["-f", "-e", "trace=fdatasync,fsync", "-y", "-o", trace.path, "-p", String(shop.instances(of: service)[0].pid)],
                                          log: shop.varDir.appendingPathComponent("\(service).strace.log"))
            try await waitUntil(.seconds(10), "strace attached to \(service)") { tracer.output.contains("attached") }
            tracers[service] = (tracer, trace)
        }
        try await body()
        var syncs: [String: Int] = [:]
        for (service, (tracer, trace)) in tracers {
            tracer.stop(signal: SIGINT)
            let lines = try String(contentsOf: trace, encoding: .utf8).split(separator: "\n")
            syncs[service] = lines.filter { $0.contains("sync(") && $0.contains("\(service).sqlite-wal>") }.count
        }
        return syncs
    }

    @Test func whatTheRelayPublishesAndWhatARestockAnswersIsSyncedFirst() async throws {
        let shop = try await Shop(partitions: 2)
        let inventory = shop.url(of: "inventory-service")
        let syncs = try await walSyncs(of: ["payment-service", "inventory-service"], in: shop) {
            let run = try shop.generate(["--orders", "20", "--customers", "5", "--seed", "61", "--json"])
            #expect(run.status == 0, "\(run.output)")
            #expect(try post("\(inventory)/products/product-3/restock", "{\"quantity\":5}").code == 200)
        }
        print("write-ahead log syncs during 20 orders and a restock: \(syncs)")
        #expect(syncs["payment-service", default: 0] >= 1, "payment-service published without syncing first")
        #expect(syncs["inventory-service", default: 0] >= 2, "inventory-service published or answered a restock without syncing first")
        shop.stop()
    }
}

import DomainEvents
import Foundation
import GRDB
import Logging
import Metrics
import ServiceLifecycle

/// What a service may forget, table by table: rows that `condition` selects, walked in `key` order.
///
/// `condition` is SQL over one row, with `:cutoff` for the oldest time still kept (a `Timestamp`).
public struct RetentionRule: Sendable {
    public let table: String
    /// A column that orders the table and is unique: its primary key.
    public let key: String
    public let condition: String

    public init(table: String, key: String, condition: String) {
        self.table = table
        self.key = key
        self.condition = condition
    }

    /// The runtime's own tables. An inbox row must outlive every way its event can come back: a redelivery, a copy
    /// a relay re-sends after a crash, a dead letter replayed; so it is kept for the whole retention period, and a
    /// replay of letters older than that is refused (`emporium dlq replay`). A key's sequence (`consumedSequence`,
    /// `keySequence`) is kept for good: one row per key, however many events.
    public static let runtime = [
        RetentionRule(table: "processedEvent", key: "eventId", condition: "processedAt < :cutoff"),
        // Kept by count rather than age: an operator reads them, so the newest always stay.
        RetentionRule(table: "sequenceAnomaly", key: "id", condition: "id <= (SELECT max(id) FROM sequenceAnomaly) - 10000"),
        RetentionRule(table: "parkedOutboxRow", key: "id", condition: "id <= (SELECT max(id) FROM parkedOutboxRow) - 10000"),
    ]
}

extension RetentionRule {
    /// A table of order IDs remembered as ended (payment- and inventory-service's `endedOrder`): forgotten with the
    /// inbox, since it guards against the same late arrivals (a replayed `OrderPlaced`).
    public static let endedOrders = RetentionRule(table: "endedOrder", key: "orderId", condition: "endedAt < :cutoff")

    /// Rebuilds a table keyed by one text column `key` with a `column` that every insert stamps with the time
    /// (rows already there get the migration's time): for tables written before they had one to prune by.
    public static func addTimestamp(_ column: String, to table: String, key: String, in db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE \(table)New (\(key) TEXT NOT NULL PRIMARY KEY, \(column) TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
            INSERT INTO \(table)New (\(key)) SELECT \(key) FROM \(table);
            DROP TABLE \(table);
            ALTER TABLE \(table)New RENAME TO \(table);
            """)
    }
}

/// Forgets what the retention rules allow, in small steps off the hot path: each step deletes among at most
/// `step` consecutive keys, in its own short write transaction, so that no batch waits long for the write lock;
/// a whole pass over every table runs once per `interval`. Walking the primary key needs no index of its own,
/// which every event would have to keep up.
public final class Pruner: Service {
    private let database: DatabasePool
    private let rules: [RetentionRule]
    private let retention: Duration
    private let interval: Duration
    private let step: Int
    private let logger: Logger
    private let pruned: Counter

    public init(
        database: DatabasePool, rules: [RetentionRule], retention: Duration, interval: Duration = .seconds(60), step: Int = 500,
        logger: Logger
    ) {
        self.database = database
        self.rules = rules
        self.retention = retention
        self.interval = interval
        self.step = step
        self.logger = logger
        ServiceMetrics.bootstrap()
        pruned = Counter(label: "emporium_rows_pruned_total")
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully {
            do {
                let count = try await pass()
                if count > 0 { logger.info("pruned \(count) rows older than the retention of \(retention)") }
            } catch {
                logger.warning("pruning stopped for this pass: \(error)")
            }
            // Cut short by a graceful shutdown, which would otherwise wait out the interval.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
        }
    }

    /// One pass over every rule's table; returns the rows deleted.
    @discardableResult
    public func pass(now: Date = Date()) async throws -> Int {
        let seconds = Double(retention.components.seconds) + Double(retention.components.attoseconds) / 1e18
        let cutoff = Timestamp.format(now.addingTimeInterval(-seconds))
        var total = 0
        for rule in rules {
            var after: DatabaseValue = .null
            while !Task.isShuttingDownGracefully {
                let (deleted, last) = try await database.write { [step, after] db -> (Int, DatabaseValue?) in
                    // Two forms rather than `? IS NULL OR key > ?`, which SQLite cannot answer from the key's index.
                    let keys = after.isNull
                        ? try DatabaseValue.fetchAll(db, sql: "SELECT \(rule.key) FROM \(rule.table) ORDER BY \(rule.key) LIMIT ?", arguments: [step])
                        : try DatabaseValue.fetchAll(db, sql: """
                            SELECT \(rule.key) FROM \(rule.table) WHERE \(rule.key) > ? ORDER BY \(rule.key) LIMIT ?
                            """, arguments: [after, step])
                    guard let first = keys.first, let last = keys.last else { return (0, nil) }
                    try db.execute(sql: """
                        DELETE FROM \(rule.table) WHERE \(rule.key) >= :first AND \(rule.key) <= :last AND (\(rule.condition))
                        """, arguments: rule.condition.contains(":cutoff")
                            ? ["first": first, "last": last, "cutoff": cutoff] : ["first": first, "last": last])
                    return (db.changesCount, keys.count == step ? last : nil)
                }
                total += deleted
                guard let last else { break }
                after = last
                await Task.yield()
            }
        }
        pruned.increment(by: total)
        return total
    }
}

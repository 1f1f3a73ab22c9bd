import DomainEvents
import Foundation
import GRDB
import MailFormat
import ServiceRuntime

/// One email per order outcome. Its notification ID and Message-ID derive from the order and the outcome, so a
/// reprocessed outcome records the same email and a duplicate delivery shows.
struct Email: Codable, FetchableRecord, PersistableRecord, ListedColumns {
    static let databaseTableName = "email"
    var orderId: String
    var customerId: String
    var kind: NotificationKind
    var notificationId: String
    var messageId: String
    var subject: String
    var body: String
    var createdAt: String
    var writtenAt: String?
    var failedAt: String?
    var failureReason: String?

    init(orderId: String, customerId: String, kind: NotificationKind, subject: String, body: String) {
        self.orderId = orderId
        self.customerId = customerId
        self.kind = kind
        notificationId = "ntf-" + EventID.uuid5(name: "notification/\(orderId)/\(kind.rawValue)")
        messageId = "<\(orderId).\(kind.rawValue)@emporium.example>"
        self.subject = MailText.header(subject)
        self.body = MailText.body(body)
        createdAt = Timestamp.now()
    }

    static let columns = [
        "orderId", "customerId", "kind", "notificationId", "messageId", "subject", "body", "createdAt",
        "writtenAt", "failedAt", "failureReason",
    ]

    var values: [DatabaseValue] {
        [
            orderId.databaseValue, customerId.databaseValue, kind.rawValue.databaseValue, notificationId.databaseValue,
            messageId.databaseValue, subject.databaseValue, body.databaseValue, createdAt.databaseValue,
            writtenAt.databaseValue, failedAt.databaseValue, failureReason.databaseValue,
        ]
    }

    /// Read by hand for the reason `ListedColumns` gives: the mail writer reads every email it delivers.
    init(row: Row) throws {
        orderId = try row.decode(forColumn: "orderId")
        customerId = try row.decode(forColumn: "customerId")
        guard let kind = try row.decodeIfPresent(NotificationKind.self, forColumn: "kind") else {
            throw DatabaseError(message: "an email without a kind")
        }
        self.kind = kind
        notificationId = try row.decode(forColumn: "notificationId")
        messageId = try row.decode(forColumn: "messageId")
        subject = try row.decode(forColumn: "subject")
        body = try row.decode(forColumn: "body")
        createdAt = try row.decode(forColumn: "createdAt")
        writtenAt = try row.decode(forColumn: "writtenAt")
        failedAt = try row.decode(forColumn: "failedAt")
        failureReason = try row.decode(forColumn: "failureReason")
    }

    /// A delivered or failed email is forgotten with the inbox: only a redelivered outcome would look for it.
    static let retention = RetentionRule(
        table: databaseTableName, key: "orderId", condition: "createdAt < :cutoff AND (writtenAt IS NOT NULL OR failedAt IS NOT NULL)")

    static let sender = "orders@emporium.example"
    var recipient: String { "\(customerId)@customers.emporium.example" }

    /// The message as RFC 5322 text, with CRLF line ends.
    var rfc5322: String {
        let date = Timestamp.parse(createdAt).map(Self.rfc5322Date) ?? createdAt
        return [
            "From: Emporium <\(Self.sender)>",
            "To: <\(recipient)>",
            "Subject: \(subject)",
            "Date: \(date)",
            "Message-ID: \(messageId)",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            body.replacingOccurrences(of: "\n", with: "\r\n"),
            "",
        ].joined(separator: "\r\n")
    }

    /// The contract allows no '/' in an order ID (`ContractValues.isIdentifier`); checked again here, because
    /// a file name is no place to trust data that came from a topic.
    var fileName: String {
        let safe = ContractValues.isIdentifier(orderId) ? orderId : "order-" + EventID.uuid5(name: "mail/\(orderId)")
        return "\(safe).\(kind.rawValue).eml"
    }

    /// `Mon, 23 Nov 2026 02:32:07 +0000`, built by hand: a DateFormatter per email costs more than the email.
    static func rfc5322Date(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) +0000"
    }

    static func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("notification-1") { db in
            try db.create(table: "email") { table in
                table.primaryKey("orderId", .text)
                table.column("customerId", .text).notNull()
                table.column("kind", .text).notNull()
                table.column("notificationId", .text).notNull()
                table.column("messageId", .text).notNull().unique()
                table.column("subject", .text).notNull()
                table.column("body", .text).notNull()
                table.column("createdAt", .text).notNull()
                table.column("writtenAt", .text)
            }
            try db.create(index: "email_unwritten", on: "email", columns: ["writtenAt"])
        }
        // An email the SMTP relay refused for good is recorded as failed, with the reply, instead of blocking the rest.
        migrator.registerMigration("notification-2-failures") { db in
            try db.alter(table: "email") { table in
                table.add(column: "failedAt", .text)
                table.add(column: "failureReason", .text)
            }
        }
        // An email the relay turned away for now waits here, out of the way of the ones behind it (`MailWriter`).
        migrator.registerMigration("notification-3-retries") { db in
            try db.create(table: "emailRetry") { table in
                table.primaryKey("orderId", .text)
                table.column("attempts", .integer).notNull()
                table.column("retryAt", .text).notNull()
                table.column("lastReason", .text).notNull()
            }
        }
    }
}

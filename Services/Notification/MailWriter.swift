import DomainEvents
import Foundation
import GRDB
import Logging
import Metrics
import ServiceLifecycle
import ServiceRuntime

/// Delivers recorded emails: each becomes `<mail-dir>/<order>.<kind>.eml`, written atomically under a name
/// derived from the order, so delivering one twice (after a crash) leaves one file; with an SMTP relay, it is
/// also sent there.
///
/// Instances of notification-service share one database, so only the holder of the mail lease delivers: two
/// senders would send every email twice. Each email is recorded as delivered as soon as the relay took it, so a
/// failure later in the batch does not send it again. A relay that refuses an email for good (a 5xx reply) gets
/// it recorded as failed, with the reply, and the rest go on; a passing failure (no connection, a 4xx) is tried
/// again a second later. Only a crash between a send and its record can send an email twice, and then under
/// the same Message-ID, so the duplicate shows.
struct MailWriter: Service {
    let database: DatabasePool
    let directory: String
    let smtp: SMTPClient?
    let wakeup: Wakeup
    let logger: Logger
    let emailsSent = Counter(label: "emporium_emails_sent_total")
    let emailsFailed = Counter(label: "emporium_emails_failed_total")

    func run() async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let (path, logger) = (database.path + ".mail-lease", self.logger)
        guard let lease = try await cancelWhenGracefulShutdown({ try await Lease.acquire(at: path, logger: logger) }) else { return }
        defer { lease.release() }
        logger.info("mail lease acquired; delivering emails")
        while !Task.isShuttingDownGracefully {
            let emails = try await database.read { db in
                try Email.filter(Column("writtenAt") == nil && Column("failedAt") == nil).order(Column("createdAt")).limit(500).fetchAll(db)
            }
            guard !emails.isEmpty else {
                // Emails recorded by other instances sharing the database are noticed within this interval.
                await wakeup.wait(upTo: .milliseconds(100))
                continue
            }
            for email in emails {
                try Data(email.rfc5322.utf8).write(to: URL(fileURLWithPath: "\(directory)/\(email.fileName)"), options: .atomic)
            }
            try syncDirectory()
            let outcome = smtp.map { send(emails, through: $0) } ?? Delivery(delivered: emails, failed: [], retryLater: nil)
            try await record(outcome)
            if let error = outcome.retryLater {
                logger.error("SMTP delivery failed; retrying in a second: \(error)")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// An atomic write syncs the file's bytes, then renames it into place; the rename is durable only once the
    /// directory is synced. Once per batch, before any email of it is recorded as delivered: a power loss
    /// could otherwise keep the record and lose the file.
    private func syncDirectory() throws {
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY)
        guard descriptor >= 0 else { throw MailDirectoryError(directory: directory, operation: "open") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw MailDirectoryError(directory: directory, operation: "sync") }
    }

    struct Delivery {
        var delivered: [Email]
        var failed: [(Email, String)]
        /// Why the rest of the batch was not sent, if it was not.
        var retryLater: Error?
    }

    /// Sends one by one, on a thread of its own (the client blocks), until a passing failure stops the batch.
    private func send(_ emails: [Email], through smtp: SMTPClient) -> Delivery {
        var delivery = Delivery(delivered: [], failed: [], retryLater: nil)
        for email in emails {
            do {
                try smtp.send(from: Email.sender, to: email.recipient, message: email.rfc5322)
                delivery.delivered.append(email)
            } catch let failure as SMTPClient.Failure where failure.isPermanent {
                logger.error("the SMTP relay refused the email for \(email.orderId) for good: \(failure)")
                delivery.failed.append((email, failure.description))
            } catch {
                delivery.retryLater = error
                break
            }
        }
        return delivery
    }

    private func record(_ delivery: Delivery) async throws {
        let now = Timestamp.now()
        try await database.write { db in
            for email in delivery.delivered {
                try db.cachedStatement(sql: "UPDATE email SET writtenAt = ? WHERE orderId = ?").execute(arguments: [now, email.orderId])
            }
            for (email, reason) in delivery.failed {
                try db.execute(sql: "UPDATE email SET failedAt = ?, failureReason = ? WHERE orderId = ?", arguments: [now, reason, email.orderId])
            }
        }
        emailsSent.increment(by: delivery.delivered.count)
        emailsFailed.increment(by: delivery.failed.count)
    }
}

struct MailDirectoryError: Error, CustomStringConvertible {
    let directory: String
    let operation: String
    let reason = String(cString: strerror(errno))

    var description: String { "cannot \(operation) the mail directory \(directory): \(reason)" }
}

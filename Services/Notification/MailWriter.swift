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
/// failure later in the batch does not send it again. What the relay says decides what happens next:
/// - it refuses an email for good (a 5xx reply): the email is recorded as failed, with the reply;
/// - it turns an email away for now (a 4xx reply to its sender, recipient or content, greylisting for one): that
///   email waits, twice as long each time, while later ones go on; after `attempts` tries (by default 8, the
///   first after a minute: about two hours in all) it is parked, failed with the last reply, so a mailbox the
///   relay keeps deferring holds nothing behind it;
/// - it cannot be reached or stops answering: nothing is sent for a second, then the batch is tried again.
/// SMTP runs on a thread of its own, with timeouts (`SMTPClient.timeout`). Only a crash between a send and its
/// record can send an email twice, and then under the same Message-ID, so the duplicate shows.
struct MailWriter: Service {
    let database: DatabasePool
    let directory: String
    let smtp: SMTPClient?
    let wakeup: Wakeup
    let logger: Logger
    /// Tries of an email the relay keeps turning away before it is parked.
    let attempts: Int
    /// The wait after an email's first deferral; doubled after each later one.
    let firstRetry: Duration
    let emailsSent = Counter(label: "emporium_emails_sent_total")
    let emailsFailed = Counter(label: "emporium_emails_failed_total")
    let emailsDeferred = Counter(label: "emporium_emails_deferred_total")

    func run() async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let (path, logger) = (database.path + ".mail-lease", self.logger)
        guard let lease = try await cancelWhenGracefulShutdown({ try await Lease.acquire(at: path, logger: logger) }) else { return }
        defer { lease.release() }
        logger.info("mail lease acquired; delivering emails")
        while !Task.isShuttingDownGracefully {
            let now = Timestamp.now()
            let emails = try await database.read { db in
                try Email.fetchAll(db, sql: """
                    SELECT email.* FROM email LEFT JOIN emailRetry USING (orderId)
                    WHERE writtenAt IS NULL AND failedAt IS NULL AND (retryAt IS NULL OR retryAt <= ?)
                    ORDER BY createdAt LIMIT 500
                    """, arguments: [now])
            }
            guard !emails.isEmpty else {
                // Emails recorded by other instances sharing the database, and deferred ones coming due, are
                // noticed within this interval.
                await wakeup.wait(upTo: .milliseconds(100))
                continue
            }
            for email in emails {
                try Data(email.rfc5322.utf8).write(to: URL(fileURLWithPath: "\(directory)/\(email.fileName)"), options: .atomic)
            }
            try syncDirectory()
            let outcome: Delivery
            if let smtp {
                outcome = await onSpareThread { [logger] in Self.send(emails, through: smtp, logger: logger) }
            } else {
                outcome = Delivery(delivered: emails)
            }
            await recordUntilDone(outcome)
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

    struct Delivery: Sendable {
        var delivered: [Email]
        var failed: [(Email, String)] = []
        /// Turned away for now: each waits and is tried again.
        var deferred: [(Email, String)] = []
        /// Why the rest of the batch was not sent, if it was not.
        var retryLater: String?
    }

    /// Sends one by one, blocking, until the relay cannot be reached.
    private static func send(_ emails: [Email], through smtp: SMTPClient, logger: Logger) -> Delivery {
        var delivery = Delivery(delivered: [])
        for email in emails {
            do {
                try smtp.send(from: Email.sender, to: email.recipient, message: email.rfc5322)
                delivery.delivered.append(email)
            } catch let failure as SMTPClient.Failure where failure.isPermanent {
                logger.error("the SMTP relay refused the email for \(email.orderId) for good: \(failure)")
                delivery.failed.append((email, failure.description))
            } catch let failure as SMTPClient.Failure where failure.concernsMessage {
                logger.warning("the SMTP relay turned the email for \(email.orderId) away for now: \(failure)")
                delivery.deferred.append((email, failure.description))
            } catch {
                delivery.retryLater = "\(error)"
                break
            }
        }
        return delivery
    }

    /// Records the outcome, trying again while the database refuses: the emails are sent, and stopping the service
    /// here would send them again on its restart.
    private func recordUntilDone(_ delivery: Delivery) async {
        var failures = 0
        while true {
            do {
                try await record(delivery)
                return
            } catch {
                failures += 1
                logger.error("cannot record \(delivery.delivered.count) sent emails (attempt \(failures)); trying again: \(error)")
                // On shutdown, the rest is sent again by the next holder of the lease, under the same Message-IDs.
                if Task.isShuttingDownGracefully && failures >= 3 { return }
                try? await Task.sleep(for: .milliseconds(100) * min(1 << min(failures, 6), 50))
            }
        }
    }

    private func record(_ delivery: Delivery) async throws {
        let now = Date()
        let (attempts, firstRetry) = (self.attempts, self.firstRetry)
        let parked = try await database.write { db -> Int in
            let stamp = Timestamp.format(now)
            for email in delivery.delivered {
                try db.cachedStatement(sql: "UPDATE email SET writtenAt = ? WHERE orderId = ?").execute(arguments: [stamp, email.orderId])
            }
            for (email, reason) in delivery.failed {
                try db.execute(sql: "UPDATE email SET failedAt = ?, failureReason = ? WHERE orderId = ?", arguments: [stamp, reason, email.orderId])
            }
            var parked = 0
            for (email, reason) in delivery.deferred {
                let tried = (try Int.fetchOne(db, sql: "SELECT attempts FROM emailRetry WHERE orderId = ?", arguments: [email.orderId]) ?? 0) + 1
                if tried >= attempts {
                    try db.execute(sql: "UPDATE email SET failedAt = ?, failureReason = ? WHERE orderId = ?",
                                   arguments: [stamp, "parked after \(tried) tries; the relay last said: \(reason)", email.orderId])
                    try db.execute(sql: "DELETE FROM emailRetry WHERE orderId = ?", arguments: [email.orderId])
                    parked += 1
                } else {
                    let wait = firstRetry * (1 << min(tried - 1, 10))
                    let retryAt = now.addingTimeInterval(Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)
                    try db.execute(sql: """
                        INSERT INTO emailRetry (orderId, attempts, retryAt, lastReason) VALUES (?, ?, ?, ?)
                        ON CONFLICT (orderId) DO UPDATE SET attempts = excluded.attempts, retryAt = excluded.retryAt, lastReason = excluded.lastReason
                        """, arguments: [email.orderId, tried, Timestamp.format(retryAt), reason])
                }
            }
            return parked
        }
        emailsSent.increment(by: delivery.delivered.count)
        emailsFailed.increment(by: delivery.failed.count + parked)
        emailsDeferred.increment(by: delivery.deferred.count - parked)
    }
}

struct MailDirectoryError: Error, CustomStringConvertible {
    let directory: String
    let operation: String
    let reason = String(cString: strerror(errno))

    var description: String { "cannot \(operation) the mail directory \(directory): \(reason)" }
}

import DomainEvents
import Foundation
import GRDB
import Logging
import ServiceLifecycle
import ServiceRuntime

/// Delivers recorded emails: each becomes `<mail-dir>/<order>.<kind>.eml`, written atomically under a name
/// derived from the order, so delivering one twice (after a crash) leaves one file; with an SMTP relay, it is
/// also sent there. A send that fails is tried again later, and a crash between sending and recording sends
/// it again with the same Message-ID, so the duplicate shows.
struct MailWriter: Service {
    let database: DatabasePool
    let directory: String
    let smtp: SMTPClient?
    let wakeup: Wakeup
    let logger: Logger

    func run() async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        while !Task.isShuttingDownGracefully {
            let emails = try await database.read { db in
                try Email.filter(Column("writtenAt") == nil).limit(500).fetchAll(db)
            }
            for email in emails {
                try Data(email.rfc5322.utf8).write(to: URL(fileURLWithPath: "\(directory)/\(email.fileName)"), options: .atomic)
            }
            if let smtp, !emails.isEmpty {
                do {
                    try await send(emails, through: smtp)
                } catch {
                    logger.error("SMTP delivery failed; retrying in a second: \(error)")
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
            }
            if !emails.isEmpty {
                let written = Timestamp.now()
                try await database.write { db in
                    for email in emails {
                        try db.execute(sql: "UPDATE email SET writtenAt = ? WHERE orderId = ?", arguments: [written, email.orderId])
                    }
                }
                continue
            }
            // Emails recorded by other instances sharing the database are noticed within this interval.
            await wakeup.wait(upTo: .milliseconds(100))
        }
    }

    private func send(_ emails: [Email], through smtp: SMTPClient) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            Thread.detachNewThread {
                continuation.resume(with: Result {
                    for email in emails {
                        try smtp.send(from: Email.sender, to: email.recipient, message: email.rfc5322)
                    }
                })
            }
        }
    }
}

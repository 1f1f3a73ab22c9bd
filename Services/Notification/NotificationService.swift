import Foundation
import ArgumentParser
import Hummingbird
import Logging
import ServiceRuntime

@main
struct NotificationService: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notification-service",
        abstract: "Sends one email per order outcome, as an RFC 5322 .eml file under <var-dir>/mail.",
        discussion: "Consumes `orders`, writes `notifications`. HTTP (port 8083): GET /health, GET /notifications/{orderId}.")

    @OptionGroup var runtime: RuntimeOptions

    @Option(help: "Where emails are written (default: $MAIL_DIR, else <var-dir>/mail).")
    var mailDir: String?

    @Option(help: "Also send each email to this SMTP relay, smtp://host:port (default: $SMTP_URL; none).")
    var smtpURL: String?

    @Option(help: "Seconds before an email the relay turned away is tried again, doubled each time (default: $MAIL_RETRY_SECONDS, else 60).")
    var mailRetrySeconds: Double?

    @Option(help: "Tries of an email the relay keeps turning away before it is parked as failed (default: $MAIL_ATTEMPTS, else 8).")
    var mailAttempts: Int?

    func run() async throws {
        let settings = try runtime.resolve(service: "notification-service", defaultPort: 8083)
        let directory = mailDir ?? ProcessInfo.processInfo.environment["MAIL_DIR"] ?? "\(settings.varDirectory)/mail"
        let smtpSetting = smtpURL ?? ProcessInfo.processInfo.environment["SMTP_URL"]
        let smtp = try smtpSetting.map { url in
            guard let client = SMTPClient(url: url) else {
                throw SettingError(name: smtpURL != nil ? "--smtp-url" : "SMTP_URL", value: url, expected: "smtp://host:port")
            }
            return client
        }
        let environment = ProcessInfo.processInfo.environment
        let retryText = mailRetrySeconds.map { String($0) } ?? environment["MAIL_RETRY_SECONDS"] ?? "60"
        guard let retrySeconds = Double(retryText), retrySeconds > 0, retrySeconds <= 86_400 else {
            throw SettingError(name: mailRetrySeconds != nil ? "--mail-retry-seconds" : "MAIL_RETRY_SECONDS", value: retryText,
                               expected: "seconds above 0, at most a day")
        }
        let attemptsText = mailAttempts.map { String($0) } ?? environment["MAIL_ATTEMPTS"] ?? "8"
        guard let attempts = Int(attemptsText), (1...30).contains(attempts) else {
            throw SettingError(name: mailAttempts != nil ? "--mail-attempts" : "MAIL_ATTEMPTS", value: attemptsText, expected: "1 to 30")
        }
        let host = ServiceHost(settings: settings, handler: NotificationHandler(), topics: [.orders], migrations: Email.migrate,
                               retention: [Email.retention])
        try await host.run { context in
            let router = makeServiceRouter(context: context, apiPaths: ["/notifications/{orderId}"])
            router.get("/notifications/{orderId}") { _, request in
                let id = try request.parameters.require("orderId")
                guard let email = try await context.database.read({ db in try Email.fetchOne(db, key: id) }) else {
                    return JSONResponse.error(.notFound, "no notification for order '\(id)'", field: "orderId")
                }
                return JSONResponse.make(.ok, [
                    "orderId": email.orderId, "kind": email.kind.rawValue, "messageId": email.messageId,
                    "subject": email.subject, "file": email.writtenAt == nil ? "" : "\(directory)/\(email.fileName)",
                ])
            }
            return [
                MailWriter(database: context.database, directory: directory, smtp: smtp, wakeup: context.batchApplied, logger: context.logger,
                           attempts: attempts, firstRetry: .milliseconds(Int64(retrySeconds * 1000))),
                makeHTTPServer(router: router, port: settings.port, logger: Logger(label: "notification-service.http")),
            ]
        }
    }
}

/// How text from events becomes an email, safely: what a decline reason holds travels from payment-service
/// through `OrderCancelled.detail` into a subject and a body, and must not start a header or end SMTP's DATA
/// early. Apart from the service, so that a fuzzer can drive it (`Fuzz/`).
public enum MailText {
    /// Text for a header line: every control character (CR and LF among them, which would start a new header or
    /// the body) becomes a space.
    public static func header(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : $0 }))
    }

    /// Text for a body: line ends of any kind become LF (the message is written with CRLF), and every other
    /// control character but a tab becomes a space.
    public static func body(_ text: String) -> String {
        String(String.UnicodeScalarView(lineFeeds(text).unicodeScalars.map { scalar in
            scalar == "\n" || scalar == "\t" || scalar.properties.generalCategory != .control ? scalar : " "
        }))
    }

    /// A message as SMTP's DATA carries it (RFC 5321, 4.5.2), without the final ".": every line end, bare LF and
    /// bare CR included, made CRLF, so that no relay, strict or lenient, sees the end of the data (a line of one
    /// ".") before the real one; a line that starts with "." gets another; and a CRLF at the end.
    public static func dataSection(_ message: String) -> String {
        let lines = lineFeeds(message).split(separator: "\n", omittingEmptySubsequences: false)
        let ended = lines.last == "" ? lines.dropLast() : lines[...]
        // By bytes, not Characters: a dot followed by a combining mark is one Character that is not ".", yet the
        // relay sees a line that starts with a dot (found by fuzz-mail).
        return ended.map { $0.utf8.first == UInt8(ascii: ".") ? "." + $0 : String($0) }.map { $0 + "\r\n" }.joined()
    }

    private static func lineFeeds(_ text: String) -> String {
        // A String treats CRLF as one Character: go by scalars, so that each CR, LF or CRLF becomes one LF.
        var scalars = String.UnicodeScalarView()
        var afterCR = false
        for scalar in text.unicodeScalars {
            if scalar == "\r" {
                scalars.append("\n")
                afterCR = true
                continue
            }
            if !(scalar == "\n" && afterCR) { scalars.append(scalar) }
            afterCR = false
        }
        return String(scalars)
    }
}

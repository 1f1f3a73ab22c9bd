import FuzzSupport
import MailFormat

#if FUZZING
@_cdecl("FuzzMail_main") public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt { FuzzTarget.drive(argc, argv, check) }
#else
@main enum Replay { static func main() { FuzzTarget.replay(check) } }
#endif

/// Any text as a decline reason in an email: a header stays one line, a body has no bare CR, and the DATA
/// section ends nowhere but at its end.
func check(_ bytes: [UInt8]) -> String? {
    let text = String(decoding: bytes, as: UTF8.self)
    if MailText.header(text).unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
        return "a control character is left in a header"
    }
    if MailText.body(text).unicodeScalars.contains(where: { $0 == "\r" || ($0.properties.generalCategory == .control && $0 != "\n" && $0 != "\t") }) {
        return "a CR or control character is left in a body"
    }
    let data = Array(MailText.dataSection(text).utf8)
    guard data.isEmpty || data.suffix(2) == [13, 10] else { return "the data does not end with CRLF" }
    var line: [UInt8] = []
    for (index, byte) in data.enumerated() {
        if byte == 10 || byte == 13 {
            let crlf = byte == 13 && index + 1 < data.count && data[index + 1] == 10
            let afterCR = byte == 10 && index > 0 && data[index - 1] == 13
            guard crlf || afterCR else { return "a bare \(byte == 10 ? "LF" : "CR") in the data" }
            if crlf {
                if line == [46] { return "a line of one dot ends the data early" }
                if line.first == 46 && line.dropFirst().first != 46 { return "a line starting with a dot is not stuffed" }
                line = []
            }
        } else {
            line.append(byte)
        }
    }
    return nil
}

import Foundation
import Testing

/// Each fuzz target, built as usual, replays its committed corpus (real messages, requests and email texts, and
/// inputs fuzzing found): what once passed its check must go on passing it.
@Suite struct FuzzCorpusTests {
    @Test(arguments: ["envelope", "headers", "order-request", "mail"])
    func theCorpusPassesItsCheck(target: String) throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz/Corpus/\(target)")
        let files = try FileManager.default.contentsOfDirectory(atPath: corpus.path)
        #expect(files.count >= 3, "the \(target) corpus is nearly empty")
        let replay = try run(Executables.url("fuzz-\(target)").path, [corpus.path], timeout: .seconds(60))
        #expect(replay.status == 0, "\(replay.output)")
        #expect(replay.output.contains("\(files.count) inputs replayed, no failure"), "\(replay.output)")
    }
}

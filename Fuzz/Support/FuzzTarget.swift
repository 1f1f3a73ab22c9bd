#if FUZZING
import CLibFuzzer
#endif
import Foundation

/// What the fuzz targets share. Each target is a check over one input: nil when the code under test behaved,
/// else what went wrong. Built with libFuzzer (`-sanitize=fuzzer,address -DFUZZING`, `deploy/fuzz.sh`), the
/// target hands its check to libFuzzer's driver, which runs it on every input it makes; a failure traps, so that
/// libFuzzer saves the input. Built as usual, the target replays the files it is given (its committed corpus).
public enum FuzzTarget {
    public typealias Check = ([UInt8]) -> String?

    #if FUZZING
    /// The check libFuzzer's inputs go to: written once, by `drive`, before libFuzzer starts (on the one thread
    /// there is), and only read after; so unsynchronised.
    nonisolated(unsafe) private static var check: Check = { _ in nil }

    /// The program's entry point in a libFuzzer build. SwiftPM links every executable with its entry point named
    /// `<Target>_main`; a fuzz target defines that symbol and hands over to libFuzzer's driver here.
    public static func drive(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, _ check: @escaping Check) -> CInt {
        Self.check = check
        var count = argc
        var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
        return LLVMFuzzerRunDriver(&count, &arguments, fuzzOne)
    }

    fileprivate static func run(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
        if let failure = check(bytes) { fatalError(failure) }
        return 0
    }
    #endif

    /// Every file named on the command line, or in a directory named there; exits 1 at the first failure.
    public static func replay(_ check: Check) -> Never {
        var count = 0
        for path in CommandLine.arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                print("no such file or directory: \(path)")
                exit(2)
            }
            let files = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { "\(path)/\($0)" } : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                if let failure = check(Array(data)) {
                    print("\(file): \(failure)")
                    exit(1)
                }
                count += 1
            }
        }
        print("\(count) inputs replayed, no failure")
        exit(0)
    }
}

#if FUZZING
/// libFuzzer's own `main`, linked in with it, names this symbol too, so it is defined here, once for every target.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTarget.run(data, size)
}
#endif

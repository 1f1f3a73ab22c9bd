import ArgumentParser

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks that print figures next to a baseline measured in the same run.",
        subcommands: [ShopBench.self, KafkaBench.self, RuntimeBench.self]
    )
}

import ArgumentParser
import Foundation

struct ExperimentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experiment",
        abstract: "Run one Kafka concept on a real shop and print the evidence.",
        discussion: """
        Each experiment starts what it needs in a runtime directory of its own (an embedded cluster, the services,
        as many instances as it needs), says each step in one line as it takes it, prints the evidence as a table
        and ends with one verdict: ✔ shown, or ✘ not shown (exit status 1). It stops everything it started.
        """,
        subcommands: [ListExperiments.self, RunExperiment.self])
}

struct ListExperiments: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the experiments, each with the claim it tests.")

    func run() {
        let width = Experiments.all.map(\.name.count).max() ?? 0
        for experiment in Experiments.all {
            print(experiment.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + experiment.claim)
        }
    }
}

struct RunExperiment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run an experiment by name, or all of them one after another.")

    @Argument(help: "An experiment's name (see `emporium experiment list`), or all.")
    var name: String

    @Option(help: "Seed of the orders the experiment places: the same seed places the same orders.")
    var seed: UInt64 = 1

    @Option(help: "Directory of the emporium and service executables (default: this emporium's own).")
    var binDir: String?

    @Flag(help: "Keep the runtime directory (logs, databases, mail) instead of removing it after a verdict of shown.")
    var keep = false

    func validate() throws {
        guard name == "all" || Experiments.named(name) != nil else {
            throw ValidationError("no experiment named \(name); choose one of: \(Experiments.all.map(\.name).joined(separator: ", ")), or all")
        }
    }

    func run() async throws {
        let chosen = name == "all" ? Experiments.all : [Experiments.named(name)!]
        var failed: [String] = []
        for experiment in chosen {
            if try await !Lab.run(experiment, seed: seed, binDirectory: binDir, keep: keep) { failed.append(experiment.name) }
        }
        if chosen.count > 1 {
            print(failed.isEmpty ? "\(chosen.count) experiments: every claim shown" : "not shown: \(failed.joined(separator: ", "))")
        }
        if !failed.isEmpty { throw ExitCode.failure }
    }
}

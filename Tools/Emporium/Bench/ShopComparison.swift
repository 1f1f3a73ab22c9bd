import Foundation

/// Two builds' `bench shop` runs side by side: for each figure, every run's value, each build's median and the
/// candidate's median over the baseline's.
struct ShopComparison: Encodable {
    struct Runs: Encodable {
        let binDirectory: String
        let runs: [ShopBenchReport]
    }

    /// One figure of both builds: the runs' values in the order they ran, and the medians' ratio.
    struct Figure: Encodable {
        let figure: String
        /// Decimals the table prints: two for CPU milliseconds per order, none for rates, latencies and memory.
        let decimals: Int
        let baseline: [Double]
        let candidate: [Double]
        let baselineMedian: Double
        let candidateMedian: Double
        /// The candidate's median over the baseline's: above 1 is more orders/s, or more CPU, latency or memory.
        let ratio: Double

        /// The JSON carries the values; how many decimals a table shows is the table's business.
        enum CodingKeys: String, CodingKey { case figure, baseline, candidate, baselineMedian, candidateMedian, ratio }

        init(_ figure: String, decimals: Int = 0, baseline: [Double], candidate: [Double]) {
            self.figure = figure
            self.decimals = decimals
            self.baseline = baseline
            self.candidate = candidate
            baselineMedian = baseline.median
            candidateMedian = candidate.median
            ratio = baselineMedian == 0 ? 0 : candidateMedian / baselineMedian
        }
    }

    struct PhaseFigures: Encodable {
        let phase: String
        let figures: [Figure]
    }

    let baseline: Runs
    let candidate: Runs
    let phases: [PhaseFigures]
    let peakMemoryMB: [Figure]
    let auditsClean: Bool

    init(baseline: Runs, candidate: Runs) {
        self.baseline = baseline
        self.candidate = candidate
        phases = baseline.runs[0].phases.indices.map { index in
            func figure(_ name: String, decimals: Int = 0, _ value: (PhaseResult) -> Double) -> Figure {
                Figure(name, decimals: decimals,
                       baseline: baseline.runs.map { value($0.phases[index]) }, candidate: candidate.runs.map { value($0.phases[index]) })
            }
            let perProcess = BenchShop.processNames.map { process in
                figure("CPU ms per order, \(process)", decimals: 2) { $0.cpuMillisecondsPerOrder[process] ?? 0 }
            }
            return PhaseFigures(phase: baseline.runs[0].phases[index].phase, figures: [
                figure("orders/s to terminal") { $0.ordersPerSecond },
                figure("CPU ms per order, total", decimals: 2) { $0.cpuMillisecondsPerOrderTotal },
            ] + perProcess + [
                figure("placed → terminal p50 ms") { $0.latencyMilliseconds["p50"] ?? 0 },
                figure("placed → terminal p99 ms") { $0.latencyMilliseconds["p99"] ?? 0 },
            ])
        }
        peakMemoryMB = BenchShop.processNames.map { process in
            Figure("peak RSS MB, \(process)",
                   baseline: baseline.runs.map { $0.peakMemoryMB[process] ?? 0 }, candidate: candidate.runs.map { $0.peakMemoryMB[process] ?? 0 })
        }
        auditsClean = (baseline.runs + candidate.runs).allSatisfy(\.auditClean)
    }

    var table: String {
        let pairs = baseline.runs.count
        var text = """
        \(pairs) pair\(pairs == 1 ? "" : "s") of runs, each pair alternating which build runs first
        baseline   \(baseline.binDirectory)
        candidate  \(candidate.binDirectory)

        """
        func row(_ figure: Figure) -> [String] {
            let format = "%.\(figure.decimals)f"
            func runs(_ values: [Double], _ median: Double) -> String {
                values.map { String(format: format, $0) }.joined(separator: " ") + "  (" + String(format: format, median) + ")"
            }
            return ["  " + figure.figure, runs(figure.baseline, figure.baselineMedian), runs(figure.candidate, figure.candidateMedian),
                    String(format: "%.2f×", figure.ratio)]
        }
        for phase in phases {
            text += "\n" + textTable([phase.phase, "baseline runs (median)", "candidate runs (median)", "candidate ÷ baseline"],
                                     phase.figures.map(row))
        }
        text += "\n" + textTable(["memory", "baseline runs (median)", "candidate runs (median)", "candidate ÷ baseline"],
                                 peakMemoryMB.map(row))
        text += "\naudit: " + (auditsClean ? "clean in all \(2 * pairs) runs" : "VIOLATIONS in a run (see emporium audit)")
        return text
    }
}

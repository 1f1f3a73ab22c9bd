import Catalogue
import DomainEvents
import Foundation
import FuzzSupport
import OrderPlacement

#if FUZZING
@_cdecl("FuzzOrderRequest_main") public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt { FuzzTarget.drive(argc, argv, check) }
#else
@main enum Replay { static func main() { FuzzTarget.replay(check) } }
#endif

/// Any bytes as the body of `POST /orders`: decoding and checking never trap, and a request the checks let
/// through makes an `OrderPlaced` the contract's readers accept.
func check(_ bytes: [UInt8]) -> String? {
    guard let request = try? JSONDecoder().decode(PlaceOrder.self, from: Data(bytes)),
          request.problem(in: .standard) == nil else { return nil }
    let lines = request.lines.map { line in
        OrderLine(productId: line.productId, quantity: line.quantity, unitPriceCents: Catalogue.standard.product(line.productId)!.unitPriceCents)
    }
    let placed = OrderPlaced(orderId: "ord-0f8fad5b-d9cb-469f-a165-70867728950e", customerId: request.customerId, lines: lines,
                             totalCents: lines.reduce(0) { $0 + $1.quantity * $1.unitPriceCents }, currency: "EUR")
    return DomainEvent.orderPlaced(placed).valueViolation.map { "an accepted request makes an event the contract refuses: \($0)" }
}

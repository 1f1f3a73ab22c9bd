import Kafka
import Testing

@Suite struct Murmur2Tests {
    /// The vectors of Kafka's own `UtilsTest.testMurmur2`.
    @Test(arguments: [
        ("21", Int32(-973_932_308)),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
        ("abc", 479_470_107),
    ])
    func hashMatchesKafkasJavaClient(key: String, expected: Int32) {
        #expect(Murmur2.hash(Array(key.utf8)) == expected)
    }

    @Test func partitionIsThePositiveHashModuloTheCount() {
        // -973932308 & 0x7fffffff = 1173551340, and 1173551340 % 12 = 0.
        #expect(Murmur2.partition(for: "21", partitionCount: 12) == 1_173_551_340 % 12)
        for key in ["customer-1", "order-42", "product-7"] {
            let partition = Murmur2.partition(for: key, partitionCount: 12)
            #expect((0..<12).contains(partition))
        }
    }
}

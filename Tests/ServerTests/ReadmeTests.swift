import Foundation
import MicroSSETestSupport
import Testing

@Suite("README")
struct ReadmeTests {
    @Test("the README starts with the two commands")
    func twoCommands() throws {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        let lines = readme.split(separator: "\n", omittingEmptySubsequences: true).prefix(3)
        #expect(lines.dropFirst().first?.trimmingCharacters(in: .whitespaces).hasPrefix("make demo") == true)
        #expect(lines.dropFirst(2).first?.trimmingCharacters(in: .whitespaces).hasPrefix("make test") == true)
    }

    @Test("the README's Swift example is the compiled Examples/swift/hello-sse/main.swift")
    func swiftExampleCompiles() throws {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        let example = try String(contentsOfFile: packageRoot + "/Examples/swift/hello-sse/main.swift", encoding: .utf8)
        let marker = try #require(readme.range(of: "<!-- swift-example:"))
        let afterMarker = readme[marker.upperBound...]
        let open = try #require(afterMarker.range(of: "```swift\n"))
        let close = try #require(afterMarker[open.upperBound...].range(of: "```"))
        #expect(String(afterMarker[open.upperBound..<close.lowerBound]) == example)
    }
}

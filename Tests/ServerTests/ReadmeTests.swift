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

    @Test(
        "each Swift example in the README is the compiled file it names",
        arguments: ["Examples/swift/hello-sse/main.swift", "Examples/swift/service-group/main.swift"])
    func swiftExampleCompiles(path: String) throws {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        let example = try String(contentsOfFile: packageRoot + "/" + path, encoding: .utf8)
        let marker = try #require(readme.range(of: "<!-- swift-example: \(path) "), "README names \(path)")
        let afterMarker = readme[marker.upperBound...]
        let open = try #require(afterMarker.range(of: "```swift\n"))
        let close = try #require(afterMarker[open.upperBound...].range(of: "```"))
        #expect(String(afterMarker[open.upperBound..<close.lowerBound]) == example)
    }
}

import Testing

@testable import MicroSSEAuth

@Suite("Channel patterns")
struct PatternTests {
    func p(_ text: String) -> ChannelPattern { try! ChannelPattern(text) }

    @Test("an exact pattern matches only its own name")
    func exact() {
        #expect(p("news").kind == .exact("news"))
        #expect(p("news").matches("news"))
        #expect(!p("news").matches("news2"))
        #expect(!p("news").matches("new"))
        #expect(!p("news").matches("NEWS"))
    }

    @Test("a prefix pattern matches names starting with the prefix")
    func prefix() {
        #expect(p("user.42.*").kind == .prefix("user.42."))
        #expect(p("user.42.*").matches("user.42.x"))
        #expect(p("user.42.*").matches("user.42.inbox.urgent"))
        #expect(!p("user.42.*").matches("user.42"))
        #expect(!p("user.42.*").matches("user.420"))
        #expect(!p("user.42.*").matches("user.43.x"))
    }

    @Test("a prefix is a plain byte prefix: user.4* matches user.42")
    func prefixIsNotSegmentAware() {
        #expect(p("user.4*").matches("user.42"))
        #expect(p("user.4*").matches("user.4"))
        #expect(!p("user.4*").matches("user."))
    }

    @Test("* matches every channel")
    func all() {
        #expect(p("*").kind == .all)
        #expect(p("*").matches("a"))
        #expect(p("*").matches(String(repeating: "z", count: 128)))
    }

    @Test("a pattern is refused by the channel-name rule itself, with its reason")
    func refusedByTheOneRule() {
        for (text, reason) in [
            ("a b*", "channel name may only contain A-Z a-z 0-9 . _ ~ - (got byte 0x20)"),
            ("user/x", "channel name may only contain A-Z a-z 0-9 . _ ~ - (got '/')"),
            (String(repeating: "a", count: 129), "channel name is longer than 128 characters"),
        ] {
            #expect("\(text)") {
                try ChannelPattern(text)
            } throws: { error in
                (error as? AuthError)?.reason.hasSuffix("(\(reason))") == true
            }
        }
    }

    @Test("invalid patterns are refused at construction")
    func invalidPatterns() {
        for text in [
            "", "**", "a**", "*a", "a*b", "user.*.x", "a b", "a/b", "é", "a\u{0}", "a\n", "%41", "a?", "a,b",
            String(repeating: "a", count: 129), String(repeating: "a", count: 129) + "*",
        ] {
            #expect(throws: AuthError.self, "\(text)") { try ChannelPattern(text) }
        }
        #expect((try? ChannelPattern(String(repeating: "a", count: 128) + "*")) != nil)
        #expect((try? ChannelPattern("A-Z.a_z~0-9")) != nil)
    }

    @Test("a refused pattern's error has code invalidPattern and a one-line reason")
    func invalidPatternError() {
        do {
            _ = try ChannelPattern("a*b")
            Issue.record("accepted")
        } catch {
            #expect(error.code == .invalidPattern)
            #expect(!error.reason.contains("\n"))
        }
    }

    @Test("a pattern prints as written")
    func description() {
        #expect(["news", "user.42.*", "*"].map { p($0).description } == ["news", "user.42.*", "*"])
    }
}

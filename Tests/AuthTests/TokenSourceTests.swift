import Testing

@testable import MicroSSEAuth

@Suite("Token sources and redaction")
struct TokenSourceTests {
    func find(_ authorization: String? = nil, cookie: String? = nil, query: [(String, String)] = []) -> (
        String, TokenSource.Source
    )? {
        TokenSource.find(
            authorization: authorization, cookieHeader: cookie, query: query.map { (name: $0.0, value: $0.1) }
        ).map { ($0.token, $0.source) }
    }

    @Test("Authorization Bearer wins over cookie and query")
    func headerFirst() {
        let r = find("Bearer h.h.h", cookie: "microsseAuthorization=c.c.c", query: [("authorization", "q.q.q")])
        #expect(r?.0 == "h.h.h" && r?.1 == .authorizationHeader)
    }

    @Test("the cookie wins over the query")
    func cookieSecond() {
        let r = find(cookie: "microsseAuthorization=c.c.c", query: [("authorization", "q.q.q")])
        #expect(r?.0 == "c.c.c" && r?.1 == .cookie)
    }

    @Test("the query parameter is used last")
    func queryLast() {
        let r = find(query: [("x", "1"), ("authorization", "q.q.q"), ("authorization", "second")])
        #expect(r?.0 == "q.q.q" && r?.1 == .query)
        #expect(find(query: [("Authorization", "q")]) == nil)
    }

    @Test("no source gives no token")
    func none() {
        #expect(find() == nil)
        #expect(find(cookie: "other=1") == nil)
    }

    @Test("the Bearer scheme is case-insensitive, with any spaces around the token")
    func bearerScheme() {
        for header in ["bearer t.t.t", "BEARER t.t.t", "Bearer   t.t.t  ", "  Bearer\tt.t.t"] {
            #expect(find(header)?.0 == "t.t.t", "\(header)")
        }
    }

    @Test("an Authorization header with another scheme counts as absent")
    func otherScheme() {
        #expect(find("Basic dXNlcjpwdw==", cookie: "microsseAuthorization=c")?.1 == .cookie)
        #expect(find("Bearertoken", cookie: "microsseAuthorization=c")?.1 == .cookie)
    }

    @Test("a present but unusable token gives no token; later sources are not used instead")
    func unusableTokenStops() {
        for header in ["Bearer", "Bearer ", "Bearer a b", "Bearer a\u{0}b", "Bearer a\u{7F}", "Bearer é"] {
            #expect(find(header, cookie: "microsseAuthorization=c") == nil, "\(header)")
        }
        #expect(find(cookie: "microsseAuthorization=", query: [("authorization", "q")]) == nil)
        #expect(find(cookie: "microsseAuthorization=\"a b\"") == nil)
        #expect(find(query: [("authorization", "a\nb")]) == nil)
        #expect(find(query: [("authorization", "")]) == nil)
        #expect(find(query: [("authorization", String(repeating: "a", count: 8193))]) == nil)
        #expect(find(query: [("authorization", String(repeating: "a", count: 8192))]) != nil)
    }

    @Test("cookie parsing: several cookies, spaces, quoted values, look-alike names")
    func cookies() {
        let cases: [(String, String?)] = [
            ("a=1; microsseAuthorization=t.t.t; b=2", "t.t.t"),
            ("a=1;microsseAuthorization=t.t.t", "t.t.t"),
            ("  microsseAuthorization  =  t.t.t  ;", "t.t.t"),
            ("microsseAuthorization=\"t.t.t\"", "t.t.t"),
            ("xmicrosseAuthorization=x; microsseAuthorization=t.t.t", "t.t.t"),
            ("microsseauthorization=x", nil),
            ("microsseAuthorizationX=x", nil),
            ("junk; =; ;;microsseAuthorization=t.t.t", "t.t.t"),
            ("microsseAuthorization=first; microsseAuthorization=second", "first"),
            ("a=b=c; microsseAuthorization=t=t", "t=t"),
            ("microsseAuthorization=\"", "\""),
        ]
        for (header, expected) in cases {
            #expect(find(cookie: header)?.0 == expected, "\(header)")
        }
    }

    @Test("redaction replaces the authorization value and keeps everything else")
    func redaction() {
        let cases = [
            ("/events/news", "/events/news"),
            ("/events/news?authorization=a.b.c", "/events/news?authorization=REDACTED"),
            ("/e?x=1&authorization=a.b.c&y=2", "/e?x=1&authorization=REDACTED&y=2"),
            ("/e?authorization=a&authorization=b", "/e?authorization=REDACTED&authorization=REDACTED"),
            ("/e?Authorization=a;x=1", "/e?Authorization=REDACTED;x=1"),
            ("/e?authoriz%61tion=a", "/e?authoriz%61tion=REDACTED"),
            ("/e?authorization", "/e?authorization"),
            ("/e?authorizationx=a&xauthorization=b", "/e?authorizationx=a&xauthorization=b"),
            ("/e?authorization=a=b=c&z", "/e?authorization=REDACTED&z"),
            ("/e?", "/e?"),
            ("/e?&&authorization=t&", "/e?&&authorization=REDACTED&"),
        ]
        for (input, expected) in cases {
            #expect(TokenSource.redactedQuery(input) == expected, "\(input)")
        }
    }
}

import MicroSSE

var config = ServerConfiguration()
config.port = 8080
let server = Server(configuration: config)
try server.addRoute("GET", "/") { _ in
    .html("<script>new EventSource('/events/ticks').onmessage = e => document.body.append(e.data, ' ')</script>")
}
try server.start()
for i in 1...60 {
    try server.publish("tick \(i)", to: "ticks")  // every subscriber of GET /events/ticks gets it
    try await Task.sleep(for: .seconds(1))
}
server.stop()  // each stream ends with its final chunk

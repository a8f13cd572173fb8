/// The live page `microsse serve --web` serves at `/` (source: Examples/web/index.html).
let hubPage = """
    <!DOCTYPE html>
    <html><head><meta charset="utf-8"><title>MicroSSE hub</title></head>
    <body><h1>MicroSSE hub</h1><ul id="events"></ul>
    <script>
      var source = new EventSource("/events/demo");
      source.onmessage = function (e) {
        var li = document.createElement("li");
        li.textContent = e.lastEventId + ": " + e.data;
        document.getElementById("events").appendChild(li);
      };
    </script></body></html>
    """

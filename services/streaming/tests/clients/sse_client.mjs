// A real SSE client for services/streaming's tests: the npm `eventsource` package (WHATWG EventSource).
//
//   node sse_client.mjs <url> [--count N] [--events hydrate,patch,delete] [--header 'Name: value']...
//                             [--timeout-ms 30000]
//
// Prints one JSON line per line of interest on stdout:
//   {"type":"open"}                                  the connection (re)opened
//   {"type":"error","readyState":0,"message":"..."}  the connection dropped (0: reconnecting, 2: closed)
//   {"type":"<event>","id":"<lastEventId>","data":<parsed JSON data>}
// and exits 0 after N events (open and error lines do not count), 1 when the client closes for good,
// 2 on timeout. Headers (the SDK key, for example) go through the package's `fetch` option, the way a
// Node application would send them; a browser can only put the key in the URL.
import { EventSource } from "eventsource";

const args = process.argv.slice(2);
const url = args.shift();
if (!url) {
  console.error("usage: node sse_client.mjs <url> [--count N] [--events a,b] [--header 'Name: value'] [--timeout-ms ms]");
  process.exit(64);
}
let count = 1;
let events = ["hydrate", "patch", "delete", "values", "message"];
let timeoutMs = 30000;
const headers = {};
while (args.length > 0) {
  const flag = args.shift();
  const value = args.shift();
  if (flag === "--count") count = Number(value);
  else if (flag === "--events") events = value.split(",");
  else if (flag === "--timeout-ms") timeoutMs = Number(value);
  else if (flag === "--header") {
    const at = value.indexOf(":");
    headers[value.slice(0, at).trim()] = value.slice(at + 1).trim();
  } else {
    console.error(`unknown option ${flag}`);
    process.exit(64);
  }
}

const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

const source = new EventSource(url, {
  fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, ...headers } }),
});

let seen = 0;
source.addEventListener("open", () => print({ type: "open" }));
source.addEventListener("error", (error) => {
  print({ type: "error", readyState: source.readyState, message: error.message ?? null, code: error.code ?? null });
  if (source.readyState === EventSource.CLOSED) process.exit(1);
});
for (const name of events) {
  source.addEventListener(name, (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      data = event.data;
    }
    print({ type: event.type, id: event.lastEventId, data });
    seen += 1;
    if (seen >= count) {
      source.close();
      process.exit(0);
    }
  });
}

setTimeout(() => {
  console.error(`sse_client: timed out after ${timeoutMs} ms with ${seen} of ${count} events`);
  source.close();
  process.exit(2);
}, timeoutMs);

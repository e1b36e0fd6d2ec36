// A graphql-ws client (the protocol's reference library) that subscribes and reports, one
// JSON line each: {"event": …} per result, {"error": …}, {"complete": true}, and
// {"closed": code, "reason": …} when the socket closes. Reads nothing; the Rust test drives.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token, query, variables] = process.argv.slice(2);
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  lazy: false,
  retryAttempts: 0,
  connectionParams: token && token !== '-' ? { Authorization: `Bearer ${token}` } : {},
  on: {
    connected: () => print({ connected: true }),
    closed: (event) => {
      print({ closed: event.code, reason: event.reason });
      process.exit(0);
    },
  },
});
client.subscribe(
  { query, variables: variables ? JSON.parse(variables) : {} },
  {
    next: (result) => print({ event: result }),
    error: (error) => print({ error: error?.message ?? error?.reason ?? String(error) }),
    complete: () => print({ complete: true }),
  },
);

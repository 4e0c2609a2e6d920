// A percore guest in JavaScript: greets by name, echoes bodies, logs, reads its configuration.
//
//     GET  /?name=Ada   -> {"message":"Hello, Ada!","language":"js","user_agent":"..."}
//     POST /echo        -> the body back, with its content-type
//     GET  /fail        -> throws: the host answers 500 (trap) and logs the error and its stack
//     anything else     -> 404 {"error":"not found"}
//
// The greeting comes from the deployment's configuration (`greeting`, default "Hello").
// Built with componentize-js against the `handler` world of wit/handler.wit (see build.sh).
import { log } from 'edge:handler/log@0.1.0';
import { get as configGet } from 'edge:handler/config@0.1.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// The first value of a request header (names arrive lowercase).
function header(request, name) {
  for (const [key, value] of request.headers) {
    if (key === name) return decoder.decode(value);
  }
  return undefined;
}

function json(status, document) {
  return {
    status,
    headers: [['content-type', encoder.encode('application/json')]],
    body: encoder.encode(JSON.stringify(document)),
  };
}

function handle(request) {
  const url = new URL(request.pathWithQuery, 'http://guest.invalid');
  if (url.pathname === '/echo' && request.method === 'POST') {
    const type = header(request, 'content-type') ?? 'application/octet-stream';
    return { status: 200, headers: [['content-type', encoder.encode(type)]], body: request.body };
  }
  if (url.pathname === '/fail') throw new Error('deliberate failure, as asked');
  if (url.pathname !== '/') return json(404, { error: 'not found' });
  const name = url.searchParams.get('name') ?? 'world';
  const greeting = configGet('greeting') ?? 'Hello';
  log('info', 'greeting', [['name', name]]);
  return json(200, {
    message: `${greeting}, ${name}!`,
    language: 'js',
    user_agent: header(request, 'user-agent') ?? null,
  });
}

export const guest = {
  // JavaScript cannot hand out raw linear memory: capacity 0 tells the host to send every
  // request through `handle` (the portable path).
  inputRegion(minCapacity) {
    return { offset: 0, capacity: 0 };
  },
  handleRegion(headLen, bodyLen) {
    return json(500, { error: 'the input region is not used by this guest' });
  },
  handle,
};

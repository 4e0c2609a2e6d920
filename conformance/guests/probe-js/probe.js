// probe-js: the conformance suite's probe as an edge:handler guest written in JavaScript
// (componentize-js). It answers as the guest named by its configuration value PROBE_ROLE (see
// conformance/guests/probe-roles), so that the cases any edge:handler guest can pass run
// against a JavaScript guest too:
//
//     percore-conformance --probe edge=probe-js --host '...'
//
// Requests come through the portable path: JavaScript offers no input region (capacity 0).
import { get as configGet } from 'edge:handler/config@0.1.0';

const encoder = new TextEncoder();
const bytes = (text) => encoder.encode(text);
const TEXT = ['content-type', bytes('text/plain; charset=utf-8')];

const text = (status, body) => ({ status, headers: [TEXT], body: bytes(body) });
const json = (status, body) => ({
  status,
  headers: [['content-type', bytes('application/json')]],
  body: bytes(body),
});

const path = (request) => request.pathWithQuery.split('?')[0];
const lastSegment = (request) => path(request).split('/').pop();

// As the Rust SDK finds it: split on `&`, then on the first `=`, nothing decoded.
function queryParam(request, name) {
  const at = request.pathWithQuery.indexOf('?');
  if (at < 0) return undefined;
  for (const pair of request.pathWithQuery.slice(at + 1).split('&')) {
    const eq = pair.indexOf('=');
    const [key, value] = eq < 0 ? [pair, ''] : [pair.slice(0, eq), pair.slice(eq + 1)];
    if (key === name) return value;
  }
  return undefined;
}

function number(request, name, otherwise) {
  const value = queryParam(request, name);
  return value !== undefined && /^-?[0-9]+$/.test(value) ? Number(value) : otherwise;
}

function echo(request) {
  const type = request.headers.find(([name]) => name === 'content-type');
  const headers = [
    ['content-type', type ? type[1] : bytes('application/octet-stream')],
    ['x-echo-method', bytes(request.method)],
    ['x-echo-path', bytes(request.pathWithQuery)],
    ...request.headers.map(([name, value]) => [`x-echo-h-${name}`, value]),
  ];
  return { status: 200, headers, body: request.body };
}

// Unbounded on purpose: the engine's "too much recursion", uncaught, ends the call.
function recurse(depth) {
  return recurse(depth + 1) + depth;
}

const hoard = [];

function hostile(request) {
  switch (lastSegment(request)) {
    case 'ok':
      return text(200, 'ok');
    case 'loop': {
      let counter = 0;
      for (;;) counter++;
    }
    case 'grow':
      for (;;) hoard.push(new Uint8Array(1 << 20).fill(1)); // until the memory cap refuses
    case 'recurse':
      return text(200, String(recurse(0)));
    case 'panic':
      throw new Error('deliberate panic');
    case 'big':
      return { status: 200, headers: [], body: new Uint8Array(number(request, 'mb', 32) << 20).fill(120) };
    case 'status': {
      const code = number(request, 'code', 200);
      if (code === 204 || code === 304) {
        return { status: code, headers: [['x-status', bytes(String(code))]], body: new Uint8Array() };
      }
      return text(code, `status ${code}\n`);
    }
    case 'body-on-204':
      return text(204, 'a 204 must not have a body');
    case 'bad-header':
      return { status: 200, headers: [TEXT, ['x-bad', bytes('line\r\nbreak')]], body: bytes('x') };
    case 'bad-header-name':
      return { status: 200, headers: [TEXT, ['bad name', bytes('v')]], body: bytes('x') };
    case 'framing':
      return {
        status: 200,
        headers: [
          TEXT,
          ['content-length', bytes('9999')],
          ['transfer-encoding', bytes('chunked')],
          ['connection', bytes('close')],
        ],
        body: bytes('framed by the host'),
      };
    default:
      return text(404, 'unknown behaviour');
  }
}

// What a request leaves here must not reach the next one.
let counter = 0;
const buffer = new Uint8Array(4096);

function stateful(request) {
  switch (lastSegment(request)) {
    case 'count':
      counter += 1;
      return text(200, String(counter));
    case 'peek': {
      const seen = Array.from(buffer.subarray(0, 16), (b) => b.toString(16).padStart(2, '0')).join('');
      buffer.set(bytes('previous-request'));
      return text(200, seen);
    }
    default:
      return text(404, 'unknown');
  }
}

function jsonApi(request) {
  if (path(request) === '/health') {
    if (request.method === 'GET') return json(200, '{"status":"ok"}');
    const response = json(405, '{"error":"method not allowed"}');
    response.headers.push(['allow', bytes('GET')]);
    return response;
  }
  return json(404, '{"error":"not found"}');
}

const roles = {
  echo,
  hello: () => text(200, 'Hello from percore!\n'),
  hostile,
  stateful,
  'json-api': jsonApi,
};

export const guest = {
  inputRegion(minCapacity) {
    return { offset: 0, capacity: 0 };
  },
  handleRegion(headLen, bodyLen) {
    return text(500, 'probe-js offers no input region\n');
  },
  handle(request) {
    const role = configGet('PROBE_ROLE') ?? '';
    const respond = roles[role];
    if (!respond) {
      return text(500, `probe: PROBE_ROLE=${JSON.stringify(role)} names no role (set it in the deployment's config)\n`);
    }
    return respond(request);
  },
};

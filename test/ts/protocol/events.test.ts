import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseWorkerEvent } from '../../../src/protocol/events.js';

test('well-formed events of every kind are recognised', () => {
  const lines = [
    '{"event":"progress","done":3,"total":10,"unit":"shards"}',
    '{"event":"progress","done":0}',
    '{"event":"metric","step":1,"loss":"NaN"}',
    '{"event":"log","level":"info","msg":"hello"}',
    '{"event":"done"}',
    '{"event":"error","msg":"bad","traceback":"..."}',
  ];
  for (const line of lines) assert.deepEqual(parseWorkerEvent(line), JSON.parse(line));
  assert.deepEqual(parseWorkerEvent('  {"event":"done","x":1}\r'), { event: 'done', x: 1 });
});

test('lines that are not well-formed events are refused, not thrown on', () => {
  for (const line of [
    '',
    'hello world',
    '[1,2]',
    'null',
    '{"event":"progress"}',
    '{"event":"progress","done":"3"}',
    '{"event":"progress","done":1,"total":"many"}',
    '{"event":"log","msg":"no level"}',
    '{"event":"error"}',
    '{"event":"telemetry","x":1}',
    '{"not":"an event"}',
    '{"event":"done"',
  ]) {
    assert.equal(parseWorkerEvent(line), undefined, line);
  }
});

test('property: parsing never throws on arbitrary text', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json(), fc.constantFrom('{"event":', '{"event":"log","level":1,"msg":2}')), (line) => {
      const event = parseWorkerEvent(line);
      assert.ok(event === undefined || typeof event.event === 'string');
    }),
    { numRuns: 500 },
  );
});

test('property: every serialised progress/log/error event parses back to itself', () => {
  const extra = fc.dictionary(fc.string().filter((k) => k !== 'event' && k !== '__proto__'), fc.jsonValue(), { maxKeys: 4 });
  const event = fc.oneof(
    fc.record({ done: fc.double({ noNaN: true, noDefaultInfinity: true }), total: fc.nat() }).map((e) => ({ event: 'progress', ...e })),
    fc.record({ level: fc.constantFrom('debug', 'info', 'warning', 'error'), msg: fc.string() }).map((e) => ({ event: 'log', ...e })),
    fc.tuple(fc.string(), extra).map(([msg, rest]) => ({ ...rest, event: 'error', msg })),
    extra.map((rest) => ({ ...rest, event: 'metric' })),
  );
  fc.assert(
    fc.property(event, (e) => {
      const expected = JSON.parse(JSON.stringify(e)); // -0 and the like as JSON has them
      assert.deepEqual(parseWorkerEvent(JSON.stringify(e)), expected);
    }),
    { numRuns: 300 },
  );
});

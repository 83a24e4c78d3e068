// The chat session (history, /image, /reset, refused requests) and the worker process it talks to,
// against python/tests/fixtures/fake_chat_worker.py: the real protocol and dispatch, no model. Its
// answers describe the request it received, so each test sees what the client sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChatSession, parseSessionLine, type SessionReply } from '../../../src/infer/chatSession.js';
import { ChatInterrupted, ChatWorker, type ChatWorkerOptions } from '../../../src/infer/chatWorker.js';
import { WorkerError } from '../../../src/protocol/worker.js';
import { PYTHON_TESTS_DIR } from '../protocol/helpers.js';

function fakeModel(): { dir: string; model: string; image: (name: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'loom-chat-'));
  const model = join(dir, 'export');
  mkdirSync(model);
  writeFileSync(join(model, 'loom.json'), '{}');
  const image = (name: string) => {
    const path = join(dir, name);
    writeFileSync(path, 'not really an image; the fake worker only checks that it exists');
    return path;
  };
  return { dir, model, image, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function options(model: string, extra: Partial<ChatWorkerOptions> = {}): ChatWorkerOptions {
  const stderr: string[] = [];
  return {
    model,
    module: 'fixtures.fake_chat_worker',
    cwd: PYTHON_TESTS_DIR,
    env: { PYTHONPATH: PYTHON_TESTS_DIR },
    onStderr: (text) => stderr.push(text),
    ...extra,
  };
}

function answer(reply: SessionReply): string {
  assert.equal(reply.kind, 'answer', JSON.stringify(reply));
  return (reply as Extract<SessionReply, { kind: 'answer' }>).text;
}

test('session lines: questions, commands, and // for a question that starts with a slash', () => {
  assert.deepEqual(parseSessionLine('  How many?  '), { kind: 'ask', text: 'How many?' });
  assert.deepEqual(parseSessionLine('/image  my pics/a b.jpg '), { kind: 'image', path: 'my pics/a b.jpg' });
  assert.deepEqual(parseSessionLine('/reset'), { kind: 'reset' });
  assert.deepEqual(parseSessionLine('/exit'), { kind: 'exit' });
  assert.deepEqual(parseSessionLine('//etc/passwd is a path'), { kind: 'ask', text: '/etc/passwd is a path' });
  assert.deepEqual(parseSessionLine(''), { kind: 'empty' });
  assert.equal(parseSessionLine('/image').kind, 'unknown');
  assert.equal(parseSessionLine('/frobnicate x').kind, 'unknown');
});

test('a session keeps the history, /image starts a new conversation, /reset clears it, a refused request changes nothing', async () => {
  const m = fakeModel();
  const first = m.image('first.jpg');
  const second = m.image('second.png');
  const { worker, ready } = await ChatWorker.start(options(m.model));
  try {
    assert.deepEqual(ready, { model: m.model, prompt_format: 'chatml', stage: 'sft' });
    const session = new ChatSession(worker, { image: first, system: 'Be brief.', cwd: m.dir });
    const tokens: string[] = [];
    assert.equal(answer(await session.input('How many shapes?', (t) => tokens.push(t))), '2 messages (su); image first.jpg; you said: How many shapes?');
    assert.equal(tokens.join(''), '2 messages (su); image first.jpg; you said: How many shapes?', 'the streamed tokens add up to the answer');
    // The second turn sends system, user, assistant, user: the whole conversation.
    assert.equal(answer(await session.input('And their colours?')), '4 messages (suau); image first.jpg; you said: And their colours?');
    assert.deepEqual(session.history.map((x) => x.role), ['system', 'user', 'assistant', 'user', 'assistant']);
    assert.equal(session.history[2]!.content, '2 messages (su); image first.jpg; you said: How many shapes?');

    // A refused request: the reason comes back, the conversation is as it was, the next turn works.
    const refused = await session.input('this is TOO LONG for the model');
    assert.deepEqual(refused, { kind: 'error', message: "the conversation is longer than the model's context" });
    assert.equal(session.history.length, 5);
    assert.equal(answer(await session.input('Still there?')), '6 messages (suauau); image first.jpg; you said: Still there?');

    // /image with a missing file: an error, and the image and history stay.
    const missing = await session.input('/image nope.jpg');
    assert.equal(missing.kind, 'error');
    assert.match((missing as { message: string }).message, /nope\.jpg: no such file/);
    assert.equal(session.image, first);
    assert.equal(session.history.length, 7);

    // /image (relative to the session's folder) starts a new conversation about the new image.
    assert.equal((await session.input('/image second.png')).kind, 'info');
    assert.equal(session.image, second);
    assert.equal(answer(await session.input('What now?')), '2 messages (su); image second.png; you said: What now?');

    // /reset keeps the image but forgets the turns.
    assert.equal((await session.input('/reset')).kind, 'info');
    assert.equal(answer(await session.input('Fresh?')), '2 messages (su); image second.png; you said: Fresh?');
    assert.deepEqual(await session.input('/exit'), { kind: 'exit' });
    assert.deepEqual(await worker.close(), { answers: 5 });
  } finally {
    await worker.interrupt();
    m.cleanup();
  }
});

test('an image that vanishes mid-session is refused by the worker, and the session goes on', async () => {
  const m = fakeModel();
  const image = m.image('gone.jpg');
  const { worker } = await ChatWorker.start(options(m.model));
  try {
    const session = new ChatSession(worker, { image });
    rmSync(image);
    const reply = await session.input('What is this?');
    assert.equal(reply.kind, 'error');
    assert.match((reply as { message: string }).message, /gone\.jpg: cannot read the image/);
    assert.equal(session.history.length, 0);
    session.reset();
    assert.equal((await session.input('/image ' + m.image('back.jpg'))).kind, 'info');
    assert.match(answer(await session.input('And now?')), /image back\.jpg/);
    await worker.close();
  } finally {
    await worker.interrupt();
    m.cleanup();
  }
});

test('a worker that cannot load the model fails start() with its message; one that dies mid-session fails the turn', async () => {
  const m = fakeModel();
  try {
    await assert.rejects(ChatWorker.start(options(join(m.dir, 'nowhere'))), (err: unknown) => {
      assert.ok(err instanceof WorkerError);
      assert.match(err.message, /^chat failed: .*nowhere: no loom\.json here/);
      assert.equal(err.exitCode, 1);
      return true;
    });
    const { worker } = await ChatWorker.start(options(m.model, { args: ['--die-after', '1'] }));
    const session = new ChatSession(worker);
    answer(await session.input('one'));
    await assert.rejects(session.input('two'), (err: unknown) => {
      assert.ok(err instanceof WorkerError);
      assert.match(err.message, /chat failed: the worker exited with code 3 without reporting an error/);
      assert.match(err.message, /the fake worker dies on purpose/);
      return true;
    });
    assert.equal(worker.running, false);
  } finally {
    m.cleanup();
  }
});

test('interrupt() stops a waiting worker; the pending turn ends with ChatInterrupted (exit 130)', async () => {
  const m = fakeModel();
  try {
    const { worker } = await ChatWorker.start(options(m.model));
    const session = new ChatSession(worker);
    answer(await session.input('one'));
    await worker.interrupt('SIGINT');
    assert.equal(worker.running, false);
    await assert.rejects(session.input('two'), (err: unknown) => err instanceof ChatInterrupted && err.exitCode === 130);
  } finally {
    m.cleanup();
  }
});

// Streams samples out of WebDataset shards, reporting every bad sample (and bad file) in order
// instead of throwing: a bad sample never takes good samples around it along.
import { dottedKeyDot, type BadReason, type BadSample, type ReadOptions, type SampleMember, type ShardItem } from './types.js';
import { readTarMembers, type TarEnd } from './tarMembers.js';
import { Grouper, type Group, type GroupEvent } from './grouping.js';
import { hasAllParts, judgeGroup } from './validate.js';
import { decodeImage } from './decode.js';
import { splitMemberName } from './keys.js';

export { listShards } from './listShards.js';

// A decode in flight is boxed: an async generator awaits any promise it yields, which would
// serialise the decodes.
type Pending = ShardItem | { decoding: Promise<ShardItem> };

const isDecoding = (p: Pending): p is { decoding: Promise<ShardItem> } => 'decoding' in p;
const settle = (p: Pending): ShardItem | Promise<ShardItem> => (isDecoding(p) ? p.decoding : p);

/** Reads one shard; see readShards. */
export function readShard(path: string, options: ReadOptions = {}): AsyncIterable<ShardItem> {
  return readShards([path], options);
}

/**
 * Reads shards in order, yielding good samples and bad ones in tar order. With decodeImages,
 * up to decodeConcurrency images are decoded at once; the output order stays the tar order.
 * The default window (64) lets the decoder pool fill its batches of 16 for both workers.
 */
export async function* readShards(paths: string[], options: ReadOptions = {}): AsyncGenerator<ShardItem> {
  const window = options.decodeImages ? Math.max(1, options.decodeConcurrency ?? 64) : 1;
  const queue: Pending[] = [];
  for (const path of paths) {
    for await (const item of shardItems(path, options.decodeImages === true, options.members === true)) {
      queue.push(item);
      while (queue.length > 0 && (queue.length > window || !isDecoding(queue[0]!))) yield await settle(queue.shift()!);
    }
  }
  while (queue.length > 0) yield await settle(queue.shift()!);
}

async function* shardItems(shard: string, decode: boolean, keepMembers: boolean): AsyncGenerator<Pending> {
  const seen = new Set<string>();
  const grouper = new Grouper();
  const judge = function* (group: Group): Generator<Pending> {
    const verdict = judgeGroup(group, shard, seen);
    for (const bad of verdict.bad) yield { kind: 'bad', bad };
    const sample = verdict.sample;
    if (!sample) return;
    if (keepMembers) sample.members = membersAsStored(group);
    if (!decode) {
      yield { kind: 'sample', sample };
      return;
    }
    const decoding = decodeImage(sample.image.data).then((r): ShardItem => {
      if (!r.ok) return { kind: 'bad', bad: { shard, key: sample.key, reason: r.reason, detail: `${sample.key}.${sample.image.ext}: ${r.detail}` } };
      sample.imageInfo = { width: r.width, height: r.height };
      return { kind: 'sample', sample };
    });
    yield { decoding };
  };
  const grouped = function* (events: GroupEvent[]): Generator<Pending> {
    for (const e of events) {
      if (e.kind === 'group') yield* judge(e.group);
      else yield bad(shard, null, 'missing_extension', `member "${e.name}" has no extension, so it belongs to no field`);
    }
  };
  for await (const event of readTarMembers(shard)) {
    if (event.type === 'member') {
      yield* grouped(grouper.push(event.name, event.data));
      continue;
    }
    const { last, after } = grouper.finish();
    if (event.status === 'ok') {
      if (last) yield* judge(last);
    } else if (event.status === 'empty' || event.status === 'not_a_tar') {
      yield bad(shard, null, 'not_a_tar', event.detail);
    } else {
      yield* atTheCut(shard, event, last, judge);
    }
    yield* grouped(after);
  }
}

/**
 * The archive stopped early. The open group is kept when it has all its parts and no member
 * with its key was cut off; otherwise it is reported under its key. The file-level problem is
 * reported once, under the cut-off key when there is one.
 */
function* atTheCut(file: string, end: TarEnd, last: Group | null, judge: (g: Group) => Generator<Pending>): Generator<Pending> {
  const reason: BadReason = end.status === 'truncated' ? 'truncated_tar' : end.status === 'corrupt' ? 'corrupt_tar' : 'unreadable_file';
  const partialKey = end.partialName ? (splitMemberName(end.partialName)?.key ?? end.partialName) : null;
  let reported = false;
  if (last) {
    if (hasAllParts(last) && partialKey !== last.key) yield* judge(last);
    else {
      yield bad(file, last.key, reason, `${end.detail}; sample has only ${last.members.map((m) => m.ext).join(', ')}`);
      reported = true;
    }
  }
  if (partialKey !== null && partialKey !== last?.key) {
    yield bad(file, partialKey, reason, end.detail);
    reported = true;
  }
  if (!reported) yield bad(file, null, reason, end.detail);
}

/**
 * The group's members as stored, less the "a.b.jpg"-style ones: those belong to a dotted key
 * "a.b" that the validator reports as bad, not to sample "a".
 */
function membersAsStored(group: Group): SampleMember[] {
  const members: SampleMember[] = [];
  const afterKey = group.key.length + 1;
  for (const m of group.members) {
    if (dottedKeyDot(m.ext) >= 0) continue;
    members.push({ ext: m.name.slice(afterKey), data: m.data });
  }
  return members;
}

function bad(shard: string, key: string | null, reason: BadReason, detail: string): ShardItem {
  const b: BadSample = { shard, key, reason, detail };
  return { kind: 'bad', bad: b };
}

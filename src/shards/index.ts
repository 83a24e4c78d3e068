// The shard data layer: read, write, list and summarise WebDataset shards.
export * from './types.js';
export { readShard, readShards } from './reader.js';
export { listShards, expandBraces } from './listShards.js';
export { ShardWriter, type ShardWriterOptions, type SampleToWrite } from './writer.js';
export { deriveUid, isValidUid, keyProblem, splitMemberName, shardFileName, statsFileName, statsPathFor } from './keys.js';
export { readShardStats, type ShardStats } from './stats.js';
export { inspectShards, type InspectReport, type InspectOptions } from './inspect.js';
export { readImageHeader, type ImageHeader } from './imageHeader.js';
export { decodeImage, type DecodeResult } from './decode.js';

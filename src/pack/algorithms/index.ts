// Packing algorithms over integer sample lengths (no I/O): Loom's exact-fill packer, the
// best-fit-decreasing baseline and fallback, and the original recipe's per-shard FFD.
export { packBestFitDecreasing } from './bestFitDecreasing.js';
export { packExactFill, lowerBoundBins } from './exactFill.js';
export { packFirstFitDecreasingPerShard } from './firstFitDecreasingPerShard.js';
export { packingEfficiency, PackInputError, type PackInput, type PackResult } from './types.js';
